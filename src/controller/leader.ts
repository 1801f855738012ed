// Leader election on a coordination.k8s.io Lease, as client-go's leaderelection does it: the holder renews
// the Lease every renewSeconds; another replica takes it over once it has seen no renewal for leaseSeconds
// (measured on its own clock from when it last saw the record change, so clocks need not agree). Writes go
// through resourceVersion, so two replicas can never both win. A leader that cannot renew within
// leaseSeconds gives up (the process exits and restarts as a standby) before anyone else may take over.
//
// The Lease also carries one request between replicas: a standby that receives a Git push webhook stamps
// the annotation enbi.hrzn.ee/sync-requested, and the leader, which reads the Lease at every renewal, syncs.
import { CoordinationV1Api, type KubeConfig, PatchStrategy, setHeaderOptions, type V1Lease } from '@kubernetes/client-node';
import { apiMessage, isConflict, isNotFound } from '../kube/errors.ts';
import { CONTROLLER_FIELD_MANAGER } from '../kube/field-manager.ts';
import type { Logger } from './log.ts';

export const SYNC_REQUESTED = 'enbi.hrzn.ee/sync-requested';

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
}

export interface LeaderElection {
  isLeader(): boolean;
  /** The current holder as last seen. */
  holder(): string | undefined;
  /** Standby: ask the leader to sync the source now. */
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
  // What this replica last saw of the record, and when (its own clock).
  let seen: { key: string; at: number; holder?: string } = { key: '', at: 0 };
  // The sync-request stamp as of when this replica took the Lease: only later stamps are new requests.
  let syncSeen: string | undefined;

  const observe = (lease: V1Lease) => {
    const key = `${lease.spec?.holderIdentity ?? ''}@${String(lease.spec?.renewTime ?? '')}`;
    if (key !== seen.key) seen = { key, at: Date.now(), ...(lease.spec?.holderIdentity ? { holder: lease.spec.holderIdentity } : {}) };
  };

  /** One acquire-or-renew; a conflict (a standby's annotation, a racing replica) is read again, up to three times. */
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
          body: { metadata: { name: o.name, namespace: o.namespace }, spec: { holderIdentity: o.identity, leaseDurationSeconds: o.leaseSeconds, acquireTime: MICRO(now) as never, renewTime: MICRO(now) as never, leaseTransitions: 0 } },
          fieldManager: CONTROLLER_FIELD_MANAGER,
        });
      } catch (e) {
        if (isConflict(e)) return 'conflict';
        throw e;
      }
      seen = { key: `${o.identity}@new`, at: Date.now(), holder: o.identity };
      syncSeen = '';
      return true;
    }
    observe(lease);
    const holder = lease.spec?.holderIdentity ?? '';
    const mine = holder === o.identity;
    const expired = holder === '' || Date.now() - seen.at > (lease.spec?.leaseDurationSeconds ?? o.leaseSeconds) * 1000;
    if (!mine && !expired) return false;
    const stamp = lease.metadata?.annotations?.[SYNC_REQUESTED] ?? '';
    if (mine && leading && syncSeen !== undefined && stamp !== syncSeen) o.onSyncRequested?.();
    if (!mine || syncSeen === undefined || leading) syncSeen = stamp;
    // MicroTime fields: the API server refuses the milliseconds-only form a Date serialises to.
    const spec = {
      ...lease.spec,
      ...(lease.spec?.acquireTime !== undefined ? { acquireTime: MICRO(new Date(lease.spec.acquireTime)) as never } : {}),
      holderIdentity: o.identity,
      leaseDurationSeconds: o.leaseSeconds,
      renewTime: MICRO(now) as never,
      ...(mine ? {} : { acquireTime: MICRO(now) as never, leaseTransitions: (lease.spec?.leaseTransitions ?? 0) + 1 }),
    };
    try {
      const updated = await api.replaceNamespacedLease({ name: o.name, namespace: o.namespace, body: { ...lease, spec }, fieldManager: CONTROLLER_FIELD_MANAGER });
      observe(updated);
      return true;
    } catch (err) {
      if (isConflict(err)) return 'conflict';
      throw err;
    }
  }

  async function loop(): Promise<void> {
    if (stopped) return;
    let won = false;
    try {
      won = await attempt();
    } catch (err) {
      o.log.warn(`lease ${o.namespace}/${o.name}: ${apiMessage(err)}`);
    }
    if (stopped) return;
    if (won) {
      lastRenew = Date.now();
      if (!leading) {
        leading = true;
        o.log.info(`leading (lease ${o.namespace}/${o.name})`, { identity: o.identity });
        o.onStartedLeading();
      }
    } else if (leading && Date.now() - lastRenew > o.leaseSeconds * 1000 - o.renewSeconds * 1000) {
      // Give up before the Lease can expire for the others: never two leaders at once.
      leading = false;
      o.log.error(`lost the lease ${o.namespace}/${o.name} (no renewal for ${Math.round((Date.now() - lastRenew) / 1000)} s)`, { identity: o.identity });
      o.onStoppedLeading();
    }
    timer = setTimeout(() => void loop(), (leading ? o.renewSeconds : o.retrySeconds) * 1000);
  }

  void loop();

  return {
    isLeader: () => leading,
    holder: () => seen.holder,
    async requestSync() {
      await api.patchNamespacedLease({ name: o.name, namespace: o.namespace, body: { metadata: { annotations: { [SYNC_REQUESTED]: new Date().toISOString() } } }, fieldManager: CONTROLLER_FIELD_MANAGER }, setHeaderOptions('Content-Type', PatchStrategy.MergePatch));
    },
    async stop(release = true) {
      stopped = true;
      clearTimeout(timer);
      if (!leading) return;
      leading = false;
      if (!release) return;
      // Released: an empty holder is free for the taking at once.
      try {
        const lease = await api.readNamespacedLease({ name: o.name, namespace: o.namespace });
        if (lease.spec?.holderIdentity === o.identity) {
          const spec = { ...lease.spec, holderIdentity: '', leaseDurationSeconds: 1, renewTime: MICRO(new Date()) as never, ...(lease.spec.acquireTime !== undefined ? { acquireTime: MICRO(new Date(lease.spec.acquireTime)) as never } : {}) };
          await api.replaceNamespacedLease({ name: o.name, namespace: o.namespace, body: { ...lease, spec }, fieldManager: CONTROLLER_FIELD_MANAGER });
        }
      } catch (err) {
        o.log.warn(`could not release the lease: ${apiMessage(err)}`);
      }
    },
  };
}

