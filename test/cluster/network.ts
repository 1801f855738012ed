// Node networking: a bridge in the root namespace carries the API server address; each node is a network
// namespace joined to it by a veth pair. Names carry the run id so two runs never share a device.
import { existsSync } from 'node:fs';
import { hostBin } from './paths.ts';
import { run } from './proc.ts';

const ip = (...args: string[]): Promise<string> => run(hostBin('ip'), args);

export interface Subnet {
  /** Third octet shared by the node network (10.213.K.0/24) and every node's pod CIDR (10.214+i.K.0/24). */
  k: number;
  cidr: string;
  gateway: string;
}

/** Picks a K whose node and pod networks this host does not route yet. */
export async function pickSubnet(nodeCount: number): Promise<Subnet> {
  const taken = (await ip('-4', '-o', 'addr')) + (await ip('-4', 'route'));
  const candidates = Array.from({ length: 256 }, (_, k) => k).sort(() => Math.random() - 0.5);
  for (const k of candidates) {
    const nets = [`10.213.${k}.`, ...Array.from({ length: nodeCount }, (_, i) => `10.${214 + i}.${k}.`)];
    if (!nets.some((n) => taken.includes(n))) return { k, cidr: `10.213.${k}.0/24`, gateway: `10.213.${k}.1` };
  }
  throw new Error('no free 10.213.K.0/24 subnet for the test cluster');
}

export const nodeIp = (s: Subnet, i: number): string => `10.213.${s.k}.${10 + i}`;
export const podCidr = (s: Subnet, i: number): string => {
  if (i > 40) throw new Error('at most 41 nodes per test cluster');
  return `10.${214 + i}.${s.k}.0/24`;
};

export async function createBridge(name: string, s: Subnet): Promise<void> {
  await ip('link', 'add', name, 'type', 'bridge');
  await ip('addr', 'add', `${s.gateway}/24`, 'dev', name);
  await ip('link', 'set', name, 'up');
}

/** A network namespace for one node: eth0 on the bridge with addr, a default route, a route back to its pods. */
export async function createNodeNetns(o: {
  netns: string;
  hostVeth: string;
  bridge: string;
  addr: string;
  gateway: string;
  podCIDR: string;
}): Promise<void> {
  await ip('netns', 'add', o.netns);
  const peer = `${o.hostVeth}p`;
  await ip('link', 'add', o.hostVeth, 'type', 'veth', 'peer', 'name', peer);
  await ip('link', 'set', peer, 'netns', o.netns);
  await ip('-n', o.netns, 'link', 'set', peer, 'name', 'eth0');
  await ip('-n', o.netns, 'addr', 'add', `${o.addr}/24`, 'dev', 'eth0');
  await ip('-n', o.netns, 'link', 'set', 'lo', 'up');
  await ip('-n', o.netns, 'link', 'set', 'eth0', 'up');
  await ip('-n', o.netns, 'route', 'add', 'default', 'via', o.gateway);
  await ip('link', 'set', o.hostVeth, 'master', o.bridge);
  await ip('link', 'set', o.hostVeth, 'up');
  // Replies from the host (the API server) to pod addresses go back through the node.
  await ip('route', 'add', o.podCIDR, 'via', o.addr, 'dev', o.bridge);
}

/**
 * The `kubernetes` Service as kube-proxy would route it, for pods that use the in-cluster configuration
 * (KUBERNETES_SERVICE_HOST is the Service's ClusterIP): traffic to serviceIp:443 from the node's pods
 * (PREROUTING) and from the node itself (OUTPUT) goes to the API server. No kube-proxy runs here and no
 * other Service is routed. Deleting the namespace removes the rules.
 */
export async function routeKubernetesService(netns: string, serviceIp: string, server: string): Promise<void> {
  const { hostname, port } = new URL(server);
  for (const chain of ['PREROUTING', 'OUTPUT']) {
    await run(hostBin('ip'), [
      'netns',
      'exec',
      netns,
      hostBin('iptables'),
      '-t',
      'nat',
      '-A',
      chain,
      '-d',
      `${serviceIp}/32`,
      '-p',
      'tcp',
      '--dport',
      '443',
      '-j',
      'DNAT',
      '--to-destination',
      `${hostname}:${port}`,
    ]);
  }
}

/** Removes what create* made; each step tolerates a half-made or already removed state. */
export async function deleteNetns(netns: string, hostVeth: string): Promise<void> {
  if (existsSync(`/run/netns/${netns}`)) await ip('netns', 'delete', netns).catch(() => undefined);
  await ip('link', 'delete', hostVeth).catch(() => undefined);
}

export async function deleteLink(name: string): Promise<void> {
  await ip('link', 'delete', name).catch(() => undefined);
}
