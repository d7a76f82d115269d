#!/usr/bin/env bash
# Install the Debian 12 packages Ember needs to build, test and benchmark.
# Only what is missing is installed; safe to run repeatedly.
set -euo pipefail
PKGS=(build-essential cmake pkg-config clang lld libclang-rt-14-dev
      check libjansson-dev liburing-dev libaio-dev
      libseccomp-dev libsystemd-dev acpica-tools qemu-system-x86
      busybox-static cpio lz4 fio python3 iproute2
      dnsmasq-base socat iperf3 e2fsprogs dpdk-dev)
missing=()
for p in "${PKGS[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
	exit 0
fi
echo "deps: installing ${missing[*]}"
SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
