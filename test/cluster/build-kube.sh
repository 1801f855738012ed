#!/usr/bin/env bash
# Builds kube-apiserver, kube-controller-manager, kube-scheduler and kubelet from the Go module in kube/
# (go.mod + go.sum pin k8s.io/kubernetes), into a cache outside git keyed by version. Idempotent:
# a second run finds the binaries and does nothing. Prints the directory holding them on its last line.
#   KUBE_BIN_DIR=/dir  use your own binaries instead (checked, not built)
#   ENBI_CACHE_DIR     cache root (default ~/.cache/enbi)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
version=v1.34.4
cmds=(kube-apiserver kube-controller-manager kube-scheduler kubelet)

check() { # dir -> 0 if every binary is there and reports the version
  local d=$1 c
  for c in "${cmds[@]}"; do
    [ -x "$d/$c" ] || return 1
  done
  "$d/kube-apiserver" --version 2>/dev/null | grep -q "$version"
}

if [ -n "${KUBE_BIN_DIR:-}" ]; then
  check "$KUBE_BIN_DIR" || { echo "KUBE_BIN_DIR=$KUBE_BIN_DIR lacks ${cmds[*]} at $version" >&2; exit 1; }
  echo "$KUBE_BIN_DIR"; exit 0
fi

out="${ENBI_CACHE_DIR:-$HOME/.cache/enbi}/kube/$version"
if check "$out"; then
  echo "kube binaries $version already built" >&2
  echo "$out"; exit 0
fi

command -v go >/dev/null || PATH=$PATH:/usr/local/go/bin
command -v go >/dev/null || { echo "go not found: install Go >= 1.24 (needed to build Kubernetes $version)" >&2; exit 1; }

mkdir -p "$out"
tmp=$(mktemp -d "$out.tmp.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
minor=${version#v1.}; minor=${minor%%.*}
ldflags="-s -X k8s.io/component-base/version.gitVersion=$version -X k8s.io/component-base/version.gitMajor=1"
ldflags="$ldflags -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean"
pkgs=(); for c in "${cmds[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$c"); done

echo "building ${cmds[*]} $version into $out (about 5 min cold on 2 cores)" >&2
start=$(date +%s)
# One go build for all four shares the compiled dependencies; static (no cgo), -mod=readonly trusts go.sum.
(cd "$here/kube" && CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-mod=readonly \
  go build -trimpath -ldflags="$ldflags" -o "$tmp/" "${pkgs[@]}")
for c in "${cmds[@]}"; do mv -f "$tmp/$c" "$out/$c"; done
echo "built in $(( $(date +%s) - start )) s" >&2
check "$out" || { echo "built binaries in $out do not report $version" >&2; exit 1; }
echo "$out"
