// The test cluster's node is a real one: a locally imported image runs, logs come back through the API,
// Jobs complete, Node.status.images lists the image, and a missing image with Never gives ErrImageNeverPull.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BatchV1Api, CoreV1Api, type V1Pod } from '@kubernetes/client-node';
import { clusterSkipReason, useCluster, type ClusterInfo } from '../cluster/harness.ts';
import { buildBusyboxImage, importImage } from '../cluster/images.ts';
import { until } from '../support/kube.ts';

const podSpec = (image: string, command: string[]) => ({
  restartPolicy: 'Never',
  terminationGracePeriodSeconds: 1,
  containers: [{ name: 'main', image, imagePullPolicy: 'Never', command }],
});

describe('test cluster: a real node', { skip: clusterSkipReason() }, () => {
  let c: ClusterInfo;
  let core: CoreV1Api;
  let ns: string;
  let tmp: string;
  // Unique per run: the node's containerd may outlive a run (a cluster kept up by hand).
  const tag = Date.now().toString(36);
  const image = `enbi.test/cluster-hello:${tag}`;

  before(async () => {
    c = await useCluster('full');
    core = c.kc.makeApiClient(CoreV1Api);
    ns = `full-test-${tag}`;
    await core.createNamespace({ body: { metadata: { name: ns } } });
    tmp = mkdtempSync(join(tmpdir(), 'enbi-cluster-test-'));
    const built = buildBusyboxImage({
      ref: image,
      out: join(tmp, 'hello.tar'),
      cmd: ['/bin/sh', '-c', 'echo default'],
    });
    for (const n of c.nodes) await importImage(n.containerdSocket, built.out, { ctr: n.ctr });
    await until('the default ServiceAccount', () =>
      core.readNamespacedServiceAccount({ name: 'default', namespace: ns }),
    );
  });

  after(async () => {
    if (tmp) rmSync(tmp, { recursive: true, force: true });
    if (c) await core.deleteNamespace({ name: ns }).catch(() => undefined);
  });

  it('has Ready nodes with an InternalIP and the pod CIDR from cluster.json', async () => {
    assert.ok(c.nodes.length >= 1);
    for (const n of c.nodes) {
      const node = await core.readNode({ name: n.name });
      assert.equal(node.status?.conditions?.find((x) => x.type === 'Ready')?.status, 'True');
      assert.deepEqual(node.status?.addresses?.find((a) => a.type === 'InternalIP')?.address, n.ip);
      assert.equal(node.spec?.podCIDR, n.podCIDR);
    }
  });

  it('runs a pod from a locally imported image to completion and reads its log through the API', async () => {
    await core.createNamespacedPod({
      namespace: ns,
      body: {
        metadata: { name: 'hello' },
        spec: podSpec(image, ['/bin/sh', '-c', 'echo "hello from $(hostname) on $(uname -m)"']),
      },
    });
    const pod = await until(
      'pod hello to succeed',
      async () => {
        const p = await core.readNamespacedPod({ name: 'hello', namespace: ns });
        // Thrown, not returned: the timeout message then shows the last status seen.
        if (p.status?.phase !== 'Succeeded') throw new Error(`phase ${p.status?.phase}: ${JSON.stringify(p.status)}`);
        return p;
      },
      90_000,
    );
    assert.ok(
      c.nodes.some((n) => n.name === pod.spec?.nodeName),
      `scheduled onto ${pod.spec?.nodeName}`,
    );
    // The pod got an address from its node's pod CIDR (the CNI bridge and host-local IPAM ran).
    const node = c.nodes.find((n) => n.name === pod.spec?.nodeName);
    assert.ok(
      node && pod.status?.podIP?.startsWith(node.podCIDR.split('.').slice(0, 3).join('.') + '.'),
      `podIP ${pod.status?.podIP}`,
    );
    const log = await core.readNamespacedPodLog({ name: 'hello', namespace: ns });
    assert.match(log, /^hello from hello on x86_64\n$/);
  });

  it('completes a Job', async () => {
    const batch = c.kc.makeApiClient(BatchV1Api);
    await batch.createNamespacedJob({
      namespace: ns,
      body: {
        metadata: { name: 'job' },
        spec: {
          backoffLimit: 0,
          template: { spec: podSpec(image, ['/bin/sh', '-c', 'test -x /bin/busybox && echo done']) },
        },
      },
    });
    const job = await until('the Job to complete', async () => {
      const j = await batch.readNamespacedJob({ name: 'job', namespace: ns });
      if (j.status?.conditions?.some((x) => x.type === 'Failed' && x.status === 'True')) throw new Error('job failed');
      return j.status?.conditions?.some((x) => x.type === 'Complete' && x.status === 'True') ? j : undefined;
    });
    assert.equal(job.status?.succeeded, 1);
  });

  it("lists the imported image in the Node's status.images", async () => {
    const n = c.nodes[0];
    assert.ok(n);
    const names = await until(
      `${image} in ${n.name}'s status.images`,
      async () => {
        const node = await core.readNode({ name: n.name });
        const all = (node.status?.images ?? []).flatMap((i) => i.names ?? []);
        return all.includes(image) ? all : undefined;
        // kubelet refreshes its image list every 30 s and node status every 10 s.
      },
      90_000,
    );
    // The sandbox image the cluster assembled is there too: the node's containerd really holds both.
    assert.ok(c.state.sandboxImage && names.includes(c.state.sandboxImage), names.join(', '));
  });

  it('reports ErrImageNeverPull for an absent image with imagePullPolicy Never', async () => {
    await core.createNamespacedPod({
      namespace: ns,
      body: { metadata: { name: 'absent' }, spec: podSpec(`enbi.test/absent:${tag}`, ['/bin/true']) },
    });
    const reason = await until(
      'ErrImageNeverPull',
      async () => {
        const p: V1Pod = await core.readNamespacedPod({ name: 'absent', namespace: ns });
        const r = p.status?.containerStatuses?.[0]?.state?.waiting?.reason;
        return r === 'ErrImageNeverPull' ? r : undefined;
      },
      60_000,
    );
    assert.equal(reason, 'ErrImageNeverPull');
  });
});
