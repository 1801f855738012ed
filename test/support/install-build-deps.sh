#!/usr/bin/env bash
# Installs from Debian what the build-Job tests assemble their images and fixture flakes from:
# Nix 2.8 (its binary and libraries go into the builder image; host nix checks fixture flakes),
# git (in the builder image, for git+http flake fetches; and the test git server), a static busybox
# (/bin/sh and the applets of both images and of the fixture flakes' builders), and CA certificates.
# The importer image takes ctr from the node's containerd (test/cluster/install-deps.sh installs Debian's).
# Idempotent: installs only what is missing, so a second run costs a dpkg query.
set -euo pipefail
pkgs=(
  nix-bin          # /usr/bin/nix, /usr/lib/nix/*.so, /usr/libexec/nix/build-remote
  git              # git and /usr/lib/git-core/git-remote-http(s); git http-backend for the test server
  busybox-static   # the static busybox of both images and of the fixture flakes
  ca-certificates  # /etc/ssl/certs/ca-certificates.crt in the builder image
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
