#!/usr/bin/env bash
# bench/linux-boot: boots Debian's linux-image-cloud-amd64 (built by
# examples/linux/make-guest.sh) with the same kernel, initramfs and command
# line under Ember, QEMU -M microvm and QEMU -M pc (2 vCPUs, 512 MiB), and
# measures
#   - wall time from process start to the first byte on the serial console
#     (what that byte is differs: SeaBIOS's banner on -M pc, the real-mode
#     setup code's "Probing EDD" on microvm, the decompressor's first line on
#     Ember, which enters the 64-bit boot protocol directly), and to the
#     kernel's "Linux version" banner, the first common point,
#   - wall time from process start to the "smpboot: Allowing 2 CPUs" line,
#   - the number of exits to userspace (KVM_RUN ioctls, all threads) until
#     that line, counted with `strace -f -e trace=ioctl`.
# The VMM is killed (SIGKILL) as soon as the line appears, so the count
# includes the few exits that happen while the watcher reacts.
#
# On the development host (nested kvm-pvm) the kernel runs in KVM's
# instruction emulator: one boot to that line takes 1-4 minutes of wall
# time, so keep RUNS small.
#
# Environment:
#   RUNS=1          runs per VMM (medians are reported)
#   VMMS="ember qemu-microvm qemu-pc"
#   COUNT=strace    or COUNT=none: no strace (clean timings, no exit counts)
#   TIMEOUT=900     seconds per boot before giving up
#   BUILD=dir       build tree (default <repo>/build-bench); EMBER=, QEMU=
#   QEMU_CPU=...    QEMU's -cpu (default: host minus what Ember's
#                   --cpu-model baseline hides: XSAVE, AVX*, CX16, FMA, ...)
#   KEEP_WORK=1     keep serial logs and strace outputs (directory printed)
set -u
set -o pipefail

SRC=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BUILD:-$SRC/build-bench}
EMBER=${EMBER:-$BUILD/ember}
QEMU=${QEMU:-qemu-system-x86_64}
RUNS=${RUNS:-1}
VMMS=${VMMS:-ember qemu-microvm qemu-pc}
COUNT=${COUNT:-strace}
TIMEOUT=${TIMEOUT:-900}
CPUS=2
MEM_MIB=512
CUT="smpboot: Allowing $CPUS CPUs"
CMDLINE=${CMDLINE:-console=ttyS0 earlyprintk=serial noxsave nokaslr}
QEMU_CPU=${QEMU_CPU:-host,-xsave,-xsaveopt,-xsavec,-xsaves,-avx,-avx2,-avx512f,-avx512dq,-avx512ifma,-avx512cd,-avx512bw,-avx512vl,-avx512vbmi,-avx512vbmi2,-avx512vnni,-avx512bitalg,-avx512-vpopcntdq,-avx512-bf16,-avx512-fp16,-avx-vnni,-fma,-f16c,-bmi1,-bmi2,-vaes,-vpclmulqdq,-cx16,-pku,-amx-bf16,-amx-tile,-amx-int8}

die() { echo "bench/linux-boot: $*" >&2; exit 2; }

[ -r /dev/kvm ] && [ -w /dev/kvm ] || die "/dev/kvm is not usable"
case "$RUNS$TIMEOUT" in *[!0-9]*) die "RUNS and TIMEOUT must be numbers";; esac
case $COUNT in strace|none) ;; *) die "COUNT must be strace or none";; esac
[ "${BASH_VERSINFO[0]}" -ge 5 ] || die "needs bash 5 (EPOCHREALTIME)"
missing=0
for v in $VMMS; do
	case $v in
	ember) [ -x "$EMBER" ] || { echo "bench/linux-boot: missing: ember ($EMBER)" >&2; missing=1; } ;;
	qemu-microvm|qemu-pc) command -v "$QEMU" >/dev/null 2>&1 ||
		{ echo "bench/linux-boot: missing: $QEMU (for $v)" >&2; missing=1; } ;;
	*) die "unknown VMM '$v' (ember, qemu-microvm, qemu-pc)" ;;
	esac
done
[ "$COUNT" = none ] || command -v strace >/dev/null 2>&1 || die "missing: strace (or use COUNT=none)"
[ $missing = 0 ] || die "build Ember with: cmake -S $SRC -B $BUILD && cmake --build $BUILD -j2; QEMU: apt-get install qemu-system-x86"

OUTD=${EMBER_LINUX_OUT:-$SRC/examples/linux/out}
if ! OUT=$OUTD bash "$SRC/examples/linux/make-guest.sh" >"${TMPDIR:-/tmp}/ember-make-guest.$$.log" 2>&1; then
	cat "${TMPDIR:-/tmp}/ember-make-guest.$$.log" >&2
	rm -f "${TMPDIR:-/tmp}/ember-make-guest.$$.log"
	die "examples/linux/make-guest.sh failed"
fi
rm -f "${TMPDIR:-/tmp}/ember-make-guest.$$.log"
KERNEL=$OUTD/vmlinuz
INITRD=$OUTD/initramfs.cpio.gz

WORK=$(mktemp -d "${TMPDIR:-/tmp}/ember-bench-linux.XXXXXX")
if [ -n "${KEEP_WORK:-}" ]; then
	echo "bench/linux-boot: logs kept in $WORK"
else
	trap 'rm -rf "$WORK"' EXIT
fi

