#!/usr/bin/env bash
# Builds a real Linux guest for Ember without installing anything on the host:
#   out/vmlinuz            Debian's linux-image-cloud-amd64 bzImage
#   out/System.map         its symbols, only with WITH_DBG=1 (Debian's own is
#                          a stub; the real one needs the ~280 MB -dbg package)
#   out/initramfs.cpio.gz  busybox-static + the virtio modules + /init, which
#                          mounts proc/sys/dev, loads the modules, prints
#                          EMBER-LINUX-INIT-OK and powers off (poweroff -f)
#   out/kernel.version     e.g. 6.1.0-56-cloud-amd64
# Downloads with `apt-get download` (cached in out/debs/), unpacks with
# `dpkg-deb -x`. Idempotent: a second run downloads nothing and only rebuilds
# what is out of date. OUT= overrides the output directory (default
# examples/linux/out, which is gitignored).
#
# Usage: examples/linux/make-guest.sh        prints the paths at the end
# Exit status: 0 on success, 1 on any failure (with a message saying why).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
OUT=${OUT:-$HERE/out}
META=linux-image-cloud-amd64
# The modules the initramfs loads when they are not built in (with their
# dependencies, resolved from the package's modules.dep).
WANT_MODULES=(virtio_pci virtio_blk virtio_rng virtio_console virtio_net virtio_balloon
	button evdev pvpanic_mmio vmw_vsock_virtio_transport)
MARKER=EMBER-LINUX-INIT-OK

die() { echo "make-guest: error: $*" >&2; exit 1; }
note() { echo "make-guest: $*" >&2; }

for t in apt-get apt-cache dpkg-deb cpio gzip find sort awk; do
	command -v "$t" >/dev/null 2>&1 || die "'$t' is needed (Debian: apt, dpkg, cpio, gzip, findutils)"
done

mkdir -p "$OUT/debs"
DEBS=$OUT/debs

