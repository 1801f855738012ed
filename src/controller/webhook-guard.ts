// What the webhook does with a delivery whose signature holds: once per delivery, and not too often per
// repository or per client. Pure (the clock is passed in) and bounded in memory whatever arrives; the server
// (server.ts) calls it only after verifyWebhook accepted the signature, so that requests nobody signed cost
// no memory here.
//
//   - Deduplication: a delivery is known by its id and by its body's digest (webhook-auth.ts says why both);
//     either seen before within TTL means a replay or a retry: nothing more is done. Only accepted deliveries
//     are remembered, at most CAPACITY keys (the least recently seen go first).
//   - Rate limits: token buckets per repository (named by the signed body) and per client address (the TCP
//     peer: behind an Ingress, the Ingress; X-Forwarded-For is anyone's to write), at most MAX_KEYS each.
//     A full bucket is the same as none, so full ones are dropped first when the map is at its bound; past
//     that the least recently used goes (it starts full again: never a lock-out of a sender the bound pushed
//     out).
import { bodyDigest, type WebhookVerdict } from './webhook-auth.ts';

type Verified = Extract<WebhookVerdict, { ok: true }>;

export interface GuardOptions {
  /** Keys remembered (each accepted delivery takes one for its body and one for its id). */
  capacity: number;
  /** How long a delivery is remembered after it was last seen. */
  ttlMs: number;
  perRepository: BucketOptions;
  perClient: BucketOptions;
}

export interface BucketOptions {
  /** Deliveries allowed at once. */
  burst: number;
  /** Deliveries allowed per second after the burst. */
  perSecond: number;
  /** Keys (repositories, addresses) tracked at most. */
  maxKeys: number;
}

export const GUARD_DEFAULTS: GuardOptions = {
  capacity: 4096,
  ttlMs: 3_600_000,
  perRepository: { burst: 20, perSecond: 1 / 3, maxKeys: 1024 },
  perClient: { burst: 60, perSecond: 1, maxKeys: 1024 },
};

export type GuardDecision =
  | { outcome: 'accept'; repository: string }
  | { outcome: 'duplicate'; by: 'id' | 'content'; repository: string }
  | { outcome: 'throttled'; per: 'repository' | 'client'; retryAfterSeconds: number; repository: string };

/** Accepted deliveries, by key, in the order they were last seen (a Map keeps insertion order). */
export class DeliveryMemory {
  private readonly seen = new Map<string, number>();
  private readonly capacity: number;
  private readonly ttlMs: number;
  constructor(capacity: number, ttlMs: number) {
    this.capacity = capacity;
    this.ttlMs = ttlMs;
  }

  get size(): number {
    return this.seen.size;
  }

  /** True when `key` was remembered within the TTL; a hit counts as seen again (a looped replay stays known). */
  has(key: string, now: number): boolean {
    const at = this.seen.get(key);
    if (at === undefined) return false;
    this.seen.delete(key);
    if (now - at > this.ttlMs) return false;
    this.seen.set(key, now);
    return true;
  }

  remember(key: string, now: number): void {
    this.seen.delete(key);
    this.seen.set(key, now);
    for (const [k, at] of this.seen) {
      if (this.seen.size <= this.capacity && now - at <= this.ttlMs) break;
      this.seen.delete(k);
    }
  }
}

/** Token buckets by key, at most maxKeys of them. */
export class TokenBuckets {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();
  private readonly o: BucketOptions;
  constructor(o: BucketOptions) {
    this.o = o;
  }

  get size(): number {
    return this.buckets.size;
  }

  private refilled(key: string, now: number): number {
    const b = this.buckets.get(key);
    if (b === undefined) return this.o.burst;
    return Math.min(this.o.burst, b.tokens + (Math.max(0, now - b.at) / 1000) * this.o.perSecond);
  }

  /** Seconds until `key` has a token; 0 when it has one now. */
  wait(key: string, now: number): number {
    const tokens = this.refilled(key, now);
    return tokens >= 1 ? 0 : (1 - tokens) / this.o.perSecond;
  }

