// Where containerd's socket is on a node, without the controller's configuration module: the node agent
// loads this alone.

/** Where containerd's socket is on each distribution, in the order enbi tries them. */
export const KNOWN_SOCKETS: Readonly<Record<string, string>> = {
  k3s: '/run/k3s/containerd/containerd.sock',
  rke2: '/run/k3s/containerd/containerd.sock',
  microk8s: '/var/snap/microk8s/common/run/containerd.sock',
  k0s: '/run/k0s/containerd.sock',
  kubeadm: '/run/containerd/containerd.sock',
};

export const SOCKET_ANNOTATION = 'enbi.hrzn.ee/containerd-socket';

/** The socket for a node: configured, annotated, or inferred from its kubelet version string. */
export function socketFor(
  node: { annotations?: Record<string, string>; kubeletVersion?: string },
  configured?: string,
): string {
  if (configured !== undefined) return configured;
  const annotated = node.annotations?.[SOCKET_ANNOTATION];
  if (annotated !== undefined) return annotated;
  const v = node.kubeletVersion ?? '';
  if (v.includes('+k3s')) return KNOWN_SOCKETS.k3s!;
  if (v.includes('+rke2')) return KNOWN_SOCKETS.rke2!;
  if (v.includes('+k0s')) return KNOWN_SOCKETS.k0s!;
  return KNOWN_SOCKETS.kubeadm!;
}
