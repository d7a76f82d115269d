# Guest side of the networking tests (tests/linux/cases/net.py), with Linux's
# own virtio_net. Kernel command line:
#   ember.ip=A.B.C.D/N | dhcp   the address of eth0 (dhcp: busybox udhcpc)
#   ember.peer=A.B.C.D         the host end (ping, nc targets)
#   ember.mb=N                 MiB per stream and direction
#   ember.streams=N            parallel streams each way (stream i is pinned to
#                              vCPU i % cpus, so XPS spreads them over the
#                              TX queues)
#   ember.link=1               also wait for the host's set_link down/up
#   ember.gone=1               keep sending while the host deletes the tap
#   ember.vu=1                 vhost-user-net: a stream after the backend restarts
# Guest -> host: stream i sends pattern(N MiB) to PEER:5000+i (the host
# hashes it). Host -> guest: the guest listens on 5100+i and prints the hash.

net_iface() { # the virtio-net device's sysfs dir
	local d
	for d in /sys/bus/virtio/devices/*; do
		[ "$(cat "$d/device")" = 0x0001 ] && { echo "$d"; return 0; }
	done
	return 1
}

net_udhcpc_script() {
	cat >/tmp/udhcpc.sh <<'EOS'
#!/bin/sh
case "$1" in
deconfig) ip addr flush dev "$interface"; ip link set "$interface" up ;;
bound|renew)
	ip addr flush dev "$interface"
	ip addr add "$ip/${mask:-24}" dev "$interface"
	echo "$ip" >/tmp/dhcp.ip ;;
esac
EOS
	chmod 755 /tmp/udhcpc.sh
}

# net_wait_carrier V SECONDS: until eth0's carrier reads V.
net_wait_carrier() {
	local i=0
	while [ "$(cat /sys/class/net/eth0/carrier 2>/dev/null)" != "$1" ]; do
		i=$((i + 1))
		[ $i -gt $(($2 * 10)) ] && return 1
		sleep 0.1
	done
}

t_net() {
	local ip peer mb streams cpus dev i
	ip=$(arg ip); peer=$(arg peer); mb=$(arg mb); streams=$(arg streams)
	cpus=$(arg cpus)
	mb=${mb:-16}; streams=${streams:-1}; cpus=${cpus:-1}
	if dev=$(net_iface); then ok net_dev; else bad net_dev "no virtio-net device"; done_; off; fi
	echo "EMBER-INFO net_features=$(cat "$dev/features")"
	echo "EMBER-INFO net_driver=$(basename "$(readlink "$dev/driver")")"
	echo "EMBER-INFO net_rx_queues=$(ls /sys/class/net/eth0/queues | grep -c '^rx-')"
	echo "EMBER-INFO net_tx_queues=$(ls /sys/class/net/eth0/queues | grep -c '^tx-')"
	echo "EMBER-INFO net_mac=$(cat /sys/class/net/eth0/address)"
	echo "EMBER-INFO net_mtu=$(cat /sys/class/net/eth0/mtu)"
	ip link set lo up
	ip link set eth0 up
	if [ "$ip" = dhcp ]; then
		net_udhcpc_script
		check net_dhcp udhcpc -i eth0 -n -q -f -t 20 -T 3 -s /tmp/udhcpc.sh
		ip=$(cat /tmp/dhcp.ip 2>/dev/null)
	else
		ip addr add "$ip" dev eth0
		ip=${ip%/*}
	fi
	echo "EMBER-INFO net_ip=$ip"
	net_wait_carrier 1 30 || bad net_carrier_up "eth0 has no carrier"
	check net_ping_host ping -c 3 -W 10 "$peer"
	echo "EMBER-READY net-up"

	# Guest -> host, streams in parallel, pinned one per vCPU.
	i=0
	while [ $i -lt "$streams" ]; do
		(pattern $((mb * 1048576)) | taskset $((1 << (i % cpus))) nc "$peer" $((5000 + i)) ||
			echo "EMBER-CHECK net_g2h_$i FAIL nc exited with $?") &
		i=$((i + 1))
	done
	wait
	ok net_g2h_sent

	# Host -> guest: listeners first, then tell the host.
	i=0
	while [ $i -lt "$streams" ]; do
		# nc's stdin stays open (sleep) so it never half-closes early.
		( sleep 900 | taskset $((1 << (i % cpus))) nc -l -p $((5100 + i)) | sha256sum | cut -d' ' -f1 \
			>/tmp/h2g.$i ) &
		i=$((i + 1))
	done
	sleep 1
	echo "EMBER-READY net-h2g"
	i=0
	while [ $i -lt "$streams" ]; do
		local n=0
		while [ ! -s /tmp/h2g.$i ] && [ $n -lt 6000 ]; do sleep 0.1; n=$((n + 1)); done
		echo "EMBER-INFO net_h2g_$i=$(cat /tmp/h2g.$i 2>/dev/null)"
		i=$((i + 1))
	done
	# The sleeps feeding the listeners' stdin.
	pkill -f "sleep 900" 2>/dev/null

	if [ "$(arg vu)" = 1 ]; then
		# vhost-user-net: the host restarts the backend, then sends 1 MiB
		# to 5200 once Ember has reconnected.
		( sleep 900 | nc -l -p 5200 | sha256sum | cut -d' ' -f1 >/tmp/vu.after ) &
		sleep 1
		echo "EMBER-READY vu-reconnect"
		local n=0
		while [ ! -s /tmp/vu.after ] && [ $n -lt 3000 ]; do sleep 0.1; n=$((n + 1)); done
		echo "EMBER-INFO net_vu_after=$(cat /tmp/vu.after 2>/dev/null)"
		pkill -f "sleep 900" 2>/dev/null
	fi

	if [ "$(arg link)" = 1 ]; then
		echo "EMBER-READY net-link"
		if net_wait_carrier 0 120; then ok net_carrier_down; else bad net_carrier_down "carrier stayed 1"; fi
		echo "EMBER-INFO net_carrier=0"
		if net_wait_carrier 1 120; then ok net_carrier_up_again; else bad net_carrier_up_again "carrier stayed 0"; fi
		echo "EMBER-INFO net_carrier=1"
		check net_ping_after_link ping -c 3 -W 10 "$peer"
		# An RX filter change: the host expects NIC_RX_FILTER_CHANGED.
		ip link set eth0 promisc on
		echo "EMBER-READY net-promisc"
		sleep 2
	fi
	if [ "$(arg gone)" = 1 ]; then
		# The host deletes the tap under Ember while this guest keeps sending.
		echo "EMBER-READY net-gone"
		local n=0
		while [ ! -e /tmp/never ] && [ $n -lt 40 ]; do
			ping -c 1 -W 1 "$peer" >/dev/null 2>&1
			n=$((n + 1))
		done
		ok net_sent_after_gone
		done_
		off
	fi
	cat /sys/class/net/eth0/statistics/rx_errors /sys/class/net/eth0/statistics/tx_errors |
		tr '\n' ' ' | sed 's/^/EMBER-INFO net_errors=/; s/ *$//'
	echo
	done_
	off
}

# Two guests on one bridge (net_bridge): ember.role=a pings b and streams
# pattern(ember.mb MiB) to b:6000; b hashes what arrives.
t_net_bridge() {
	local ip peer mb role n=0
	ip=$(arg ip); peer=$(arg peer); mb=$(arg mb); role=$(arg role)
	if net_iface >/dev/null; then ok net_dev; else bad net_dev "no virtio-net device"; done_; off; fi
	ip link set lo up
	ip link set eth0 up
	ip addr add "$ip" dev eth0
	net_wait_carrier 1 30 || bad net_carrier_up "eth0 has no carrier"
	if [ "$role" = b ]; then
		( sleep 900 | nc -l -p 6000 | sha256sum | cut -d' ' -f1 >/tmp/got ) &
		echo "EMBER-READY net-bridge-listen"
		while [ ! -s /tmp/got ] && [ $n -lt 6000 ]; do sleep 0.1; n=$((n + 1)); done
		echo "EMBER-INFO net_bridge_got=$(cat /tmp/got 2>/dev/null)"
		pkill -f "sleep 900" 2>/dev/null
		ok net_bridge_received
	else
		# b may still be booting: wait until it answers.
		while ! ping -c 1 -W 1 "$peer" >/dev/null 2>&1 && [ $n -lt 300 ]; do n=$((n + 1)); done
		check net_bridge_ping ping -c 3 -W 10 "$peer"
		n=0
		until pattern $((mb * 1048576)) | nc "$peer" 6000; do
			n=$((n + 1))
			[ $n -gt 60 ] && { bad net_bridge_send "nc to $peer:6000 kept failing"; break; }
			sleep 1
		done
		[ $n -le 60 ] && ok net_bridge_send
	fi
	done_
	off
}
