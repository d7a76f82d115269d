#!/usr/bin/env bash
# virtio-blk over virtio-pci with MSI-X (guest virtio_blk.elf): write, FLUSH
# and read back, GET_ID, IOERR past the end, a read-only disk, and each aio
# backend. The host image must hold the guest's pattern afterwards: the
# 64-bit little-endian word at byte offset o is 0x4542 << 48 | seed << 32 | o,
# written to sectors 8-15 and to the last sector (see the guest's header).
set -e
. "$(dirname "$0")/lib.sh"
require_kvm

SERIAL=EMBER123
SECTORS=2048	# 1 MiB images
GUEST="$EMBER_GUEST_DIR/virtio_blk.elf"

# check_pattern IMG SEED FIRST NSECT: the sectors hold the guest's pattern.
check_pattern() {
	local img=$1 seed=$2 first=$3 n=$4 o
	for ((o = first * 512; o < (first + n) * 512; o += 8)); do
		printf '4542%04x%08x\n' "$seed" "$o"
	done >"$TMPD/want"
	od -A n -t x8 -v -w8 -j $((first * 512)) -N $((n * 512)) "$img" | tr -d ' ' >"$TMPD/got"
	if ! cmp -s "$TMPD/want" "$TMPD/got"; then
		diff "$TMPD/want" "$TMPD/got" | head -5 >&2
		fail "$img: sectors $first+$n do not hold the pattern of seed $seed"
	fi
}

# check_zero IMG FIRST NSECT
check_zero() {
	cmp -s -n $(($3 * 512)) -i $(($2 * 512)):0 "$1" /dev/zero ||
		fail "$1: sectors $2+$3 were written but should not have been"
}

# rw_run NAME SEED DISK-OPTIONS [CMDLINE...]: fresh image, guest writes.
rw_run() {
	local name=$1 seed=$2 opts=$3; shift 3
	local img="$TMPD/$name.img"
	rm -f "$img"
	truncate -s $((SECTORS * 512)) "$img"
	run_guest 120 "$TMPD/$name.out" --debug-exit --kernel "$GUEST" --disk "path=$img,serial=$SERIAL$opts" \
		--cmdline "serial=$SERIAL seed=$seed $*"
	expect_rc 1 "$TMPD/$name.out"
	expect_log "virtio_blk: id '$SERIAL'" "$TMPD/$name.out"
	expect_log "virtio_blk: ok" "$TMPD/$name.out"
	check_zero "$img" 0 8
	check_pattern "$img" "$seed" 8 8
	check_zero "$img" 16 8
	check_pattern "$img" "$seed" $((SECTORS - 1)) 1
}

rw_run default 1 ""
# Without EVENT_IDX and indirect descriptors (the other notification path).
rw_run plain 2 "" event_idx=0 indirect=0
rw_run io_uring 3 ",aio=io_uring"
rw_run threads 4 ",aio=threads"
# aio=native needs O_DIRECT (cache=none), which some temp filesystems reject.
if dd if=/dev/zero of="$TMPD/odirect" bs=4096 count=1 oflag=direct status=none 2>/dev/null; then
	rw_run native 5 ",aio=native,cache=none"
else
	echo "SKIP: aio=native: $TMPD rejects O_DIRECT" >&2
fi

# Read-only: the write fails with IOERR and the image is unchanged.
cp "$TMPD/default.img" "$TMPD/ro_before.img"
run_guest 120 "$TMPD/ro.out" --debug-exit --kernel "$GUEST" --disk "path=$TMPD/default.img,serial=$SERIAL,readonly=on" \
	--cmdline "serial=$SERIAL ro=1 seed=9"
expect_rc 1 "$TMPD/ro.out"
expect_log "virtio_blk: read-only: write refused with IOERR, data unchanged" "$TMPD/ro.out"
expect_log "virtio_blk: ok" "$TMPD/ro.out"
cmp -s "$TMPD/default.img" "$TMPD/ro_before.img" || fail "read-only image was modified"

# A serial mismatch must be caught (GET_ID failure: exit code 6 -> 13).
run_guest 120 "$TMPD/id.out" --debug-exit --kernel "$GUEST" --disk "path=$TMPD/default.img,serial=OTHER" \
	--cmdline "serial=$SERIAL"
expect_rc 13 "$TMPD/id.out"
expect_log "GET_ID returned 'OTHER'" "$TMPD/id.out"

pass "virtio-blk"
