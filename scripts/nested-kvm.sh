#!/usr/bin/env bash
# Runs one command inside a nested-KVM "L1": QEMU's TCG emulates an AMD CPU
# with SVM and nested paging, Debian's generic kernel (linux-image-amd64)
# boots in it and loads kvm-amd, vhost_net and vhost_vsock, and the host's
# whole file system is shared over 9p and chrooted into. The command runs as
# root in that chroot, in the current directory, with the current
# environment, and sees a VMX/SVM-class /dev/kvm.
#
# Usage: scripts/nested-kvm.sh [--timeout SECS] [--cpus N] [--memory SIZE] [--] CMD [ARGS...]
#   --timeout SECS   kill the L1 after SECS (default $EMBER_NESTED_TIMEOUT or 3600); status 124
#   --cpus N         L1 vCPUs (default: the host's CPU count, at most 4)
#   --memory SIZE    L1 RAM, QEMU syntax (default 6G)
# Environment:
#   EMBER_NESTED_CACHE  where the L1 kernel and initramfs are cached
#                       (default ${XDG_CACHE_HOME:-~/.cache}/ember/nested)
#   EMBER_NESTED_KEEP   a directory to copy the L1 console log into
#   EMBER_NESTED_QUIET  1: do not print the one-line banner
#
# Output: the command's stdout and stderr arrive on this script's stdout.
# Exit status: the command's, or 124 on timeout, or 125 when the L1 could not
# be prepared or died before the command finished (with a line saying why).
# Nothing is left running: the L1 is killed on timeout, error and signals.
#
# Inside the L1, /tmp is a fresh tmpfs (unix sockets cannot be bound on 9p)
# unless the working directory is under /tmp; then TMPDIR points at a tmpfs
# on /dev/shm instead. /proc, /sys, /dev (with pts, shm, fd) are the L1's.
set -euo pipefail

die() { echo "nested-kvm: error: $*" >&2; exit 125; }
note() { [ "${EMBER_NESTED_QUIET:-}" = 1 ] || echo "nested-kvm: $*" >&2; }

TIMEOUT=${EMBER_NESTED_TIMEOUT:-3600}
NCPU=$(nproc); [ "$NCPU" -gt 4 ] && NCPU=4
MEMORY=6G
while [ $# -gt 0 ]; do
	case $1 in
	--timeout) TIMEOUT=${2:?--timeout needs seconds}; shift 2 ;;
	--cpus) NCPU=${2:?--cpus needs a count}; shift 2 ;;
	--memory) MEMORY=${2:?--memory needs a size}; shift 2 ;;
	--) shift; break ;;
	-*) die "unknown option '$1' (see the header of $0)" ;;
	*) break ;;
	esac
