#!/usr/bin/env bash
# Paired benchmarks on a fresh sandbox of their own (release build). Prints medians and
# ratios; nothing here is asserted. Usage: benches/run.sh [ROUNDS]
#   1. headless `apply` for two clusters vs the exported runbook.sh (bao CLI + kubectl),
#      alternating, each round with fresh names;
#   2. apply for 1 vs 10 "clusters" (10 auth mounts, KV mounts and namespaces spread over
#      the sandbox's two API servers);
#   3. `doctor` on a healthy two-cluster setup;
#   4. certificates: root + two RSA-4096 intermediates, ours vs the openssl CLI, and ours
#      with ECDSA P-256.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-5}
cargo build --release -q
BIN=$PWD/target/release/istio-vault-wizard
BAO=$(IVW_SERVERS="" tests/servers/build.sh --print-dir)/openbao-$(grep ^OPENBAO_VERSION tests/servers/versions.env | cut -d= -f2)-$(grep ^BUILD_REV tests/servers/versions.env | cut -d= -f2)/bao
WORK=$(mktemp -d)
SB=$WORK/sb
trap '"$BIN" sandbox down --state-dir "$SB" >/dev/null 2>&1 || true; rm -rf "$WORK"' EXIT
"$BIN" sandbox up -q --state-dir "$SB" >/dev/null
# shellcheck disable=SC1091
source "$SB/env"

now() { date +%s.%N; }
median() { sort -g | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }

config() { # config TAG KEYTYPE N_CLUSTERS
  local tag=$1 kt=$2 n=$3 f=$WORK/$1.toml
  {
    echo "state_dir = \"state-$tag\""
    echo "[vault]"; echo "address = \"$VAULT_ADDR\""; echo "token_file = \"$SB/root-token\""; echo "kv_version = 1"
    echo "[names]"
    echo "namespace = \"ns-{cluster}-$tag\""; echo "reviewer_binding = \"rtb-{cluster}-$tag\""
    echo "auth_path = \"kubernetes-{cluster}-$tag\""; echo "kv_mount = \"kubernetes-{cluster}-$tag-secrets\""
    echo "policy = \"istiod-certs-{cluster}-$tag\""
    echo "[certs]"; echo "key_type = \"$kt\""
    for i in $(seq 1 "$n"); do
      k=$(( (i - 1) % 2 + 1 ))
      if [ "$n" -le 2 ]; then name=cluster$i; else name=c$i; fi
      echo "[[cluster]]"; echo "name = \"$name\""; echo "kubeconfig = \"$SB/kubecfg$k.yml\""; echo "context = \"cluster$k\""
    done
  } > "$f"
  echo "$f"
}

echo "== 1. apply vs runbook.sh (2 clusters, EC P-256 keys, $ROUNDS rounds, alternating)"
: > "$WORK/apply.t"; : > "$WORK/runbook.t"
for r in $(seq 1 "$ROUNDS"); do
  c=$(config "a$r" ec-p256 2)
  t0=$(now); "$BIN" apply --yes -q --config "$c" >/dev/null; t1=$(now)
  echo "$t1 - $t0" | bc >> "$WORK/apply.t"
  c=$(config "r$r" ec-p256 2)
  "$BIN" export --config "$c" --out "$WORK/export-$r" >/dev/null
  t0=$(now)
  VAULT_CLI=$BAO WIZARD=$BIN CERTS_DIR=$WORK/certs-$r bash "$WORK/export-$r/runbook.sh" >/dev/null 2>&1
  t1=$(now)
  echo "$t1 - $t0" | bc >> "$WORK/runbook.t"
done
A=$(median < "$WORK/apply.t"); R=$(median < "$WORK/runbook.t")
printf 'apply median %.3fs   runbook median %.3fs   runbook/apply = %.2fx\n' "$A" "$R" "$(echo "$R / $A" | bc -l)"

