# Guest side of the vhost-user-blk tests (tests/linux/cases/vhost_user_blk.py).
# qemu-storage-daemon serves the disks; it gives every disk the same serial,
# so they are told apart by size.

vu_dev() { # size in 512-byte sectors -> vdX
	local d
	for d in /sys/block/vd*; do
		[ "$(cat "$d/size")" = "$1" ] && { echo "${d##*/}"; return 0; }
	done
	return 1
}

# 64 MiB data (2 queues), 16 MiB read-only, 48 MiB file system: the same
# checks as virtio-blk.
t_vhost_user_blk() {
	local d ro fs
	d=$(vu_dev 131072) || bad find_data_disk "no 64 MiB disk"
	ro=$(vu_dev 32768) || bad find_ro_disk "no 16 MiB disk"
	fs=$(vu_dev 98304) || bad find_fs_disk "no 48 MiB disk"
	echo "EMBER-INFO serial=$(cat /sys/block/$d/serial 2>/dev/null)"
	check data_queues test "$(ls /sys/block/$d/mq | wc -l)" = 2
	# The daemon starts write-through (config wce 0); switching the cache
	# goes to it as SET_CONFIG, and then the flush checks apply.
	echo "EMBER-INFO cache_type_before=$(cat /sys/block/$d/cache_type 2>/dev/null)"
	check cache_type_write_back sh -c "echo 'write back' >/sys/block/$d/cache_type &&
		test \"\$(cat /sys/block/$d/cache_type)\" = 'write back'"
	blk_checks "$d" "$ro" "$fs"
	done_
	off
}

# Numbered 4 KiB records, record i at block i, each written O_DIRECT and
# flushed, for ember.secs seconds while the host kills and restarts the
# daemon; any failed write is a FAIL. The host checks the image.
t_vhost_user_blk_reconnect() {
	local d i=0 start secs fails=0
	secs=$(arg secs)
	d=$(vu_dev 131072) || bad find_data_disk "no 64 MiB disk"
	start=$(date +%s)
	echo "EMBER-READY vu-writing"
	while [ $(($(date +%s) - start)) -lt "${secs:-30}" ]; do
		if ! printf 'ember-record %08d\n' "$i" |
			dd of=/dev/$d bs=4096 seek=$i count=1 conv=sync,fsync oflag=direct 2>/tmp/dd.err; then
			fails=$((fails + 1))
			bad record_write "record $i: $(tail -n1 /tmp/dd.err)"
			break
		fi
		i=$((i + 1))
		[ $((i % 50)) = 0 ] && echo "EMBER-INFO vu_records_so_far=$i"
	done
	echo "EMBER-INFO vu_records=$i"
	[ "$fails" = 0 ] && ok records_written
	check records_some test "$i" -gt 20
	check no_io_error sh -c '! dmesg | grep -iE "I/O error|blk_update_request|critical target error|virtio_blk.*(error|failed)"'
	check records_read_back sh -c "dd if=/dev/$d bs=4096 skip=$((i - 1)) count=1 iflag=direct 2>/dev/null | head -c 21 | grep -q 'ember-record $(printf %08d $((i - 1)))'"
	done_
	off
}

# bench/vhost-user: O_DIRECT throughput and IOPS on the VM's one disk,
# whatever serves it (vhost-user-blk, Ember's virtio-blk, QEMU's), ember.secs
# seconds per case; the host parses the EMBER-BENCH lines.
t_vu_bench() {
	local d secs c out
	secs=$(arg secs)
	d=$(ls /sys/block | grep '^vd' | head -n1)
	[ -n "$d" ] || { bad bench_disk "no disk"; done_; off; }
	for c in "read 1048576 8" "write 1048576 8" "randread 4096 16" "randwrite 4096 16" "randread 4096 1"; do
		# shellcheck disable=SC2086
		if out=$(blkbench /dev/$d $c "${secs:-5}" 2>&1); then
			echo "EMBER-BENCH $out"
		else
			bad "bench_${c%% *}" "$out"
		fi
	done
	done_
	off
}
