// docs/design.md: the plan pass's writes are handled one by one: "a refused creation is logged and retried,
// the rest go on". Against a real API server, an admission policy (as a quota or a site policy would)
// refuses the NixBuild of one of two eager workloads: the other's NixBuild is created and its Job starts;
// the refused one is logged with the API server's reason, is not created, and is created once allowed,
// without any other change in the cluster (the pass retries a failed creation by itself).
import assert from 'node:assert/strict';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { AdmissionregistrationV1Api, BatchV1Api, CoreV1Api, CustomObjectsApi } from '@kubernetes/client-node';
import { GROUP, type NixBuild, PLURAL, VERSION } from '../../src/api/nixbuild.ts';
import type { RunningController } from '../../src/controller/controller.ts';
import { clusterSkipReason, type ClusterInfo, useCluster } from '../cluster/harness.ts';
import { deployment, REV_A, REV_B, yamlDocs } from '../support/fixtures.ts';
import { applyNixBuildCrd, fakeNodes, startApiNodeController, until } from '../support/kube.ts';

const run = Date.now().toString(36);
const POOL = 'enbi.test/pool';

describe('a NixBuild creation refused in the plan pass (real API server)', { skip: clusterSkipReason() }, () => {
  let c: ClusterInfo;
  let nodes: Awaited<ReturnType<typeof fakeNodes>> | undefined;
  let controller: RunningController | undefined;
  const ns = `enbi-cr-${run}`;
  const appNs = `apps-cr-${run}`;
  const policy = `enbi-test-refuse-nb-${run}`;
  const logs: string[] = [];

  before(async () => {
    c = await useCluster('control-plane');
    const core = c.kc.makeApiClient(CoreV1Api);
    await core.createNamespace({ body: { metadata: { name: ns } } });
    await core.createNamespace({ body: { metadata: { name: appNs } } });
    await applyNixBuildCrd(c.kc);
    nodes = await fakeNodes(c.kc, { [`cr-${run}`]: { arch: 'amd64', labels: { [POOL]: run } } });
    const admission = c.kc.makeApiClient(AdmissionregistrationV1Api);
    await admission.createValidatingAdmissionPolicy({
      body: {
        metadata: { name: policy },
        spec: {
          failurePolicy: 'Fail',
          matchConstraints: {
            resourceRules: [{ apiGroups: [GROUP], apiVersions: ['*'], operations: ['CREATE'], resources: [PLURAL] }],
          },
          matchConditions: [{ name: 'this-test', expression: `object.metadata.namespace == '${ns}'` }],
          validations: [
            {
              expression: `!object.spec.images.exists(i, i.startsWith('registry.local/refused-'))`,
              message: 'refused by the site quota',
            },
          ],
        },
      },
    });
    await admission.createValidatingAdmissionPolicyBinding({
      body: { metadata: { name: policy }, spec: { policyName: policy, validationActions: ['Deny'] } },
    });
  });

  after(async () => {
    if (process.env.DUMP) console.log(logs.join('\n'));
    await controller?.stop();
    await nodes?.stop();
    const admission = c?.kc.makeApiClient(AdmissionregistrationV1Api);
    await admission?.deleteValidatingAdmissionPolicyBinding({ name: policy }).catch(() => undefined);
    await admission?.deleteValidatingAdmissionPolicy({ name: policy }).catch(() => undefined);
    const core = c?.kc.makeApiClient(CoreV1Api);
    await core?.deleteNamespace({ name: ns }).catch(() => undefined);
    await core?.deleteNamespace({ name: appNs }).catch(() => undefined);
  });

  it('the other build is created and starts; the refused one is logged, then created once allowed', async () => {
    const custom = c.kc.makeApiClient(CustomObjectsApi);
    const builds = async () =>
      (
        (await custom.listNamespacedCustomObject({
          group: GROUP,
          version: VERSION,
          namespace: ns,
          plural: PLURAL,
        })) as {
          items: NixBuild[];
        }
      ).items;
    const imageOf = (b: NixBuild) => b.spec.images?.[0] ?? '';
    // The policy takes a moment to be enforced: wait until it refuses a server-side dry run.
    await until(
      'the admission policy to be enforced',
      async () => {
        try {
          await custom.createNamespacedCustomObject({
            group: GROUP,
            version: VERSION,
            namespace: ns,
            plural: PLURAL,
            dryRun: 'All',
            body: {
              apiVersion: `${GROUP}/${VERSION}`,
              kind: 'NixBuild',
              metadata: { name: `probe-${run}` },
              spec: {
                flakeUrl: `git+http://git.invalid/p.git?rev=${REV_A}`,
                packageName: 'image',
                system: 'x86_64-linux',
                images: ['registry.local/refused-probe:v1'],
              },
            },
          });
          return undefined;
        } catch (err) {
          return /refused by the site quota/.test(String((err as { body?: string }).body)) ? true : undefined;
        }
      },
      30_000,
      500,
    );
    const dir = await mkdtemp(join(tmpdir(), 'enbi-cr-'));
    const pool = { [POOL]: run };
    const eager = (name: string, rev: string) =>
      deployment(name, {
        namespace: appNs,
        flake: `git+http://git.invalid/${name}.git?rev=${rev}#image`,
        image: `registry.local/${name}:v1`,
        annotations: { 'enbi.hrzn.ee/build': 'eager' },
        nodeSelector: pool,
      });
    // The refused one first in the file: its failure must not hold up what comes after it.
    await writeFile(join(dir, 'apps.yaml'), yamlDocs(eager('refused-app', REV_A), eager('good-app', REV_B)));
    // Room for both on the one node: only the policy holds the refused one back.
    controller = await startApiNodeController(c.kc, {
      dir,
      namespace: ns,
      pool,
      logs,
      settings: { maxConcurrentBuildsPerNode: 4 },
    });
    controller.trigger();
    const good = await until(
      "the good workload's NixBuild",
      async () => (await builds()).find((b) => imageOf(b) === 'registry.local/good-app:v1'),
      30_000,
      200,
    );
    await until(
      "the good build's Job",
      async () =>
        (
          await c.kc
            .makeApiClient(BatchV1Api)
            .listNamespacedJob({ namespace: ns, labelSelector: `enbi.hrzn.ee/nixbuild=${good.metadata.name}` })
        ).items.length > 0
          ? true
          : undefined,
      30_000,
      200,
    );
    await until(
      'the refusal logged with its reason',
      async () =>
        logs.some((l) => /could not create the NixBuild \(retried\).*refused by the site quota/.test(l))
          ? true
          : undefined,
      30_000,
      200,
    );
    assert.equal((await builds()).filter((b) => imageOf(b).startsWith('registry.local/refused-')).length, 0);
    // Allowed: created by the pass's own retry (nothing else changes in the cluster).
    await c.kc.makeApiClient(AdmissionregistrationV1Api).deleteValidatingAdmissionPolicyBinding({ name: policy });
    const t0 = Date.now();
    await until(
      'the refused workload NixBuild once allowed',
      async () => (await builds()).find((b) => imageOf(b) === 'registry.local/refused-app:v1'),
      60_000,
      200,
    );
    if (process.env.DUMP) console.log(logs.join('\n'));
    console.log(`# a refused NixBuild creation: created ${Date.now() - t0} ms after the policy went`);
  });
});
