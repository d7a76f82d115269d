#!/usr/bin/env bash
# Runs every integration test (label `integration`: the freestanding-guest
# tests and the Linux-guest suite) of a build directory where KVM can run
# them:
#   - directly, on a host whose /dev/kvm is VMX/SVM-backed;
#   - otherwise (no /dev/kvm, or kvm-pvm, where Linux cannot boot) inside the
#     nested-KVM harness, scripts/nested-kvm.sh.
# Usage: scripts/integration.sh BUILD_DIR [--nested|--direct] [ctest args...]
# Never skips: if no integration test ran, it fails with a line saying why.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:?usage: scripts/integration.sh BUILD_DIR [--nested|--direct] [ctest args]}
shift
MODE=auto
case ${1:-} in --nested) MODE=nested; shift ;; --direct) MODE=direct; shift ;; esac

if [ "$MODE" = auto ]; then
	if [ -r /dev/kvm ] && [ -w /dev/kvm ] && grep -qwE 'vmx|svm' /proc/cpuinfo; then
		MODE=direct
	else
		MODE=nested
	fi
fi
n=$(cd "$BUILD" && ctest -N -L integration "$@" | sed -n 's/^Total Tests: //p')
if [ "${n:-0}" -eq 0 ]; then
	echo "integration: error: no integration tests found in $BUILD (did CMake configure tests/?)" >&2
	exit 1
fi
# The Linux guest is downloaded and built here, where the network is.
tests/linux/build-guest.sh --if-stale >/dev/null

JOBS=${JOBS:-$(nproc)}
if [ "$MODE" = direct ]; then
	echo "integration: $n tests directly on this host's /dev/kvm (VMX/SVM)"
	cd "$BUILD" && exec ctest -L integration --output-on-failure -j"$JOBS" "$@"
fi
why="no /dev/kvm here"
[ -e /dev/kvm ] && why="this /dev/kvm has no VMX/SVM (kvm-pvm: Linux guests cannot boot)"
echo "integration: $why; running the $n tests in the nested-KVM harness (scripts/nested-kvm.sh, about 5-10 minutes)"
args=
[ $# -gt 0 ] && args=$(printf ' %q' "$@")
set +e
scripts/nested-kvm.sh --timeout "${EMBER_NESTED_TIMEOUT:-3000}" \
	bash -c "cd $(printf %q "$BUILD") && ctest -L integration --output-on-failure -j$JOBS$args"
rc=$?
set -e
if [ "$rc" = 125 ] && [ -z "${EMBER_NESTED_NO_RETRY:-}" ]; then
	# The emulator, not a test, failed (the harness said why above): once more.
	echo "integration: the nested L1 failed (status 125); running the tests once more"
	scripts/nested-kvm.sh --timeout "${EMBER_NESTED_TIMEOUT:-3000}" \
		bash -c "cd $(printf %q "$BUILD") && ctest -L integration --output-on-failure -j$JOBS$args"
	rc=$?
fi
exit "$rc"
