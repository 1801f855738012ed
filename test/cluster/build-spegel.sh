#!/usr/bin/env bash
# Builds Spegel (the P2P registry mirror enbi relies on to spread images) from its Go module into a cache
# outside git, keyed by version, for test/support/spegel.ts. Idempotent: a second run finds the binary and
# returns at once. Prints the binary's path on its last line.
#   ENBI_EXTRA_GOPROXY=URL  a module proxy serving github.com/spegel-org/spegel, tried before `go env GOPROXY`
#                           (unset: $REPO/../shared/goproxy or /work/shared/goproxy if either exists, as a
#                           file:// proxy; none: the usual proxy alone, which serves Spegel elsewhere)
#   ENBI_CACHE_DIR          cache root (default ~/.cache/enbi)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
version=v0.7.4
out="${ENBI_CACHE_DIR:-$HOME/.cache/enbi}/spegel/$version"
bin="$out/spegel"

if [ -x "$bin" ]; then echo "spegel $version already built" >&2; echo "$bin"; exit 0; fi

command -v go >/dev/null || PATH=$PATH:/usr/local/go/bin
command -v go >/dev/null || { echo "go not found: install Go >= 1.24 (needed to build Spegel $version)" >&2; exit 1; }

extra=${ENBI_EXTRA_GOPROXY:-}
if [ -z "$extra" ]; then
  for d in "$here/../../../shared/goproxy" /work/shared/goproxy; do
    if [ -d "$d/github.com/spegel-org/spegel" ]; then extra="file://$(cd "$d" && pwd)"; break; fi
  done
fi
proxy=$(go env GOPROXY)
if [ -n "$extra" ]; then
  proxy="$extra,$proxy"
  # A private proxy's zip has no entry in the checksum database to be checked against.
  export GONOSUMDB=github.com/spegel-org/spegel
fi

mkdir -p "$out"
tmp=$(mktemp -d "$out.tmp.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
echo "building spegel $version into $out (GOPROXY=$proxy; about 2 min cold on 2 cores)" >&2
start=$(date +%s)
# go install pkg@version builds with the module's own go.mod and go.sum.
GOPROXY="$proxy" GOBIN="$tmp" CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-trimpath \
  go install -ldflags=-s "github.com/spegel-org/spegel@$version"
mv -f "$tmp/spegel" "$bin"
echo "built in $(( $(date +%s) - start )) s" >&2
echo "$bin"
