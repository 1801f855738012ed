// A real Spegel (v0.7.4, built by test/cluster/build-spegel.sh) on every node of a test cluster, run as its
// DaemonSet runs it: inside the node's network namespace, `spegel configuration` writes the node's
// `certs.d/<registry>/hosts.toml` (the node's own mirror at http://<node-ip>:5000, tags resolved too), then
// `spegel registry` serves that node's containerd content and finds peers through static bootstrap.
//
// The processes are recorded in cluster.json as `<node>/spegel`, so `down` stops them if a test dies.
// Peer ids come from keys written here before the start (Spegel's own format: an Ed25519 PKCS#8 PEM in
// `--data-dir/private.key`), so every node can be given the others' full addresses at once; the id Spegel
// logs is checked against the one computed.
import { execFile, execFileSync } from 'node:child_process';
import { createPrivateKey, createPublicKey, generateKeyPairSync } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { certsDirOf, contentDirOf } from '../cluster/containerd.ts';
import { withLock } from '../cluster/lock.ts';
import { cacheDir, hostBin } from '../cluster/paths.ts';
import { isAlive, run, startDaemon, stopProc, waitFor } from '../cluster/proc.ts';
import { readState, writeState, type ClusterState, type NodeState, type ProcRecord } from '../cluster/state.ts';

export const SPEGEL_VERSION = 'v0.7.4';
export const REGISTRY_PORT = 5000;
export const ROUTER_PORT = 5001;
export const METRICS_PORT = 9090;
const PROC = 'spegel';
const pexec = promisify(execFile);

/**
 * ENBI_SPEGEL_BIN, or the binary build-spegel.sh made; runs that script when the binary is missing (about
 * 2 min cold), so a test file run alone works.
 */
export function spegelBin(): string {
  if (process.env.ENBI_SPEGEL_BIN) return process.env.ENBI_SPEGEL_BIN;
  const p = join(cacheDir(), 'spegel', SPEGEL_VERSION, 'spegel');
  if (existsSync(p)) return p;
  const script = new URL('../cluster/build-spegel.sh', import.meta.url).pathname;
  const out =
    execFileSync('bash', [script], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] })
      .trim()
      .split('\n')
      .pop() ?? '';
  if (!existsSync(out)) throw new Error(`${script} did not leave spegel ${SPEGEL_VERSION} (said ${out})`);
  return out;
}

const B58 = '123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz';
function base58(b: Buffer): string {
  let n = BigInt(`0x${b.toString('hex') || '0'}`);
  let s = '';
  while (n > 0n) {
    s = B58[Number(n % 58n)]! + s;
    n /= 58n;
  }
  for (const byte of b) {
    if (byte !== 0) break;
    s = `1${s}`;
  }
  return s;
}

/**
 * The node's libp2p key in `dir/private.key` (created if absent, as Spegel would) and its peer id: the
 * identity multihash of the protobuf PublicKey {Type: Ed25519, Data: 32 bytes}, base58btc ("12D3KooW…").
 */
export function peerKey(dir: string): string {
  const file = join(dir, 'private.key');
  mkdirSync(dir, { recursive: true });
  if (!existsSync(file)) {
    const { privateKey } = generateKeyPairSync('ed25519');
    writeFileSync(file, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
  }
  const jwk = createPublicKey(createPrivateKey(readFileSync(file))).export({ format: 'jwk' });
  const raw = Buffer.from(jwk.x ?? '', 'base64url');
  if (jwk.crv !== 'Ed25519' || raw.length !== 32) throw new Error(`${file} is not an Ed25519 key`);
  const pub = Buffer.concat([Buffer.from([0x08, 0x01, 0x12, 0x20]), raw]);
  return base58(Buffer.concat([Buffer.from([0x00, pub.length]), pub]));
}

/** One Prometheus sample: `name{labels} value`. */
export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export function parseMetrics(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m || line.startsWith('#')) continue;
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!;
    out.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return out;
}

/** What a test asks of a Spegel's `/metrics` (names from Spegel v0.7.4's pkg/metrics and pkg/httpx). */
export interface SpegelMetrics {
  samples: Sample[];
  /** Sum of the samples of this name whose labels include these. */
  sum(name: string, labels?: Record<string, string>): number;
  /**
   * spegel_mirror_requests_total{cache="hit"}: requests this node's containerd sent to its Spegel that were
   * answered from a peer (counted on the puller's side).
   */
  mirrorHits: number;
  /** spegel_mirror_requests_total{cache="miss"}: such requests no peer could answer. */
  mirrorMisses: number;
  /**
   * Bytes of 200/206 answers of the registry (`http_response_size_bytes_sum{handler="/v2/*"}`): on a node
   * that only serves, what its peers fetched from it; on a puller, also what it relayed to its containerd.
   */
  registryBytes: number;
  /** Number of such answers (`http_response_size_bytes_count`). */
  registryResponses: number;
  /** spegel_advertised_image_tags / spegel_advertised_content_digests (gauges of what it announced). */
  advertisedTags: number;
  advertisedDigests: number;
}

