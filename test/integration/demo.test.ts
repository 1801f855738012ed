// `npm start`, the README's first command, run as a newcomer runs it but without a terminal (CI=true, no
// stdin): it reaches "pods Running" on its own, and the pod it names really runs the image enbi built;
// `--push` builds and runs the next revision; `--down` leaves no process, network device, mount or file.
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { CoreV1Api, CustomObjectsApi, KubeConfig } from '@kubernetes/client-node';
import { GROUP, type NixBuild, PLURAL, VERSION } from '../../src/api/nixbuild.ts';
import { clusterSkipReason } from '../cluster/harness.ts';
import { cacheDir } from '../cluster/paths.ts';
import { readState } from '../cluster/state.ts';

const ROOT = new URL('../../', import.meta.url).pathname;
const DEMO_DIR = join(cacheDir(), 'demo-test');
const RUN_DIR = '/run/enbi-demo-test';

function npmStart(args: string[], dirs = { demo: DEMO_DIR, run: RUN_DIR }): Promise<{ code: number; out: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn('npm', ['start', '--', ...args], {
      cwd: ROOT,
      env: { ...process.env, CI: 'true', ENBI_DEMO_DIR: dirs.demo, ENBI_DEMO_RUN_DIR: dirs.run },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? -1, out }));
  });
}

/** The pod line of the final report: `demo/NAME  IMAGE  on NODE  built by NixBuild NS/NAME (DIGEST)`. */
function reported(out: string): { pod: string; image: string; build: string } {
  const m =
    /pods Running after \d+ s:\n {2}demo\/(\S+) {2}(registry\.local\/hello:[0-9a-f]{7}) {2}on enbi-demo-1 {2}built by NixBuild enbi-system\/(\S+) \(sha256:[0-9a-f]{64}\)/.exec(
      out,
    );
  assert.ok(m !== null, `no final report in:\n${out}`);
  return { pod: m[1]!, image: m[2]!, build: m[3]! };
}

describe('npm start: the demo on an embedded default', { skip: clusterSkipReason(), timeout: 1_800_000 }, () => {
  let kc: KubeConfig | undefined;
  const demoKc = (): KubeConfig => {
    if (kc === undefined) {
      kc = new KubeConfig();
      kc.loadFromFile(join(DEMO_DIR, 'cluster', 'kubeconfig'));
    }
    return kc;
  };
  const check = async (r: { pod: string; image: string; build: string }) => {
    const pod = await demoKc().makeApiClient(CoreV1Api).readNamespacedPod({ name: r.pod, namespace: 'demo' });
    assert.equal(pod.status?.phase, 'Running');
    assert.equal(pod.spec?.containers[0]?.image, r.image);
    const nb = (await demoKc().makeApiClient(CustomObjectsApi).getNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      namespace: 'enbi-system',
      plural: PLURAL,
      name: r.build,
    })) as NixBuild;
    assert.equal(nb.status?.phase, 'Succeeded');
    assert.equal(nb.status?.image, r.image);
  };
  after(async () => {
    if (existsSync(DEMO_DIR)) await npmStart(['--down']);
  });

  let first: { pod: string; image: string; build: string };

  it('reaches pods Running without input, with the parts, the steps and what enbi did printed', async () => {
    const r = await npmStart([]);
    assert.equal(r.code, 0, r.out);
    for (const text of [
      'First, the parts',
      'local cluster',
      'enbi from deploy/',
      'ErrImageNeverPull (its image is not on the node: enbi builds it)',
      'NixBuild image-',
      ': Succeeded (imported registry.local/hello:',
      'npm start -- --push',
      'npm start -- --down',
    ]) {
      assert.ok(r.out.includes(text), `the output says "${text}":\n${r.out}`);
    }
    first = reported(r.out);
    await check(first);
  });

  it('--push builds the next revision and runs it', async () => {
    const r = await npmStart(['--push']);
    assert.equal(r.code, 0, r.out);
    assert.match(r.out, /webhook to the controller: 202/);
    const next = reported(r.out);
    assert.notEqual(next.image, first.image);
    assert.notEqual(next.build, first.build);
    await check(next);
  });

  it('--down leaves nothing behind: processes, network namespaces and devices, the socket directory, the files', async () => {
    const state = readState(join(DEMO_DIR, 'cluster'))!;
    const demo = JSON.parse(readFileSync(join(DEMO_DIR, 'demo.json'), 'utf8')) as { gitPid: number };
    const r = await npmStart(['--down']);
    assert.equal(r.code, 0, r.out);
    assert.match(r.out, /nothing of it runs or remains/);
    assert.ok(!existsSync(DEMO_DIR) && !existsSync(RUN_DIR), "the demo's directories are gone");
    assert.ok(
      !existsSync(`/proc/${demo.gitPid}/cmdline`) ||
        !readFileSync(`/proc/${demo.gitPid}/cmdline`, 'utf8').includes('git-serve'),
      'the Git server is gone',
    );
    const procs = readdirSync('/proc')
      .filter((p) => /^\d+$/.test(p))
      .filter((p) => {
        try {
          const cmd = readFileSync(`/proc/${p}/cmdline`, 'utf8');
          return cmd.includes(DEMO_DIR) || cmd.includes(RUN_DIR);
        } catch {
          return false;
        }
      });
    assert.deepEqual(procs, [], 'no process of the demo runs');
    assert.ok(
      !execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' }).includes(state.runId),
      'no network namespace of the demo',
    );
    assert.ok(
      !execFileSync('ip', ['-o', 'link'], { encoding: 'utf8' }).includes(state.runId),
      'no network device of the demo',
    );
    assert.ok(!readFileSync('/proc/mounts', 'utf8').includes(DEMO_DIR), "nothing mounted under the demo's directory");
    const again = await npmStart(['--down']);
    assert.equal(again.code, 0);
    assert.match(again.out, /no demo to stop/);
  });

  it('--down removes only what the demo makes: directories given that hold other files keep them', async () => {
    const demo = mkdtempSync(join(tmpdir(), 'enbi-not-a-demo-'));
    const runDir = mkdtempSync(join(tmpdir(), 'enbi-not-a-run-'));
    writeFileSync(join(demo, 'mine.txt'), 'keep');
    writeFileSync(join(runDir, 'other.sock'), '');
    try {
      const r = await npmStart(['--down'], { demo, run: runDir });
      assert.equal(r.code, 0, r.out);
      assert.ok(existsSync(join(demo, 'mine.txt')) && existsSync(join(runDir, 'other.sock')), r.out);
      assert.match(r.out, /left .*enbi-not-a-demo-.*mine\.txt/);
      assert.match(r.out, /no demo to stop/);
    } finally {
      rmSync(demo, { recursive: true, force: true });
      rmSync(runDir, { recursive: true, force: true });
    }
  });

  it('a wrong option prints the usage and exits 2', async () => {
    const r = await npmStart(['--bogus']);
    assert.equal(r.code, 2);
    assert.match(r.out, /usage: npm start/);
  });
});
