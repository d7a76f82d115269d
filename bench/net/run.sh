#!/usr/bin/env bash
# bench/net: virtio-net throughput, latency and VMM CPU per GiB, Ember against
# QEMU (Debian's qemu-system-x86), same kernel, same initramfs, same tap set-up,
# for the userspace backend (vhost=off) and vhost-net (vhost=on).
#
# Usage: bench/net/run.sh
#   Where /dev/kvm is VMX/SVM it runs here; otherwise it runs itself inside
#   one nested-KVM L1 (scripts/nested-kvm.sh), holding the machine's nested
#   lock so no test competes with it.
# Environment:
#   BUILD=dir      build tree with the ember binary (default <repo>/build)
#   RUNS=3         iperf3 runs per direction per VM boot (median reported)
#   SECS=5         seconds per iperf3 run
#   CONFIGS="ember-off qemu-off ember-on qemu-on"   vmm-vhost, booted in order
#   PASSES=2       how many times the CONFIGS list is gone through (pass 2 in
#                  reverse order, so drift hits both VMMs alike)
#   MEM=512 CPUS=1 guest size
#   QEMU=qemu-system-x86_64
# What is measured, per config (each in its own network namespace, with one
# tap at 10.77.0.1/24 and the guest at 10.77.0.2):
#   g2h / h2g      iperf3 TCP throughput guest->host (-R) and host->guest, Mbit/s
#   rtt            median ping round trip (20 pings, host->guest), ms
#   cpu/GiB        CPU seconds of the VMM process (all its threads: utime+stime)
#                  plus its vhost-<pid> kernel threads, per GiB moved by iperf3,
#                  counted the same way for both VMMs
# Absolute numbers in the nested harness are TCG-emulator times; only the
# Ember/QEMU ratios measured in the same L1 mean anything.
set -u
set -o pipefail
SRC=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BUILD:-$SRC/build}
EMBER=${EMBER:-$BUILD/ember}
RUNS=${RUNS:-3}
SECS=${SECS:-5}
CONFIGS=${CONFIGS:-"ember-off qemu-off ember-on qemu-on"}
PASSES=${PASSES:-2}
MEM=${MEM:-512}
CPUS=${CPUS:-1}
QEMU=${QEMU:-qemu-system-x86_64}
W=${NETBENCH_DIR:-/var/tmp/ember-netbench}
OUT=$SRC/examples/linux/out

die() { echo "bench/net: $*" >&2; exit 2; }

# ---- outside: the initramfs, then into an L1 if needed --------------------
if [ "${1:-}" != --inside ]; then
	[ -x "$EMBER" ] || die "no $EMBER; build first (cmake -S $SRC -B $BUILD && make -C $BUILD -j2)"
	command -v iperf3 >/dev/null || die "iperf3 is missing (scripts/deps.sh installs it)"
	command -v "$QEMU" >/dev/null || die "$QEMU is missing (Debian package qemu-system-x86)"
	bash "$SRC/tests/linux/build-guest.sh" --if-stale >/dev/null || die "cannot build the guest"
	rm -rf "$W" && mkdir -p "$W" || die "cannot create $W"
	cp -a "$OUT/initramfs.d" "$W/root"
	# iperf3 and its libraries (Debian's, the same binary on both sides).
	for f in /usr/bin/iperf3 $(ldd /usr/bin/iperf3 | awk '/=> \//{ print $3 } /^\t\/lib64/{ print $1 }'); do
		mkdir -p "$W/root$(dirname "$f")" && cp -L "$f" "$W/root$f" || die "cannot copy $f"
	done
	mkdir -p "$W/root/lib64" && cp -L /lib64/ld-linux-x86-64.so.2 "$W/root/lib64/"
	cat >"$W/root/init" <<'EOF'
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin:/sbin:/usr/bin
mount -t proc proc /proc; mount -t sysfs sysfs /sys; mount -t devtmpfs devtmpfs /dev
mkdir -p /tmp && mount -t tmpfs tmpfs /tmp
for m in $(cat /etc/modules); do insmod "/lib/modules/$m" 2>/dev/null; done
ip link set lo up; ip link set eth0 up; ip addr add 10.77.0.2/24 dev eth0
/usr/bin/iperf3 -s -D >/dev/null 2>&1 || echo "NETBENCH-FAIL iperf3 -s"
echo "NETBENCH-READY $(cut -d' ' -f1 /proc/uptime)"
while true; do sleep 60; done
EOF
	chmod 755 "$W/root/init"
	(cd "$W/root" && find . | cpio -o -H newc --quiet --owner=0:0) | gzip -1 >"$W/initramfs.cpio.gz" ||
		die "cannot pack the initramfs"
	rm -rf "$W/root"
	if [ -r /dev/kvm ] && [ -w /dev/kvm ] && grep -qwE 'vmx|svm' /proc/cpuinfo; then
		exec bash "$0" --inside
	fi
	echo "bench/net: no VMX/SVM /dev/kvm here: running in one nested-KVM L1 (waits for the nested lock)" >&2
	exec flock "${EMBER_NESTED_LOCK:-/var/tmp/ember-nested.lock}" \
		"$SRC/scripts/nested-kvm.sh" --cpus 1 --timeout 3000 -- env BUILD="$BUILD" EMBER="$EMBER" RUNS="$RUNS" \
		SECS="$SECS" CONFIGS="$CONFIGS" PASSES="$PASSES" MEM="$MEM" CPUS="$CPUS" QEMU="$QEMU" \
		NETBENCH_DIR="$W" bash "$0" --inside
