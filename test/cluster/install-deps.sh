#!/usr/bin/env bash
# Installs from Debian what the test cluster runs besides the Kubernetes binaries (build-kube.sh builds those).
# Also what emulated nodes need (`up --emulate`, NodeSpec.emulate): qemu-user-static, and an arm64 static
# busybox for the aarch64 test images and fixture flakes (fetch-busybox.sh, cached under ~/.cache/enbi).
# Idempotent: installs only what is missing, so a second run costs an apt cache look-up.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
pkgs=(
  etcd-server                 # the API server's store
  containerd runc             # the node's container runtime (Debian's containerd is 1.6)
  containernetworking-plugins # bridge, host-local, loopback CNI plugins for pod networks
  busybox-static              # the static busybox every locally assembled image is made of
  iproute2 util-linux         # ip netns / veth / bridge; nsenter
  openssl                     # cluster certificates
  iptables conntrack          # kubelet probes for them on start
  ca-certificates
  qemu-user-static            # emulated nodes: /usr/lib/binfmt.d/qemu-*.conf and the static emulators
)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "cluster deps already installed"
else
  [ "$(id -u)" = 0 ] || { echo "install-deps.sh needs root (apt-get install ${missing[*]})" >&2; exit 1; }
  echo "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # No recommends: qemu-user-static recommends systemd | binfmt-support, which register every emulator
  # host-wide at boot; the harness registers only what a node asks for (emulation.ts).
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  echo "cluster deps installed"
fi
bash "$here/fetch-busybox.sh" arm64