echo "== 2. apply for 1 vs 10 clusters (10 = 10 auth mounts, KV mounts, namespaces over 2 API servers)"
c1=$(config one ec-p256 1); t0=$(now); "$BIN" apply --yes -q --config "$c1" >/dev/null; t1=$(now); ONE=$(echo "$t1 - $t0" | bc)
c10=$(config ten ec-p256 10); t0=$(now); "$BIN" apply --yes -q --config "$c10" >/dev/null; t1=$(now); TEN=$(echo "$t1 - $t0" | bc)
printf '1 cluster %.3fs   10 clusters %.3fs   ratio %.2fx\n' "$ONE" "$TEN" "$(echo "$TEN / $ONE" | bc -l)"

echo "== 3. doctor on a healthy two-cluster setup ($ROUNDS runs)"
: > "$WORK/doctor.t"
for r in $(seq 1 "$ROUNDS"); do
  t0=$(now); "$BIN" doctor --config "$WORK/a1.toml" -o json >/dev/null; t1=$(now)
  echo "$t1 - $t0" | bc >> "$WORK/doctor.t"
done
printf 'doctor median %.3fs\n' "$(median < "$WORK/doctor.t")"

echo "== 4. certificates: root + 2 RSA-4096 intermediates ($ROUNDS rounds, alternating)"
: > "$WORK/ours.t"; : > "$WORK/openssl.t"; : > "$WORK/ec.t"
cat > "$WORK/root.conf" <<'EOF'
[ req ]
encrypt_key = no
prompt = no
utf8 = yes
default_md = sha256
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
EOF
cat > "$WORK/int.ext" <<'EOF'
basicConstraints = critical, CA:true, pathlen:0
keyUsage = critical, digitalSignature, nonRepudiation, keyEncipherment, keyCertSign
subjectAltName = DNS:istiod.istio-system.svc
authorityKeyIdentifier = keyid,issuer
EOF
openssl_set() {
  local d=$1; mkdir -p "$d"
  openssl genrsa -out "$d/root-key.pem" 4096 2>/dev/null
  openssl req -new -key "$d/root-key.pem" -config "$WORK/root.conf" -out "$d/root.csr" 2>/dev/null
  openssl x509 -req -sha256 -days 3650 -signkey "$d/root-key.pem" -extensions req_ext -extfile "$WORK/root.conf" -in "$d/root.csr" -out "$d/root-cert.pem" 2>/dev/null
  for c in cluster1 cluster2; do
    mkdir -p "$d/$c"
    openssl genrsa -out "$d/$c/ca-key.pem" 4096 2>/dev/null
    openssl req -new -key "$d/$c/ca-key.pem" -subj "/O=Istio/CN=Intermediate CA/L=$c" -out "$d/$c/cluster-ca.csr" 2>/dev/null
    openssl x509 -req -sha256 -days 730 -CA "$d/root-cert.pem" -CAkey "$d/root-key.pem" -CAcreateserial -extfile "$WORK/int.ext" -in "$d/$c/cluster-ca.csr" -out "$d/$c/ca-cert.pem" 2>/dev/null
    cat "$d/$c/ca-cert.pem" "$d/root-cert.pem" > "$d/$c/cert-chain.pem"
  done
}
for r in $(seq 1 "$ROUNDS"); do
  t0=$(now); "$BIN" certs generate -q --out "$WORK/ours-$r" --cluster cluster1 --cluster cluster2 >/dev/null; t1=$(now)
  echo "$t1 - $t0" | bc >> "$WORK/ours.t"
  t0=$(now); openssl_set "$WORK/openssl-$r"; t1=$(now)
  echo "$t1 - $t0" | bc >> "$WORK/openssl.t"
  t0=$(now); "$BIN" certs generate -q --out "$WORK/ec-$r" --cluster cluster1 --cluster cluster2 --key-type ec-p256 >/dev/null; t1=$(now)
  echo "$t1 - $t0" | bc >> "$WORK/ec.t"
done
O=$(median < "$WORK/ours.t"); S=$(median < "$WORK/openssl.t")
printf 'ours (RSA-4096) median %.3fs   openssl median %.3fs   openssl/ours = %.2fx\n' "$O" "$S" "$(echo "$S / $O" | bc -l)"
printf 'ours (EC P-256) median %.1fms (whole process)\n' "$(echo "$(median < "$WORK/ec.t") * 1000" | bc -l)"
