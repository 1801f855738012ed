// The trust model against a real API server (scheduler, ReplicaSet and garbage collectors running): Git
// decides what is built, a pod only says where. A Deployment's pods, made by the real ReplicaSet controller,
// get the build Git declares; a tenant's pods in the same namespace claiming another flake or a well-known
// image name get nothing but an Event saying why (control characters in it escaped); a NixBuild outside
// the allow-lists is Stalled with the reason (credentials in its flake URL too, repeated nowhere); a
// NixBuild created ahead under a planned build's name is never adopted. The test plays kubelet (pod
// status) on API-object nodes; the real-node versions of the refusals are in controller-e2e.
import assert from 'node:assert/strict';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { AppsV1Api, BatchV1Api, CoreV1Api, CustomObjectsApi, type V1Deployment } from '@kubernetes/client-node';
import { GROUP, type NixBuild, PLURAL, VERSION } from '../../src/api/nixbuild.ts';
import { nixBuildName } from '../../src/build/naming.ts';
import { sourceKey } from '../../src/contract/container-needs.ts';
import { parseFlakeRef } from '../../src/flake/ref.ts';
import type { RunningController } from '../../src/controller/controller.ts';
import { clusterSkipReason, type ClusterInfo, useCluster } from '../cluster/harness.ts';
import { REV_A, REV_B, yamlDocs } from '../support/fixtures.ts';
import { applyNixBuildCrd, startApiNodeController, fakeNodes, setPodWaiting, until } from '../support/kube.ts';

const run = Date.now().toString(36);
const POOL = 'enbi.test/pool';
const FLAKE = `git+http://git.invalid/shop.git?rev=${REV_A}`;
const IMAGE = `registry.local/shop:${REV_A.slice(0, 12)}`;

