// Leader election on a coordination.k8s.io Lease, as client-go's leaderelection does it: the holder renews
// the Lease every renewSeconds; another replica takes it over once it has seen no renewal for leaseSeconds
// (measured on its own clock from when it last saw the record change, so clocks need not agree). Writes go
// through resourceVersion, so two replicas can never both win. A leader whose renewal has not succeeded
// within leaseSeconds − renewSeconds of the last one's start gives up, by a timer (the process exits and
// restarts as a standby), before anyone else may take over; each request is bounded by renewSeconds, and
// writeRefusal() fences the controller's writes by the same window (kube/fenced.ts).
//
// Only the replicas electing write the Lease. A standby that receives a Git push webhook tells the leader
// through another object, the Lease `<name>-sync` (sync-request.ts): anything else writing the election
// Lease would make the leader's guarded renewal conflict, and a flood of it would make the leader give up.
import { CoordinationV1Api, type KubeConfig, type V1Lease } from '@kubernetes/client-node';
import { within } from '../async/within.ts';
import { apiMessage, isConflict, isNotFound } from '../kube/errors.ts';
import { CONTROLLER_FIELD_MANAGER } from '../kube/field-manager.ts';
import type { Logger } from './log.ts';
import {
  coalesced,
  type SyncLeaseApi,
  syncLeaseApi,
  syncLeaseName,
  type SyncWatcher,
  watchSyncRequests,
} from './sync-request.ts';

export interface LeaderElectionOptions {
  kc: KubeConfig;
  namespace: string;
  name: string;
  identity: string;
  leaseSeconds: number;
  renewSeconds: number;
  retrySeconds: number;
  log: Logger;
  /** Called once this replica holds the Lease. */
  onStartedLeading: () => void;
  /** Called once when this replica lost (or gave up) the Lease after leading. */
  onStoppedLeading: () => void;
  /** The leader: a standby asked for a source sync (a webhook it received). */
  onSyncRequested?: () => void;
  /** A standby's sync requests: at most one write this often (default 1 s). */
  syncSpacingMs?: number;
  /** How often the leader reads the sync requests (default renewSeconds). */
  syncPollMs?: number;
  /** The sync Lease (default: sync-request.ts's on the real API; tests). */
  syncApi?: SyncLeaseApi;
}

export interface LeaderElection {
  isLeader(): boolean;
  /**
   * Why this replica may not write now, or undefined while it may: it leads, and its last renewal began
   * less than leaseSeconds − renewSeconds ago. Another replica may take over leaseSeconds after it saw that
   * renewal land (which was after it began); renewSeconds is left for a write already on its way. Checked
   * before every write (kube/fenced.ts), so a leader that was paused past its lease writes nothing before
   * its election loop notices and gives up.
   */
  writeRefusal(): string | undefined;
  /** The current holder as last seen. */
  holder(): string | undefined;
  /** Standby: ask the leader to sync the source now (coalesced; resolves when a write after the call ended; never rejects: failures are logged). */
  requestSync(): Promise<void>;
  /** Stops; a leader releases the Lease so that a standby takes over at once (unless `release` is false: a crash). */
  stop(release?: boolean): Promise<void>;
}

const MICRO = (d: Date) => d.toISOString().replace(/Z$/, '000Z');

