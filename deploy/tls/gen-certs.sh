#!/usr/bin/env bash
# Makes a site CA and one certificate per node in the layout `cairn server --certs-dir DIR`
# (CAIRN_CERTS_DIR) reads, MinIO's: DIR/public.crt, DIR/private.key, DIR/CAs/*.crt.
#
#   deploy/tls/gen-certs.sh OUT NODE [NODE...]
#
# NODE is the node's DNS name as the endpoint list spells it, optionally followed by more names or
# IP addresses separated by commas (the first is the certificate's CN; all are SANs):
#
#   deploy/tls/gen-certs.sh ./certs node1 node2 node3
#   deploy/tls/gen-certs.sh ./certs cairn-0.cairn,cairn-0.cairn.default.svc.cluster.local,cairn.example.com \
#                                   cairn-1.cairn,...   cairn-2.cairn,...
#
# Writes OUT/ca/ca.crt + ca.key (keep ca.key offline; it is reused if present, so running the
# script again for a new node keeps the site's CA) and OUT/<first name>/{public.crt,private.key,CAs/ca.crt}
# for each node: mount that directory as the node's certs dir. Node certificates carry both
# serverAuth and clientAuth, because with https:// endpoints nodes authenticate each other with them
# (mutual TLS). Keys are ECDSA P-256. DAYS (default 825) sets node validity, CA_DAYS (3650) the CA's.
# OWNER=UID:GID chowns each node directory, e.g. OWNER=10001:10001 for the cairn:local image, whose
# server runs as that user and must read private.key (mode 0600).
set -euo pipefail

if [ $# -lt 2 ]; then
  sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
fi
command -v openssl >/dev/null || { echo "gen-certs: openssl is required" >&2; exit 1; }

out=$1
shift
days=${DAYS:-825}
ca_days=${CA_DAYS:-3650}
umask 077
mkdir -p "$out/ca"

if [ ! -f "$out/ca/ca.key" ]; then
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$out/ca/ca.key"
  openssl req -x509 -new -key "$out/ca/ca.key" -sha256 -days "$ca_days" \
    -subj "/O=Cairn/CN=Cairn site CA" \
    -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -addext "subjectKeyIdentifier=hash" \
    -out "$out/ca/ca.crt"
  chmod 0644 "$out/ca/ca.crt"
  echo "created CA $out/ca/ca.crt"
fi

for node in "$@"; do
  IFS=, read -r -a names <<<"$node"
  cn=${names[0]}
  [[ $cn =~ ^[A-Za-z0-9.-]+$ ]] || { echo "gen-certs: bad node name $cn" >&2; exit 1; }
  sans=()
  for n in "${names[@]}"; do
    if [[ $n =~ ^[0-9.]+$ || $n == *:* ]]; then sans+=("IP:$n"); else sans+=("DNS:$n"); fi
  done
  san=$(IFS=,; echo "${sans[*]}")
  dir=$out/$cn
  mkdir -p "$dir/CAs"
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$dir/private.key"
  ext=$(mktemp)
  cat >"$ext" <<EXT
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth,clientAuth
subjectAltName=$san
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid
EXT
  openssl req -new -key "$dir/private.key" -subj "/O=Cairn/CN=$cn" |
    openssl x509 -req -CA "$out/ca/ca.crt" -CAkey "$out/ca/ca.key" -CAcreateserial \
      -sha256 -days "$days" -extfile "$ext" -out "$dir/public.crt" 2>/dev/null
  rm -f "$ext"
  cp "$out/ca/ca.crt" "$dir/CAs/ca.crt"
  chmod 0644 "$dir/public.crt" "$dir/CAs/ca.crt"
  chmod 0600 "$dir/private.key"
  chmod 0755 "$dir" "$dir/CAs"
  if [ -n "${OWNER:-}" ]; then chown -R "$OWNER" "$dir"; fi
  openssl verify -CAfile "$out/ca/ca.crt" -purpose sslserver "$dir/public.crt" >/dev/null
  openssl verify -CAfile "$out/ca/ca.crt" -purpose sslclient "$dir/public.crt" >/dev/null
  echo "created $dir (SANs: $san)"
done
