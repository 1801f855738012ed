// A render that gives no answer is unknown, never unreferenced (issue 24). On the real full-mode cluster: a
// Git server holds an app flake and a kustomize root with an eager Deployment; `enbi controller` (a
// subprocess, gc.graceSeconds 10, render.timeoutSeconds 3) renders it through a kustomize wrapper that
// execs the real kustomize, or sleeps past the timeout while the test holds it; Nix builds the image on the
// node and imports it; the node agent (buildsNamespace: it removes the tags of deleted NixBuilds) runs in
// this process. Held, a push that changes the root's inputs (not the workload) and an unrelated push: the
// NixBuild must stay (same uid, never stamped) well past the grace period, the tag stay in containerd, the
// Deployment applied meanwhile run its image with no BuildRefused; released, the same commit renders again
// after the backoff and the problem clears. Control: the overlay really drops the workload, and GC deletes
// the NixBuild after the grace period.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { AppsV1Api, CoreV1Api, CustomObjectsApi } from '@kubernetes/client-node';
import { stringify } from 'yaml';
import { type Agent, startAgent } from '../../src/agent/agent.ts';
import { GROUP, type NixBuild, PLURAL, VERSION } from '../../src/api/nixbuild.ts';
import { clusterSkipReason, type ClusterInfo, type NodeState, useCluster } from '../cluster/harness.ts';
import { applyNodeImagesCrd } from '../support/containerd.ts';
import {
  type BuildingNode,
  buildingNode,
  type ControllerProcess,
  startControllerProcess,
} from '../support/controller-process.ts';
import { createFixtureFlake, type FixtureFlake } from '../support/fixture-flake.ts';
import { idleAppDeployment } from '../support/fixtures.ts';
import { type GitServer, startGitServer } from '../support/git-server.ts';
import { applyNixBuildCrd, until } from '../support/kube.ts';
import { renderTool } from '../support/render-tools.ts';

const run = Date.now().toString(36);
const NS = `enbi-ru-${run}`;
const APP_NS = `app-ru-${run}`;
const GRACE_SECONDS = 10;
const UNREFERENCED = 'enbi.hrzn.ee/unreferenced-since';

const configMap = (value: string) =>
  stringify({
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: { name: 'settings', namespace: APP_NS },
    data: { value },
  });

