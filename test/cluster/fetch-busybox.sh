#!/usr/bin/env bash
# Fetches Debian's static busybox for another architecture (default arm64) into the cache, for images and
# fixture flakes of that architecture (test/cluster/emulation.ts foreignBusybox()):
#   ${ENBI_CACHE_DIR:-~/.cache/enbi}/busybox/<arch>/busybox   (+ busybox.version: the package version)
# apt-get download needs the architecture known to dpkg: when it is not, this adds it, runs apt-get update,
# downloads, and removes the architecture again (nothing of it is installed), so later apt-get updates on
# the machine do not fetch its package lists. Idempotent: a cached binary of the right machine returns at once.
set -euo pipefail
arch="${1:-arm64}"
case "$arch" in
  arm64) machine=b7 ;;     # ELF e_machine EM_AARCH64 (183)
  armhf) machine=28 ;;     # EM_ARM (40)
  riscv64) machine=f3 ;;   # EM_RISCV (243)
  *) echo "fetch-busybox.sh: unknown architecture $arch (arm64, armhf, riscv64)" >&2; exit 2 ;;
esac
cache="${ENBI_CACHE_DIR:-$HOME/.cache/enbi}/busybox/$arch"
out="$cache/busybox"
is_ok() { [ -x "$1" ] && [ "$(od -An -tx1 -j18 -N1 "$1" | tr -d ' \n')" = "$machine" ]; }
if is_ok "$out"; then echo "busybox-static:$arch cached: $out ($(cat "$out.version" 2>/dev/null || echo '?'))"; exit 0; fi
[ "$(id -u)" = 0 ] || { echo "fetch-busybox.sh needs root (dpkg --add-architecture $arch, apt-get update)" >&2; exit 1; }
export DEBIAN_FRONTEND=noninteractive
added=""
if ! { [ "$(dpkg --print-architecture)" = "$arch" ] || dpkg --print-foreign-architectures | grep -qx "$arch"; }; then
  dpkg --add-architecture "$arch"
  added=1
fi
cleanup() {
  rm -rf "${tmp:-}"
  if [ -n "$added" ]; then dpkg --remove-architecture "$arch" || echo "fetch-busybox.sh: could not remove architecture $arch from dpkg" >&2; fi
}
trap cleanup EXIT
tmp=$(mktemp -d)
chmod 755 "$tmp"
chown _apt "$tmp" 2>/dev/null || true   # apt-get download writes as the _apt user where it exists
# The package lists know the architecture only after an update that saw it.
if ! apt-cache show "busybox-static:$arch" >/dev/null 2>&1; then
  apt-get update -qq || echo "fetch-busybox.sh: apt-get update reported errors; trying the download anyway" >&2
fi
(cd "$tmp" && apt-get download -qq "busybox-static:$arch")
deb=$(ls "$tmp"/busybox-static_*.deb)
dpkg-deb -x "$deb" "$tmp/root"
mkdir -p "$cache"
install -m 0755 "$tmp/root/bin/busybox" "$out.tmp"
is_ok "$out.tmp" || { echo "fetch-busybox.sh: $deb's bin/busybox is not an $arch ELF binary" >&2; rm -f "$out.tmp"; exit 1; }
mv "$out.tmp" "$out"
dpkg-deb -f "$deb" Version > "$out.version"
echo "busybox-static:$arch $(cat "$out.version") fetched: $out"