describe(
  'trust: Git decides what is built, pods only say where (real API server)',
  { skip: clusterSkipReason() },
  () => {
    let c: ClusterInfo;
    let controller: RunningController | undefined;
    let nodes: Awaited<ReturnType<typeof fakeNodes>> | undefined;
    const ns = `enbi-trust-${run}`;
    const appNs = `shop-${run}`;
    const node = `trust-${run}`;
    const logs: string[] = [];

    const custom = () => c.kc.makeApiClient(CustomObjectsApi);
    const core = () => c.kc.makeApiClient(CoreV1Api);
    const builds = async () =>
      (
        (await custom().listNamespacedCustomObject({
          group: GROUP,
          version: VERSION,
          namespace: ns,
          plural: PLURAL,
        })) as { items: NixBuild[] }
      ).items;
    const jobs = async () => (await c.kc.makeApiClient(BatchV1Api).listNamespacedJob({ namespace: ns })).items;
    const settle = async () => {
      for (const _ of [1, 2, 3]) {
        const done = controller!.reconciled();
        controller!.trigger();
        await done;
        await new Promise((r) => setTimeout(r, 300));
      }
    };
    const deployment = (name: string): V1Deployment => ({
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name, namespace: appNs },
      spec: {
        replicas: 1,
        selector: { matchLabels: { app: name } },
        template: {
          metadata: { labels: { app: name }, annotations: { 'enbi.hrzn.ee/flake': `${FLAKE}#image` } },
          // Bound by name: these API-object nodes have no kubelet, and the test plays it.
          spec: { nodeName: node, containers: [{ name: 'app', image: IMAGE, imagePullPolicy: 'Never' }] },
        },
      },
    });
    const podOf = async (app: string) =>
      until(
        `a pod of ${app} bound to a node`,
        async () =>
          (await core().listNamespacedPod({ namespace: appNs, labelSelector: `app=${app}` })).items.find(
            (p) => p.spec?.nodeName !== undefined,
          ),
        60_000,
      );

    before(async () => {
      c = await useCluster('control-plane');
      await core().createNamespace({ body: { metadata: { name: ns } } });
      await core().createNamespace({ body: { metadata: { name: appNs } } });
      await applyNixBuildCrd(c.kc);
      nodes = await fakeNodes(c.kc, { [node]: { arch: 'amd64', labels: { [POOL]: run } } });
      const dir = await mkdtemp(join(tmpdir(), 'enbi-trust-'));
      // Git holds the shop Deployment (on demand) and nothing else.
      await writeFile(join(dir, 'shop.yaml'), yamlDocs(deployment('shop')));
      controller = await startApiNodeController(c.kc, {
        dir,
        namespace: ns,
        pool: { [POOL]: run },
        logs,
        settings: { watchNamespaces: [appNs], maxNodeImages: 1000 },
      });
      const done = controller.reconciled();
      controller.trigger(true);
      await done;
    });

    after(async () => {
      await controller?.stop();
      await nodes?.stop();
      await core()
        .deleteNamespace({ name: appNs })
        .catch(() => undefined);
      await core()
        .deleteNamespace({ name: ns })
        .catch(() => undefined);
      if (process.env.ENBI_TEST_VERBOSE === '1') console.log(logs.join('\n'));
    });

    it('a NixBuild created ahead under the name enbi plans, with another image, is not adopted and not built', async () => {
      // The name enbi gives the shop build (Spegel mode: no node in it), as anyone may compute it.
      const name = nixBuildName({
        source: sourceKey(parseFlakeRef(FLAKE)),
        rev: REV_A,
        attr: 'image',
        system: 'x86_64-linux',
      });
      const squat: NixBuild = {
        apiVersion: `${GROUP}/${VERSION}`,
        kind: 'NixBuild',
        metadata: { name, namespace: ns },
        // The same flake, plus another team's tag: the build's output would be written under both.
        spec: {
          flakeUrl: FLAKE,
          packageName: 'image',
          system: 'x86_64-linux',
          images: [IMAGE, 'registry.local/payments:v7'],
        },
      };
      await custom().createNamespacedCustomObject({
        group: GROUP,
        version: VERSION,
        namespace: ns,
        plural: PLURAL,
        body: squat,
      });
      // Before any workload needs it: a controller name the plan does not want does not start.
      const waiting = await until(
        'the squatter Pending NotPlanned',
        async () => {
          const b = (await builds()).find((x) => x.metadata.name === name);
          return b?.status?.conditions?.find((x) => x.type === 'Ready' && x.reason === 'NotPlanned') !== undefined
            ? b
            : undefined;
        },
        30_000,
      );
      assert.equal(waiting.status?.phase, 'Pending');
      await settle();
      assert.deepEqual(await jobs(), [], 'not started ahead of the plan');
      await c.kc.makeApiClient(AppsV1Api).createNamespacedDeployment({ namespace: appNs, body: deployment('shop') });
      const pod = await podOf('shop');
      await setPodWaiting(c.kc, appNs, pod.metadata!.name!, 'ErrImageNeverPull');
      const stalled = await until(
        'the squatter Stalled NotAdopted',
        async () => {
          const b = (await builds()).find((x) => x.metadata.name === name);
          return b?.status?.conditions?.find((x) => x.type === 'Stalled' && x.reason === 'NotAdopted') !== undefined
            ? b
            : undefined;
        },
        30_000,
      );
      assert.match(
        stalled.status!.conditions!.find((x) => x.type === 'Ready')!.message,
        /spec.images has registry.local\/payments:v7, which the planned build does not import.*neither builds nor adopts it/,
      );
      await settle();
      assert.deepEqual(await jobs(), [], 'no Job for the squatter, none for the shop (its name is taken)');
      // Deleted, the name is free: enbi's own build of what Git declares is created and started.
      await custom().deleteNamespacedCustomObject({
        group: GROUP,
        version: VERSION,
        namespace: ns,
        plural: PLURAL,
        name,
      });
      const mine = await until(
        "enbi's own shop build",
        async () =>
          (await builds()).find(
            (b) => b.metadata.name === name && b.metadata.labels?.['app.kubernetes.io/managed-by'] === 'enbi',
          ),
        30_000,
      );
      assert.deepEqual(mine.spec.images, [IMAGE]);
      assert.equal(mine.spec.flakeUrl, FLAKE);
      await until('its Job', async () => ((await jobs()).length > 0 ? true : undefined), 30_000);
    });

    it('a tenant pod in the same namespace claiming its own flake and a well-known image gets an Event, no build', async () => {
      const before = (await builds()).map((b) => b.metadata.name).sort();
      const jobsBefore = (await jobs()).length;
      for (const [name, image, flake] of [
        ['tenant-postgres', 'postgres:16.4', `git+http://git.invalid/shop.git?rev=${REV_B}#image`],
        // Even posing as the Deployment's pod by its labels: no owner, so not the Deployment's.
        [
          'tenant-shop',
          `registry.local/shop:${REV_B.slice(0, 12)}`,
          `git+http://git.invalid/shop.git?rev=${REV_B}#image`,
        ],
      ] as const) {
        await core().createNamespacedPod({
          namespace: appNs,
          body: {
            metadata: { name, labels: { app: 'shop-lookalike' }, annotations: { 'enbi.hrzn.ee/flake': flake } },
            spec: { nodeName: node, containers: [{ name: 'app', image, imagePullPolicy: 'Never' }] },
          },
        });
        await setPodWaiting(c.kc, appNs, name, 'ErrImageNeverPull');
      }
      for (const name of ['tenant-postgres', 'tenant-shop']) {
        const ev = await until(
          `a BuildRefused Event on ${name}`,
          async () =>
            (await core().listNamespacedEvent({ namespace: appNs })).items.find(
              (e) => e.involvedObject.name === name && e.reason === 'BuildRefused',
            ),
          30_000,
        );
        assert.equal(ev.type, 'Warning');
        assert.match(
          ev.message ?? '',
          new RegExp(`no workload of the Git source matches this pod \\(looked for Pod ${appNs}/${name}\\)`),
        );
      }
      await settle();
      assert.deepEqual((await builds()).map((b) => b.metadata.name).sort(), before);
      assert.equal((await jobs()).length, jobsBefore);
      // One Event per pod and reason, not one per reconcile.
      const refusals = (await core().listNamespacedEvent({ namespace: appNs })).items.filter(
        (e) => e.reason === 'BuildRefused' && e.involvedObject.name === 'tenant-postgres',
      );
      assert.equal(refusals.length, 1);
    });

    it('a pod whose image string holds control characters gets a BuildRefused Event with them escaped', async () => {
      // The Deployment's own pod (made by the ReplicaSet controller), its image changed to one with a terminal
      // escape, a carriage return and a bidi override: enbi refuses it (not the image Git names) and says so.
      await c.kc
        .makeApiClient(AppsV1Api)
        .createNamespacedDeployment({ namespace: appNs, body: deployment('shop') })
        .catch((e: { code?: number }) => {
          if (e.code !== 409) throw e; // made by the first test
        });
      const pod = await podOf('shop');
      const name = pod.metadata!.name!;
      const image = `${IMAGE}\u001b[2K\u001b[1Gfake-line\r\u202eevil`;
      await core().patchNamespacedPod({
        name,
        namespace: appNs,
        body: [{ op: 'replace', path: '/spec/containers/0/image', value: image }],
      });
      await setPodWaiting(c.kc, appNs, name, 'ErrImageNeverPull');
      const ev = await until(
        `a BuildRefused Event on ${name}`,
        async () =>
          (await core().listNamespacedEvent({ namespace: appNs })).items.find(
            (e) => e.involvedObject.name === name && e.reason === 'BuildRefused',
          ),
        30_000,
      );
      assert.equal(
        ev.message,
        `enbi builds nothing for container app: container app runs ${IMAGE}\\x1b[2K\\x1b[1Gfake-line\\x0d\\u{202e}evil, but Deployment ${appNs}/shop in Git names ${IMAGE} for it`,
      );
      assert.ok(
        !/[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/.test(ev.message ?? ''),
        'no control character left',
      );
    });

    it('a hand-written NixBuild outside allowedImages or allowedFlakes, or with credentials in its flake URL, is Stalled with the reason, and never gets a Job', async () => {
      const cases = [
        {
          name: `pause-${run}`,
          spec: { flakeUrl: FLAKE, images: ['registry.k8s.io/pause:3.10'] },
          why: /spec.images: image registry.k8s.io\/pause:3.10 is outside the prefixes enbi may write \(allowedImages: registry.local\/\)/,
        },
        {
          name: `evil-${run}`,
          spec: { flakeUrl: `github:evil/payload/${REV_B}`, images: ['registry.local/evil:v1'] },
          why: /spec.flakeUrl: flake source https:\/\/github.com\/evil\/payload is outside the sources enbi may build/,
        },
        {
          name: `latest-${run}`,
          spec: { flakeUrl: FLAKE, images: ['registry.local/shop:latest'] },
          why: /the moving tag latest/,
        },
      ];
      for (const k of cases) {
        const body: NixBuild = {
          apiVersion: `${GROUP}/${VERSION}`,
          kind: 'NixBuild',
          metadata: { name: k.name, namespace: ns },
          spec: { packageName: 'image', system: 'x86_64-linux', ...k.spec },
        };
        await custom().createNamespacedCustomObject({
          group: GROUP,
          version: VERSION,
          namespace: ns,
          plural: PLURAL,
          body,
        });
      }
      for (const k of cases) {
        const b = await until(
          `${k.name} Stalled`,
          async () => {
            const x = (await builds()).find((y) => y.metadata.name === k.name);
            return x?.status?.conditions?.some((y) => y.type === 'Stalled' && y.status === 'True') ? x : undefined;
          },
          30_000,
        );
        assert.equal(b.status?.phase, 'Failed');
        const ready = b.status!.conditions!.find((y) => y.type === 'Ready')!;
        assert.equal(ready.reason, 'InvalidSpec');
        assert.match(ready.message, k.why);
        assert.ok(
          !(await jobs()).some((j) => j.metadata?.labels?.['enbi.hrzn.ee/nixbuild'] === k.name),
          `no Job for ${k.name}`,
        );
      }
      // Credentials in the flake URL: refused pointing at nixSecretName, and repeated nowhere the controller writes.
      const secret = `glpat-${run}S3cr3t`;
      const creds = [
        {
          name: `creds-user-${run}`,
          flakeUrl: `git+http://ci:${secret}@git.invalid/shop.git?rev=${REV_A}`,
          image: `registry.local/creds:${run}`,
        },
        {
          name: `creds-query-${run}`,
          flakeUrl: `git+http://git.invalid/shop.git?access_token=${secret}&rev=${REV_A}`,
          image: `registry.local/creds:${run}`,
        },
        // Naming the image Git declares for the shop: refused as a claim first, its message naming the flake without the secret.
        {
          name: `creds-claim-${run}`,
          flakeUrl: `git+http://ci:${secret}@git.invalid/other.git?rev=${REV_A}`,
          image: IMAGE,
        },
      ];
      for (const k of creds) {
        const body: NixBuild = {
          apiVersion: `${GROUP}/${VERSION}`,
          kind: 'NixBuild',
          metadata: { name: k.name, namespace: ns },
          spec: { flakeUrl: k.flakeUrl, packageName: 'image', system: 'x86_64-linux', images: [k.image] },
        };
        await custom().createNamespacedCustomObject({
          group: GROUP,
          version: VERSION,
          namespace: ns,
          plural: PLURAL,
          body,
        });
      }
      for (const k of creds) {
        const b = await until(
          `${k.name} Stalled`,
          async () => {
            const x = (await builds()).find((y) => y.metadata.name === k.name);
            return x?.status?.conditions?.some((y) => y.type === 'Stalled' && y.status === 'True') ? x : undefined;
          },
          30_000,
        );
        const ready = b.status!.conditions!.find((y) => y.type === 'Ready')!;
        if (k.image === IMAGE) {
          assert.equal(ready.reason, 'ImageClaimed');
          assert.match(ready.message, /NixBuild .* builds it from git\+http:\/\/\*\*\*@git.invalid\/other.git\?rev=/);
        } else {
          assert.equal(ready.reason, 'InvalidSpec');
          assert.match(
            ready.message,
            /^spec.flakeUrl: flake reference ".*" carries credentials \((a password in the URL|the query parameter "access_token")\), which would end up in the NixBuild, the build Job's environment and logs: remove them, and put the token in the Secret that the controller setting nixSecretName names/,
          );
        }
        assert.ok(!JSON.stringify(b.status).includes(secret), `${k.name}: the status repeats the secret`);
        assert.ok(
          !(await jobs()).some((j) => j.metadata?.labels?.['enbi.hrzn.ee/nixbuild'] === k.name),
          `no Job for ${k.name}`,
        );
      }
      await settle();
      assert.ok(!JSON.stringify(await jobs()).includes(secret), 'no Job carries the secret');
      const events = (await core().listNamespacedEvent({ namespace: ns })).items.filter((e) =>
        creds.some((k) => k.name === e.involvedObject.name),
      );
      assert.ok(events.length > 0, 'the refusal is an Event too');
      assert.ok(!JSON.stringify(events).includes(secret), 'no Event repeats the secret');
      assert.ok(!logs.join('\n').includes(secret), 'no controller log line repeats the secret');
      // The API server itself refuses a NixBuild without images (the CRD requires them).
      await assert.rejects(
        custom().createNamespacedCustomObject({
          group: GROUP,
          version: VERSION,
          namespace: ns,
          plural: PLURAL,
          body: {
            apiVersion: `${GROUP}/${VERSION}`,
            kind: 'NixBuild',
            metadata: { name: `noimg-${run}` },
            spec: { flakeUrl: FLAKE, packageName: 'image', system: 'x86_64-linux' },
          },
        }),
        (e: { code?: number; body?: string }) => e.code === 422 && /spec.images: Required value/.test(String(e.body)),
      );
    });
  },
);