describe(
  'a render that fails or times out is unknown, never unreferenced (real cluster, real kustomize)',
  {
    skip: clusterSkipReason(),
  },
  () => {
    let c: ClusterInfo;
    let node: NodeState;
    let building: BuildingNode | undefined;
    let git: GitServer | undefined;
    let agent: Agent | undefined;
    let controller: ControllerProcess | undefined;
    let flake: FixtureFlake;
    let image: string;
    let work: string;
    const hold = () => join(work, 'hold');
    const timings: string[] = [];

    const builds = async () =>
      (
        (await c.kc
          .makeApiClient(CustomObjectsApi)
          .listNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: NS, plural: PLURAL })) as {
          items: NixBuild[];
        }
      ).items;
    const ours = async () => (await builds()).find((b) => b.spec.flakeUrl === flake.flakeUrl);
    const tags = () =>
      execFileSync(node.ctr, ['--address', node.containerdSocket, '-n', 'k8s.io', 'images', 'ls', '-q'], {
        encoding: 'utf8',
      }).split('\n');
    const refusals = async () =>
      (
        await c.kc
          .makeApiClient(CoreV1Api)
          .listNamespacedEvent({ namespace: APP_NS, fieldSelector: 'reason=BuildRefused' })
      ).items.map((e) => `${e.involvedObject.name}: ${e.message}`);
    const runningPod = async () =>
      (
        await c.kc.makeApiClient(CoreV1Api).listNamespacedPod({ namespace: APP_NS, labelSelector: 'app=app' })
      ).items.find((p) => p.status?.phase === 'Running' && p.spec?.containers[0]?.image === image);
    const renderCalls = async () =>
      (await readFile(join(work, 'calls'), 'utf8').catch(() => '')).split('\n').length - 1;
    const log = () => controller?.log() ?? '';
    // The gauge on /metrics (the port the controller's first log line names).
    const unknownGauge = async () => {
      const port = /probes and metrics on :(\d+)/.exec(log())?.[1];
      const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      return /^enbi_render_roots_unknown (\d+)$/m.exec(text)?.[1];
    };

    before(async () => {
      c = await useCluster('full');
      node = c.nodes[0]!;
      const core = c.kc.makeApiClient(CoreV1Api);
      await core.createNamespace({ body: { metadata: { name: NS } } });
      await core.createNamespace({ body: { metadata: { name: APP_NS } } });
      await applyNixBuildCrd(c.kc);
      await applyNodeImagesCrd(c.kc);
      building = await buildingNode(node);
      git = await startGitServer({ host: new URL(c.server).hostname });
      flake = await createFixtureFlake(git, 'app', { message: `render unknown ${run}` });
      image = `registry.local/ru-app:${flake.shortRev}`;
      work = await mkdtemp(join(tmpdir(), 'enbi-ru-'));
      // The kustomize wrapper: counts its calls; while the test holds it, sleeps past render.timeoutSeconds
      // (exec, so the controller's SIGKILL ends it), else runs the real kustomize.
      const wrapper = join(work, 'kustomize');
      await writeFile(
        wrapper,
        [
          '#!/bin/sh',
          `echo "$*" >> '${join(work, 'calls')}'`,
          `if [ -e '${hold()}' ]; then exec /bin/sleep 30; fi`,
          `exec '${renderTool('kustomize')}' "$@"`,
          '',
        ].join('\n'),
      );
      await chmod(wrapper, 0o755);
      agent = startAgent({
        node: node.name,
        socket: node.containerdSocket,
        api: c.kc,
        resyncMs: 3_600_000,
        buildsNamespace: NS,
        log: () => {},
      });
      await agent.ready;
      await git.createRepo('manifests', {
        'apps/kustomization.yaml': stringify({ resources: ['app.yaml', 'settings.yaml'] }),
        'apps/app.yaml': stringify(
          idleAppDeployment({
            name: 'app',
            namespace: APP_NS,
            flakeUrl: flake.flakeUrl,
            image,
            node: node.name,
            eager: true,
          }),
        ),
        'apps/settings.yaml': configMap('one'),
      });
      controller = await startControllerProcess(c.kubeconfig, {
        source: { url: git.url('manifests'), ref: 'main', path: 'apps', intervalSeconds: 5 },
        namespace: NS,
        watchNamespaces: [APP_NS],
        allowedImages: ['registry.local/'],
        allowedFlakes: [`${git.baseUrl}/`],
        maxAttempts: 2,
        retryBaseSeconds: 1,
        gc: { graceSeconds: GRACE_SECONDS },
        render: { kustomize: wrapper, timeoutSeconds: 3 },
        leaderElection: { enabled: false },
        ...building.settings,
      });
    });

    after(async () => {
      await controller?.stop();
      await agent?.stop();
      await building?.daemon.stop();
      await git?.close();
      const core = c?.kc.makeApiClient(CoreV1Api);
      await core?.deleteNamespace({ name: APP_NS }).catch(() => undefined);
      await core?.deleteNamespace({ name: NS }).catch(() => undefined);
      if (process.env.ENBI_TEST_VERBOSE === '1') console.log(log());
      console.log(`# timings:\n# ${timings.join('\n# ')}`);
    });

    it('a root whose render times out keeps its build, its tag and its pods; the retry clears it; a real removal is still collected', async () => {
      // The eager Deployment's image, built by Nix on the node and imported into its containerd.
      const built = await until(
        'the eager build to succeed',
        async () => {
          const b = await ours();
          if (b?.status?.phase === 'Failed') throw new Error(`build failed: ${JSON.stringify(b.status)}\n${log()}`);
          return b?.status?.phase === 'Succeeded' && tags().includes(image) ? b : undefined;
        },
        240_000,
        500,
      );
      const uid = built.metadata.uid;

      // kustomize now times out. A push that changes the root's inputs but not its workload, then one unrelated.
      await writeFile(hold(), '');
      const before = await renderCalls();
      const t0 = Date.now();
      await git!.commit('manifests', { 'apps/settings.yaml': configMap('two') });
      await until(
        'the timed-out render in the log',
        async () => /took longer than 3 s/.test(log()) || undefined,
        60_000,
      );
      timings.push(`push → render timed out: ${((Date.now() - t0) / 1000).toFixed(1)} s`);
      await git!.commit('manifests', { 'README.md': 'unrelated\n' });
      // Twice the grace period: every 500 ms, the NixBuild (same uid, never stamped) and the tag; what goes
      // wrong is noted the first time, with when.
      const seen = new Map<string, number>();
      const note = (what: string) => seen.has(what) || seen.set(what, Date.now() - t0);
      const watchUntil = Date.now() + 2 * GRACE_SECONDS * 1000;
      while (Date.now() < watchUntil) {
        const b = await ours();
        if (b === undefined) note('the NixBuild is gone');
        else if (b.metadata.uid !== uid) note('the NixBuild was recreated');
        else if (b.metadata.annotations?.[UNREFERENCED] !== undefined) note('the NixBuild was stamped unreferenced');
        if (!tags().includes(image)) note(`${image} is gone from containerd`);
        await new Promise((r) => setTimeout(r, 500));
      }
      // The workload applied meanwhile (as Flux would): its pod needs the image on this node.
      await c.kc.makeApiClient(AppsV1Api).createNamespacedDeployment({
        namespace: APP_NS,
        body: idleAppDeployment({
          name: 'app',
          namespace: APP_NS,
          flakeUrl: flake.flakeUrl,
          image,
          node: node.name,
          eager: true,
        }),
      });
      const running = await until(
        'the pod running its image, or refused',
        async () => (await runningPod()) ?? ((await refusals()).length > 0 ? 'refused' : undefined),
        90_000,
        500,
      );
      const refused = await refusals();
      assert.deepEqual(
        {
          seen: [...seen].map(([what, ms]) => `${what} (${ms} ms after the push)`),
          refused,
          running: running !== 'refused',
        },
        { seen: [], refused: [], running: true },
        `while the root gave no answer:\n${log().slice(-4000)}`,
      );
      assert.ok((await renderCalls()) - before >= 2, 'the failed render was retried, not cached');
      assert.equal(await unknownGauge(), '1');
      assert.match(log(), /garbage collection keeps 1 NixBuild\(s\) that roots whose render gave no answer named/);
      assert.match(log(), /its workloads as rendered at [0-9a-f]{12} stand in for it/);
      assert.doesNotMatch(log(), /no workload names what this builds any more/);

      // Released: the same commit renders again after the backoff, and the problem clears.
      const headBefore = /source at ([0-9a-f]{12})/g;
      const revisions = () => [...log().matchAll(headBefore)].map((m) => m[1]);
      const lastRevision = revisions().at(-1);
      const t1 = Date.now();
      await rm(hold());
      await until(
        'the render to answer again',
        async () => /answered again after \d+ failed attempts/.test(log()) || undefined,
        180_000,
        500,
      );
      timings.push(`released → the same commit rendered again: ${((Date.now() - t1) / 1000).toFixed(1)} s`);
      assert.equal(revisions().at(-1), lastRevision, 'the retry rendered the same commit (no push since)');
      const after = await ours();
      assert.equal(after?.metadata.uid, uid);
      assert.equal(after?.metadata.annotations?.[UNREFERENCED], undefined);
      assert.ok(tags().includes(image));
      assert.ok(await runningPod());
      assert.deepEqual(await refusals(), []);
      await until('the gauge back to 0', async () => ((await unknownGauge()) === '0' ? true : undefined), 30_000, 500);

      // Control: the overlay really stops naming the workload (and Flux prunes it): collected after the grace period.
      await c.kc.makeApiClient(AppsV1Api).deleteNamespacedDeployment({ name: 'app', namespace: APP_NS });
      const t2 = Date.now();
      await git!.commit('manifests', { 'apps/kustomization.yaml': stringify({ resources: ['settings.yaml'] }) });
      const stamped = await until(
        'the NixBuild stamped unreferenced',
        async () => (await ours())?.metadata.annotations?.[UNREFERENCED],
        60_000,
        200,
      );
      assert.ok(!Number.isNaN(Date.parse(stamped)));
      await until('the NixBuild deleted', async () => ((await ours()) === undefined ? true : undefined), 60_000, 200);
      const collectedAfter = Date.now() - t2;
      timings.push(`overlay drops the workload → NixBuild deleted: ${(collectedAfter / 1000).toFixed(1)} s`);
      assert.ok(collectedAfter >= GRACE_SECONDS * 1000, 'not before the grace period');
    });
  },
);
