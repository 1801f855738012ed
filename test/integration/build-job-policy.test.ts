// deploy/build-jobs.yaml against a real API server: with the controller's own ServiceAccount token, as a thief
// of it has it, a Job exactly as buildJob makes it (from the installed configuration) is admitted, and every
// Job that reaches for more of the node (another image, another hostPath, the store read-write, privilege,
// host namespaces, initContainers, another socket, another program in the import container) is refused with
// the policy's message naming what. deploy/ is installed through a kustomize overlay that renames everything
// (namePrefix), retags enbi's images (`images:`) and moves the store, with docs/install.md's patch of the
// policy's expected values. Pods, CronJobs, Deployments and Job updates stay closed by RBAC.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  AppsV1Api,
  BatchV1Api,
  CoreV1Api,
  KubeConfig,
  KubernetesObjectApi,
  type KubernetesObject,
  type V1Job,
} from '@kubernetes/client-node';
import { parse, stringify } from 'yaml';
import type { NixBuild } from '../../src/api/nixbuild.ts';
import { buildJob, type JobSettings } from '../../src/build/job.ts';
import { SOCKET_ANNOTATION, socketFor } from '../../src/cluster/socket.ts';
import { type ControllerConfig, parseControllerConfig, policyOf } from '../../src/controller/config.ts';
import { clusterSkipReason, type ClusterInfo, useCluster } from '../cluster/harness.ts';
import { buildJobsPolicyPatch, K3S_SOCKET, K3S_SOCKET_DIR, kustomizeBuild, writeOverlay } from '../support/install.ts';
import { until } from '../support/kube.ts';

const tag = Date.now().toString(36);
const ns = `jobpol-${tag}`;
// As a user's overlay renames everything: the policy must still match the ServiceAccount.
const prefix = `t${tag}-`;
const BUILDER = `registry.example.org/team/enbi-builder:${tag}`;
const IMPORTER = `registry.example.org/team/enbi:${tag}`;
const STORE = `/data/enbi-${tag}/nix`;

type Obj = Record<string, any>;

/** The Job the controller creates for a NixBuild: the settings build-reconciler.ts passes, from the config. */
function jobSettings(cfg: ControllerConfig, node: { annotations: Record<string, string> }): JobSettings {
  return {
    namespace: ns,
    builderImage: cfg.builderImage,
    importerImage: cfg.importerImage,
    ...(cfg.importerCommand !== undefined ? { importerCommand: cfg.importerCommand } : {}),
    cacheHostPath: cfg.cache.hostPath,
    containerdSocket: socketFor({ annotations: node.annotations, kubeletVersion: 'v1.34.4' }, cfg.containerdSocket),
    builderTolerations: cfg.builderTolerations,
    nixOptions: cfg.nixOptions,
    ...(cfg.nixSecretName !== undefined ? { nixSecretName: cfg.nixSecretName } : {}),
    allowedImages: policyOf(cfg).images,
    activeDeadlineSeconds: cfg.buildTimeoutSeconds,
  };
}

const nixBuild = (name: string): NixBuild => ({
  apiVersion: 'enbi.hrzn.ee/v1alpha1',
  kind: 'NixBuild',
  metadata: { name, namespace: ns },
  spec: {
    flakeUrl: 'github:team/app/0123456789abcdef0123456789abcdef01234567',
    packageName: 'image',
    system: 'x86_64-linux',
    images: [`registry.local/team/app:${tag}`],
  },
});

/** docs/install.md's patch of deploy/build-jobs.yaml: the images and the store a build Job may use. */
const podOf = (job: V1Job) => job.spec!.template.spec!;
const containerOf = (job: V1Job, name: string) => {
  const c = podOf(job).containers.find((x) => x.name === name);
  assert.ok(c, `buildJob makes a container ${name}`);
  return c;
};
/** The volume buildJob mounts at this path in that container. */
const volumeMountedAt = (job: V1Job, container: string, path: string) => {
  const m = containerOf(job, container).volumeMounts?.find((x) => x.mountPath === path);
  assert.ok(m, `buildJob mounts ${path} in ${container}`);
  const v = podOf(job).volumes?.find((x) => x.name === m.name);
  assert.ok(v, `volume ${m.name}`);
  return { mount: m, volume: v };
};

