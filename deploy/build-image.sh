#!/usr/bin/env bash
# Builds the `cairn:local` image (FROM scratch) from a cairn binary on this machine.
#
#   deploy/build-image.sh [path/to/cairn]   # default: cargo build --release -p cairn-node
#
# CAIRN_IMAGE overrides the tag.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
image=${CAIRN_IMAGE:-cairn:local}

if [ $# -ge 1 ]; then
  bin=$1
else
  (cd "$here/.." && cargo build --release -p cairn-node)
  bin=${CARGO_TARGET_DIR:-$here/../target}/release/cairn
fi

ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
"$here/stage-rootfs.sh" "$bin" /usr/local/bin/cairn "$ctx/rootfs"
# Mount points for up to four drives per node (/data/1 ... /data/4) and /data itself.
mkdir -p "$ctx"/data/{1,2,3,4}
docker build -q -f "$here/Dockerfile" -t "$image" "$ctx" >/dev/null
echo "$image"
