#!/usr/bin/env bash
# Builds the real servers the sandbox and the integration tests run (OpenBao, etcd,
# kube-apiserver, kube-controller-manager, helm, istiod's pilot-discovery) from the Go
# module proxy, and caches them outside the repo keyed by version. A warm run only
# checks files and exits.
#
#   tests/servers/build.sh            build what is missing, print the servers dir
#   IVW_SERVERS_DIR=/x build.sh       use another cache root
#   build.sh --print-dir              print the cache root only
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"
root=${IVW_SERVERS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/istio-vault-wizard/servers}
if [[ "${1:-}" == "--print-dir" ]]; then echo "$root"; exit 0; fi
mkdir -p "$root"
export GOFLAGS="-mod=mod -trimpath" GOSUMDB=off CGO_ENABLED=0
export GOTOOLCHAIN=local

started=$(date +%s)
log() { printf '[servers %4ss] %s\n' "$(( $(date +%s) - started ))" "$*" >&2; }

# build COMPONENT VERSION WRAPPER_DIR BINARY_NAME PACKAGE [LDFLAGS]
build() {
  local component=$1 version=$2 wrapper=$3 name=$4 pkg=$5 ldflags=${6:-}
  local dir="$root/$component-$version"
  if [[ -x "$dir/$name" ]]; then log "$name $version: cached"; return 0; fi
  mkdir -p "$dir"
  log "$name $version: building (cold builds take minutes) ..."
  local t0; t0=$(date +%s)
  # Progress: a dot line every 20 s so a CI log never looks hung.
  ( while sleep 20; do log "$name: still compiling ($(( $(date +%s) - t0 ))s)"; done ) &
  local ticker=$!
  local rc=0
  (cd "$here/$wrapper" && nice -n 5 go build -ldflags "$ldflags" -o "$dir/$name.tmp" "$pkg") || rc=$?
  kill "$ticker" 2>/dev/null || true; wait "$ticker" 2>/dev/null || true
  if [[ $rc -ne 0 ]]; then rm -f "$dir/$name.tmp"; log "$name: build FAILED (exit $rc)"; return $rc; fi
  mv "$dir/$name.tmp" "$dir/$name"
  log "$name $version: built in $(( $(date +%s) - t0 ))s"
}

# Stamp real versions: kubectl and clients parse the server version, and a
# "v0.0.0-master" build is refused by them.
kube_minor=${KUBE_VERSION#v1.}; kube_minor=${kube_minor%%.*}
kube_ldflags="-X k8s.io/component-base/version.gitVersion=$KUBE_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$kube_minor -X k8s.io/component-base/version.gitTreeState=clean -X k8s.io/component-base/version.buildDate=1970-01-01T00:00:00Z"
bao_ldflags="-X github.com/openbao/openbao/version.fullVersion=$OPENBAO_RELEASE"
helm_ldflags="-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
istio_ldflags="-X istio.io/istio/pkg/version.buildVersion=$ISTIO_RELEASE -X istio.io/istio/pkg/version.buildGitRevision=${ISTIO_VERSION##*-} -X istio.io/istio/pkg/version.buildStatus=Clean"

want=${IVW_SERVERS:-"etcd kube bao helm istiod"}
for c in $want; do
  case $c in
    etcd) build etcd "$ETCD_VERSION-$BUILD_REV" etcd etcd . ;;
    kube) build kube "$KUBE_VERSION-$BUILD_REV" kube kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver "$kube_ldflags"
          build kube "$KUBE_VERSION-$BUILD_REV" kube kube-controller-manager k8s.io/kubernetes/cmd/kube-controller-manager "$kube_ldflags" ;;
    bao)  build openbao "$OPENBAO_VERSION-$BUILD_REV" openbao bao github.com/openbao/openbao "$bao_ldflags" ;;
    helm) build helm "$HELM_VERSION-$BUILD_REV" helm helm helm.sh/helm/v3/cmd/helm "$helm_ldflags" ;;
    # Istio's release tags (vtprotobuf, disable_pgv), passed through GOFLAGS.
    istiod) GOFLAGS="$GOFLAGS -tags=vtprotobuf,disable_pgv" \
            build istiod "$ISTIO_VERSION-$BUILD_REV" istiod pilot-discovery istio.io/istio/pilot/cmd/pilot-discovery "$istio_ldflags" ;;
    *) echo "unknown component $c" >&2; exit 2 ;;
  esac
done
log "servers ready in $root"
echo "$root"