describe(
  'deploy/build-jobs.yaml: build Jobs of the controller ServiceAccount, installed with a namePrefix',
  {
    skip: clusterSkipReason(),
  },
  () => {
    let c: ClusterInfo;
    let tmp: string;
    let cfg: ControllerConfig;
    let asController: KubeConfig;
    const created: KubernetesObject[] = [];
    let n = 0;
    /** A build Job as the controller makes it, for a NixBuild of its own name. */
    const fresh = (settings?: Partial<JobSettings>): V1Job =>
      buildJob(nixBuild(`app-${tag}-${++n}`), 'enbi-node-1', 1, {
        ...jobSettings(cfg, { annotations: { [SOCKET_ANNOTATION]: K3S_SOCKET } }),
        ...settings,
      });

    before(async () => {
      c = await useCluster('control-plane');
      tmp = mkdtempSync(join(tmpdir(), 'enbi-job-policy-'));
      // The overlay a k3s user writes (install.ts), plus a namePrefix, a namespace, images retagged, the store
      // moved, and a Secret of Nix settings: the config names the same images, store and Secret.
      const overlay = writeOverlay(join(tmp, 'overlay'), {
        config: {
          source: { url: 'https://git.example.org/team/cluster.git', ref: 'main' },
          namespace: ns,
          allowedImages: ['registry.local/team/'],
          allowedFlakes: ['github:team'],
          builderImage: BUILDER,
          importerImage: IMPORTER,
          cache: { hostPath: STORE },
          nixSecretName: `${prefix}nix-access`,
        },
        webhookSecret: 'unused',
        containerdDir: K3S_SOCKET_DIR,
        nixStoreDir: STORE,
      });
      const k = parse(readFileSync(join(overlay, 'kustomization.yaml'), 'utf8')) as Obj;
      k.namespace = ns;
      k.namePrefix = prefix;
      k.images = [
        { name: 'ghcr.io/hrzn/enbi', newName: 'registry.example.org/team/enbi', newTag: tag },
        { name: 'ghcr.io/hrzn/enbi-builder', newName: 'registry.example.org/team/enbi-builder', newTag: tag },
      ];
      // docs/install.md: the policy's expected values say the same as the config.
      k.patches.push({
        target: { kind: 'ValidatingAdmissionPolicy', name: 'enbi-build-jobs' },
        patch: JSON.stringify(
          buildJobsPolicyPatch({ builderImage: BUILDER, importerImage: IMPORTER, storePath: STORE }),
        ),
      });
      writeFileSync(join(overlay, 'kustomization.yaml'), stringify(k));
      const objects = (await kustomizeBuild(overlay)) as (KubernetesObject & Obj)[];

      const api = KubernetesObjectApi.makeApiClient(c.kc);
      const wanted = new Set([
        'Namespace',
        'ServiceAccount',
        'Role',
        'RoleBinding',
        'ClusterRole',
        'ClusterRoleBinding',
        'ConfigMap',
        'DaemonSet',
        'ValidatingAdmissionPolicy',
        'ValidatingAdmissionPolicyBinding',
      ]);
      for (const o of objects) {
        if (!wanted.has(o.kind!)) continue;
        // kustomize does not know the admission policies and their bindings are cluster-scoped.
        if (o.kind!.startsWith('ValidatingAdmissionPolicy')) delete o.metadata!.namespace;
        // The DaemonSets run nowhere here (their images are not on the nodes).
        if (o.kind === 'DaemonSet') o.spec.template.spec.nodeSelector = { 'enbi.test/nowhere': 'true' };
        if (o.kind === 'Namespace') assert.equal(o.metadata!.name, ns);
        await api.create(o);
        created.push(o);
      }
      const configMap = objects.find((o) => o.kind === 'ConfigMap' && o.metadata!.name === `${prefix}enbi-controller`)!;
      cfg = parseControllerConfig(parse(configMap.data['config.yaml'] as string));
      assert.equal(cfg.builderImage, BUILDER);

      // The controller's token, as kubelet gives its pod (any token of this ServiceAccount is the same user).
      const tr = await c.kc.makeApiClient(CoreV1Api).createNamespacedServiceAccountToken({
        name: `${prefix}enbi-controller`,
        namespace: ns,
        body: { spec: { audiences: [], expirationSeconds: 3600 } },
      });
      const cluster = c.kc.getCurrentCluster()!;
      asController = new KubeConfig();
      asController.loadFromOptions({
        clusters: [cluster],
        users: [{ name: 'controller', token: tr.status!.token }],
        contexts: [{ name: 'sa', cluster: cluster.name, user: 'controller' }],
        currentContext: 'sa',
      });
      // The admission policy takes effect a moment after it is created: until a Job of hostPath / is refused.
      const probe = fresh();
      probe.spec!.template.spec!.volumes!.push({ name: 'root', hostPath: { path: '/' } });
      const deadline = Date.now() + 30_000;
      for (;;) {
        const r = await create(probe, { dryRun: 'All' });
        if (r.code === 403) break;
        assert.ok(Date.now() < deadline, `the policy never refused a Job mounting /: ${r.code} ${r.message}`);
        await new Promise((res) => setTimeout(res, 250));
      }
    });

    after(async () => {
      if (!c) return;
      const api = KubernetesObjectApi.makeApiClient(c.kc);
      for (const o of created.reverse()) await api.delete(o).catch(() => undefined);
      if (tmp) rmSync(tmp, { recursive: true, force: true });
    });

    /** Creates the Job with the controller's token: the status code and the API server's message. */
    async function create(
      job: V1Job,
      o: { dryRun?: 'All'; namespace?: string } = {},
    ): Promise<{ code: number; message: string }> {
      try {
        await asController.makeApiClient(BatchV1Api).createNamespacedJob({
          namespace: o.namespace ?? ns,
          body: job,
          ...(o.dryRun ? { dryRun: o.dryRun } : {}),
        });
        return { code: 201, message: '' };
      } catch (e) {
        const err = e as { code?: number; body?: string };
        let message = String(err.body);
        try {
          message = (JSON.parse(String(err.body)) as { message: string }).message;
        } catch {
          /* not JSON: the body itself */
        }
        return { code: err.code ?? 0, message };
      }
    }

    async function assertRefused(job: V1Job, message: RegExp): Promise<void> {
      const r = await create(job);
      assert.equal(r.code, 403, `refused: ${r.message}`);
      assert.match(r.message, message);
    }

    it('a Job exactly as buildJob makes it from the installed configuration is admitted (Secret of Nix settings, k3s socket)', async () => {
      const job = fresh();
      // What the policy is checked against: the retagged images, the moved store, k3s's socket.
      assert.equal(containerOf(job, 'build').image, BUILDER);
      assert.equal(containerOf(job, 'import').image, IMPORTER);
      assert.equal(volumeMountedAt(job, 'build', '/nix').volume.hostPath?.path, STORE);
      const r = await create(job);
      assert.equal(r.code, 201, r.message);
      const stored = await c.kc
        .makeApiClient(BatchV1Api)
        .readNamespacedJob({ name: job.metadata!.name!, namespace: ns });
      const socket = stored.spec?.template.spec?.volumes?.find((v) => v.hostPath?.type === 'Socket')?.hostPath;
      assert.deepEqual({ ...socket }, { path: K3S_SOCKET, type: 'Socket' });
      // On a kubeadm node (no annotation, no configured socket): /run/containerd/containerd.sock, admitted too.
      const kubeadm = buildJob(nixBuild(`app-${tag}-kubeadm`), 'enbi-node-1', 1, jobSettings(cfg, { annotations: {} }));
      assert.equal(
        volumeMountedAt(kubeadm, 'import', '/run/enbi/containerd.sock').volume.hostPath?.path,
        '/run/containerd/containerd.sock',
      );
      assert.equal((await create(kubeadm, { dryRun: 'All' })).code, 201);
    });

    it('(a) another image in either container is refused, naming it and the image allowed', async () => {
      await assertRefused(
        fresh({ builderImage: 'docker.io/library/alpine:3' }),
        new RegExp(
          `container build runs image docker\\.io/library/alpine:3; allowed: the importer image ${IMPORTER} in container import, the builder image ${BUILDER} in the others \\(the controller's importerImage and builderImage must name the same\\)$`,
        ),
      );
      await assertRefused(
        fresh({ importerImage: 'docker.io/library/alpine:3' }),
        new RegExp(
          `container import runs image docker\\.io/library/alpine:3; allowed: the importer image ${IMPORTER} in container import`,
        ),
      );
      // The controller's config still naming enbi's default image after the overlay retagged it: refused alike.
      await assertRefused(
        fresh({ builderImage: 'ghcr.io/hrzn/enbi-builder:0.1.0' }),
        /container build runs image ghcr\.io\/hrzn\/enbi-builder:0\.1\.0; allowed: .* the builder image registry\.example\.org\/team\/enbi-builder:/,
      );
      // A third container, even of the builder image, runs under the same rules (and as non-root).
      const third = fresh();
      podOf(third).containers.push({ name: 'extra', image: 'docker.io/library/alpine:3' });
      await assertRefused(third, /container extra runs image docker\.io\/library\/alpine:3/);
    });

    it('(b) another hostPath is refused: /, the kubelet directory, or a directory where the store should be', async () => {
      for (const [path, type] of [
        ['/', undefined],
        ['/var/lib/kubelet', 'Directory'],
        [`${STORE}/..`, undefined],
      ] as const) {
        const job = fresh();
        podOf(job).volumes!.push({ name: 'host', hostPath: { path, ...(type ? { type } : {}) } });
        containerOf(job, 'build').volumeMounts!.push({ name: 'host', mountPath: '/host', readOnly: true });
        const r = await create(job);
        assert.ok(r.code === 403 || r.code === 422, `${path}: ${r.code} ${r.message}`);
        if (r.code === 422) {
          // The API server itself refuses '..' in a hostPath.
          assert.match(r.message, /must not contain '\.\.'/);
          continue;
        }
        assert.match(
          r.message,
          new RegExp(
            `hostPath ${path.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')} \\(volume host, type ${type ?? 'unset'}\\) is refused; allowed: the node's Nix store ${STORE} \\(the controller's cache.hostPath must name the same\\) and containerd's socket, type Socket: /run/containerd/containerd.sock, ${K3S_SOCKET}, `,
          ),
        );
      }
      // The store's own path as a second volume, read-write: the mount rule refuses it too.
      const job = fresh();
      podOf(job).volumes!.push({ name: 'store-again', hostPath: { path: STORE } });
      containerOf(job, 'build').volumeMounts!.push({ name: 'store-again', mountPath: '/store' });
      await assertRefused(job, /container build: the node's Nix store mounted read-write/);
    });

    it('(c) the store mounted read-write, in the build or the import container, is refused', async () => {
      const rw = fresh();
      volumeMountedAt(rw, 'build', '/nix').mount.readOnly = false;
      await assertRefused(
        rw,
        new RegExp(
          `refused in container build: the node's Nix store mounted read-write \\(${STORE}: the Nix daemon alone writes it\\)`,
        ),
      );
      const inImport = fresh();
      const store = volumeMountedAt(inImport, 'build', '/nix').volume.name;
      containerOf(inImport, 'import').volumeMounts!.push({ name: store, mountPath: '/nix' });
      await assertRefused(inImport, /refused in container import: the node's Nix store mounted read-write/);
    });

    it('(d) privileged, added capabilities, privilege escalation, root builds, host namespaces are refused, each named', async () => {
      const cases: [string, (j: V1Job) => void, RegExp][] = [
        [
          'privileged',
          (j) => {
            // The API server itself refuses privileged without privilege escalation.
            const s = containerOf(j, 'import').securityContext!;
            s.privileged = true;
            s.allowPrivilegeEscalation = true;
          },
          /refused in container import: privileged, allowPrivilegeEscalation not false$/,
        ],
        [
          'SYS_ADMIN',
          (j) => {
            // (buildJob's containers share one capabilities object: give build its own.)
            const s = containerOf(j, 'build').securityContext!;
            s.capabilities = { ...s.capabilities, add: ['SYS_ADMIN'] };
          },
          /refused in container build: capabilities added \(SYS_ADMIN\)$/,
        ],
        [
          'no drop',
          (j) => (containerOf(j, 'import').securityContext!.capabilities = {}),
          /refused in container import: capabilities not dropped \(drop: \[ALL\]\)$/,
        ],
        [
          'escalation',
          (j) => (containerOf(j, 'build').securityContext!.allowPrivilegeEscalation = true),
          /refused in container build: allowPrivilegeEscalation not false$/,
        ],
        [
          'root build',
          (j) => {
            const s = containerOf(j, 'build').securityContext!;
            s.runAsUser = 0;
            s.runAsNonRoot = false;
          },
          /refused in container build: runAsNonRoot not true \(only import runs as root\), runAsUser 0 or unset/,
        ],
        [
          'unconfined seccomp',
          (j) => (containerOf(j, 'build').securityContext!.seccompProfile = { type: 'Unconfined' }),
          /refused in container build: seccompProfile Unconfined$/,
        ],
        ['hostPID', (j) => (podOf(j).hostPID = true), /its pod may not have hostPID$/],
        ['hostNetwork', (j) => (podOf(j).hostNetwork = true), /its pod may not have hostNetwork$/],
        ['hostIPC', (j) => (podOf(j).hostIPC = true), /its pod may not have hostIPC$/],
        [
          'token',
          (j) => (podOf(j).automountServiceAccountToken = true),
          /its pod may not have a service account token \(automountServiceAccountToken is not false\)$/,
        ],
        [
          'sysctls',
          (j) => (podOf(j).securityContext!.sysctls = [{ name: 'kernel.shm_rmid_forced', value: '1' }]),
          /its pod may not have sysctls$/,
        ],
        [
          'hostPort',
          (j) => (containerOf(j, 'build').ports = [{ containerPort: 80, hostPort: 80 }]),
          /refused in container build: a hostPort$/,
        ],
        [
          'projected token',
          (j) => {
            podOf(j).volumes!.push({
              name: 'token',
              projected: { sources: [{ serviceAccountToken: { path: 'token' } }] },
            });
            containerOf(j, 'build').volumeMounts!.push({ name: 'token', mountPath: '/token' });
          },
          /volume token is refused: a build Job has emptyDir, Secret and hostPath volumes only/,
        ],
      ];
      for (const [what, change, message] of cases) {
        const job = fresh();
        change(job);
        const r = await create(job);
        assert.equal(r.code, 403, `${what}: ${r.message}`);
        assert.match(r.message, message, what);
      }
    });

    it('(e) an initContainer or an ephemeral container is refused; the pods/ephemeralcontainers subresource is closed (RBAC)', async () => {
      const init = fresh();
      podOf(init).initContainers = [{ ...containerOf(init, 'build'), name: 'before' }];
      await assertRefused(init, /initContainers and ephemeralContainers are refused \(before \)/);

      const eph = fresh();
      const { resources: _r, ...build } = containerOf(eph, 'build');
      podOf(eph).ephemeralContainers = [{ ...build, name: 'debug' } as never];
      const r = await create(eph);
      // The API server's own validation or the policy: either way not admitted, and said why.
      assert.ok(r.code === 422 || r.code === 403, `${r.code} ${r.message}`);
      assert.match(
        r.message,
        r.code === 403 ? /initContainers and ephemeralContainers are refused/ : /ephemeralContainers/,
      );

      // The running Job's pod cannot gain one later: the ServiceAccount may not patch pods/ephemeralcontainers.
      await assert.rejects(
        asController.makeApiClient(CoreV1Api).patchNamespacedPodEphemeralcontainers({
          name: 'any-pod',
          namespace: ns,
          body: [{ op: 'add', path: '/spec/ephemeralContainers', value: [] }],
        }),
        (e: { code?: number; body?: string }) => {
          assert.equal(e.code, 403);
          assert.match(String(e.body), /cannot patch resource \\?"pods\/ephemeralcontainers\\?"/);
          return true;
        },
      );
    });

    it('(f) another socket path or type is refused, naming the sockets allowed', async () => {
      await assertRefused(
        fresh({ containerdSocket: '/run/docker.sock' }),
        new RegExp(
          `hostPath /run/docker\\.sock \\(volume containerd, type Socket\\) is refused; allowed: the node's Nix store ${STORE} .* containerd's socket, type Socket: /run/containerd/containerd\\.sock, `,
        ),
      );
      await assertRefused(
        fresh({ containerdSocket: `${K3S_SOCKET_DIR}/sub/containerd.sock` }),
        /hostPath \/run\/k3s\/containerd\/sub\/containerd\.sock \(volume containerd, type Socket\) is refused/,
      );
      // The socket's directory instead of the socket (type Directory): not the store, not a Socket.
      const dir = fresh();
      const socket = volumeMountedAt(dir, 'import', '/run/enbi/containerd.sock').volume;
      socket.hostPath = { path: K3S_SOCKET_DIR, type: 'Directory' };
      await assertRefused(dir, /hostPath \/run\/k3s\/containerd \(volume containerd, type Directory\) is refused/);
      // The socket in the build container (non-root, but it would reach containerd).
      const inBuild = fresh();
      const { mount } = volumeMountedAt(inBuild, 'import', '/run/enbi/containerd.sock');
      containerOf(inBuild, 'build').volumeMounts!.push({ ...mount });
      await assertRefused(inBuild, /refused in container build: containerd's socket \(only import mounts it\)$/);
    });

    it('the import container (uid 0, the socket) runs only enbi import as buildJob has it: another command, flag or env is refused', async () => {
      const cases: [string, (j: V1Job) => void, RegExp][] = [
        [
          'command',
          (j) => (containerOf(j, 'import').command = ['/bin/sh', '-c', 'ctr images ls']),
          /the import container may run only enbi import as a build Job does; it has a command \(\/bin\/sh -c ctr images ls\), not the image's entrypoint$/,
        ],
        ['importerCommand', () => undefined, /it has a command \(\/nodejs\/bin\/node \/app\/dist\/cli\/main\.js\)/],
        [
          '--allow-prefix',
          (j) => containerOf(j, 'import').args!.push('--allow-prefix', 'registry.k8s.io/'),
          /it has args import --fifo \/work\/image\.fifo .* --allow-prefix registry\.k8s\.io\/, not import --fifo/,
        ],
        [
          'NODE_OPTIONS',
          (j) => containerOf(j, 'import').env!.push({ name: 'NODE_OPTIONS', value: '--require=/work/x.js' }),
          /it has env NODE_OPTIONS \(allowed: ENBI_IMAGES, ENBI_NIXBUILD, ENBI_ALLOWED_IMAGES, ENBI_PLATFORM, CONTAINERD_ADDRESS\)$/,
        ],
        [
          'no allow-list',
          (j) => {
            const c = containerOf(j, 'import');
            c.env = c.env!.filter((e) => e.name !== 'ENBI_ALLOWED_IMAGES');
          },
          /it has no ENBI_ALLOWED_IMAGES \(without it enbi import writes any name\)$/,
        ],
        [
          'valueFrom',
          (j) => {
            const e = containerOf(j, 'import').env!.find((x) => x.name === 'ENBI_IMAGES')!;
            delete e.value;
            e.valueFrom = { secretKeyRef: { name: `${prefix}enbi-webhook`, key: 'secret' } };
          },
          /it has env from valueFrom$/,
        ],
      ];
      for (const [what, change, message] of cases) {
        const job =
          what === 'importerCommand'
            ? fresh({ importerCommand: ['/nodejs/bin/node', '/app/dist/cli/main.js'] })
            : fresh();
        change(job);
        const r = await create(job);
        assert.equal(r.code, 403, `${what}: ${r.message}`);
        assert.match(r.message, message, what);
      }
    });

    it('no way around the Job: Pods, CronJobs, Deployments, Jobs elsewhere and Job updates are refused by RBAC', async () => {
      const job = fresh();
      podOf(job).volumes!.push({ name: 'root', hostPath: { path: '/' } });
      const template = job.spec!.template;
      const forbidden = async (what: string, p: Promise<unknown>, verbResource: RegExp) =>
        await assert.rejects(p, (e: { code?: number; body?: string }) => {
          assert.equal(e.code, 403, what);
          assert.match(String(e.body), verbResource, what);
          return true;
        });
      await forbidden(
        'a bare Pod',
        asController
          .makeApiClient(CoreV1Api)
          .createNamespacedPod({ namespace: ns, body: { metadata: { name: 'bare' }, spec: template.spec! } }),
        /cannot create resource \\?"pods\\?"/,
      );
      await forbidden(
        'a CronJob',
        asController.makeApiClient(BatchV1Api).createNamespacedCronJob({
          namespace: ns,
          body: { metadata: { name: 'cron' }, spec: { schedule: '* * * * *', jobTemplate: { spec: job.spec! } } },
        }),
        /cannot create resource \\?"cronjobs\\?"/,
      );
      await forbidden(
        'a Deployment',
        asController.makeApiClient(AppsV1Api).createNamespacedDeployment({
          namespace: ns,
          body: {
            metadata: { name: 'dep' },
            spec: { selector: { matchLabels: template.metadata!.labels! }, template: template },
          },
        }),
        /cannot create resource \\?"deployments\\?"/,
      );
      await forbidden(
        'a Job in another namespace',
        asController.makeApiClient(BatchV1Api).createNamespacedJob({ namespace: 'default', body: fresh() }),
        /cannot create resource \\?"jobs\\?" .* in the namespace \\?"default\\?"/,
      );
      // The Job admitted above cannot be changed afterwards (no update or patch on jobs).
      const admitted = fresh();
      assert.equal((await create(admitted)).code, 201);
      await forbidden(
        'a Job update',
        asController.makeApiClient(BatchV1Api).patchNamespacedJob({
          name: admitted.metadata!.name!,
          namespace: ns,
          body: [{ op: 'replace', path: '/spec/parallelism', value: 2 }],
        }),
        /cannot patch resource \\?"jobs\\?"/,
      );
    });

    it('the policy binds to the controller ServiceAccount only: the same Job mounting / from the cluster admin is admitted', async () => {
      const job = fresh();
      podOf(job).volumes!.push({ name: 'root', hostPath: { path: '/' } });
      await c.kc.makeApiClient(BatchV1Api).createNamespacedJob({ namespace: ns, body: job, dryRun: 'All' });
    });

    it('wherever RBAC would let the controller create Jobs, the policy holds: another namespace, granted by an admin', async () => {
      // An admin grants the controller RBAC's edit role in another namespace: its Jobs there are bound by the
      // same rules (the policy matches the ServiceAccount, not a namespace).
      const other = `${ns}-elsewhere`;
      const core = c.kc.makeApiClient(CoreV1Api);
      await core.createNamespace({ body: { metadata: { name: other } } });
      created.push({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: other } });
      await KubernetesObjectApi.makeApiClient(c.kc).create({
        apiVersion: 'rbac.authorization.k8s.io/v1',
        kind: 'RoleBinding',
        metadata: { name: 'controller-edit', namespace: other },
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'edit' },
        subjects: [{ kind: 'ServiceAccount', name: `${prefix}enbi-controller`, namespace: ns }],
      } as KubernetesObject);
      const job = fresh();
      job.metadata!.namespace = other;
      podOf(job).hostPID = true;
      const r = await until(
        'the RoleBinding to take effect',
        async () => {
          const x = await create(job, { namespace: other, dryRun: 'All' });
          return x.code === 403 && /cannot create/.test(x.message) ? undefined : x;
        },
        10_000,
      );
      assert.equal(r.code, 403, r.message);
      assert.match(r.message, /its pod may not have hostPID$/);
      podOf(job).hostPID = false;
      assert.equal((await create(job, { namespace: other, dryRun: 'All' })).code, 201);
    });
  },
);
