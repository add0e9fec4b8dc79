#!/usr/bin/env bash
# Builds the test control plane from Go modules and caches it outside the
# checkout: kube-apiserver, kube-controller-manager and kubectl from
# k8s.io/kubernetes (staging modules pinned with replace lines to the matching
# v0.x release), etcd from go.etcd.io/etcd/server/v3.
#
#   tests/k8s/build.sh        prints the bin directory (builds it first if needed)
#
# Only the first run pays for the build (about 15-25 minutes on 2 cores);
# later runs find the binaries in $TANDEM_K8S_CACHE and return at once.
set -euo pipefail

K8S_VERSION=${K8S_VERSION:-v1.34.4}
ETCD_VERSION=${ETCD_VERSION:-v3.6.16}
CACHE=${TANDEM_K8S_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tandem/k8s-$K8S_VERSION}
BIN=$CACHE/bin
BINS="etcd kube-apiserver kube-controller-manager kubectl"

have_all() {
  local b
  for b in $BINS; do [ -x "$BIN/$b" ] || return 1; done
}

if have_all; then echo "$BIN"; exit 0; fi

if ! command -v go >/dev/null 2>&1; then
  echo "tests/k8s/build.sh: Go is not installed; cannot build kube-apiserver" >&2
  exit 3
fi

mkdir -p "$CACHE" "$BIN"
exec 9>"$CACHE/.lock"
flock 9
if have_all; then echo "$BIN"; exit 0; fi

log() { echo "tests/k8s/build.sh: $*" >&2; }
minor=${K8S_VERSION#v1.}
staging="v0.$minor"
export GOFLAGS=-mod=mod GOTOOLCHAIN=local CGO_ENABLED=0

# --- Kubernetes ---------------------------------------------------------
if [ ! -x "$BIN/kube-apiserver" ] || [ ! -x "$BIN/kube-controller-manager" ] || [ ! -x "$BIN/kubectl" ]; then
  src=$CACHE/src-kubernetes
  mkdir -p "$src"
  cd "$src"
  log "building Kubernetes $K8S_VERSION (first run only; ~15-25 min on 2 cores)"
  modfile=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" |
    sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  {
    echo "module tandem.test/k8sbuild"
    echo
    echo "go 1.24.0"
    echo
    echo "require k8s.io/kubernetes $K8S_VERSION"
    echo
    echo "replace ("
    sed -n 's#^[[:space:]]*\(k8s.io/[a-z0-9-]*\) => ./staging/src/.*#\t\1 => \1 '"$staging"'#p' "$modfile"
    echo ")"
  } >go.mod
  cat >tools.go <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
GO
  go mod tidy >&2
  ldflags="-s -w"
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags="$ldflags -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor"
    ldflags="$ldflags -X $p.gitTreeState=clean"
  done
  for c in kube-apiserver kube-controller-manager kubectl; do
    log "go build $c"
    go build -trimpath -ldflags "$ldflags" -o "$BIN/$c.tmp" "k8s.io/kubernetes/cmd/$c" >&2
    mv "$BIN/$c.tmp" "$BIN/$c"
  done
fi

# --- etcd ---------------------------------------------------------------
if [ ! -x "$BIN/etcd" ]; then
  src=$CACHE/src-etcd
  mkdir -p "$src"
  cd "$src"
  log "building etcd $ETCD_VERSION"
  printf 'module tandem.test/etcdbuild\n\ngo 1.24.0\n\nrequire go.etcd.io/etcd/server/v3 %s\n' \
    "$ETCD_VERSION" >go.mod
  printf '//go:build tools\n\npackage tools\n\nimport _ "go.etcd.io/etcd/server/v3"\n' >tools.go
  go mod tidy >&2
  go build -trimpath -ldflags "-s -w" -o "$BIN/etcd.tmp" go.etcd.io/etcd/server/v3 >&2
  mv "$BIN/etcd.tmp" "$BIN/etcd"
fi

have_all
echo "$BIN"
