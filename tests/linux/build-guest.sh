#!/usr/bin/env bash
# Builds the Linux-guest suite's guest: Debian's cloud kernel and an
# initramfs of busybox-static, the virtio/ACPI/pvpanic modules and
# tests/linux/guest-init.sh as /init. Uses examples/linux/make-guest.sh
# (downloads once with apt-get download, then works offline from its cache).
#   OUT=DIR            output directory (default examples/linux/out)
#   --if-stale         do nothing when the outputs are newer than the inputs
# Prints the kernel and initramfs paths. Exit status 1 with a reason on failure.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
SRC=$(cd "$HERE/../.." && pwd)
OUT=${OUT:-$SRC/examples/linux/out}
SUITE=$OUT/initramfs-suite.cpio.gz
if [ "${1:-}" = --if-stale ] && [ -s "$SUITE" ] && [ -s "$OUT/vmlinuz" ] &&
	[ "$SUITE" -nt "$HERE/guest-init.sh" ] && [ "$SUITE" -nt "$SRC/examples/linux/make-guest.sh" ] &&
	[ "$SUITE" -nt "$HERE/vsock-test.c" ] &&
	[ -z "$(find "$HERE/init.d" "$HERE/guest-bin" -newer "$SUITE" 2>/dev/null)" ]; then
	echo "kernel:    $OUT/vmlinuz"
	echo "initramfs: $SUITE"
	exit 0
fi
OUT=$OUT bash "$SRC/examples/linux/make-guest.sh" >/dev/null ||
	{ echo "build-guest: examples/linux/make-guest.sh failed (see above)" >&2; exit 1; }
STAGE=$OUT/initramfs-suite.d
rm -rf "$STAGE"
cp -a "$OUT/initramfs.d" "$STAGE"
install -m 755 "$HERE/guest-init.sh" "$STAGE/init"
# Per-area test functions, sourced by /init (tests/linux/init.d/*.sh).
mkdir -p "$STAGE/init.d"
cp "$HERE"/init.d/*.sh "$STAGE/init.d/" 2>/dev/null || true
# Per-area guest programs: tests/linux/guest-bin/NAME.c -> /bin/NAME (static).
for c in "$HERE"/guest-bin/*.c; do
	[ -e "$c" ] || continue
	${CC:-cc} -static -O2 -Wall -o "$STAGE/bin/$(basename "$c" .c)" "$c" ||
		{ echo "build-guest: cannot build $c statically (needs libc6-dev)" >&2; exit 1; }
done
# The vsock test's client/server (static: the initramfs has no libc).
${CC:-cc} -static -O2 -Wall -o "$STAGE/bin/vsock-test" "$HERE/vsock-test.c" ||
	{ echo "build-guest: cannot build vsock-test.c statically (needs libc6-dev)" >&2; exit 1; }
find "$STAGE" -exec touch -h -d @0 {} +
(cd "$STAGE" && find . -mindepth 1 | LC_ALL=C sort |
	cpio -o -H newc --owner=0:0 --reproducible --quiet) | gzip -6n >"$SUITE.new"
mv -f "$SUITE.new" "$SUITE"
rm -rf "$STAGE"
echo "kernel:    $OUT/vmlinuz"
echo "initramfs: $SUITE"
