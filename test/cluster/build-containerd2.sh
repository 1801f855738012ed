#!/usr/bin/env bash
# Builds containerd 2.x (containerd, ctr, containerd-shim-runc-v2) from the Go module proxy into a cache
# outside git, for nodes of the `containerd-2:DIR` flavour (see containerd.ts). Idempotent; prints DIR.
# Not needed by default: nodes run Debian's containerd 1.6 unless told otherwise.
#   ENBI_CLUSTER_NODES=1 ENBI_CONTAINERD=containerd-2:$(bash test/cluster/build-containerd2.sh) npm test
set -euo pipefail
version=v2.4.2
out="${ENBI_CACHE_DIR:-$HOME/.cache/enbi}/containerd/$version"
cmds=(containerd ctr containerd-shim-runc-v2)

ok=1
for c in "${cmds[@]}"; do [ -x "$out/$c" ] || ok=0; done
if [ $ok = 1 ]; then echo "containerd $version already built" >&2; echo "$out"; exit 0; fi

command -v go >/dev/null || PATH=$PATH:/usr/local/go/bin
command -v go >/dev/null || { echo "go not found: install Go >= 1.24 (needed to build containerd $version)" >&2; exit 1; }
mkdir -p "$out"
tmp=$(mktemp -d "$out.tmp.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
pkgs=(); for c in "${cmds[@]}"; do pkgs+=("github.com/containerd/containerd/v2/cmd/$c@$version"); done
echo "building containerd $version into $out (about 1-4 min on 2 cores)" >&2
start=$(date +%s)
# go install pkg@version builds with the module's own go.mod and go.sum (checked against the checksum database).
GOBIN="$tmp" CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-trimpath go install -ldflags=-s "${pkgs[@]}"
for c in "${cmds[@]}"; do mv -f "$tmp/$c" "$out/$c"; done
echo "built in $(( $(date +%s) - start )) s" >&2
echo "$out"
