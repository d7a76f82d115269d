#!/usr/bin/env bash
# Boots Debian's linux-image-cloud-amd64 (examples/linux/make-guest.sh) with
# 2 vCPUs, 512 MiB and an initramfs, and checks from the serial log that the
# kernel saw what Ember built: the exact command line, the e820 map of
# vmm/boot/layout.c boot_e820(), the RSDP/XSDT/MADT, 2 CPUs, and the initrd at
# the address boot_place_initrd() chose. Then it accepts either
#   - the initramfs marker EMBER-LINUX-INIT-OK and exit status 0 (a host with
#     VMX/SVM, where the kernel runs to user space and powers off), or
#   - Ember's clean report of KVM's emulation failure on the kernel's int3
#     self-test (nested PVM hosts: the kernel runs in KVM's instruction
#     emulator, which cannot execute int3 in long mode): "emulation failure"
#     ... "instruction bytes: cc", exit status 4.
# A hang (timeout), any other status, a missing report or a garbled log fail.
#
# Skips (77) only without /dev/kvm. If the kernel cannot be fetched, fails.
# Environment: EMBER_LINUX_TIMEOUT (default 600 s), EMBER_LINUX_OUT (the
# make-guest.sh output dir), EMBER_LINUX_KEEP=DIR (copy logs there).
set -e
. "$(dirname "$0")/lib.sh"
require_kvm

