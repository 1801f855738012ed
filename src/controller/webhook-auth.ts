// Verifies Git push webhooks: GitHub (X-Hub-Signature-256: sha256=<hmac>), Gitea/Forgejo (X-Gitea-Signature /
// X-Forgejo-Signature: <hmac>) and GitLab (X-Gitlab-Token: <token>). Constant-time comparisons.
import { createHmac, timingSafeEqual } from 'node:crypto';

export type WebhookVerdict = { ok: true; provider: string } | { ok: false; reason: string };

const equal = (a: string, b: string) => {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
};

export function verifyWebhook(headers: Record<string, string | string[] | undefined>, body: Buffer, secret: string): WebhookVerdict {
  const h = (name: string) => {
    const v = headers[name];
    return Array.isArray(v) ? v[0] : v;
  };
  const hmac = createHmac('sha256', secret).update(body).digest('hex');
  const github = h('x-hub-signature-256');
  if (github !== undefined) return equal(github, `sha256=${hmac}`) ? { ok: true, provider: 'github' } : { ok: false, reason: 'X-Hub-Signature-256 does not match' };
  const gitea = h('x-gitea-signature') ?? h('x-forgejo-signature') ?? h('x-gogs-signature');
  if (gitea !== undefined) return equal(gitea, hmac) ? { ok: true, provider: 'gitea' } : { ok: false, reason: 'X-Gitea-Signature does not match' };
  const gitlab = h('x-gitlab-token');
  if (gitlab !== undefined) return equal(gitlab, secret) ? { ok: true, provider: 'gitlab' } : { ok: false, reason: 'X-Gitlab-Token does not match' };
  return { ok: false, reason: 'no signature header (X-Hub-Signature-256, X-Gitea-Signature or X-Gitlab-Token)' };
}