fi

# ---- inside: where KVM runs Linux ------------------------------------------
[ -c /dev/net/tun ] || die "/dev/net/tun is missing"
[ -c /dev/vhost-net ] || modprobe vhost_net 2>/dev/null
INITRD=$W/initramfs.cpio.gz
NS=ember-netbench-$$
RES=$W/results
: >"$RES"
VPID=""
cleanup() {
	[ -n "$VPID" ] && kill "$VPID" 2>/dev/null && wait "$VPID" 2>/dev/null
	ip netns del "$NS" 2>/dev/null
}
trap cleanup EXIT
trap 'exit 130' INT TERM
IN="ip netns exec $NS"
HZ=$(getconf CLK_TCK)

ticks() { # pid -> utime+stime of the process and its vhost-<pid> threads
	local t
	t=$(awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0)
	for k in $(pgrep -x "vhost-$1" 2>/dev/null); do
		for task in /proc/"$k"/task/*; do
			t=$((t + $(awk '{ print $14 + $15 }' "$task/stat" 2>/dev/null || echo 0)))
		done
	done
	echo "$t"
}

boot() { # vmm vhost
	local vmm=$1 vh=$2 log=$W/serial.log
	rm -f "$log"
	ip netns del "$NS" 2>/dev/null
	ip netns add "$NS" && $IN ip link set lo up &&
		$IN ip tuntap add dev tap0 mode tap vnet_hdr && $IN ip addr add 10.77.0.1/24 dev tap0 &&
		$IN ip link set tap0 up || die "cannot set up the namespace and tap"
	local cmd="console=ttyS0 quiet panic=-1"
	if [ "$vmm" = ember ]; then
		$IN "$EMBER" run --kernel "$OUT/vmlinuz" --initrd "$INITRD" --cmdline "$cmd" --cpus "$CPUS" \
			--memory "${MEM}M" --cpu-model host --console "file:$log" \
			--net "tap=tap0,vhost=$vh,mac=52:54:00:12:34:56" </dev/null >"$W/vmm.out" 2>&1 &
	else
		$IN "$QEMU" -M microvm,pcie=on,acpi=on -enable-kvm -cpu host -smp "$CPUS" -m "$MEM" \
			-nodefaults -display none -no-reboot -serial "file:$log" \
			-kernel "$OUT/vmlinuz" -initrd "$INITRD" -append "$cmd" \
			-netdev "tap,id=n0,ifname=tap0,script=no,downscript=no,vhost=$vh" \
			-device virtio-net-pci,netdev=n0,mac=52:54:00:12:34:56 </dev/null >"$W/vmm.out" 2>&1 &
	fi
	VPID=$!
	local i=0
	until grep -q NETBENCH-READY "$log" 2>/dev/null; do
		kill -0 "$VPID" 2>/dev/null || { cat "$W/vmm.out" >&2; die "$vmm vhost=$vh exited before the guest was ready"; }
		i=$((i + 1)); [ $i -lt 6000 ] || die "$vmm vhost=$vh: no NETBENCH-READY in 600 s"
		sleep 0.1
	done
	grep -q NETBENCH-FAIL "$log" && die "$vmm: $(grep NETBENCH-FAIL "$log")"
	sleep 2
}

iperf() { # config dir(g2h|h2g) -> "mbps cpu_s_per_gib" line in results
	local c=$1 dir=$2 t0 t1 j
	t0=$(ticks "$VPID")
	j=$($IN iperf3 -c 10.77.0.2 -t "$SECS" -J $([ "$dir" = g2h ] && echo -R) 2>&1) ||
		{ echo "$j" | tail -5 >&2; die "$c: iperf3 $dir failed"; }
	t1=$(ticks "$VPID")
	python3 -c '
import json, sys
j = json.loads(sys.argv[1]); s = j["end"]["sum_received"]
ticks, hz = int(sys.argv[2]), int(sys.argv[3])
print("%s %s %.1f %.3f" % (sys.argv[4], sys.argv[5], s["bits_per_second"] / 1e6,
      ticks / hz / (s["bytes"] / 2**30) if s["bytes"] else float("nan")))' \
		"$j" $((t1 - t0)) "$HZ" "$c" "$dir" >>"$RES"
	tail -1 "$RES" >&2
}

rtt() {
	$IN busybox ping -c 20 -i 0.2 -W 2 10.77.0.2 2>&1 |
		sed -n 's/.*time=\([0-9.]*\) ms.*/\1/p' | sort -g |
		awk -v c="$1" '{ a[NR] = $1 } END { if (NR) printf "%s rtt %.3f\n", c, a[int((NR + 1) / 2)] }' >>"$RES"
	tail -1 "$RES" >&2
}

