#!/usr/bin/env bash
# Builds the `cairn-haproxy:local` image (FROM scratch) from this machine's haproxy binary.
#
#   deploy/haproxy/build-image.sh [path/to/haproxy]   # default: `command -v haproxy`
#
# Install it first on Debian/Ubuntu: apt-get install -y haproxy. CAIRN_HAPROXY_IMAGE overrides the tag.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
image=${CAIRN_HAPROXY_IMAGE:-cairn-haproxy:local}
bin=${1:-$(command -v haproxy || true)}
[ -n "$bin" ] || bin=/usr/sbin/haproxy
bin=$(command -v "$bin" || echo "$bin")
[ -x "$bin" ] || { echo "haproxy not found: apt-get install -y haproxy, or pass its path" >&2; exit 1; }

ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
"$here/../stage-rootfs.sh" "$bin" /usr/sbin/haproxy "$ctx/rootfs"
mkdir -p "$ctx/rootfs/usr/local/etc/haproxy"
cp "$here/haproxy.cfg" "$ctx/rootfs/usr/local/etc/haproxy/haproxy.cfg"
docker build -q -f "$here/Dockerfile" -t "$image" "$ctx" >/dev/null
echo "$image"
