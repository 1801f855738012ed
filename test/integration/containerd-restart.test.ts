// enbi's gRPC client (src/containerd/grpc/) on a private containerd 1.6 and 2.x: containerd's statuses read
// (NotFound, AlreadyExists, a deadline, a cancel), and when containerd dies under it: a server stream and a unary call in flight fail as ContainerdError UNAVAILABLE (what the agent's and
// the event subscription's retries key on), calls while containerd is down fail the same way at once, and
// the same client works again once containerd is back, without being made anew.
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import {
  ContainerdClient,
  ContainerdError,
  isAlreadyExists,
  isNotFound,
  isUnavailable,
  Status,
} from '../../src/containerd/client.ts';
import { imageEventFilters } from '../../src/containerd/events.ts';
import { listImages } from '../../src/containerd/images.ts';
import { clusterSkipReason } from '../cluster/harness.ts';
import { containerd2Dir, type PrivateContainerd, startPrivateContainerd } from '../support/containerd.ts';

interface Envelope {
  topic: string;
  event: { value: { name: string } | null } | null;
}

const record = (name: string) => ({
  image: {
    name,
    target: { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: `sha256:${'1'.repeat(64)}`, size: 1 },
  },
});

/** The first error of a stream, or a failure if it delivers none within ms. */
function firstError(
  s: { on(e: 'error', l: (e: ContainerdError) => void): unknown; on(e: 'end', l: () => void): unknown },
  ms: number,
): Promise<ContainerdError> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`no error within ${ms} ms`)), ms);
    s.on('error', (e) => {
      clearTimeout(t);
      resolve(e);
    });
    s.on('end', () => reject(new Error('the stream ended cleanly')));
  });
}

/** SIGSTOP, then wait until every thread is stopped: a request sent before that could still be answered. */
async function freeze(pid: number): Promise<void> {
  process.kill(pid, 'SIGSTOP');
  const state = (tid: string): string => {
    const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
  };
  for (let i = 0; i < 500; i++) {
    if (readdirSync(`/proc/${pid}/task`).every((t) => ['T', 't'].includes(state(t)))) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`containerd (pid ${pid}) did not stop`);
}

function assertUnavailable(e: unknown, what: string): void {
  assert.ok(e instanceof ContainerdError, `${what}: ${String(e)} is not a ContainerdError`);
  assert.equal(e.code, Status.UNAVAILABLE, `${what}: code ${e.code} (${e.message})`);
  assert.ok(isUnavailable(e));
}

const flavors: { name: string; spec: () => string | undefined }[] = [
  { name: 'containerd 1.6 (Debian)', spec: () => 'debian-1.6' },
  {
    name: 'containerd 2.x',
    spec: () => {
      const d = containerd2Dir();
      return d ? `containerd-2:${d}` : undefined;
    },
  },
];