echo "bench/net: $(date -u '+%Y-%m-%d %H:%M UTC'), $(uname -r), $(nproc) CPUs, RUNS=$RUNS x ${SECS}s, PASSES=$PASSES, $($QEMU --version | head -1)" >&2
order=$CONFIGS
for p in $(seq 1 "$PASSES"); do
	for c in $order; do
		vmm=${c%-*}; vh=${c#*-}
		echo "bench/net: pass $p: $vmm vhost=$vh" >&2
		boot "$vmm" "$vh"
		rtt "$c"
		for r in $(seq 1 "$RUNS"); do
			iperf "$c" g2h
			iperf "$c" h2g
		done
		kill "$VPID"; wait "$VPID" 2>/dev/null; VPID=""
	done
	order=$(echo $order | tr ' ' '\n' | tac | tr '\n' ' ')
done

# ---- table -------------------------------------------------------------------
python3 - "$RES" "$CONFIGS" <<'EOF'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
def med(c, key, col):
    v = [float(r[col]) for r in rows if r[0] == c and r[1] == key]
    return statistics.median(v) if v else float("nan")
print("%-10s %12s %12s %10s %14s %14s" % ("config", "g2h Mbit/s", "h2g Mbit/s", "rtt ms", "g2h cpu s/GiB", "h2g cpu s/GiB"))
cfgs = sys.argv[2].split()
for c in cfgs:
    print("%-10s %12.1f %12.1f %10.3f %14.2f %14.2f" % (c, med(c, "g2h", 2), med(c, "h2g", 2), med(c, "rtt", 2),
                                                     med(c, "g2h", 3), med(c, "h2g", 3)))
print()
print("Ember/QEMU (throughput > 1 and CPU < 1 favour Ember; rtt < 1 favours Ember)")
for vh in ("off", "on"):
    e, q = "ember-" + vh, "qemu-" + vh
    if e in cfgs and q in cfgs:
        r = lambda k, col: med(e, k, col) / med(q, k, col)
        print("vhost=%-4s g2h %.2f  h2g %.2f  rtt %.2f  cpu/GiB g2h %.2f  h2g %.2f" %
              (vh, r("g2h", 2), r("h2g", 2), r("rtt", 2), r("g2h", 3), r("h2g", 3)))
EOF
echo "medians of $((RUNS * PASSES)) iperf3 runs of ${SECS}s and $PASSES x 20 pings per config; raw: $RES"
