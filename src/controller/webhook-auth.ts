// Verifies Git push webhooks: GitHub (X-Hub-Signature-256: sha256=<hmac>), Gitea/Forgejo (X-Gitea-Signature /
// X-Forgejo-Signature: <hmac>), GitLab (X-Gitlab-Token: <token>) and Standard Webhooks (webhook-id,
// webhook-timestamp, webhook-signature: v1,<base64 hmac of "id.timestamp.body">: GitLab's signing token).
// Constant-time comparisons.
//
// What each sender signs decides what a replay can change, and so what deduplication may trust:
//   - GitHub, Gitea/Forgejo: the body only. The delivery id header (X-GitHub-Delivery, X-Gitea-Delivery, ...)
//     is not signed: whoever replays a captured delivery can put any id in it. So a delivery is known by its
//     id (a sender's own retry keeps it) and by its signed body (a replay keeps that, whatever the id).
//   - GitLab's X-Gitlab-Token: a password sent as is, nothing signed. Whoever saw one delivery can send any
//     body and id: only rate limits bound that.
//   - Standard Webhooks: the id and the time are signed with the body. A delivery outside ±TOLERANCE of this
//     clock is refused, and inside it the signed id is remembered: a replay is caught either way.
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';

export type WebhookVerdict =
  | {
      ok: true;
      provider: 'github' | 'gitea' | 'gitlab' | 'standard';
      /** The sender's delivery id, as the request carries it (signed only for 'standard'). */
      deliveryId?: string;
      /** The time the sender signed (ms since epoch), 'standard' only. */
      signedAt?: number;
    }
  | { ok: false; reason: string };

/** How far a signed timestamp may be from this clock (Standard Webhooks' recommended five minutes). */
export const TIMESTAMP_TOLERANCE_MS = 5 * 60_000;

const equal = (a: string, b: string) => {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
};

export function verifyWebhook(
  headers: Record<string, string | string[] | undefined>,
  body: Buffer,
  secret: string,
  now = Date.now(),
): WebhookVerdict {
  const h = (name: string) => {
    const v = headers[name];
    return Array.isArray(v) ? v[0] : v;
  };
  const id = (...names: string[]) => {
    for (const n of names) {
      const v = h(n);
      if (v !== undefined && v !== '') return { deliveryId: v };
    }
    return {};
  };
  const standard = h('webhook-signature');
  if (standard !== undefined)
    return verifyStandard(h('webhook-id'), h('webhook-timestamp'), standard, body, secret, now);
  const hmac = createHmac('sha256', secret).update(body).digest('hex');
  const github = h('x-hub-signature-256');
  if (github !== undefined)
    return equal(github, `sha256=${hmac}`)
      ? { ok: true, provider: 'github', ...id('x-github-delivery') }
      : { ok: false, reason: 'X-Hub-Signature-256 does not match' };
  const gitea = h('x-gitea-signature') ?? h('x-forgejo-signature') ?? h('x-gogs-signature');
  if (gitea !== undefined)
    return equal(gitea, hmac)
      ? {
          ok: true,
          provider: 'gitea',
          ...id('x-gitea-delivery', 'x-forgejo-delivery', 'x-gogs-delivery', 'x-github-delivery'),
        }
      : { ok: false, reason: 'X-Gitea-Signature does not match' };
  const gitlab = h('x-gitlab-token');
  // Idempotency-Key stays the same across GitLab's own retries; X-Gitlab-Event-UUID names the event.
  if (gitlab !== undefined)
    return equal(gitlab, secret)
      ? { ok: true, provider: 'gitlab', ...id('idempotency-key', 'x-gitlab-event-uuid') }
      : { ok: false, reason: 'X-Gitlab-Token does not match' };
  return {
    ok: false,
    reason: 'no signature header (X-Hub-Signature-256, X-Gitea-Signature, X-Gitlab-Token or webhook-signature)',
  };
}

/** Standard Webhooks: HMAC-SHA256 of `${id}.${timestamp}.${body}`; a `whsec_` secret is its base64 key. */
function verifyStandard(
  id: string | undefined,
  timestamp: string | undefined,
  signatures: string,
  body: Buffer,
  secret: string,
  now: number,
): WebhookVerdict {
  if (id === undefined || id === '' || timestamp === undefined || !/^\d{1,12}$/.test(timestamp))
    return { ok: false, reason: 'webhook-signature without a webhook-id and a numeric webhook-timestamp' };
  const key = secret.startsWith('whsec_') ? Buffer.from(secret.slice('whsec_'.length), 'base64') : Buffer.from(secret);
  const expected = createHmac('sha256', key).update(`${id}.${timestamp}.`).update(body).digest('base64');
  // Space-separated `v1,<base64>` entries (a sender rotating its secret signs with both).
  const matches = signatures.split(' ').some((s) => s.startsWith('v1,') && equal(s.slice(3), expected));
  if (!matches) return { ok: false, reason: 'webhook-signature does not match' };
  const signedAt = Number(timestamp) * 1000;
  if (Math.abs(now - signedAt) > TIMESTAMP_TOLERANCE_MS)
    return {
      ok: false,
      reason: `webhook-timestamp ${timestamp} is more than ${TIMESTAMP_TOLERANCE_MS / 60_000} min from this clock: a replay, or a clock to set right`,
    };
  return { ok: true, provider: 'standard', deliveryId: id, signedAt };
}

/** The body's digest: what a replay of a signed delivery cannot change. */
export const bodyDigest = (body: Buffer): string => createHash('sha256').update(body).digest('base64');