for (const flavor of flavors) {
  const spec = clusterSkipReason() ? undefined : flavor.spec();
  describe(
    `the containerd client across a containerd kill, ${flavor.name}`,
    {
      skip:
        clusterSkipReason() ||
        (spec === undefined ? 'containerd 2 binaries unavailable (test/cluster/build-containerd2.sh needs Go)' : false),
      timeout: 300_000,
    },
    () => {
      let dir: string;
      let cd: PrivateContainerd;
      let client: ContainerdClient;

      before(async () => {
        dir = mkdtempSync('/tmp/ekr-');
        cd = await startPrivateContainerd(spec!, dir);
        client = new ContainerdClient(cd.socket);
      });
      after(async () => {
        client?.close();
        await cd?.stop();
        if (dir) rmSync(dir, { recursive: true, force: true });
      });

      const kill = (): void => {
        process.kill(cd.pid()!, 'SIGKILL');
      };

      it("reads containerd's statuses: NotFound and AlreadyExists with its message, a deadline, a cancel", async () => {
        await assert.rejects(client.unary('images', 'Get', { name: 'restart.test/none:1' }), (e) => {
          assert.ok(e instanceof ContainerdError && isNotFound(e), String(e));
          assert.match(e.message, /^containerd images\.Get: .*restart\.test\/none:1.*not found/);
          return true;
        });
        await client.unary('images', 'Create', record('restart.test/twice:1'));
        await assert.rejects(client.unary('images', 'Create', record('restart.test/twice:1')), (e) =>
          isAlreadyExists(e),
        );
        await client.unary('images', 'Delete', { name: 'restart.test/twice:1' });
        const pid = cd.pid()!;
        await freeze(pid); // nothing is answered: the deadline ends the call
        try {
          const t0 = Date.now();
          await assert.rejects(
            client.unary('version', 'Version', {}, 300),
            (e) => e instanceof ContainerdError && e.code === Status.DEADLINE_EXCEEDED,
          );
          assert.ok(Date.now() - t0 < 3_000);
          const s = client.stream('events', 'Subscribe', { filters: [] });
          const cancelled = firstError(s, 5_000);
          s.cancel();
          assert.equal((await cancelled).code, Status.CANCELLED);
        } finally {
          process.kill(pid, 'SIGCONT');
        }
        assert.match((await client.version()).version, /\S/);
      });

      it('a live event stream fails UNAVAILABLE when containerd is killed; calls while it is down fail UNAVAILABLE; after the restart the same client streams again', async () => {
        const s = client.stream<Envelope>('events', 'Subscribe', { filters: imageEventFilters('k8s.io') });
        const names: string[] = [];
        s.on('data', (env) => names.push(env.event?.value?.name ?? ''));
        const failed = firstError(s, 30_000);
        await new Promise((r) => setTimeout(r, 300)); // the subscription registered
        await client.unary('images', 'Create', record('restart.test/before:1'));
        for (let i = 0; i < 50 && !names.includes('restart.test/before:1'); i++)
          await new Promise((r) => setTimeout(r, 100));
        assert.deepStrictEqual(names, ['restart.test/before:1'], 'the stream delivered events before the kill');

        kill();
        assertUnavailable(await failed, 'the event stream');

        const t0 = Date.now();
        await assert.rejects(client.version(), (e) => (assertUnavailable(e, 'a call while containerd is down'), true));
        assert.ok(Date.now() - t0 < 5_000, 'a call on a dead socket fails at once, not at its deadline');
        await assert.rejects(
          client.waitForReady(600),
          (e) => (assertUnavailable(e, 'waitForReady while containerd is down'), true),
        );

        await cd.restart();
        await client.waitForReady(10_000);
        assert.match((await client.version()).version, /^\S+$/);
        const again = client.stream<Envelope>('events', 'Subscribe', { filters: imageEventFilters('k8s.io') });
        const after: string[] = [];
        again.on('data', (env) => after.push(env.event?.value?.name ?? ''));
        again.on('error', () => undefined);
        await new Promise((r) => setTimeout(r, 300));
        await client.unary('images', 'Create', record('restart.test/after:1'));
        for (let i = 0; i < 50 && !after.includes('restart.test/after:1'); i++)
          await new Promise((r) => setTimeout(r, 100));
        again.cancel();
        assert.deepStrictEqual(after, ['restart.test/after:1'], 'the stream after the restart delivers events');
      });

      it('a unary call in flight when containerd is killed fails UNAVAILABLE, and the next call after the restart succeeds', async () => {
        await client.version(); // a session is up
        await freeze(cd.pid()!); // the request reaches the socket but is not answered
        const t0 = Date.now();
        const pending = client.unary('images', 'List', {});
        const outcome = pending.then(
          () => 'answered',
          (e: unknown) => e,
        );
        await new Promise((r) => setTimeout(r, 300));
        kill();
        const e = await outcome;
        assertUnavailable(e, 'the unary call in flight');
        assert.ok(Date.now() - t0 < 10_000, `failed after ${Date.now() - t0} ms: at the kill, not at the deadline`);

        await cd.restart();
        const names = (await listImages(client)).map((i) => i.name).sort();
        assert.deepStrictEqual(names, ['restart.test/after:1', 'restart.test/before:1']);
      });
    },
  );
}
