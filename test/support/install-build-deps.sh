#!/usr/bin/env bash
# Installs from Debian what the build-Job tests need on the host: Nix 2.8 (the tests' Nix daemon, and host
# nix checks fixture flakes), git (the test git server, git http-backend), a static busybox (the fixture
# flakes' builders and the sandbox image) and CA certificates. enbi's images do not come from these: images/build.ts
# downloads the Debian packages pinned in images/packages.lock.
# Idempotent: installs only what is missing, so a second run costs a dpkg query.
set -euo pipefail
pkgs=(
  nix-bin          # the tests' Nix daemon; nix checks fixture flakes
  git              # git http-backend for the test server
  busybox-static   # the static busybox of the fixture flakes and the sandbox image
  ca-certificates  # /etc/ssl/certs/ca-certificates.crt
  skopeo           # reads and copies enbi's image archives in their test (test/integration/images.test.ts)
  lua5.1           # runs deploy/argocd/ health check in its test (Argo CD evaluates it with gopher-lua, Lua 5.1)
)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then echo "build deps already installed"; exit 0; fi
[ "$(id -u)" = 0 ] || { echo "install-build-deps.sh needs root (apt-get install ${missing[*]})" >&2; exit 1; }
echo "installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "build deps installed"
