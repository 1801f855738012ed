#!/usr/bin/env bash
# Builds kustomize (sigs.k8s.io/kustomize/kustomize/v5) from the Go module proxy into a cache outside git
# keyed by version, for rendering overlays (src/render/). Idempotent: a second run finds the binary and does
# nothing. Prints the directory holding it on its last line. v5.8.1 is the last release that builds on Go 1.26.
#   ENBI_CACHE_DIR  cache root (default ~/.cache/enbi)
set -euo pipefail
version=v5.8.1
out="${ENBI_CACHE_DIR:-$HOME/.cache/enbi}/kustomize/$version"

check() { [ -x "$1/kustomize" ] && "$1/kustomize" version 2>/dev/null | grep -q "$version"; }
if check "$out"; then echo "kustomize $version already built" >&2; echo "$out"; exit 0; fi

command -v go >/dev/null || PATH=$PATH:/usr/local/go/bin
command -v go >/dev/null || { echo "go not found: install Go >= 1.24 (needed to build kustomize $version)" >&2; exit 1; }
mkdir -p "$out"
tmp=$(mktemp -d "$out.tmp.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
# `go install` leaves kustomize's version unstamped ("(devel)"): stamp it as its release build does.
ldflags="-s -X sigs.k8s.io/kustomize/api/provenance.version=kustomize/$version"
echo "building kustomize $version into $out (about 1-2 min cold on 2 cores)" >&2
start=$(date +%s)
# go install pkg@version builds with the module's own go.mod and go.sum (checked against the checksum database).
GOBIN="$tmp" CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-trimpath go install -ldflags="$ldflags" "sigs.k8s.io/kustomize/kustomize/v5@$version"
mv -f "$tmp/kustomize" "$out/kustomize"
echo "built in $(( $(date +%s) - start )) s" >&2
check "$out" || { echo "built kustomize in $out does not report $version" >&2; exit 1; }
echo "$out"