  /** Takes a token from `key` (call after wait() said 0). */
  take(key: string, now: number): void {
    const tokens = this.refilled(key, now) - 1;
    this.buckets.delete(key);
    if (this.buckets.size >= this.o.maxKeys) this.shrink(now);
    this.buckets.set(key, { tokens, at: now });
  }

  private shrink(now: number): void {
    for (const k of [...this.buckets.keys()]) if (this.refilled(k, now) >= this.o.burst) this.buckets.delete(k);
    for (const k of this.buckets.keys()) {
      if (this.buckets.size < this.o.maxKeys) break;
      this.buckets.delete(k);
    }
  }
}

/** The rate-limit key of a client address: IPv4 as is (IPv4-mapped IPv6 too), IPv6 by its /64 (one host's share). */
export function clientKey(address: string | undefined): string {
  if (address === undefined || address === '') return 'unknown';
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped !== null) return mapped[1]!;
  if (!address.includes(':')) return address;
  // Expand "::" and keep the first four groups.
  const [head = '', tail = ''] = address.split('%')[0]!.split('::');
  const h = head === '' ? [] : head.split(':');
  const t = address.includes('::') ? (tail === '' ? [] : tail.split(':')) : [];
  const groups = [...h, ...Array(Math.max(0, 8 - h.length - t.length)).fill('0'), ...t];
  return `${groups
    .slice(0, 4)
    .map((g) => g.toLowerCase().replace(/^0+(?=.)/, ''))
    .join(':')}::/64`;
}

/** The repository a delivery names in its body (GitHub, Gitea: repository.full_name; GitLab: project.path_with_namespace). */
export function repositoryOf(provider: Verified['provider'], body: Buffer): string {
  let payload: unknown;
  try {
    let text = body.toString('utf8');
    // A sender set to "application/x-www-form-urlencoded" sends payload=<JSON>.
    if (text.startsWith('payload=')) text = new URLSearchParams(text).get('payload') ?? '';
    payload = JSON.parse(text);
  } catch {
    return `${provider}:?`;
  }
  const p = payload as { repository?: { full_name?: unknown }; project?: { path_with_namespace?: unknown } } | null;
  const name = p?.repository?.full_name ?? p?.project?.path_with_namespace;
  return typeof name === 'string' && name !== '' ? `${provider}:${name.slice(0, 256)}` : `${provider}:?`;
}

export interface WebhookGuard {
  /** Decides on a verified delivery; remembers it and takes its tokens only when it is accepted. */
  check(verdict: Verified, body: Buffer, address: string | undefined, now: number): GuardDecision;
  /** Keys remembered for deduplication (a gauge). */
  remembered(): number;
}

const MAX_ID = 128;

export function webhookGuard(o: GuardOptions = GUARD_DEFAULTS): WebhookGuard {
  const memory = new DeliveryMemory(o.capacity, o.ttlMs);
  const repos = new TokenBuckets(o.perRepository);
  const clients = new TokenBuckets(o.perClient);
  return {
    remembered: () => memory.size,
    check(verdict, body, address, now) {
      const repository = repositoryOf(verdict.provider, body);
      const content = `body:${bodyDigest(body)}`;
      const id =
        verdict.deliveryId !== undefined ? `id:${verdict.provider}:${verdict.deliveryId.slice(0, MAX_ID)}` : undefined;
      // Both looked up (each hit refreshes its key), so that a replay under a new id keeps the old id known too.
      const byId = id !== undefined && memory.has(id, now);
      const byContent = memory.has(content, now);
      if (byId || byContent) return { outcome: 'duplicate', by: byId ? 'id' : 'content', repository };
      const client = clientKey(address);
      const waitRepo = repos.wait(repository, now);
      const waitClient = clients.wait(client, now);
      if (waitRepo > 0 || waitClient > 0) {
        const per = waitRepo >= waitClient ? 'repository' : 'client';
        return {
          outcome: 'throttled',
          per,
          retryAfterSeconds: Math.max(1, Math.ceil(Math.max(waitRepo, waitClient))),
          repository,
        };
      }
      repos.take(repository, now);
      clients.take(client, now);
      memory.remember(content, now);
      if (id !== undefined) memory.remember(id, now);
      return { outcome: 'accept', repository };
    },
  };
}