SRC=${EMBER_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
OUTD=${EMBER_LINUX_OUT:-$SRC/examples/linux/out}
T=${EMBER_LINUX_TIMEOUT:-600}
MEM_MIB=512
CPUS=2
MARKER=EMBER-LINUX-INIT-OK
CMDLINE="console=ttyS0 earlyprintk=serial noxsave nokaslr panic=-1 ember.test=slow_linux_boot"

echo "slow_linux_boot: preparing the guest (examples/linux/make-guest.sh)"
if ! OUT=$OUTD bash "$SRC/examples/linux/make-guest.sh" >"$TMPD/make-guest.log" 2>&1; then
	cat "$TMPD/make-guest.log" >&2
	fail "could not build the Linux guest: examples/linux/make-guest.sh failed (it needs Debian's package mirrors to download linux-image-cloud-amd64 and busybox-static once; see above)"
fi
KERNEL=$OUTD/vmlinuz
INITRD=$OUTD/initramfs.cpio.gz
[ -s "$KERNEL" ] && [ -s "$INITRD" ] || fail "make-guest.sh did not produce $KERNEL and $INITRD"

LOG=$TMPD/serial.log
OUTF=$TMPD/ember.out
keep_logs() {
	if [ -n "${EMBER_LINUX_KEEP:-}" ]; then
		mkdir -p "$EMBER_LINUX_KEEP" && cp -f "$LOG" "$OUTF" "$EMBER_LINUX_KEEP/" 2>/dev/null || true
	fi
}
show_and_fail() {
	echo "---- ember output ----" >&2; cat "$OUTF" >&2 2>/dev/null
	echo "---- serial log (last 40 lines of $(wc -l <"$LOG" 2>/dev/null || echo 0)) ----" >&2
	tail -n 40 "$LOG" >&2 2>/dev/null
	keep_logs
	fail "$*"
}

echo "slow_linux_boot: booting $(cat "$OUTD/kernel.version" 2>/dev/null) (timeout ${T}s)"
start=$(date +%s)
set +e
# EMBER_LOG=debug: if Ember logs where it put the initrd, it is cross-checked.
EMBER_LOG=debug timeout -k 10 "$T" "$EMBER" run --kernel "$KERNEL" --initrd "$INITRD" \
	--cpu-model baseline --cpus "$CPUS" --memory "${MEM_MIB}M" \
	--cmdline "$CMDLINE" --console "file:$LOG" --on-reboot exit \
	>"$OUTF" 2>&1 </dev/null
RC=$?
set -e
elapsed=$(( $(date +%s) - start ))
echo "slow_linux_boot: ember exited with status $RC after ${elapsed}s"
[ -f "$LOG" ] || show_and_fail "no serial log was written"
if [ "$RC" = 124 ] || [ "$RC" = 137 ]; then
	show_and_fail "the guest hung: no exit within ${T}s"
fi

# ---- the log must be text ----------------------------------------------------------
if LC_ALL=C grep -q '[^[:print:][:space:]]' "$LOG"; then
	LC_ALL=C grep -n '[^[:print:][:space:]]' "$LOG" | head -5 | cat -v >&2
	show_and_fail "garbled serial log: non-text bytes (above)"
fi
expect_line() { # fixed string, description
	grep -qF -- "$1" "$LOG" || show_and_fail "missing in the serial log: $2: '$1'"
}
expect_line "Linux version " "kernel banner"
# The exact command line: the whole line after "Command line: ".
got=$(sed -n 's/^\[[ 0-9.]*\] Command line: //p' "$LOG" | head -n1 | tr -d '\r')
[ "$got" = "$CMDLINE" ] || show_and_fail "command line: expected '$CMDLINE', kernel printed '$got'"

# ---- e820: vmm/boot/layout.c boot_e820() for one RAM region [0, 512 MiB) --------
hdr=$SRC/vmm/boot/boot.h
const() { # NAME -> value from boot.h
	local v
	v=$(sed -n "s/^#define[[:space:]]\+$1[[:space:]]\+\(0x[0-9A-Fa-f]\+\)ULL.*/\1/p" "$hdr" | head -n1)
	[ -n "$v" ] || fail "cannot read $1 from $hdr"
	echo $((v))
}
EBDA=$(const BOOT_EBDA_START); ACPI=$(const BOOT_ACPI_ADDR)
ACPI_END=$(const BOOT_ACPI_END); HIGH=$(const BOOT_HIGH_ADDR)
VGA=$((0xA0000)); RAM_END=$((MEM_MIB << 20))
e820_line() { printf 'BIOS-e820: [mem 0x%016x-0x%016x] %s' "$1" $(($2 - 1)) "$3"; }
expected_e820=(
	"$(e820_line 0 "$EBDA" usable)"
	"$(e820_line "$EBDA" "$VGA" reserved)"
	"$(e820_line "$ACPI" "$ACPI_END" reserved)"
	"$(e820_line "$HIGH" "$RAM_END" usable)"
)
for l in "${expected_e820[@]}"; do expect_line "$l" "e820 entry"; done
n=$(grep -c 'BIOS-e820: \[mem' "$LOG" || true)
[ "$n" = ${#expected_e820[@]} ] ||
	show_and_fail "e820: expected exactly ${#expected_e820[@]} entries, the kernel printed $n"

# ---- ACPI and SMP --------------------------------------------------------------------
expect_line "$(printf 'ACPI: RSDP 0x%016X' "$ACPI")" "RSDP at BOOT_ACPI_ADDR"
expect_line "ACPI: XSDT 0x" "XSDT"
expect_line "ACPI: APIC 0x" "MADT"
expect_line "ACPI: Using ACPI (MADT) for SMP configuration information" "SMP from the MADT"
expect_line "smpboot: Allowing $CPUS CPUs" "CPU count"

# ---- initrd: boot_place_initrd() puts it at the highest page-aligned address
# below min(initrd_addr_max + 1, end of low RAM); the kernel prints
# "RAMDISK: [mem start-(PAGE_ALIGN(start + size) - 1)]".
size=$(stat -c %s "$INITRD")
addr_max=$(od -An -tu4 -j $((0x22c)) -N4 "$KERNEL" | tr -d ' ')
top=$((addr_max + 1 < RAM_END ? addr_max + 1 : RAM_END))
rd_start=$(( (top - size) & ~0xfff ))
rd_end=$(( ((rd_start + size + 0xfff) & ~0xfff) - 1 ))
expect_line "$(printf 'RAMDISK: [mem 0x%08x-0x%08x]' "$rd_start" "$rd_end")" "initrd where Ember put it"
# If Ember logs where it put the initrd, that must agree.
if grep -qi 'initrd.*0x[0-9a-f]' "$OUTF"; then
	grep -qiE "initrd.*0x0*$(printf '%x' "$rd_start")\b" "$OUTF" ||
		show_and_fail "Ember logged an initrd address other than 0x$(printf '%x' "$rd_start")"
fi

# ---- how it ended ---------------------------------------------------------------------
symbolize() { # RIP (hex, no 0x) -> "symbol+0xoff" using System.map, if there is one
	local map=$OUTD/System.map rip
	[ -s "$map" ] || return 0
	rip=$(printf '%016x' "0x$1")
	awk -v r="$rip" '($1 "") <= (r "") { s = $3; a = $1 } ($1 "") > (r "") { exit } END { if (s != "") print s, a }' "$map" |
		while read -r s a; do printf '%s+0x%x\n' "$s" $((0x$rip - 0x$a)); done
}
if grep -qF "$MARKER" "$LOG"; then
	[ "$RC" = 0 ] || show_and_fail "the initramfs printed $MARKER, but Ember exited with $RC instead of 0 (poweroff)"
	keep_logs
	pass "Linux booted to the initramfs and powered off in ${elapsed}s"
	exit 0
fi
if [ "$RC" = 4 ] && grep -q "emulation failure" "$OUTF" && grep -qE "instruction bytes: cc( |$)" "$OUTF"; then
	rip=$(sed -n 's/.*emulation failure.*RIP 0x\([0-9a-f]*\).*/\1/p' "$OUTF" | head -n1)
	sym=$(symbolize "$rip")
	echo "slow_linux_boot: Ember reported: $(grep -m1 'emulation failure' "$OUTF")"
	[ -n "$sym" ] && echo "slow_linux_boot: RIP 0x$rip is $sym"
	echo "slow_linux_boot: last kernel line: $(grep -v '^[[:space:]]*$' "$LOG" | tail -n1)"
	keep_logs
	pass "Linux booted through early setup (e820, ACPI, SMP, initrd) in ${elapsed}s and stopped at the int3 self-test with a clean emulation-failure report"
	exit 0
fi
show_and_fail "neither $MARKER nor Ember's int3 emulation-failure report (status 4); ember exited with $RC"