export function startLeaderElection(o: LeaderElectionOptions): LeaderElection {
  const api = o.kc.makeApiClient(CoordinationV1Api);
  let leading = false;
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let lastRenew = 0;
  // When the last successful acquire-or-renew began (its request may have landed any time after).
  let renewBegan = 0;
  // What this replica last saw of the record, and when (its own clock).
  let seen: { key: string; at: number; holder?: string } = { key: '', at: 0 };
  const syncApi = o.syncApi ?? syncLeaseApi(o.kc, o.namespace, syncLeaseName(o.name));
  let watcher: SyncWatcher | undefined;
  const requestSync = coalesced(
    () => syncApi.stamp(o.identity, new Date()),
    o.syncSpacingMs ?? 1_000,
    (err) =>
      o.log.warn(
        `could not forward a webhook to the leader (lease ${o.namespace}/${syncLeaseName(o.name)}): ${apiMessage(err)}`,
      ),
  );

  const observe = (lease: V1Lease) => {
    const key = `${lease.spec?.holderIdentity ?? ''}@${String(lease.spec?.renewTime ?? '')}`;
    if (key !== seen.key)
      seen = { key, at: Date.now(), ...(lease.spec?.holderIdentity ? { holder: lease.spec.holderIdentity } : {}) };
  };

  /** One acquire-or-renew; a conflict (a racing replica) is read again, up to three times. */
  async function attempt(): Promise<boolean> {
    for (let i = 0; i < 3; i++) {
      const r = await attemptOnce();
      if (r !== 'conflict') return r;
    }
    return false;
  }

  async function attemptOnce(): Promise<boolean | 'conflict'> {
    const now = new Date();
    let lease: V1Lease;
    try {
      lease = await api.readNamespacedLease({ name: o.name, namespace: o.namespace });
    } catch (err) {
      if (!isNotFound(err)) throw err;
      try {
        await api.createNamespacedLease({
          namespace: o.namespace,
          body: {
            metadata: { name: o.name, namespace: o.namespace },
            spec: {
              holderIdentity: o.identity,
              leaseDurationSeconds: o.leaseSeconds,
              acquireTime: MICRO(now) as never,
              renewTime: MICRO(now) as never,
              leaseTransitions: 0,
            },
          },
          fieldManager: CONTROLLER_FIELD_MANAGER,
        });
      } catch (e) {
        if (isConflict(e)) return 'conflict';
        throw e;
      }
      seen = { key: `${o.identity}@new`, at: Date.now(), holder: o.identity };
      return true;
    }
    observe(lease);
    const holder = lease.spec?.holderIdentity ?? '';
    const mine = holder === o.identity;
    const expired = holder === '' || Date.now() - seen.at > (lease.spec?.leaseDurationSeconds ?? o.leaseSeconds) * 1000;
    if (!mine && !expired) return false;
    // MicroTime fields: the API server refuses the milliseconds-only form a Date serialises to.
    const spec = {
      ...lease.spec,
      ...(lease.spec?.acquireTime !== undefined
        ? { acquireTime: MICRO(new Date(lease.spec.acquireTime)) as never }
        : {}),
      holderIdentity: o.identity,
      leaseDurationSeconds: o.leaseSeconds,
      renewTime: MICRO(now) as never,
      ...(mine ? {} : { acquireTime: MICRO(now) as never, leaseTransitions: (lease.spec?.leaseTransitions ?? 0) + 1 }),
    };
    try {
      const updated = await api.replaceNamespacedLease({
        name: o.name,
        namespace: o.namespace,
        body: { ...lease, spec },
        fieldManager: CONTROLLER_FIELD_MANAGER,
      });
      observe(updated);
      return true;
    } catch (err) {
      if (isConflict(err)) return 'conflict';
      throw err;
    }
  }

  // How long after a renewal began this replica may act as leader: another may take over leaseSeconds after
  // it saw that renewal land; renewSeconds is left for a write already on its way.
  const windowMs = (o.leaseSeconds - o.renewSeconds) * 1000;
  let expiry: NodeJS.Timeout | undefined;

  /** Give up before the Lease can expire for the others: never two leaders at once. */
  function giveUp(): void {
    if (!leading || stopped) return;
    leading = false;
    watcher?.stop();
    o.log.error(
      `lost the lease ${o.namespace}/${o.name} (no renewal for ${Math.round((Date.now() - lastRenew) / 1000)} s)`,
      { identity: o.identity },
    );
    o.onStoppedLeading();
  }

  async function loop(): Promise<void> {
    if (stopped) return;
    let won = false;
    const began = Date.now();
    try {
      // Bounded: an API server that never answers (a cut route, a hung connection) must not hold the loop,
      // or a leader would never notice it can no longer renew. An attempt that answers late is not counted.
      const answer = await within<boolean | 'timeout'>(attempt(), o.renewSeconds * 1000, 'timeout');
      if (answer === 'timeout')
        o.log.warn(`lease ${o.namespace}/${o.name}: no answer within ${o.renewSeconds} s (renewSeconds)`);
      else won = answer;
    } catch (err) {
      o.log.warn(`lease ${o.namespace}/${o.name}: ${apiMessage(err)}`);
    }
    if (stopped) return;
    if (won) {
      lastRenew = Date.now();
      renewBegan = began;
      // The lead ends by itself unless renewed in time: a timer, not the next answer, which may never come.
      clearTimeout(expiry);
      expiry = setTimeout(giveUp, Math.max(0, began + windowMs - Date.now()));
      if (!leading) {
        leading = true;
        o.log.info(`leading (lease ${o.namespace}/${o.name})`, { identity: o.identity });
        o.onStartedLeading();
        watcher = watchSyncRequests({
          api: syncApi,
          pollMs: o.syncPollMs ?? o.renewSeconds * 1000,
          log: o.log,
          onRequested: () => o.onSyncRequested?.(),
        });
      }
    }
    timer = setTimeout(() => void loop(), (leading ? o.renewSeconds : o.retrySeconds) * 1000);
  }

  void loop();

  return {
    isLeader: () => leading,
    writeRefusal() {
      if (!leading) return `not the leader (lease ${o.namespace}/${o.name})`;
      const age = Date.now() - renewBegan;
      if (age >= windowMs)
        return `the lease ${o.namespace}/${o.name} was last renewed ${Math.round(age / 1000)} s ago: another replica may lead by now`;
      return undefined;
    },
    holder: () => seen.holder,
    requestSync,
    async stop(release = true) {
      stopped = true;
      clearTimeout(timer);
      clearTimeout(expiry);
      watcher?.stop();
      if (!leading) return;
      leading = false;
      if (!release) return;
      // Released: an empty holder is free for the taking at once.
      try {
        const lease = await api.readNamespacedLease({ name: o.name, namespace: o.namespace });
        if (lease.spec?.holderIdentity === o.identity) {
          const spec = {
            ...lease.spec,
            holderIdentity: '',
            leaseDurationSeconds: 1,
            renewTime: MICRO(new Date()) as never,
            ...(lease.spec.acquireTime !== undefined
              ? { acquireTime: MICRO(new Date(lease.spec.acquireTime)) as never }
              : {}),
          };
          await api.replaceNamespacedLease({
            name: o.name,
            namespace: o.namespace,
            body: { ...lease, spec },
            fieldManager: CONTROLLER_FIELD_MANAGER,
          });
        }
      } catch (err) {
        o.log.warn(`could not release the lease: ${apiMessage(err)}`);
      }
    },
  };
}