# ---- resolve and download ---------------------------------------------------
# resolve_dep PKG PATTERN: the first Depends of PKG matching PATTERN.
resolve_dep() {
	apt-cache depends "$1" 2>/dev/null | awk -v p="$2" '$1 == "Depends:" && $2 ~ p { print $2; exit }'
}
# cached PKG: the newest cached .deb of PKG, or nothing.
cached() { ls -1 "$DEBS/$1"_*.deb 2>/dev/null | sort -V | tail -n1; }
# fetch PKG: makes sure a .deb of the candidate version of PKG is in $DEBS.
fetch() {
	local pkg=$1 ver file
	ver=$(apt-cache policy "$pkg" 2>/dev/null | awk '$1 == "Candidate:" { print $2 }')
	if [ -n "$ver" ] && [ "$ver" != "(none)" ]; then
		# apt-get download names files with ':' as '%3a'.
		file=$DEBS/${pkg}_${ver//:/%3a}_amd64.deb
		[ -s "$file" ] && { echo "$file"; return; }
		note "downloading $pkg $ver"
		if (cd "$DEBS" && apt-get download -q "$pkg=$ver" >&2) && [ -s "$file" ]; then
			echo "$file"; return
		fi
		note "apt-get download $pkg=$ver failed"
	fi
	file=$(cached "$pkg")
	[ -n "$file" ] && { note "using cached $(basename "$file")"; echo "$file"; return; }
	return 1
}

KPKG=$(resolve_dep "$META" '^linux-image-[0-9]')
if [ -z "$KPKG" ] && [ "$(id -u)" = 0 ]; then
	note "apt-cache does not know $META; running apt-get update"
	apt-get update -q >&2 || note "apt-get update failed"
	KPKG=$(resolve_dep "$META" '^linux-image-[0-9]')
fi
if [ -z "$KPKG" ]; then
	# Offline: fall back to whatever kernel package is cached.
	KPKG=$(ls -1 "$DEBS"/linux-image-[0-9]*_amd64.deb 2>/dev/null | sort -V | tail -n1 |
		sed 's|.*/||; s|_.*||')
	[ -n "$KPKG" ] || die "cannot resolve $META (apt-cache depends found no linux-image-<version> package; no network or no Debian package lists?) and nothing is cached in $DEBS"
	note "offline: using cached $KPKG"
fi
KDEB=$(fetch "$KPKG") || die "cannot download $KPKG (no network?) and it is not cached in $DEBS"
BDEB=$(fetch busybox-static) || die "cannot download busybox-static (no network?) and it is not cached in $DEBS"
# The meta package itself is tiny; fetch it too so the cache is complete.
fetch "$META" >/dev/null || note "could not download $META itself (not needed)"

# ---- unpack -----------------------------------------------------------------
# unpack DEB DIR: dpkg-deb -x into DIR unless DIR already holds that .deb.
unpack() {
	local deb=$1 dir=$2
	if [ -f "$dir/.from" ] && [ "$(cat "$dir/.from")" = "$(basename "$deb")" ]; then
		return
	fi
	note "unpacking $(basename "$deb")"
	rm -rf "$dir"
	mkdir -p "$dir"
	dpkg-deb -x "$deb" "$dir" || die "dpkg-deb -x $deb failed"
	basename "$deb" >"$dir/.from"
}
unpack "$KDEB" "$OUT/kernel-root"
unpack "$BDEB" "$OUT/busybox-root"

KROOT=$OUT/kernel-root
VMLINUZ=$(ls -1 "$KROOT"/boot/vmlinuz-* 2>/dev/null | head -n1)
[ -n "$VMLINUZ" ] || die "no boot/vmlinuz-* in $KDEB"
KVER=${VMLINUZ##*/vmlinuz-}
MODDIR=$KROOT/lib/modules/$KVER
[ -d "$MODDIR" ] || die "no lib/modules/$KVER in $KDEB"
BUSYBOX=$OUT/busybox-root/bin/busybox
[ -x "$BUSYBOX" ] || die "no bin/busybox in $BDEB"
if ! file -b "$BUSYBOX" 2>/dev/null | grep -q "statically linked"; then
	command -v file >/dev/null 2>&1 && die "$BUSYBOX is not statically linked"
fi

cp -f "$VMLINUZ" "$OUT/vmlinuz.new" && mv -f "$OUT/vmlinuz.new" "$OUT/vmlinuz"
# Debian ships a one-line stub System.map ("The real System.map is in the
# linux-image-<version>-dbg package"). WITH_DBG=1 fetches that package
# (about 280 MB, cached) and makes out/System.map from its vmlinux with nm.
rm -f "$OUT/System.map.stub"
if [ "$(wc -l <"$KROOT/boot/System.map-$KVER" 2>/dev/null || echo 0)" -gt 1 ]; then
	cp -f "$KROOT/boot/System.map-$KVER" "$OUT/System.map"
elif [ -n "${WITH_DBG:-}" ]; then
	if [ ! -s "$OUT/System.map" ] || [ "$(cat "$OUT/System.map.kver" 2>/dev/null)" != "$KVER" ]; then
		command -v nm >/dev/null 2>&1 || die "WITH_DBG=1 needs nm (binutils)"
		DDEB=$(fetch "$KPKG-dbg") || die "cannot download $KPKG-dbg"
		note "extracting vmlinux-$KVER from $(basename "$DDEB")"
		rm -rf "$OUT/dbg-root" && mkdir -p "$OUT/dbg-root"
		dpkg-deb --fsys-tarfile "$DDEB" |
			tar -x -C "$OUT/dbg-root" "./usr/lib/debug/boot/vmlinux-$KVER" ||
			die "no usr/lib/debug/boot/vmlinux-$KVER in $DDEB"
		nm -n "$OUT/dbg-root/usr/lib/debug/boot/vmlinux-$KVER" | grep -v ' [aUw] ' >"$OUT/System.map.new"
		mv -f "$OUT/System.map.new" "$OUT/System.map"
		echo "$KVER" >"$OUT/System.map.kver"
		rm -rf "$OUT/dbg-root"
	fi
else
	[ -s "$OUT/System.map" ] && [ "$(cat "$OUT/System.map.kver" 2>/dev/null)" = "$KVER" ] ||
		note "no System.map: Debian's is a stub; run with WITH_DBG=1 to make one from the -dbg package (~280 MB)"
fi
[ -f "$KROOT/boot/config-$KVER" ] && cp -f "$KROOT/boot/config-$KVER" "$OUT/config"
echo "$KVER" >"$OUT/kernel.version"

# ---- modules: built in, or loaded from the initramfs ---------------------------
# The package has no modules.dep (depmod runs at install time), so the
# dependencies come from each module's .modinfo "depends=" string, and a
# depth-first walk gives a valid load order.
declare -A MODFILE=() SEEN=()
ORDER=()
while IFS= read -r f; do
	b=${f##*/}; b=${b%%.ko*}; b=${b//-/_}
	MODFILE[$b]=$f
done < <(find "$MODDIR/kernel" -name '*.ko' -o -name '*.ko.xz' -o -name '*.ko.zst' -o -name '*.ko.gz')
mod_cat() { # file -> uncompressed module on stdout
	case $1 in
	*.ko) cat "$1" ;;
	*.ko.xz) xz -dc "$1" ;;
	*.ko.zst) zstd -qdc "$1" ;;
	*.ko.gz) gzip -dc "$1" ;;
	esac
}
mod_deps() { # name -> its direct dependencies
	mod_cat "${MODFILE[$1]}" | tr '\0' '\n' | sed -n 's/^depends=//p' | head -n1 | tr ',' ' '
}
add_mod() { # name
	local m=$1 d
	[ -n "${SEEN[$m]:-}" ] && return
	SEEN[$m]=1
	[ -n "${MODFILE[$m]:-}" ] || die "module $m (a dependency) is not in $KVER"
	for d in $(mod_deps "$m"); do add_mod "${d//-/_}"; done
	ORDER+=("$m")
}
BUILTIN=()
for m in "${WANT_MODULES[@]}"; do
	if grep -qE "/${m//_/[-_]}\.ko$" "$MODDIR/modules.builtin" 2>/dev/null; then
		BUILTIN+=("$m")
		continue
	fi
	[ -n "${MODFILE[$m]:-}" ] || die "module $m is neither built into $KVER (modules.builtin) nor shipped as a module"
	add_mod "$m"
