#!/bin/bash
# Dump the generated ACPI tables (through the test_acpi unit test) and check
# them with ACPICA: `iasl -d` must disassemble every table without errors,
# and the disassembly must compile back without errors or warnings.
set -eu
: "${EMBER_BUILD_DIR:?EMBER_BUILD_DIR must point at the build directory}"

if ! command -v iasl >/dev/null 2>&1; then
	echo "SKIP: ****************************************************" >&2
	echo "SKIP: iasl not found (apt-get install acpica-tools);" >&2
	echo "SKIP: generated ACPI tables were NOT checked" >&2
	echo "SKIP: ****************************************************" >&2
	exit 77
fi
TEST_ACPI="$EMBER_BUILD_DIR/tests/test_acpi"
[ -x "$TEST_ACPI" ] || { echo "FAIL: $TEST_ACPI not built" >&2; exit 1; }

TMPD=$(mktemp -d "${TMPDIR:-/tmp}/ember-acpi.XXXXXX")
trap 'rm -rf "$TMPD"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

EMBER_ACPI_DUMP_DIR="$TMPD" CK_RUN_CASE=tables "$TEST_ACPI" >"$TMPD/unit.log" 2>&1 ||
	{ cat "$TMPD/unit.log" >&2; fail "test_acpi failed"; }

for sig in XSDT FACP APIC DSDT FACS; do
	[ -s "$TMPD/$sig.dat" ] || fail "table $sig was not dumped"
done

cd "$TMPD"
for dat in *.dat; do
	name=${dat%.dat}
	if ! iasl -d "$dat" >"$name.dis.log" 2>&1 || grep -qiE '(^| )error' "$name.dis.log"; then
		cat "$name.dis.log" >&2
		fail "iasl -d $dat"
	fi
	[ -s "$name.dsl" ] || fail "iasl -d $dat produced no $name.dsl"
	if ! iasl -p "recompiled_$name" "$name.dsl" >"$name.asl.log" 2>&1 ||
	   ! grep -q ' 0 Errors, 0 Warnings' "$name.asl.log"; then
		cat "$name.dsl" "$name.asl.log" >&2
		fail "$name.dsl does not compile cleanly"
	fi
	echo "PASS: $name"
done
grep -q 'PNP0501' DSDT.dsl || fail "DSDT has no COM1 (PNP0501)"
grep -q 'PNP0C0C' DSDT.dsl || fail "DSDT has no power button (PNP0C0C)"
grep -q '_S5' DSDT.dsl || fail "DSDT has no _S5"
echo "PASS: ACPI tables disassemble and recompile cleanly with $(iasl -v 2>/dev/null | grep -o 'version [0-9]*' | head -1)"
