#!/usr/bin/env bash
# Installs from Debian what the build-Job tests need on the host: Nix 2.8 (the tests' Nix daemon, and host
# nix checks fixture flakes), git (the test git server, git http-backend), a static busybox (the fixture
# flakes' builders and the sandbox image) and CA certificates. enbi's images do not come from these: images/build.ts
# downloads the Debian packages pinned in images/packages.lock.
# Also the Nix build users the tests' daemon runs builders as (deploy/'s nix.conf: build-users-group = nixbld),
# with the builder image's ids (images/definition.ts): group nixbld 30000, users nixbld1..32 30001..30032.
# Idempotent: installs and adds only what is missing, so a second run costs a dpkg query and a getent.
set -euo pipefail
build_users() {
  local n missing_users=0
  for n in $(seq 1 32); do getent passwd "nixbld$n" >/dev/null || missing_users=1; done
  getent group nixbld >/dev/null && [ $missing_users = 0 ] && return 0
  [ "$(id -u)" = 0 ] || { echo "install-build-deps.sh needs root (groupadd nixbld, useradd nixbld1..32)" >&2; exit 1; }
  getent group nixbld >/dev/null || groupadd -r -g 30000 nixbld
  for n in $(seq 1 32); do
    getent passwd "nixbld$n" >/dev/null || useradd -u $((30000 + n)) -g nixbld -G nixbld -M -N -d /var/empty -s /usr/sbin/nologin -c "Nix build user $n" "nixbld$n"
  done
  echo "Nix build users nixbld1..32 (group nixbld) present"
}
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
if [ ${#missing[@]} -eq 0 ]; then echo "build deps already installed"; build_users; exit 0; fi
[ "$(id -u)" = 0 ] || { echo "install-build-deps.sh needs root (apt-get install ${missing[*]})" >&2; exit 1; }
echo "installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "build deps installed"
build_users