export function spegelMetrics(text: string): SpegelMetrics {
  const samples = parseMetrics(text);
  const sum = (name: string, labels: Record<string, string> = {}): number =>
    samples
      .filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))
      .reduce((a, s) => a + s.value, 0);
  const ok = (suffix: string): number =>
    ['200', '206'].reduce(
      (a, code) => a + sum(`http_response_size_bytes_${suffix}`, { handler: '/v2/*', method: 'GET', code }),
      0,
    );
  return {
    samples,
    sum,
    mirrorHits: sum('spegel_mirror_requests_total', { cache: 'hit' }),
    mirrorMisses: sum('spegel_mirror_requests_total', { cache: 'miss' }),
    registryBytes: ok('sum'),
    registryResponses: ok('count'),
    advertisedTags: sum('spegel_advertised_image_tags'),
    advertisedDigests: sum('spegel_advertised_content_digests'),
  };
}

export interface SpegelNode {
  node: NodeState;
  peerId: string;
  /** The node's mirror as its hosts.toml names it: http://<node-ip>:5000. */
  registry: string;
  metricsUrl: string;
  /** containerd's registry host directory (`ctr images pull --hosts-dir`), holding Spegel's hosts.toml. */
  hostsDir: string;
  dataDir: string;
  log: string;
  /** The running process (replaced by restart()). */
  proc: ProcRecord;
}

export interface Spegel {
  nodes: SpegelNode[];
  node(name: string): SpegelNode;
  metrics(name: string): Promise<SpegelMetrics>;
  /** Resident memory of that node's Spegel (VmRSS), in bytes. */
  rss(name: string): number;
  /**
   * HEAD `/v2/<repository>/<path>?ns=<registry>` through that node's Spegel, as the node's containerd asks
   * (path: `manifests/<tag|digest>` or `blobs/<digest>`): the status and the descriptor it answered.
   */
  head(
    name: string,
    repository: string,
    path: string,
    registry?: string,
  ): Promise<{ status: number; digest?: string; mediaType?: string; size?: number }>;
  /** `ctr images pull --hosts-dir <certs.d> [--platform P] REF` inside the node's network namespace: ms it took. */
  ctrPull(name: string, ref: string, o?: { platform?: string; timeoutMs?: number }): Promise<number>;
  /** Stops that node's Spegel and starts it again (same key, same peers); resolves once all are connected. */
  restart(name: string): Promise<void>;
  /** Stops every Spegel and removes their records from cluster.json. */
  stop(): Promise<void>;
}

export interface SpegelOptions {
  /** Registries mirrored (default https://registry.local, enbi's). */
  registries?: string[];
  /** Use Spegels recorded for this cluster when all run and are ready (default true); else start afresh. */
  reuse?: boolean;
  log?: (msg: string) => void;
  timeoutMs?: number;
}

const say = (msg: string): void => void process.stderr.write(`[spegel] ${msg}\n`);
const procName = (n: NodeState): string => `${n.name}/${PROC}`;
const nsenter = (n: NodeState): string[] => [`--net=/run/netns/${n.netns}`, '--'];

/** Runs Spegel's `configuration` step in the node's namespace: writes hosts.toml for each registry. */
async function configure(bin: string, n: NodeState, registries: string[]): Promise<void> {
  await run(hostBin('nsenter'), [
    ...nsenter(n),
    bin,
    'configuration',
    '--containerd-registry-config-path',
    certsDirOf(n.dir),
    '--mirrored-registries',
    ...registries,
    '--mirror-targets',
    `http://${n.ip}:${REGISTRY_PORT}`,
    '--resolve-tags',
  ]);
}

function registryArgs(n: NodeState, all: { node: NodeState; peerId: string }[], registries: string[]): string[] {
  const peers = all
    .filter((p) => p.node.name !== n.name)
    .map((p) => `/ip4/${p.node.ip}/tcp/${ROUTER_PORT}/p2p/${p.peerId}`);
  return [
    'registry',
    '--bootstrap-kind',
    'static',
    '--static-bootstrap-peers',
    ...peers,
    '--containerd-sock',
    n.containerdSocket,
    '--containerd-namespace',
    'k8s.io',
    '--containerd-content-path',
    contentDirOf(n.dir),
    '--data-dir',
    join(n.dir, PROC),
    '--registry-addr',
    `:${REGISTRY_PORT}`,
    '--router-addr',
    `:${ROUTER_PORT}`,
    '--metrics-addr',
    `:${METRICS_PORT}`,
    '--mirrored-registries',
    ...registries,
  ];
}