done
[ $# -gt 0 ] || die "no command given; usage: $0 [--timeout SECS] [--] CMD [ARGS...]"
[[ $TIMEOUT =~ ^[0-9]+$ ]] || die "--timeout: '$TIMEOUT' is not a number of seconds"

QEMU=$(command -v qemu-system-x86_64 || true)
[ -n "$QEMU" ] || die "qemu-system-x86_64 is missing (Debian: apt-get install qemu-system-x86, or run scripts/deps.sh)"
BUSYBOX=/bin/busybox
file -b "$BUSYBOX" 2>/dev/null | grep -q static ||
	die "$BUSYBOX is not a static busybox (Debian: apt-get install busybox-static)"
for t in dpkg-deb apt-get apt-cache cpio gzip; do
	command -v "$t" >/dev/null || die "'$t' is needed (Debian: dpkg, apt, cpio, gzip)"
done

CACHE=${EMBER_NESTED_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ember/nested}
mkdir -p "$CACHE/debs"

# ---- the L1 kernel: downloaded once, then taken from the cache ---------------------
resolve_kernel_pkg() {
	apt-cache depends linux-image-amd64 2>/dev/null |
		awk '$1 == "Depends:" && $2 ~ /^linux-image-[0-9]/ { print $2; exit }'
}
KPKG=$(resolve_kernel_pkg)
if [ -z "$KPKG" ] && [ "$(id -u)" = 0 ]; then
	apt-get update -qq >/dev/null 2>&1 || true
	KPKG=$(resolve_kernel_pkg)
fi
KDEB=
if [ -n "$KPKG" ]; then
	KDEB=$(ls -1 "$CACHE/debs/${KPKG}"_*.deb 2>/dev/null | sort -V | tail -n1 || true)
	if [ -z "$KDEB" ]; then
		note "downloading $KPKG once into $CACHE/debs"
		(cd "$CACHE/debs" && apt-get download -q "$KPKG" >/dev/null 2>&1) ||
			die "apt-get download $KPKG failed (no Debian mirror reachable?)"
		KDEB=$(ls -1 "$CACHE/debs/${KPKG}"_*.deb 2>/dev/null | sort -V | tail -n1)
	fi
else
	KDEB=$(ls -1 "$CACHE"/debs/linux-image-[0-9]*-amd64_*.deb 2>/dev/null | sort -V | tail -n1 || true)
	[ -n "$KDEB" ] || die "cannot resolve linux-image-amd64 (no package lists?) and no kernel is cached in $CACHE/debs"
fi
KTAG=$(basename "$KDEB" .deb)
KDIR=$CACHE/$KTAG
if [ ! -f "$KDIR/.done" ]; then
	note "unpacking $KTAG"
	rm -rf "$KDIR" && mkdir -p "$KDIR/root"
	dpkg-deb -x "$KDEB" "$KDIR/root" || die "dpkg-deb -x $KDEB failed"
	: >"$KDIR/.done"
fi
VMLINUZ=$(ls -1 "$KDIR"/root/boot/vmlinuz-* | head -n1)
KVER=${VMLINUZ##*/vmlinuz-}
MODDIR=$KDIR/root/lib/modules/$KVER/kernel

# ---- the L1 initramfs: busybox, the modules, /init ----------------------------------
# Load order matters: each module after its dependencies. Modules built into
# this kernel (virtio, virtio_ring) have no file and are skipped.
L1_MODULES="virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci
netfs fscache 9pnet 9pnet_virtio 9p
irqbypass ccp kvm kvm-amd
tun tap vhost_iotlb vhost vhost_net
vsock vmw_vsock_virtio_transport_common vhost_vsock
veth llc stp bridge"

read -r -d '' L1_INIT <<'EOF' || true
#!/bin/busybox sh
# L1 init of scripts/nested-kvm.sh. Prints EMBER-NESTED-STATUS on ttyS0.
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
say() { echo "nested-l1: $*" >/dev/ttyS0; }
finish() { echo "EMBER-NESTED-STATUS $1" >/dev/ttyS0; sync; poweroff -f; sleep 10; }
KVM_AMD_PARAMS=$(sed -n 's/.*ember\.kvm_amd=\([^ ]*\).*/\1/p' /proc/cmdline | tr , ' ')
for m in $(cat /modules.order); do
	p=
	[ "$m" = kvm-amd ] && p=$KVM_AMD_PARAMS
	insmod "/lib/modules/$m.ko" $p 2>/dev/ttyS0 || say "insmod $m failed"
done
[ -c /dev/kvm ] || { say "no /dev/kvm after loading kvm-amd"; dmesg | tail -20 >/dev/ttyS0; finish 125; }
mkdir -p /host
mount -t 9p -o trans=virtio,version=9p2000.L,msize=1048576 hostroot /host || {
	say "9p mount of the host failed"; finish 125; }
RUN=$(sed -n 's/.*ember\.run=\([^ ]*\).*/\1/p' /proc/cmdline)
cp "/host$RUN/cmd.sh" /cmd.sh || { say "cannot read $RUN/cmd.sh"; finish 125; }
WORKDIR=$(cat "/host$RUN/cwd")
mkdir -p /dev/pts /dev/shm
ln -sf /proc/self/fd /dev/fd
ln -sf /proc/self/fd/0 /dev/stdin
ln -sf /proc/self/fd/1 /dev/stdout
ln -sf /proc/self/fd/2 /dev/stderr
mount -t devpts devpts /dev/pts
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
mount -o rbind /dev /host/dev
mount -t proc proc /host/proc
mount -t sysfs sysfs /host/sys
mount -t tmpfs tmpfs /host/run 2>/dev/null || true
case "$WORKDIR/" in
/tmp/*) NESTED_TMP=/dev/shm ;;
*) mount -t tmpfs -o mode=1777 tmpfs /host/tmp; NESTED_TMP=/tmp ;;
esac
cp /cmd.sh /host/dev/shm/.ember-nested-cmd.sh
echo 1 >/proc/sys/net/ipv4/ip_forward 2>/dev/null
# Loopback up, as on any machine (tcp:127.0.0.1 migration, local services).
ip link set lo up 2>/dev/ttyS0 || say "cannot bring lo up"
# A heartbeat: the host side tells a frozen L1 from a slow command.
(while :; do echo "nested-l1: alive $(cut -d' ' -f1 /proc/uptime)" >/dev/ttyS0; sleep 5; done) &
chroot /host /bin/bash -c "export TMPDIR=$NESTED_TMP EMBER_NESTED=1; cd '$WORKDIR' && . /dev/shm/.ember-nested-cmd.sh" \
	</dev/null >/dev/ttyS1 2>&1
finish $?
EOF

INITRD=$CACHE/$KTAG.initrd.gz
STAMP=$(printf '%s\n%s\n%s\n' "$L1_INIT" "$L1_MODULES" "$(stat -c %s "$BUSYBOX")" | sha256sum | cut -c1-16)
if [ ! -s "$INITRD" ] || [ "$(cat "$INITRD.stamp" 2>/dev/null)" != "$STAMP" ]; then
	note "building the L1 initramfs"
	STAGE=$(mktemp -d "$CACHE/stage.XXXXXX")
	mkdir -p "$STAGE"/{bin,dev,proc,sys,lib/modules,tmp}
	cp "$BUSYBOX" "$STAGE/bin/busybox"
	: >"$STAGE/modules.order"
	for m in $L1_MODULES; do
		f=$(find "$MODDIR" -name "$m.ko" -print -quit)
		[ -n "$f" ] || continue
		cp "$f" "$STAGE/lib/modules/$m.ko"
		echo "$m" >>"$STAGE/modules.order"
	done
	printf '%s\n' "$L1_INIT" >"$STAGE/init"
	chmod 755 "$STAGE/init"
	(cd "$STAGE" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc --quiet) | gzip -1 >"$INITRD.new"
	mv -f "$INITRD.new" "$INITRD"
	echo "$STAMP" >"$INITRD.stamp"
	rm -rf "$STAGE"
fi

# ---- the run --------------------------------------------------------------------------
# The run directory lives in the cache, not /tmp: the L1 mounts a tmpfs there.
RUN=$(mktemp -d "$CACHE/run.XXXXXX")
QPID=
cleanup() {
	if [ -n "$QPID" ] && kill -0 "$QPID" 2>/dev/null; then
		kill -TERM "$QPID" 2>/dev/null || true
		for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$QPID" 2>/dev/null || break; sleep 0.2; done
		kill -KILL "$QPID" 2>/dev/null || true
		wait "$QPID" 2>/dev/null || true
	fi
	if [ -n "${EMBER_NESTED_KEEP:-}" ]; then
		mkdir -p "$EMBER_NESTED_KEEP" && cp -f "$RUN/console.log" "$EMBER_NESTED_KEEP/nested-console.log" 2>/dev/null || true
	fi
	rm -rf "$RUN"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

{
	# The environment (minus what belongs to this shell) and the command.
	export -p | grep -vE '^declare -x (PWD|OLDPWD|SHLVL|_|TMPDIR|TERM|DISPLAY|SSH_[A-Z_]*)='
	printf 'exec'
	printf ' %q' "$@"
	printf '\n'
} >"$RUN/cmd.sh"
pwd -P >"$RUN/cwd"

FS_MODEL=passthrough
[ "$(id -u)" = 0 ] || FS_MODEL=none
note "running in a nested-KVM L1 (QEMU TCG, SVM+NPT, $NCPU vCPUs, $MEMORY, kernel $KVER, timeout ${TIMEOUT}s): $*"
start=$(date +%s)
"$QEMU" -M q35 -accel "tcg,thread=${EMBER_NESTED_TCG_THREAD:-multi}" -cpu EPYC,+svm,+npt -smp "$NCPU" -m "$MEMORY" \
	-nodefaults -display none -monitor none -no-reboot \
	-kernel "$VMLINUZ" -initrd "$INITRD" \
	-append "console=ttyS0 quiet loglevel=${EMBER_NESTED_LOGLEVEL:-4} panic=-1 oops=panic 8250.nr_uarts=4 ember.run=$RUN ember.kvm_amd=${EMBER_NESTED_KVM_AMD-vgif=0,vls=0}" \
	-serial "file:$RUN/console.log" -chardev stdio,id=out,signal=off -serial chardev:out \
	-virtfs "local,path=/,mount_tag=hostroot,security_model=$FS_MODEL,multidevs=remap" \
	</dev/null 2>"$RUN/qemu.err" &
QPID=$!

# Wait for the L1 to power off, or the deadline.
deadline=$((start + TIMEOUT))
while kill -0 "$QPID" 2>/dev/null; do
	if [ "$(date +%s)" -ge "$deadline" ]; then
		echo "nested-kvm: timeout: the command did not finish within ${TIMEOUT}s; killing the L1" >&2
		tail -n 20 "$RUN/console.log" >&2 2>/dev/null || true
		exit 124
	fi
	# A frozen L1 (no heartbeat for 60 s once it is up) does not recover either.
	if grep -q "nested-l1: alive" "$RUN/console.log" 2>/dev/null &&
		[ $(( $(date +%s) - $(stat -c %Y "$RUN/console.log") )) -gt 60 ]; then
		echo "nested-kvm: the L1 stopped running (no heartbeat for 60 s: an emulator livelock, not the command's fault); killing it" >&2
		exit 125
	fi
	# A soft lockup in the L1 does not recover: report it now, not at the deadline.
	if grep -q "soft lockup - CPU" "$RUN/console.log" 2>/dev/null; then
		echo "nested-kvm: the L1 kernel reports a soft lockup (an emulator problem, not the command's); killing the L1" >&2
		grep -m3 "soft lockup" "$RUN/console.log" >&2 || true
		exit 125
	fi
	sleep 0.5
done
set +e
wait "$QPID"
qrc=$?
set -e
QPID=
status=$(sed -n 's/.*EMBER-NESTED-STATUS \([0-9]*\).*/\1/p' "$RUN/console.log" | tail -n1)
if [ -z "$status" ]; then
	echo "nested-kvm: the L1 ended (QEMU status $qrc) before the command finished; its console and QEMU's errors:" >&2
	tail -n 30 "$RUN/console.log" >&2 2>/dev/null || true
	grep -v "TCG doesn't support requested feature" "$RUN/qemu.err" >&2 || true
	exit 125
fi
if [ "$status" = 125 ]; then
	echo "nested-kvm: the L1 could not be set up; its console:" >&2
	tail -n 30 "$RUN/console.log" >&2 2>/dev/null || true
fi
note "done in $(( $(date +%s) - start ))s, status $status"
exit "$status"
