#!/usr/bin/env bash
# Paired benchmark (not a test): one root + two RSA-4096 intermediates in Istio's layout,
# made by `istio-vault-wizard certs generate` (release build) vs the openssl CLI with the
# recipe of Istio's tools/certs/Makefile.selfsigned.mk, alternating, ROUNDS times each.
# Also times our ECDSA P-256 set. RSA key generation takes a random time: medians are
# printed, with min/max. Usage: benches/certs_vs_openssl.sh [ROUNDS]   (default 5)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-5}
if [[ -z "${IVW_BIN:-}" ]]; then
  cargo build --release -q --bin istio-vault-wizard
  IVW_BIN=$PWD/target/release/istio-vault-wizard
fi
command -v openssl >/dev/null || { echo "openssl not found" >&2; exit 1; }
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

now() { date +%s.%N; }
median() { sort -g | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
minmax() { sort -g | awk 'NR==1{mn=$1} {mx=$1} END {printf "min %.3f max %.3f", mn, mx}'; }

root_conf() { cat <<C
[ req ]
encrypt_key = no
prompt = no
utf8 = yes
default_md = sha256
default_bits = 4096
req_extensions = req_ext
x509_extensions = req_ext
distinguished_name = req_dn
[ req_ext ]
subjectKeyIdentifier = hash
basicConstraints = critical, CA:true
keyUsage = critical, digitalSignature, nonRepudiation, keyEncipherment, keyCertSign
[ req_dn ]
O = Istio
CN = Root CA
C
}
int_conf() { cat <<C
[ req ]
encrypt_key = no
prompt = no
utf8 = yes
default_md = sha256
default_bits = 4096
req_extensions = req_ext
x509_extensions = req_ext
distinguished_name = req_dn
[ req_ext ]
subjectKeyIdentifier = hash
basicConstraints = critical, CA:true, pathlen:0
keyUsage = critical, digitalSignature, nonRepudiation, keyEncipherment, keyCertSign
subjectAltName=@san
[ san ]
DNS.1 = istiod.istio-system.svc
[ req_dn ]
O = Istio
CN = Intermediate CA
L = $1
C
}

# The Makefile's command sequence (root-ca, cluster1-cacerts, cluster2-cacerts).
openssl_set() {
  local d=$1
  mkdir -p "$d" && cd "$d"
  root_conf > root-ca.conf
  openssl genrsa -out root-key.pem 4096 2>/dev/null
  openssl req -new -key root-key.pem -config root-ca.conf -out root-cert.csr
  openssl x509 -req -days 3650 -signkey root-key.pem -extensions req_ext -extfile root-ca.conf \
    -in root-cert.csr -out root-cert.pem 2>/dev/null
  for c in cluster1 cluster2; do
    mkdir -p "$c"
    int_conf "$c" > "$c/intermediate.conf"
    openssl genrsa -out "$c/ca-key.pem" 4096 2>/dev/null
    openssl req -new -config "$c/intermediate.conf" -key "$c/ca-key.pem" -out "$c/cluster-ca.csr"
    openssl x509 -req -days 730 -CA root-cert.pem -CAkey root-key.pem -CAcreateserial \
      -extensions req_ext -extfile "$c/intermediate.conf" -in "$c/cluster-ca.csr" \
      -out "$c/ca-cert.pem" 2>/dev/null
    cat "$c/ca-cert.pem" root-cert.pem > "$c/cert-chain.pem"
    cp root-cert.pem "$c/"
  done
  cd - >/dev/null
}

ours() { "$IVW_BIN" certs generate -q --out "$1" --cluster cluster1 --cluster cluster2 --key-type "$2" >/dev/null; }

: > "$WORK/ours_rsa"; : > "$WORK/openssl_rsa"; : > "$WORK/ours_ec"
for i in $(seq 1 "$ROUNDS"); do
  # Alternate which goes first, so drift affects both sides alike.
  if (( i % 2 )); then order="ours openssl"; else order="openssl ours"; fi
  for who in $order; do
    t0=$(now)
    if [[ $who == ours ]]; then ours "$WORK/o$i" rsa4096; else openssl_set "$WORK/s$i"; fi
    t1=$(now)
    echo "$t1 - $t0" | bc -l >> "$WORK/${who}_rsa"
  done
  t0=$(now); ours "$WORK/e$i" ec-p256; t1=$(now)
  echo "$t1 - $t0" | bc -l >> "$WORK/ours_ec"
  # Both sets must be valid Istio bundles.
  openssl verify -CAfile "$WORK/o$i/root-cert.pem" -untrusted "$WORK/o$i/cluster1/cert-chain.pem" \
    "$WORK/o$i/cluster1/ca-cert.pem" >/dev/null
  "$IVW_BIN" certs check "$WORK/s$i/cluster2" >/dev/null
done

mo=$(median < "$WORK/ours_rsa"); ms=$(median < "$WORK/openssl_rsa"); me=$(median < "$WORK/ours_ec")
printf 'rounds: %d (root + 2 intermediates each)\n' "$ROUNDS"
printf 'ours    RSA-4096:  median %.3f s  (%s)\n' "$mo" "$(minmax < "$WORK/ours_rsa")"
printf 'openssl RSA-4096:  median %.3f s  (%s)\n' "$ms" "$(minmax < "$WORK/openssl_rsa")"
printf 'ratio ours/openssl (RSA-4096 medians): %.2f\n' "$(echo "$mo / $ms" | bc -l)"
printf 'ours    EC P-256:  median %.3f s  (%s)\n' "$me" "$(minmax < "$WORK/ours_ec")"