async function get(url: string): Promise<{ status: number; body: string }> {
  const r = await fetch(url, { signal: AbortSignal.timeout(3_000) });
  return { status: r.status, body: await r.text() };
}

/** Ready (its /readyz) and every other node's peer id in its routing table (the debug stats page). */
async function connected(h: SpegelNode, others: SpegelNode[]): Promise<true | undefined> {
  const ready = await get(`${h.registry}/readyz`);
  if (ready.status !== 200) throw new Error(`${h.node.name}: /readyz ${ready.status}`);
  const stats = await get(`http://${h.node.ip}:${METRICS_PORT}/debug/web/stats`);
  const missing = others.filter((o) => !stats.body.includes(o.peerId)).map((o) => o.node.name);
  if (missing.length) throw new Error(`${h.node.name}: not connected to ${missing.join(', ')}`);
  if (!readFileSync(h.log, 'utf8').includes(`"id":"${h.peerId}"`))
    throw new Error(`${h.node.name}: Spegel did not log the peer id ${h.peerId}`);
  return true;
}

const sameProc =
  (a: ProcRecord) =>
  (b: ProcRecord): boolean =>
    a.pid === b.pid && a.startTime === b.startTime;

async function updateRecords(dir: string, change: (procs: ProcRecord[]) => ProcRecord[]): Promise<void> {
  await withLock(dir, async () => {
    const s = readState(dir);
    if (!s) throw new Error(`no cluster recorded in ${dir}`);
    s.procs = change(s.procs);
    writeState(s);
  });
}

interface Keyed {
  node: NodeState;
  peerId: string;
}

/** Writes the node's hosts.toml and starts its `spegel registry`, recorded in cluster.json. */
async function launch(s: ClusterState, k: Keyed, all: Keyed[], registries: string[]): Promise<ProcRecord> {
  const bin = spegelBin();
  await configure(bin, k.node, registries);
  // Spegel refuses to run inside a Kubernetes pod that is not its own image (its preflight reads this).
  const args = [
    ...nsenter(k.node),
    hostBin('env'),
    '-u',
    'KUBERNETES_SERVICE_HOST',
    bin,
    ...registryArgs(k.node, all, registries),
  ];
  const proc = startDaemon(
    procName(k.node),
    hostBin('nsenter'),
    args,
    join(s.dir, 'logs', `${k.node.name}-spegel.log`),
  );
  await updateRecords(s.dir, (procs) => [...procs, proc]);
  return proc;
}

async function waitConnected(nodes: SpegelNode[], timeoutMs: number): Promise<void> {
  await Promise.all(
    nodes.map((h) =>
      waitFor(
        `${h.node.name} Spegel ready and connected`,
        () =>
          connected(
            h,
            nodes.filter((x) => x !== h),
          ),
        { timeoutMs, intervalMs: 250, alive: () => (isAlive(h.proc) ? undefined : `Spegel exited: see ${h.log}`) },
      ),
    ),
  );
}

/**
 * Spegel on every node of a full cluster; resolves once each is ready and connected to all others.
 * Reuses the recorded Spegels when all run and are connected (so test files can share them), else stops
 * what is recorded and starts afresh.
 */
export async function startSpegel(s: ClusterState, o: SpegelOptions = {}): Promise<Spegel> {
  // One starter at a time: two test files sharing the cluster must not both start Spegel on its ports.
  return await withLock(join(s.dir, 'spegel-start'), () => startLocked(s, o));
}

