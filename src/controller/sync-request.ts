// A standby's "the Git source was pushed: sync now" to the leader, through an object of its own: the Lease
// `<leaseName>-sync`, never the election Lease. The election Lease is renewed with a resourceVersion-guarded
// replace; anything else that writes it makes the leader's renewal conflict, and a leader that cannot renew
// gives up. So the only writers of the election Lease are the replicas electing, and a flood of pushes at a
// standby costs the leader nothing but reads.
//
//   standby  requestSync(): a merge patch of two annotations (when, by whom) on the sync Lease, created on
//            first use. Coalesced: at most one write every spacingMs; requests meanwhile join the next write
//            (a burst of any size is one write now and at most one more).
//   leader   reads the sync Lease every pollMs while it leads; a resourceVersion other than the one it saw
//            when it took the lead (or last time) is a request: one onRequested(). Reads that fail are logged
//            and never touch leadership.
import { CoordinationV1Api, type KubeConfig, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import { apiMessage, isConflict, isNotFound } from '../kube/errors.ts';
import { CONTROLLER_FIELD_MANAGER } from '../kube/field-manager.ts';
import type { Logger } from './log.ts';

export const SYNC_REQUESTED = 'enbi.hrzn.ee/sync-requested';
export const SYNC_REQUESTED_BY = 'enbi.hrzn.ee/sync-requested-by';
const PURPOSE = 'enbi.hrzn.ee/purpose';

/** The sync Lease of an election Lease (deploy/ and the chart grant exactly this name). */
export const syncLeaseName = (electionLease: string): string => `${electionLease}-sync`;

export interface SyncLeaseApi {
  /** The sync Lease's resourceVersion, or '' when it does not exist. */
  version(): Promise<string>;
  /** Stamps a request (creating the Lease when missing). */
  stamp(identity: string, at: Date): Promise<void>;
}

export function syncLeaseApi(kc: KubeConfig, namespace: string, name: string): SyncLeaseApi {
  const api = kc.makeApiClient(CoordinationV1Api);
  const annotations = (identity: string, at: Date) => ({
    [SYNC_REQUESTED]: at.toISOString(),
    [SYNC_REQUESTED_BY]: identity,
  });
  const patch = (identity: string, at: Date) =>
    api.patchNamespacedLease(
      {
        name,
        namespace,
        body: { metadata: { annotations: annotations(identity, at) } },
        fieldManager: CONTROLLER_FIELD_MANAGER,
      },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
  return {
    async version() {
      try {
        return (await api.readNamespacedLease({ name, namespace })).metadata?.resourceVersion ?? '';
      } catch (err) {
        if (isNotFound(err)) return '';
        throw err;
      }
    },
    async stamp(identity, at) {
      try {
        await patch(identity, at);
        return;
      } catch (err) {
        if (!isNotFound(err)) throw err;
      }
      try {
        await api.createNamespacedLease({
          namespace,
          body: {
            metadata: {
              name,
              namespace,
              annotations: {
                ...annotations(identity, at),
                [PURPOSE]: 'a standby replica asks the leader to sync the Git source (a push webhook); not an election',
              },
            },
          },
          fieldManager: CONTROLLER_FIELD_MANAGER,
        });
      } catch (err) {
        // Another standby created it meanwhile.
        if (!isConflict(err)) throw err;
        await patch(identity, at);
      }
    },
  };
}

/**
 * Coalesces calls of `write`: the first runs at once, later ones within spacingMs of the last start (or
 * while one runs) share one write after it. Each call resolves when a write that started after it ends;
 * failures go to onError once per write, never to the callers.
 */
export function coalesced(
  write: () => Promise<void>,
  spacingMs: number,
  onError: (err: unknown) => void,
  now: () => number = Date.now,
): () => Promise<void> {
  let chain: Promise<void> = Promise.resolve();
  let queued: Promise<void> | undefined;
  let lastStart = Number.NEGATIVE_INFINITY;
  return () => {
    if (queued !== undefined) return queued;
    const next: Promise<void> = chain.then(async () => {
      const wait = lastStart + spacingMs - now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      // From here on, a new call needs a write of its own.
      queued = undefined;
      lastStart = now();
      await write().catch(onError);
    });
    queued = next;
    chain = next;
    return next;
  };
}

export interface SyncWatcher {
  stop(): void;
}

/** The leader's side: polls the sync Lease's version, calls onRequested when it moves. */
export function watchSyncRequests(o: {
  api: SyncLeaseApi;
  pollMs: number;
  log: Logger;
  onRequested: () => void;
}): SyncWatcher {
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let seen: string | undefined;
  let failing = false;
  const poll = async () => {
    if (stopped) return;
    try {
      const v = await o.api.version();
      if (failing) o.log.info('sync requests readable again');
      failing = false;
      // The first read is the baseline (the leader syncs when it takes the lead anyway); after a failed
      // baseline the first version read counts as a request: a sync too many rather than one lost.
      if (seen !== undefined && v !== seen && !stopped) o.onRequested();
      seen = v;
    } catch (err) {
      if (!failing)
        o.log.warn(
          `cannot read the sync requests (a standby's webhooks wait for the next periodic sync): ${apiMessage(err)}`,
        );
      failing = true;
      seen ??= '\0unknown';
    }
    if (!stopped) timer = setTimeout(() => void poll(), o.pollMs);
  };
  void poll();
  return {
    stop() {
      stopped = true;
      clearTimeout(timer);
    },
  };
}
