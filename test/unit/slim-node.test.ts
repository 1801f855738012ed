import assert from 'node:assert/strict';
import { it } from 'node:test';
import type { V1Node } from '@kubernetes/client-node';
import { nodeViewOf } from '../../src/cluster/node-view.ts';
import { socketFor } from '../../src/cluster/socket.ts';
import { slimNode } from '../../src/kube/slim-node.ts';

/** A Node as a kubelet writes it, with the parts the controller does not read. */
function kubeletNode(o: {
  images: number;
  ready: boolean;
  runtime: string;
  kubelet: string;
  annotations?: Record<string, string>;
  taints?: boolean;
}): V1Node {
  const t = new Date('2026-11-30T10:00:00Z');
  return {
    apiVersion: 'v1',
    kind: 'Node',
    metadata: {
      name: 'n1',
      uid: 'u1',
      resourceVersion: '42',
      creationTimestamp: t,
      labels: {
        'kubernetes.io/arch': 'arm64',
        'kubernetes.io/os': 'linux',
        'enbi.hrzn.ee/builds.x86_64-linux': 'true',
        'enbi.hrzn.ee/builder': 'true',
      },
      annotations: {
        'node.alpha.kubernetes.io/ttl': '0',
        'flannel.alpha.coreos.com/public-ip': '10.0.0.1',
        ...o.annotations,
      },
      managedFields: [{ manager: 'kubelet', operation: 'Update', fieldsV1: { 'f:status': { 'f:images': {} } } }],
    },
    spec: {
      podCIDR: '10.244.0.0/24',
      ...(o.taints ? { taints: [{ key: 'dedicated', value: 'gpu', effect: 'NoSchedule' }], unschedulable: true } : {}),
    },
    status: {
      addresses: [{ type: 'InternalIP', address: '10.0.0.1' }],
      capacity: { cpu: '4', memory: '8Gi' },
      conditions: [
        {
          type: 'MemoryPressure',
          status: 'False',
          reason: 'KubeletHasSufficientMemory',
          message: 'kubelet has sufficient memory available',
          lastHeartbeatTime: t,
          lastTransitionTime: t,
        },
        {
          type: 'Ready',
          status: o.ready ? 'True' : 'False',
          reason: 'KubeletReady',
          message: 'kubelet is posting ready status',
          lastHeartbeatTime: t,
          lastTransitionTime: t,
        },
      ],
      images: Array.from({ length: o.images }, (_, i) => ({
        names: [`docker.io/library/app-${i}@sha256:${'a'.repeat(64)}`, `docker.io/library/app-${i}:v1`],
        sizeBytes: 1000 * i,
      })),
      nodeInfo: {
        architecture: 'arm64',
        operatingSystem: 'linux',
        containerRuntimeVersion: o.runtime,
        kubeletVersion: o.kubelet,
        bootID: 'b',
        machineID: 'm',
        systemUUID: 's',
        kernelVersion: '6.1',
        osImage: 'Debian',
        kubeProxyVersion: '',
      },
    },
  };
}

it('slimNode: the controller plans, places and finds the socket exactly as from the whole Node', () => {
  const cases = [
    kubeletNode({ images: 12, ready: true, runtime: 'containerd://2.1.4', kubelet: 'v1.34.4' }),
    kubeletNode({
      images: 50,
      ready: false,
      runtime: 'containerd://1.7.28-k3s1',
      kubelet: 'v1.34.4+k3s1',
      taints: true,
    }),
    kubeletNode({
      images: 0,
      ready: true,
      runtime: 'containerd://1.6.20',
      kubelet: 'v1.34.4',
      annotations: { 'enbi.hrzn.ee/containerd-socket': '/run/x/containerd.sock' },
    }),
  ];
  for (const full of cases) {
    const slim = slimNode(full);
    assert.deepEqual(nodeViewOf(slim), nodeViewOf(full));
    assert.deepEqual(nodeViewOf(slim, 10), nodeViewOf(full, 10));
    const sock = (n: V1Node) =>
      socketFor(
        { annotations: n.metadata?.annotations ?? {}, kubeletVersion: n.status?.nodeInfo?.kubeletVersion ?? '' },
        undefined,
      );
    assert.equal(sock(slim), sock(full));
    assert.equal(slim.metadata?.managedFields, undefined);
    assert.equal(slim.metadata?.annotations?.['flannel.alpha.coreos.com/public-ip'], undefined);
  }
  const big = cases[1]!;
  const ratio = JSON.stringify(slimNode(big)).length / JSON.stringify(big).length;
  console.log(`slim/full bytes, a 50-image node: ${ratio.toFixed(2)}`);
  assert.ok(ratio < 0.9, `${ratio}`);
});