async function startLocked(s: ClusterState, o: SpegelOptions): Promise<Spegel> {
  const log = o.log ?? say;
  const registries = o.registries ?? ['https://registry.local'];
  const timeoutMs = o.timeoutMs ?? 60_000;
  const keyed: Keyed[] = s.nodes.map((node) => ({ node, peerId: peerKey(join(node.dir, PROC)) }));
  const handle = (x: Keyed, proc: ProcRecord): SpegelNode => ({
    ...x,
    proc,
    log: proc.log,
    registry: `http://${x.node.ip}:${REGISTRY_PORT}`,
    metricsUrl: `http://${x.node.ip}:${METRICS_PORT}/metrics`,
    hostsDir: certsDirOf(x.node.dir),
    dataDir: join(x.node.dir, PROC),
  });
  const ctx = { s, keyed, registries, timeoutMs };
  const recorded = (readState(s.dir)?.procs ?? []).filter((p) => s.nodes.some((n) => p.name === procName(n)));
  if (o.reuse !== false && recorded.length === s.nodes.length && recorded.every(isAlive)) {
    const nodes = keyed.map((k) =>
      handle(
        k,
        recorded.find((p) => p.name === procName(k.node))!,
      ),
    );
    const ok = await Promise.all(
      nodes.map((h) =>
        connected(
          h,
          nodes.filter((x) => x !== h),
        ).catch(() => undefined),
      ),
    );
    if (ok.every(Boolean)) {
      log(`reusing Spegel on ${nodes.map((h) => h.node.name).join(', ')}`);
      return spegelHandle(ctx, nodes);
    }
  }
  for (const p of recorded) await stopProc(p);
  await updateRecords(s.dir, (procs) => procs.filter((p) => !recorded.some((r) => sameProc(r)(p))));

  const t0 = Date.now();
  const nodes: SpegelNode[] = [];
  try {
    for (const k of keyed) nodes.push(handle(k, await launch(s, k, keyed, registries)));
    await waitConnected(nodes, timeoutMs);
  } catch (e) {
    for (const h of nodes) await stopProc(h.proc);
    await updateRecords(s.dir, (procs) => procs.filter((p) => !nodes.some((h) => sameProc(h.proc)(p))));
    throw e;
  }
  log(
    `Spegel ${SPEGEL_VERSION} on ${nodes.length} nodes ready and connected in ${((Date.now() - t0) / 1000).toFixed(1)} s`,
  );
  return spegelHandle(ctx, nodes);
}

function spegelHandle(
  ctx: { s: ClusterState; keyed: Keyed[]; registries: string[]; timeoutMs: number },
  nodes: SpegelNode[],
): Spegel {
  const node = (name: string): SpegelNode => {
    const h = nodes.find((x) => x.node.name === name);
    if (!h) throw new Error(`no Spegel on ${name}`);
    return h;
  };
  return {
    nodes,
    node,
    async metrics(name) {
      const r = await get(node(name).metricsUrl);
      if (r.status !== 200) throw new Error(`${node(name).metricsUrl}: ${r.status}`);
      return spegelMetrics(r.body);
    },
    rss(name) {
      const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${node(name).proc.pid}/status`, 'utf8'));
      if (!m) throw new Error(`no VmRSS for ${name}'s Spegel`);
      return Number(m[1]) * 1024;
    },
    async head(name, repository, path, registry = 'registry.local') {
      const r = await fetch(`${node(name).registry}/v2/${repository}/${path}?ns=${registry}`, {
        method: 'HEAD',
        signal: AbortSignal.timeout(5_000),
      });
      const digest = r.headers.get('docker-content-digest') ?? undefined;
      const mediaType = r.headers.get('content-type') ?? undefined;
      const size = r.headers.get('content-length');
      return {
        status: r.status,
        ...(digest ? { digest } : {}),
        ...(mediaType ? { mediaType } : {}),
        ...(size ? { size: Number(size) } : {}),
      };
    },
    async ctrPull(name, ref, o = {}) {
      const n = node(name).node;
      const t = Date.now();
      // A pull Spegel cannot serve falls back to the registry itself, which may take long to fail: bounded.
      await pexec(
        hostBin('nsenter'),
        [
          ...nsenter(n),
          n.ctr,
          '--address',
          n.containerdSocket,
          '-n',
          'k8s.io',
          'images',
          'pull',
          '--hosts-dir',
          node(name).hostsDir,
          ...(o.platform ? ['--platform', o.platform] : []),
          ref,
        ],
        { timeout: o.timeoutMs ?? 60_000 },
      ).catch((e: { stderr?: string; message: string }) => {
        throw new Error(`ctr pull ${ref} on ${name}: ${(e.stderr || e.message).trim()}`);
      });
      return Date.now() - t;
    },
    async restart(name) {
      const h = node(name);
      await stopProc(h.proc);
      await updateRecords(ctx.s.dir, (procs) => procs.filter((p) => !sameProc(h.proc)(p)));
      h.proc = await launch(
        ctx.s,
        ctx.keyed.find((k) => k.node.name === name)!,
        ctx.keyed,
        ctx.registries,
      );
      await waitConnected(nodes, ctx.timeoutMs);
    },
    async stop() {
      for (const h of nodes) await stopProc(h.proc);
      await updateRecords(ctx.s.dir, (procs) => procs.filter((p) => !nodes.some((h) => sameProc(h.proc)(p))));
    },
  };
}
