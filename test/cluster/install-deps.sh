#!/usr/bin/env bash
# Installs from Debian what the test cluster runs besides the Kubernetes binaries (build-kube.sh builds those).
# Idempotent: installs only what is missing, so a second run costs an apt cache look-up.
set -euo pipefail
pkgs=(
  etcd-server                 # the API server's store
  containerd runc             # the node's container runtime (Debian's containerd is 1.6)
  containernetworking-plugins # bridge, host-local, loopback CNI plugins for pod networks
  busybox-static              # the static busybox every locally assembled image is made of
  iproute2 util-linux         # ip netns / veth / bridge; nsenter
  openssl                     # cluster certificates
  iptables conntrack          # kubelet probes for them on start
  ca-certificates
)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then echo "cluster deps already installed"; exit 0; fi
[ "$(id -u)" = 0 ] || { echo "install-deps.sh needs root (apt-get install ${missing[*]})" >&2; exit 1; }
echo "installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "cluster deps installed"