cmd_of() { # vmm -> CMD array
	case $1 in
	ember) CMD=("$EMBER" run --kernel "$KERNEL" --initrd "$INITRD" --cmdline "$CMDLINE"
		--cpus "$CPUS" --memory "${MEM_MIB}M" --cpu-model baseline --console stdio --on-reboot exit) ;;
	qemu-microvm|qemu-pc)
		CMD=("$QEMU" -M "${1#qemu-}" -enable-kvm -cpu "$QEMU_CPU" -smp "$CPUS" -m "$MEM_MIB"
		-nodefaults -nographic -no-reboot -serial stdio
		-kernel "$KERNEL" -initrd "$INITRD" -append "$CMDLINE") ;;
	esac
}

# watch PREFIX: reads the serial stream on stdin; records the time of the
# first byte and of the CUT line, then kills the VMM (pid in PREFIX.pid).
watch_serial() {
	local p=$1 c line pid
	if IFS= read -r -N 1 c; then
		echo "$EPOCHREALTIME" >"$p.first"
		printf '%s' "$c" >>"$p.serial"
	fi
	while IFS= read -r line; do
		printf '%s\n' "$line" >>"$p.serial"
		if [[ $line == *"Linux version "* ]] && [ ! -f "$p.banner" ]; then
			echo "$EPOCHREALTIME" >"$p.banner"
		fi
		if [[ $line == *"$CUT"* ]]; then
			echo "$EPOCHREALTIME" >"$p.cut"
			# $p.pid is `timeout`; below it strace (COUNT=strace), then
			# the VMM. Kill the VMM itself so strace records up to here.
			pid=$(cat "$p.pid")
			pid=$(pgrep -P "$pid" | head -n1)
			[ "$COUNT" = strace ] && [ -n "$pid" ] && pid=$(pgrep -P "$pid" | head -n1)
			[ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null
			break
		fi
	done
	cat >/dev/null
}

run_one() { # vmm run-index
	local v=$1 i=$2 p=$WORK/$1.$2 pre=() rc
	cmd_of "$v"
	[ "$COUNT" = strace ] && pre=(strace -f -qq -e trace=ioctl -e signal=none -o "$p.strace")
	: >"$p.serial"
	# The outer subshell's stderr is discarded: it only gets bash's
	# "Killed" notice for the pipeline member we SIGKILL on purpose.
	( (
		echo "$BASHPID" >"$p.pid"
		echo "$EPOCHREALTIME" >"$p.t0"
		exec timeout -s KILL "$TIMEOUT" "${pre[@]}" "${CMD[@]}" </dev/null 2>"$p.err"
	) | watch_serial "$p"; echo "${PIPESTATUS[0]}" >"$p.rc" ) 2>/dev/null
	rc=$(cat "$p.rc")
	if [ ! -f "$p.cut" ]; then
		echo "   $v run $i: no '$CUT' line (status $rc); last serial lines:" >&2
		tail -n 5 "$p.serial" | sed 's/^/      /' >&2
		head -n 5 "$p.err" | sed 's/^/      stderr: /' >&2
	fi
}

echo "== kernel $(cat "$OUTD/kernel.version"), cmdline '$CMDLINE', $CPUS vCPUs, ${MEM_MIB} MiB, COUNT=$COUNT, RUNS=$RUNS"
echo "== host: $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
for ((i = 1; i <= RUNS; i++)); do
	for v in $VMMS; do
		s=$EPOCHREALTIME
		run_one "$v" "$i"
		printf '   %-13s run %d: %.0f s\n' "$v" "$i" "$(awk -v a="$s" -v b="$EPOCHREALTIME" 'BEGIN{print b-a}')"
	done
done

median() { sort -g | awk '{a[NR]=$1} END{if(NR==0){print "n/a"; exit} if(NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
echo
printf '%-14s %5s %16s %18s %20s %14s %14s\n' VMM runs "first byte (ms)" "'Linux version' (s)" "'Allowing 2 CPUs' (s)" "KVM_RUN exits" "kernel time (s)"
for v in $VMMS; do
	n=0; : >"$WORK/f" ; : >"$WORK/b"; : >"$WORK/c"; : >"$WORK/x"; : >"$WORK/k"
	for ((i = 1; i <= RUNS; i++)); do
		p=$WORK/$v.$i
		[ -f "$p.cut" ] || continue
		n=$((n + 1))
		awk -v a="$(cat "$p.t0")" -v b="$(cat "$p.first")" 'BEGIN{printf "%.1f\n", (b-a)*1000}' >>"$WORK/f"
		[ -f "$p.banner" ] && awk -v a="$(cat "$p.t0")" -v b="$(cat "$p.banner")" 'BEGIN{printf "%.2f\n", b-a}' >>"$WORK/b"
		awk -v a="$(cat "$p.t0")" -v b="$(cat "$p.cut")" 'BEGIN{printf "%.1f\n", b-a}' >>"$WORK/c"
		[ "$COUNT" = strace ] && grep -c 'KVM_RUN' "$p.strace" >>"$WORK/x"
		sed -n "s/^\[ *\([0-9.]*\)\] $CUT.*/\1/p" "$p.serial" | head -n1 >>"$WORK/k"
	done
	printf '%-14s %5s %16s %18s %20s %14s %14s\n' "$v" "$n/$RUNS" "$(median <"$WORK/f")" \
		"$(median <"$WORK/b")" "$(median <"$WORK/c")" "$(median <"$WORK/x")" "$(median <"$WORK/k")"
done
[ "$COUNT" = strace ] && echo "(times include strace's overhead; COUNT=none gives clean times)"
fail=0
for ((i = 1; i <= RUNS; i++)); do
	case " $VMMS " in *" ember "*) [ -f "$WORK/ember.$i.cut" ] || fail=1 ;; esac
done
[ $fail = 0 ] || { echo "bench/linux-boot: Ember did not reach '$CUT'" >&2; exit 1; }
exit 0
