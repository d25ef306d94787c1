#!/usr/bin/env bash
# Paired benchmarks on a fresh sandbox of their own (release build). Prints medians and
# ratios; nothing here is asserted. Usage: benches/run.sh [ROUNDS]
#   1. headless `apply` for two clusters vs the exported runbook.sh (bao CLI + kubectl),
#      alternating, each round with fresh names;
#   2. apply for 1 vs 10 "clusters" (10 auth mounts, KV mounts and namespaces spread over
#      the sandbox's two API servers);
#   3. `doctor` on a healthy two-cluster setup;
#   4. certificates: benches/certs_vs_openssl.sh (ours vs the openssl CLI, and P-256).
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

echo "== 4. certificates: root + 2 RSA-4096 intermediates, ours vs openssl ($ROUNDS rounds)"
IVW_BIN=$BIN benches/certs_vs_openssl.sh "$ROUNDS"
