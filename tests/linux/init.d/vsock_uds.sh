# Guest side of the vsock unix-socket bridge test (tests/linux/cases/vsock_uds.py).
# Ember runs --vsock cid=N,uds=PATH: the host end of every connection is a
# unix socket, reached through CID 2 as with vhost-vsock.

t_vsock_uds() {
	check vsock_dev test -c /dev/vsock
	# Guest-initiated: to the host's PATH_5000, 1 MiB each way on one connection.
	check vsock_uds_gi sh -c 'yes ember-linux-suite-pattern-0123 | head -c 1048576 |
		timeout 120 vsock-bridge dial 2 5000 >/tmp/gi'
	echo "EMBER-INFO vsock_uds_gi=$(sha256sum </tmp/gi | cut -d' ' -f1)"
	rm -f /tmp/gi
	# Host-initiated: the host connects to PATH and asks for "CONNECT 5001".
	(pattern 1048576 | timeout 120 vsock-bridge accept 5001 >/tmp/hi) &
	sleep 1
	echo "EMBER-READY vsock-uds-listen"
	if wait $!; then ok vsock_uds_hi; else bad vsock_uds_hi "vsock-bridge accept failed"; fi
	echo "EMBER-INFO vsock_uds_hi=$(sha256sum </tmp/hi | cut -d' ' -f1)"
	rm -f /tmp/hi
	# Bounded memory: 32 connections to PATH_5002 that never read while the
	# host writes; the host ends it with CONNECT 5003.
	timeout 120 vsock-bridge hold 2 5002 32 5003 &
	if wait $!; then ok vsock_uds_hold; else bad vsock_uds_hold "vsock-bridge hold failed"; fi
	done_
	off
}

# bench/vsock: ember.mb=N MiB guest -> host (to 2:5000), then host -> guest
# (the guest listens on 5001), whatever the backend (uds bridge, vhost-vsock,
# QEMU's vhost-vsock-pci); the host times both.
t_vsock_bench() {
	local mb
	mb=$(sed -n 's/.*ember\.mb=\([0-9]*\).*/\1/p' /proc/cmdline)
	mb=${mb:-64}
	echo "EMBER-READY vsock-bench"
	head -c $((mb * 1048576)) /dev/zero | timeout 600 vsock-bridge dial 2 5000 >/dev/null ||
		bad vsock_bench_g2h "dial failed"
	echo "EMBER-READY vsock-bench-listen"
	timeout 600 vsock-bridge accept 5001 </dev/null >/dev/null || bad vsock_bench_h2g "accept failed"
	done_
	off
}
