#!/usr/bin/env bash
# Stages a minimal root filesystem for a FROM-scratch image: one dynamically linked binary, exactly
# the shared libraries `ldd` says it loads (at the paths it loads them from, so the loader finds
# them without ld.so.cache), the dynamic loader, a /tmp and an nsswitch.conf (there is no
# /etc/passwd: images run as a numeric user). Used by build-image.sh and haproxy/build-image.sh.
#
#   stage-rootfs.sh BINARY DEST_IN_IMAGE ROOTFS
set -euo pipefail

bin=$1 dest=$2 rootfs=$3
[ -x "$bin" ] || { echo "stage-rootfs: $bin is not an executable file" >&2; exit 1; }

mkdir -p "$rootfs$(dirname "$dest")" "$rootfs/etc" "$rootfs/tmp"
chmod 1777 "$rootfs/tmp"
# Debug builds carry hundreds of MB of DWARF; the image needs none of it.
if command -v strip >/dev/null 2>&1; then
  strip --strip-debug -o "$rootfs$dest" "$bin"
else
  cp "$bin" "$rootfs$dest"
fi
chmod 0755 "$rootfs$dest"

# Lines look like "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or
# "/lib64/ld-linux-x86-64.so.2 (0x...)"; linux-vdso has no file.
ldd "$bin" | awk '/=>/ { if ($3 ~ /^\//) print $3; next } $1 ~ /^\// { print $1 }' |
  sort -u | while read -r lib; do
    mkdir -p "$rootfs$(dirname "$lib")"
    cp -L "$lib" "$rootfs$lib"
  done

# glibc >= 2.34 has the files and dns NSS modules built in; say which to use for host names
# (Docker bind-mounts /etc/hosts and /etc/resolv.conf into every container).
printf 'hosts: files dns\n' >"$rootfs/etc/nsswitch.conf"