done
note "kernel $KVER; built in: ${BUILTIN[*]:-none}; modules in load order: ${ORDER[*]}"

# ---- initramfs -------------------------------------------------------------------
STAGE=$OUT/initramfs.d
rm -rf "$STAGE"
mkdir -p "$STAGE"/{bin,sbin,dev,proc,sys,etc,lib/modules,tmp,root}
cp "$BUSYBOX" "$STAGE/bin/busybox"
for a in sh mount umount echo cat ls insmod poweroff reboot sleep uname dmesg mkdir; do
	ln -s busybox "$STAGE/bin/$a"
done
: >"$STAGE/etc/modules"
for m in "${ORDER[@]}"; do
	mod_cat "${MODFILE[$m]}" >"$STAGE/lib/modules/$m.ko" || die "cannot copy module $m"
	echo "$m.ko" >>"$STAGE/etc/modules"
done
cat >"$STAGE/init" <<EOF
#!/bin/busybox sh
# Ember example initramfs: generated by examples/linux/make-guest.sh.
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
/bin/busybox mount -t devtmpfs devtmpfs /dev
echo "init: kernel \$(uname -r), built-in virtio: ${BUILTIN[*]:-none}"
for m in \$(cat /etc/modules); do
	insmod /lib/modules/\$m || echo "init: insmod \$m failed"
done
echo "init: loaded \$(cat /etc/modules | wc -l) modules"
echo "$MARKER"
poweroff -f
EOF
chmod 755 "$STAGE/init"
# Reproducible: sorted names, fixed owner and mtimes.
find "$STAGE" -exec touch -h -d @0 {} +
(cd "$STAGE" && find . -mindepth 1 | LC_ALL=C sort |
	cpio -o -H newc --owner=0:0 --reproducible --quiet) | gzip -9n >"$OUT/initramfs.cpio.gz.new"
mv -f "$OUT/initramfs.cpio.gz.new" "$OUT/initramfs.cpio.gz"

echo "kernel:    $OUT/vmlinuz ($KVER)"
echo "initramfs: $OUT/initramfs.cpio.gz ($(stat -c %s "$OUT/initramfs.cpio.gz") bytes)"
[ -s "$OUT/System.map" ] && echo "System.map: $OUT/System.map"
echo "marker:    $MARKER"
