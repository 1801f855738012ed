#!/usr/bin/env bash
# Builds Flux's kustomize-controller from the Go module in flux/ (go.mod + go.sum pin v1.7.3) into a cache
# outside git keyed by version, and copies its CRDs and source-controller's (from the module cache) beside
# it: the coexistence test runs it as a peer of enbi against the test cluster. Idempotent: a second run
# finds the binary and does nothing. Prints the directory on its last line (bin kustomize-controller,
# crds/*.yaml).
#   ENBI_CACHE_DIR     cache root (default ~/.cache/enbi)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
version=v1.7.3
source_version=v1.7.2 # source-controller, for the GitRepository CRD only (it is not run)
source_sum='h1:PQLzvgHNEYsstl8uATBZg/70b/i0tj63e0IqnYDeJyg=' # its module zip, as go.sum would pin it

out="${ENBI_CACHE_DIR:-$HOME/.cache/enbi}/flux/$version"
check() { # dir -> 0 when the binary and every CRD are there
  [ -x "$1/kustomize-controller" ] && [ -s "$1/crds/kustomize.toolkit.fluxcd.io_kustomizations.yaml" ] &&
    [ -s "$1/crds/source.toolkit.fluxcd.io_gitrepositories.yaml" ]
}
if check "$out"; then
  echo "kustomize-controller $version already built" >&2
  echo "$out"; exit 0
fi

command -v go >/dev/null || PATH=$PATH:/usr/local/go/bin
command -v go >/dev/null || { echo "go not found: install Go >= 1.25 (needed to build kustomize-controller $version)" >&2; exit 1; }

mkdir -p "$out"
tmp=$(mktemp -d "$out.tmp.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
echo "building kustomize-controller $version into $out (about 2.5 min cold on 2 cores)" >&2
start=$(date +%s)
cd "$here/flux"
# -mod=readonly trusts go.sum (go-digest is pinned there: the one tidy resolves is too old for blake3).
CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-mod=readonly \
  go build -trimpath -ldflags=-s -o "$tmp/kustomize-controller" github.com/fluxcd/kustomize-controller
kc=$(GOTOOLCHAIN=local GOFLAGS=-mod=readonly go list -m -f '{{.Dir}}' github.com/fluxcd/kustomize-controller)
# source-controller is not in the build graph: download its module outside ours (go.mod stays as it is),
# checked against the checksum database and against the sum pinned above.
dl=$(cd "$tmp" && GOTOOLCHAIN=local GOFLAGS= go mod download -json "github.com/fluxcd/source-controller@$source_version")
sc=$(sed -n 's/^\t"Dir": "\(.*\)",$/\1/p' <<<"$dl")
sum=$(sed -n 's/^\t"Sum": "\(.*\)",$/\1/p' <<<"$dl")
[ "$sum" = "$source_sum" ] || { echo "source-controller $source_version: module sum $sum, expected $source_sum" >&2; exit 1; }
[ -d "$sc/config/crd/bases" ] || { echo "source-controller $source_version: no CRDs in '$sc'" >&2; exit 1; }
mkdir -p "$tmp/crds"
cp "$kc"/config/crd/bases/*.yaml "$sc"/config/crd/bases/*.yaml "$tmp/crds/"
rm -rf "$out/crds"
mv -f "$tmp/crds" "$out/crds"
mv -f "$tmp/kustomize-controller" "$out/kustomize-controller"
echo "built in $(( $(date +%s) - start )) s" >&2
check "$out" || { echo "build of kustomize-controller $version left $out incomplete" >&2; exit 1; }
echo "$out"
