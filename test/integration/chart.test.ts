// The Helm chart deploy/chart installs what the kustomize base deploy/ installs (docs/helm.md): with the real
// helm and kustomize (from the build cache; no cluster), both render the same objects, for the defaults and for
// settings a user changes (against the kustomize overlay that says the same); wrong values stop `helm
// template` with a message naming them; the chart's CRDs are deploy/crd/'s bytes.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cp, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parse, parseAllDocuments, stringify } from 'yaml';
import { z } from 'zod';
import { controllerConfigSchema, parseControllerConfig } from '../../src/controller/config.ts';
import { renderTools } from '../support/render-tools.ts';

const ROOT = new URL('../../', import.meta.url).pathname;
const CHART = join(ROOT, 'deploy/chart');
const tools = renderTools();

type Obj = Record<string, any>;

let scratch = '';
before(async () => {
  scratch = await mkdtemp(join(tmpdir(), 'enbi-chart-'));
});
after(async () => {
  await rm(scratch, { recursive: true, force: true });
});

function run(
  tool: 'helm' | 'kustomize',
  args: string[],
  cwd = ROOT,
): { code: number | null; stdout: string; stderr: string } {
  // helm's own cache and config in the scratch directory, not the user's.
  const env = {
    ...process.env,
    HELM_CACHE_HOME: join(scratch, 'helm-cache'),
    HELM_CONFIG_HOME: join(scratch, 'helm-config'),
    HELM_DATA_HOME: join(scratch, 'helm-data'),
  };
  const r = spawnSync(tools[tool], args, { cwd, env, encoding: 'utf8' });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

function ok(tool: 'helm' | 'kustomize', args: string[], cwd = ROOT): string {
  const r = run(tool, args, cwd);
  assert.equal(r.code, 0, `${tool} ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

const helmTemplate = (...args: string[]) => ok('helm', ['template', 'enbi', 'deploy/chart', '--include-crds', ...args]);

/** The objects of a multi-document output, keyed by apiVersion/kind/namespace/name. */
function objects(text: string): Map<string, Obj> {
  const out = new Map<string, Obj>();
  for (const doc of parseAllDocuments(text)) {
    assert.deepEqual(doc.errors, [], 'parseable YAML');
    const o = doc.toJS() as Obj | null;
    if (o === null) continue;
    const key = `${o.apiVersion}/${o.kind}/${o.metadata?.namespace ?? ''}/${o.metadata?.name}`;
    assert.ok(!out.has(key), `${key} appears once`);
    out.set(key, o);
  }
  return out;
}

// What the comparison removes, and nothing else:
// 1. the annotations with which the chart rolls pods when their configuration changes (a kustomize user gets
//    that from configMapGenerator's name suffix, which deploy/ does not use);
const CHART_ONLY_ANNOTATIONS: Record<string, string> = {
  'apps/v1/Deployment/enbi-controller': 'checksum/config',
  'apps/v1/DaemonSet/enbi-nix-daemon': 'checksum/nix-daemon',
};
// 2. the controller's config.yaml is compared as the YAML it holds (the chart renders .Values.config with
//    toYaml: sorted keys, block style, no comments);
const CONFIG_MAP = 'v1/ConfigMap/enbi-controller';
// 3. the admission policies' CEL expressions are compared with each run of whitespace as one space: kustomize
//    (go-yaml) reads the more-indented lines of deploy/agent.yaml's and deploy/build-jobs.yaml's folded
//    expressions with a blank line before them, where libyaml and the `yaml` package read one line break
//    (YAML 1.2, example 8.10); helm's output passed through kustomize reads as kustomize's own. Whitespace
//    between CEL tokens means nothing (and the policies' string literals hold no runs of it).
const POLICY = 'admissionregistration.k8s.io/v1/ValidatingAdmissionPolicy/';
const cel = (s: string) => s.replace(/\s+/g, ' ');

function normalised(rendered: Map<string, Obj>, fromHelm: boolean): Map<string, Obj> {
  const out = new Map<string, Obj>();
  for (const [key, o] of rendered) {
    const copy = structuredClone(o);
    const kindName = `${copy.apiVersion}/${copy.kind}/${copy.metadata.name}`;
    const annotation = CHART_ONLY_ANNOTATIONS[kindName];
    if (fromHelm && annotation !== undefined) {
      const annotations = copy.spec.template.metadata.annotations as Record<string, string>;
      assert.match(annotations[annotation] ?? '', /^[0-9a-f]{64}$/, `${key}: ${annotation}`);
      delete annotations[annotation];
      if (Object.keys(annotations).length === 0) delete copy.spec.template.metadata.annotations;
    }
    if (kindName === CONFIG_MAP) copy.data['config.yaml'] = parse(copy.data['config.yaml'] as string);
    if (kindName.startsWith(POLICY)) {
      for (const c of copy.spec.matchConditions as Obj[]) c.expression = cel(c.expression as string);
      for (const v of (copy.spec.variables ?? []) as Obj[]) v.expression = cel(v.expression as string);
      for (const v of copy.spec.validations as Obj[])
        for (const f of ['expression', 'messageExpression']) if (typeof v[f] === 'string') v[f] = cel(v[f] as string);
    }
    out.set(key, copy);
  }
  return out;
}

function assertSameObjects(kustomized: Map<string, Obj>, helmed: Map<string, Obj>): void {
  const k = normalised(kustomized, false);
  const h = normalised(helmed, true);
  assert.deepEqual([...h.keys()].sort(), [...k.keys()].sort(), 'the same objects');
  for (const [key, o] of k) assert.deepEqual(h.get(key), o, key);
}

const controllerConfig = (rendered: Map<string, Obj>, namespace: string) =>
  parse(rendered.get(`v1/ConfigMap/${namespace}/enbi-controller`)!.data['config.yaml'] as string) as unknown;

/** The values deploy/build-jobs.yaml's policy expects: its first variables, each a JSON literal in CEL. */
function buildJobsPolicyExpects(rendered: Map<string, Obj>): {
  builderImage: string;
  importerImage: string;
  storePath: string;
  sockets: string[];
} {
  const policy = rendered.get('admissionregistration.k8s.io/v1/ValidatingAdmissionPolicy//enbi-build-jobs')!;
  const vars = new Map((policy.spec.variables as Obj[]).map((v) => [v.name as string, v.expression as string]));
  const literal = (name: string) => JSON.parse(vars.get(name)!) as never;
  return {
    builderImage: literal('builderImage'),
    importerImage: literal('importerImage'),
    storePath: literal('storePath'),
    sockets: literal('sockets'),
  };
}

describe('deploy/chart', () => {
  it('helm lint --strict passes', () => {
    const out = ok('helm', ['lint', '--strict', 'deploy/chart']);
    assert.match(out, /1 chart\(s\) linted, 0 chart\(s\) failed/);
  });

  it('the CRDs in deploy/chart/crds are the bytes of deploy/crd/', async () => {
    const names = (await readdir(join(ROOT, 'deploy/crd'))).sort();
    assert.deepEqual((await readdir(join(CHART, 'crds'))).sort(), names);
    for (const name of names) {
      const [ours, theirs] = await Promise.all([
        readFile(join(CHART, 'crds', name)),
        readFile(join(ROOT, 'deploy/crd', name)),
      ]);
      assert.ok(
        ours.equals(theirs),
        `deploy/chart/crds/${name} differs from deploy/crd/${name}: copy it again (cp deploy/crd/*.yaml deploy/chart/crds/)`,
      );
    }
  });

  it('with the default values, helm renders the objects of kustomize build deploy/ (the Namespace aside: helm install --create-namespace makes it)', () => {
    const kustomized = objects(ok('kustomize', ['build', 'deploy']));
    const helmed = objects(helmTemplate('--namespace', 'enbi-system'));
    // The one object the chart leaves out by default: a chart may not render the namespace that
    // `helm install --create-namespace` creates (helm refuses to adopt it). namespace.create renders it.
    const NAMESPACE = 'v1/Namespace//enbi-system';
    assert.ok(kustomized.has(NAMESPACE) && !helmed.has(NAMESPACE));
    const withoutNamespace = new Map([...kustomized].filter(([key]) => key !== NAMESPACE));
    assertSameObjects(withoutNamespace, helmed);
    // namespace.create=true: the Namespace too, with deploy/'s Pod Security labels.
    assertSameObjects(
      kustomized,
      objects(helmTemplate('--namespace', 'enbi-system', '--set', 'namespace.create=true')),
    );
    // The controller accepts the configuration the chart writes.
    const cfg = parseControllerConfig(controllerConfig(helmed, 'enbi-system'));
    assert.equal(cfg.namespace, 'enbi-system');
  });

  it('other settings: helm renders what a kustomize overlay of deploy/ with the same settings renders (k3s, per-node, own images and tag, webhook secret, ServiceMonitor)', async () => {
    const values = {
      image: { repository: 'registry.example.org/team/enbi', tag: '0.2.0-rc.1', pullPolicy: 'Always' },
      builderImage: { repository: 'registry.example.org/team/enbi-builder', tag: '0.2.0-rc.1' },
      config: {
        source: {
          url: 'https://git.example.org/team/cluster.git',
          ref: 'production',
          path: 'clusters/k3s',
          intervalSeconds: 300,
        },
        allowedImages: ['registry.local/team/'],
        allowedFlakes: ['github:team', 'https://git.example.org/team/'],
        mode: 'per-node',
        cache: { hostPath: '/data/enbi/nix' },
        builderNodeSelector: { 'enbi.example.org/builder': 'true' },
        builderTolerations: [{ key: 'dedicated', operator: 'Equal', value: 'builds', effect: 'NoSchedule' }],
        leaderElection: { enabled: false },
        listen: { port: 9090 },
      },
      webhook: { secret: 'an-hmac-secret' },
      controller: {
        replicas: 1,
        resources: { requests: { cpu: '100m', memory: '256Mi' }, limits: { memory: '1Gi' } },
        nodeSelector: { 'kubernetes.io/os': 'linux' },
      },
      agent: {
        containerdSocketDir: '/run/k3s/containerd',
        nodeSelector: { 'kubernetes.io/os': 'linux' },
        tolerations: [{ key: 'dedicated', operator: 'Exists' }],
      },
      nixDaemon: {
        extraConfig: 'extra-platforms = aarch64-linux\nmax-jobs = 2\n',
        resources: { requests: { cpu: '500m', memory: '1Gi' }, limits: { memory: '16Gi' } },
        // Where builds may land (builderNodeSelector, builderTolerations), and only there.
        nodeSelector: { 'kubernetes.io/os': 'linux', 'enbi.example.org/builder': 'true' },
        tolerations: [{ key: 'dedicated', operator: 'Equal', value: 'builds', effect: 'NoSchedule' }],
      },
      metrics: { serviceMonitor: { enabled: true, labels: { release: 'kube-prometheus-stack' }, interval: '30s' } },
      namespace: { create: true },
    };
    const valuesFile = join(scratch, 'k3s-values.yaml');
    await writeFile(valuesFile, stringify(values));
    assert.match(ok('helm', ['lint', '--strict', 'deploy/chart', '-f', valuesFile]), /0 chart\(s\) failed/);
    const helmed = objects(helmTemplate('--namespace', 'enbi', '-f', valuesFile));

    // What a kustomize user writes for the same: deploy/ as a base, images:, a generated Secret, the
    // ServiceMonitor as a resource, and patches (JSON patches where a strategic merge would add to a list
    // instead of changing an entry, the mount path and the container port being those lists' merge keys, or
    // would move the entry it changes to the front: the volumes).
    const overlay = await mkdtemp(join(scratch, 'overlay-'));
    const deployNixConf = objects(ok('kustomize', ['build', 'deploy'])).get('v1/ConfigMap/enbi-system/enbi-nix-daemon')!
      .data['nix.conf'] as string;
    const files: Record<string, string> = {
      'kustomization.yaml': `
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
namespace: enbi
resources:
  - ${relative(overlay, join(ROOT, 'deploy'))}
  - servicemonitor.yaml
images:
  - { name: ghcr.io/hrzn/enbi, newName: registry.example.org/team/enbi, newTag: 0.2.0-rc.1 }
  - { name: ghcr.io/hrzn/enbi-builder, newName: registry.example.org/team/enbi-builder, newTag: 0.2.0-rc.1 }
secretGenerator:
  - name: enbi-webhook
    literals: [secret=an-hmac-secret]
    options: { disableNameSuffixHash: true }
patches:
  - path: config.yaml
  - path: controller.yaml
  - path: agent.yaml
  - path: nix-daemon.yaml
  - target: { kind: Deployment, name: enbi-controller }
    patch: |
      - { op: replace, path: /spec/template/spec/containers/0/ports/0/containerPort, value: 9090 }
  - target: { kind: DaemonSet, name: enbi-agent }
    patch: |
      - { op: replace, path: /spec/template/spec/containers/0/volumeMounts/0/mountPath, value: /run/k3s/containerd }
      - { op: replace, path: /spec/template/spec/volumes/0/hostPath/path, value: /run/k3s/containerd }
  - target: { kind: DaemonSet, name: enbi-nix-daemon }
    patch: |
      - { op: replace, path: /spec/template/spec/volumes/0/hostPath/path, value: /data/enbi/nix }
  - target: { kind: ValidatingAdmissionPolicy, name: enbi-build-jobs }
    patch: |
      - { op: test, path: /spec/variables/0/name, value: builderImage }
      - { op: replace, path: /spec/variables/0/expression, value: '"registry.example.org/team/enbi-builder:0.2.0-rc.1"' }
      - { op: test, path: /spec/variables/1/name, value: importerImage }
      - { op: replace, path: /spec/variables/1/expression, value: '"registry.example.org/team/enbi:0.2.0-rc.1"' }
      - { op: test, path: /spec/variables/2/name, value: storePath }
      - { op: replace, path: /spec/variables/2/expression, value: '"/data/enbi/nix"' }
`,
      'config.yaml':
        stringify({
          apiVersion: 'v1',
          kind: 'ConfigMap',
          metadata: { name: 'enbi-controller', namespace: 'enbi-system' },
          data: {
            'config.yaml': `source:
  url: https://git.example.org/team/cluster.git
  ref: production
  path: clusters/k3s
  intervalSeconds: 300
namespace: enbi
allowedImages: [registry.local/team/]
allowedFlakes: [github:team, https://git.example.org/team/]
mode: per-node
builderImage: registry.example.org/team/enbi-builder:0.2.0-rc.1
importerImage: registry.example.org/team/enbi:0.2.0-rc.1
cache: { hostPath: /data/enbi/nix }
builderNodeSelector: { enbi.example.org/builder: "true" }
builderTolerations: [{ key: dedicated, operator: Equal, value: builds, effect: NoSchedule }]
leaderElection: { enabled: false, leaseSeconds: 15, renewSeconds: 5 }
listen: { port: 9090 }
webhook:
  secretFile: /etc/enbi/webhook/secret
  listen: { port: 8081 }
`,
          },
        }) +
        `---
apiVersion: v1
kind: ConfigMap
metadata: { name: enbi-nix-daemon, namespace: enbi-system }
data:
  nix.conf: ${JSON.stringify(`${deployNixConf}extra-platforms = aarch64-linux\nmax-jobs = 2\n`)}
`,
      'controller.yaml': `
apiVersion: apps/v1
kind: Deployment
metadata: { name: enbi-controller, namespace: enbi-system }
spec:
  replicas: 1
  template:
    metadata:
      annotations: { prometheus.io/port: "9090" }
    spec:
      nodeSelector: { kubernetes.io/os: linux }
      containers:
        - name: controller
          imagePullPolicy: Always
          resources:
            requests: { cpu: 100m, memory: 256Mi }
            limits: { memory: 1Gi }
---
apiVersion: v1
kind: Service
metadata:
  name: enbi-controller
  namespace: enbi-system
  labels: { app.kubernetes.io/name: enbi, app.kubernetes.io/component: controller }
`,
      'agent.yaml': `
apiVersion: apps/v1
kind: DaemonSet
metadata: { name: enbi-agent, namespace: enbi-system }
spec:
  template:
    spec:
      nodeSelector: { kubernetes.io/os: linux }
      tolerations: [{ key: dedicated, operator: Exists }]
      containers:
        - name: agent
          imagePullPolicy: Always
`,
      'nix-daemon.yaml': `
apiVersion: apps/v1
kind: DaemonSet
metadata: { name: enbi-nix-daemon, namespace: enbi-system }
spec:
  template:
    spec:
      nodeSelector: { kubernetes.io/os: linux, enbi.example.org/builder: "true" }
      tolerations: [{ key: dedicated, operator: Equal, value: builds, effect: NoSchedule }]
      containers:
        - name: nix-daemon
          resources:
            requests: { cpu: 500m, memory: 1Gi }
            limits: { memory: 16Gi }
`,
      'servicemonitor.yaml': `
apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata:
  name: enbi-controller
  labels: { app.kubernetes.io/name: enbi, app.kubernetes.io/component: controller, release: kube-prometheus-stack }
spec:
  selector:
    matchLabels: { app.kubernetes.io/name: enbi, app.kubernetes.io/component: controller }
  endpoints:
    - { port: http, path: /metrics, interval: 30s }
`,
    };
    for (const [name, text] of Object.entries(files)) await writeFile(join(overlay, name), text);
    const kustomized = objects(ok('kustomize', ['build', overlay]));
    // kustomize's `namespace:` also stamps the admission policy and its binding, which it does not know as
    // cluster-scoped (the API server has no namespace for them): the one difference the overlay makes, undone.
    for (const [key, o] of [...kustomized]) {
      if (o.kind !== 'ValidatingAdmissionPolicy' && o.kind !== 'ValidatingAdmissionPolicyBinding') continue;
      assert.equal(o.metadata.namespace, 'enbi');
      delete o.metadata.namespace;
      kustomized.delete(key);
      kustomized.set(key.replace('/enbi/', '//'), o);
    }
    assertSameObjects(kustomized, helmed);

    const cfg = parseControllerConfig(controllerConfig(helmed, 'enbi'));
    assert.equal(cfg.mode, 'per-node');
    assert.equal(cfg.namespace, 'enbi');
    // The Nix daemon's store is the controller's cache.hostPath, by construction.
    const daemon = helmed.get('apps/v1/DaemonSet/enbi/enbi-nix-daemon')!;
    assert.equal(
      daemon.spec.template.spec.volumes.find((v: Obj) => v.name === 'nix-store').hostPath.path,
      cfg.cache.hostPath,
    );
    // The build-Job policy expects what the controller's config names (deploy/build-jobs.yaml).
    assert.deepEqual(buildJobsPolicyExpects(helmed), {
      builderImage: cfg.builderImage,
      importerImage: cfg.importerImage,
      storePath: cfg.cache.hostPath,
      sockets: [
        '/run/containerd/containerd.sock',
        '/run/k3s/containerd/containerd.sock',
        '/run/k0s/containerd.sock',
        '/var/snap/microk8s/common/run/containerd.sock',
      ],
    });
    assert.equal(
      Buffer.from(helmed.get('v1/Secret/enbi/enbi-webhook')!.data.secret as string, 'base64').toString(),
      'an-hmac-secret',
    );
  });

  it('an existing webhook Secret, containerdSocket, and a renamed Lease: what the pods and the Role name follow', () => {
    const helmed = objects(
      helmTemplate(
        '--namespace',
        'enbi-system',
        '--set',
        'webhook.existingSecret=git-hook',
        '--set',
        'config.containerdSocket=/run/k0s/containerd.sock',
        '--set',
        'agent.containerdSocketDir=/run/k0s',
        '--set',
        'config.leaderElection.leaseName=enbi-lead',
      ),
    );
    assert.ok(![...helmed.keys()].some((k) => k.startsWith('v1/Secret/')), 'no Secret written');
    const pod = helmed.get('apps/v1/Deployment/enbi-system/enbi-controller')!.spec.template.spec;
    assert.deepEqual(
      pod.volumes.find((v: Obj) => v.name === 'webhook'),
      { name: 'webhook', secret: { secretName: 'git-hook', optional: true } },
    );
    const agent = helmed.get('apps/v1/DaemonSet/enbi-system/enbi-agent')!.spec.template.spec.containers[0];
    assert.deepEqual(agent.args, ['agent', '--node', '$(NODE_NAME)', '--socket', '/run/k0s/containerd.sock']);
    const role = helmed.get('rbac.authorization.k8s.io/v1/Role/enbi-system/enbi-controller')!;
    assert.deepEqual(
      role.rules.filter((r: Obj) => r.resourceNames !== undefined).map((r: Obj) => [r.resourceNames, r.verbs]),
      [
        [['enbi-lead'], ['get', 'update']],
        [['enbi-lead-sync'], ['get', 'patch']],
      ],
    );
    assert.equal(parseControllerConfig(controllerConfig(helmed, 'enbi-system')).leaderElection.leaseName, 'enbi-lead');
    // Build Jobs may mount the configured socket, besides where distributions put it.
    assert.ok(buildJobsPolicyExpects(helmed).sockets.includes('/run/k0s/containerd.sock'));
    assert.equal(buildJobsPolicyExpects(helmed).sockets.length, 4, 'a known socket is listed once');
  });

  it('wrong values stop helm template (and helm lint) with a message that names them', async () => {
    const emptyAllowedImages = join(scratch, 'empty-allowed-images.yaml');
    await writeFile(emptyAllowedImages, 'config: { allowedImages: [] }\n');
    const cases: [string[], RegExp][] = [
      [['--set', 'config.mode=fast'], /at '\/config\/mode': value must be one of 'spegel', 'per-node'/],
      [['--set', 'config.allowedImages=null'], /at '\/config': missing property 'allowedImages'/],
      [['--set', 'config.allowedFlakes=null'], /at '\/config': missing property 'allowedFlakes'/],
      [['-f', emptyAllowedImages], /at '\/config\/allowedImages': minItems: got 0, want 1/],
      [
        ['--set', 'config.allowedImages={registry.local}'],
        /at '\/config\/allowedImages\/0': 'registry.local' does not match pattern '\/\$'/,
      ],
      [['--set', 'config.maxAtempts=3'], /at '\/config': additional properties 'maxAtempts' not allowed/],
      [
        ['--set', 'agent.containerdSocketDir=run/k3s/containerd'],
        /at '\/agent\/containerdSocketDir': 'run\/k3s\/containerd' does not match pattern/,
      ],
      [
        ['--set', 'config.webhook.secretFile=/secret'],
        /at '\/config\/webhook\/secretFile': value must be '\/etc\/enbi\/webhook\/secret'/,
      ],
      [
        ['--set', 'config.namespace=elsewhere'],
        /config\.namespace is set by the chart: install into the release namespace instead/,
      ],
      [
        ['--set', 'config.builderImage=b:1'],
        /config\.builderImage is set by the chart: set builderImage\.repository and builderImage\.tag instead/,
      ],
      [
        ['--set', 'webhook.secret=a', '--set', 'webhook.existingSecret=b'],
        /webhook: set either webhook\.secret .* or webhook\.existingSecret .*, not both/,
      ],
      [
        ['--set', 'webhook.secret=a', '--set', 'config.webhook.secretFile=null'],
        /webhook: a secret is given but config\.webhook\.secretFile is unset/,
      ],
      [
        ['--set', 'config.containerdSocket=/run/k3s/containerd/containerd.sock'],
        /config\.containerdSocket \/run\/k3s\/containerd\/containerd\.sock is not inside agent\.containerdSocketDir \/run\/containerd/,
      ],
      [
        ['--kube-version', '1.29.0'],
        /chart requires kubeVersion: >=1\.30\.0-0 which is incompatible with Kubernetes v1\.29\.0/,
      ],
    ];
    for (const [args, message] of cases) {
      const r = run('helm', ['template', 'enbi', 'deploy/chart', '--namespace', 'enbi-system', ...args]);
      assert.notEqual(r.code, 0, `${args.join(' ')} is refused`);
      assert.match(r.stderr, message, args.join(' '));
    }
    // helm lint validates the schema too (helm install and upgrade as well).
    const lint = run('helm', ['lint', '--strict', 'deploy/chart', '--set', 'config.mode=fast']);
    assert.notEqual(lint.code, 0);
    assert.match(lint.stdout + lint.stderr, /value must be one of 'spegel', 'per-node'/);
  });

  // docs/helm.md: "an unknown key anywhere" is refused. The Kubernetes-shaped values (ResourceRequirements,
  // Toleration, EnvVar, Volume, VolumeMount) are checked with their real fields, so a typo in any of them stops
  // helm with the key named instead of rendering a pod that silently lacks the setting.
  it('a typo in resources, tolerations, env, extraVolumes or extraVolumeMounts is refused with the key named', async () => {
    const cases: [string, RegExp][] = [];
    for (const part of ['controller', 'agent', 'nixDaemon']) {
      cases.push(
        [
          `${part}: { resources: { limit: { memory: 1Gi } } }`,
          new RegExp(`at '/${part}/resources': additional properties 'limit' not allowed`),
        ],
        [
          `${part}: { resources: { requests: { cpu: lots } } }`,
          new RegExp(`at '/${part}/resources/requests/cpu': 'lots' does not match pattern`),
        ],
        [
          `${part}: { resources: { claims: [{ nmae: gpu }] } }`,
          new RegExp(
            `at '/${part}/resources/claims/0': (missing property 'name'|additional properties 'nmae' not allowed)`,
          ),
        ],
        [
          `${part}: { tolerations: [{ key: a, efect: NoSchedule }] }`,
          new RegExp(`at '/${part}/tolerations/0': additional properties 'efect' not allowed`),
        ],
        [
          `${part}: { tolerations: [{ operator: exists }] }`,
          new RegExp(`at '/${part}/tolerations/0/operator': value must be one of '', 'Exists', 'Equal'`),
        ],
      );
    }
    cases.push(
      [
        'controller: { env: [{ name: A, valu: b }] }',
        /at '\/controller\/env\/0': additional properties 'valu' not allowed/,
      ],
      [
        'controller: { env: [{ nmae: A, value: b }] }',
        /at '\/controller\/env\/0': (missing property 'name'|additional properties 'nmae' not allowed)/,
      ],
      [
        'controller: { env: [{ name: A, valueFrom: { secretKeyref: { name: s, key: k } } }] }',
        /at '\/controller\/env\/0\/valueFrom': additional properties 'secretKeyref' not allowed/,
      ],
      [
        'controller: { env: [{ name: A, valueFrom: { secretKeyRef: { nam: s, key: k } } }] }',
        /at '\/controller\/env\/0\/valueFrom\/secretKeyRef': additional properties 'nam' not allowed/,
      ],
      [
        'controller: { env: [{ name: A, value: b, valueFrom: { secretKeyRef: { name: s, key: k } } }] }',
        /at '\/controller\/env\/0\/value': value must be ''/,
      ],
      [
        'controller: { extraVolumes: [{ name: v, secrt: { secretName: s } }] }',
        /at '\/controller\/extraVolumes\/0': additional properties 'secrt' not allowed/,
      ],
      [
        'controller: { extraVolumeMounts: [{ name: v, mountPath: /v, readonly: true }] }',
        /at '\/controller\/extraVolumeMounts\/0': additional properties 'readonly' not allowed/,
      ],
    );
    for (const [i, [values, message]] of cases.entries()) {
      const file = join(scratch, `typo-${i}.yaml`);
      await writeFile(file, `${values}\n`);
      const r = run('helm', ['template', 'enbi', 'deploy/chart', '--namespace', 'enbi-system', '-f', file]);
      assert.notEqual(r.code, 0, `${values} is refused`);
      assert.match(r.stderr, message, values);
    }
    // helm lint (and so install and upgrade) refuses it too.
    const lint = run('helm', ['lint', '--strict', 'deploy/chart', '--set', 'controller.resources.limit.memory=1Gi']);
    assert.notEqual(lint.code, 0);
    assert.match(lint.stdout + lint.stderr, /at '\/controller\/resources': additional properties 'limit' not allowed/);
  });

  it("the values users set render as given: docs/helm.md's example, values.yaml, and every field of the Kubernetes shapes", async () => {
    // docs/helm.md's k3s example, as printed there.
    const doc = await readFile(join(ROOT, 'docs/helm.md'), 'utf8');
    const example = /```yaml\n(# my-values\.yaml\n[\s\S]*?)```/.exec(doc)?.[1];
    assert.ok(example !== undefined, "docs/helm.md's my-values.yaml example");
    const exampleFile = join(scratch, 'docs-example.yaml');
    await writeFile(exampleFile, example);
    const fromDocs = objects(helmTemplate('--namespace', 'enbi-system', '-f', exampleFile));
    assert.equal(
      fromDocs.get('apps/v1/DaemonSet/enbi-system/enbi-agent')!.spec.template.spec.volumes[0].hostPath.path,
      '/run/k3s/containerd',
    );
    // values.yaml given explicitly renders what the defaults render.
    assert.deepEqual(
      objects(helmTemplate('--namespace', 'enbi-system', '-f', join(CHART, 'values.yaml'))),
      objects(helmTemplate('--namespace', 'enbi-system')),
    );
    // Every field the schema names, set at once: each reaches the pod unchanged.
    const resources = {
      requests: { cpu: 0.5, memory: '128Mi', 'ephemeral-storage': '1G', 'hugepages-2Mi': '0' },
      limits: { cpu: 2, memory: '1.5Gi', 'nvidia.com/gpu': 1 },
      claims: [{ name: 'gpu', request: 'one' }],
    };
    const tolerations = [
      { operator: 'Exists' },
      { key: 'dedicated', operator: 'Equal', value: 'enbi', effect: 'NoSchedule' },
      { key: 'node.kubernetes.io/unreachable', operator: 'Exists', effect: 'NoExecute', tolerationSeconds: 30 },
      { key: 'spot', operator: '', value: 'true', effect: '' },
    ];
    const env = [
      { name: 'ENBI_GIT_USERNAME', valueFrom: { secretKeyRef: { name: 'git', key: 'username' } } },
      { name: 'ENBI_GIT_PASSWORD', valueFrom: { secretKeyRef: { name: 'git', key: 'password', optional: false } } },
      { name: 'FROM_MAP', valueFrom: { configMapKeyRef: { name: 'm', key: 'k', optional: true } } },
      { name: 'NODE', valueFrom: { fieldRef: { apiVersion: 'v1', fieldPath: 'spec.nodeName' } } },
      {
        name: 'MEM',
        valueFrom: { resourceFieldRef: { containerName: 'controller', resource: 'limits.memory', divisor: '1Mi' } },
      },
      { name: 'PLAIN', value: 'x' },
      { name: 'EMPTY_WITH_SOURCE', value: '', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } },
    ];
    const extraVolumes = [
      { name: 'git-ca', configMap: { name: 'ca', items: [{ key: 'ca.crt', path: 'ca.crt' }] } },
      { name: 'ssh', secret: { secretName: 'ssh', defaultMode: 0o400 } },
      { name: 'scratch', emptyDir: { sizeLimit: '1Gi' } },
    ];
    const extraVolumeMounts = [
      { name: 'git-ca', mountPath: '/etc/ssl/git', readOnly: true, recursiveReadOnly: 'IfPossible' },
      { name: 'ssh', mountPath: '/home/enbi/.ssh', subPath: 'keys', mountPropagation: 'None' },
      { name: 'scratch', mountPath: '/scratch', subPathExpr: '$(NODE)' },
    ];
    const file = join(scratch, 'kubernetes-shapes.yaml');
    await writeFile(
      file,
      stringify({
        controller: { resources, tolerations, env, extraVolumes, extraVolumeMounts },
        agent: { resources, tolerations },
        nixDaemon: { resources, tolerations },
      }),
    );
    const rendered = objects(helmTemplate('--namespace', 'enbi-system', '-f', file));
    const pod = (kind: string, name: string) =>
      rendered.get(`apps/v1/${kind}/enbi-system/${name}`)!.spec.template.spec as Obj;
    for (const [kind, name] of [
      ['Deployment', 'enbi-controller'],
      ['DaemonSet', 'enbi-agent'],
      ['DaemonSet', 'enbi-nix-daemon'],
    ] as const) {
      assert.deepEqual(pod(kind, name).containers[0].resources, resources, `${name}: resources`);
      assert.deepEqual(pod(kind, name).tolerations, tolerations, `${name}: tolerations`);
    }
    const controller = pod('Deployment', 'enbi-controller');
    assert.deepEqual(
      (controller.containers[0].env as Obj[]).filter((e) => e.name !== 'NODE_OPTIONS'),
      env,
      'controller: env',
    );
    assert.deepEqual(controller.volumes.slice(-extraVolumes.length), extraVolumes, 'controller: extraVolumes');
    assert.deepEqual(
      controller.containers[0].volumeMounts.slice(-extraVolumeMounts.length),
      extraVolumeMounts,
      'controller: extraVolumeMounts',
    );
  });

  // `global` is Helm's: a parent chart's globals are copied into every subchart's values, so the schema leaves
  // it open (refusing it would break enbi as a dependency); enbi reads nothing from it.
  it("as a subchart: a parent chart's globals render, and a typo under enbi is still refused", async () => {
    const parent = join(scratch, 'platform');
    await cp(CHART, join(parent, 'charts', 'enbi'), { recursive: true });
    await writeFile(
      join(parent, 'Chart.yaml'),
      'apiVersion: v2\nname: platform\nversion: 0.0.1\ndependencies:\n  - name: enbi\n    version: 0.1.0\n',
    );
    await writeFile(join(parent, 'values.yaml'), 'global:\n  imageRegistry: registry.local\n  storageClass: fast\n');
    const alone = normalised(objects(helmTemplate('--namespace', 'enbi-system')), true);
    const asDependency = objects(
      ok('helm', ['template', 'enbi', parent, '--namespace', 'enbi-system', '--include-crds']),
    );
    assert.deepEqual(normalised(asDependency, true), alone, 'the same objects as the chart alone');
    const typo = run('helm', ['template', 'enbi', parent, '--set', 'enbi.controller.resources.limit.memory=1Gi']);
    assert.notEqual(typo.code, 0);
    assert.match(typo.stderr, /at '\/controller\/resources': additional properties 'limit' not allowed/);
  });

  it('values.schema.json knows every setting of the controller configuration, with its choices (src/controller/config.ts)', async () => {
    const ours = (JSON.parse(await readFile(join(CHART, 'values.schema.json'), 'utf8')) as Obj).properties
      .config as Obj;
    const theirs = z.toJSONSchema(controllerConfigSchema, { io: 'input' }) as Obj;
    const compare = (a: Obj, b: Obj, path: string): void => {
      assert.deepEqual(
        Object.keys(a.properties ?? {}).sort(),
        Object.keys(b.properties ?? {}).sort(),
        `settings under ${path || 'the top'}`,
      );
      for (const [key, sub] of Object.entries(b.properties ?? {}) as [string, Obj][]) {
        const mine = (a.properties as Obj)[key] as Obj;
        if (sub.enum !== undefined) assert.deepEqual(mine.enum, sub.enum, `${path}${key}: choices`);
        if (sub.minimum !== undefined) assert.equal(mine.minimum, sub.minimum, `${path}${key}: minimum`);
        if (sub.type === 'object' && sub.properties !== undefined) compare(mine, sub, `${path}${key}.`);
        if (sub.type === 'array' && sub.items?.properties !== undefined)
          compare(mine.items as Obj, sub.items as Obj, `${path}${key}[].`);
      }
    };
    compare(ours, theirs, '');
  });
});
