// Writes only while this replica may write. Every request made through a fenced configuration that would
// change the cluster (anything but GET and HEAD) first asks `refusal`, and is not sent when it names a
// reason. The controller fences its clients with the leader election's write window: a leader paused longer
// than its lease (a SIGSTOP, a frozen VM, a long GC) wakes up with requests queued in its timers, and
// those must not land after another replica has taken over.
import type { KubeConfig, RequestContext } from '@kubernetes/client-node';

/** A write refused before it was sent. */
export class FencedWrite extends Error {
  constructor(method: string, url: string, reason: string) {
    super(`${method} ${new URL(url).pathname} not sent: ${reason}`);
    this.name = 'FencedWrite';
  }
}

const READS = new Set(['GET', 'HEAD']);

/**
 * `kc` with a gate in front of every write of the API clients made from it (`makeApiClient`). The gate sits
 * where client-node authenticates each request, so no generated method can go around it. Watches and
 * informers (reads) are not affected.
 */
export function fencedKubeConfig(kc: KubeConfig, refusal: () => string | undefined): KubeConfig {
  const fenced = Object.create(kc) as KubeConfig;
  fenced.applySecurityAuthentication = async (context: RequestContext) => {
    const method = String(context.getHttpMethod()).toUpperCase();
    if (!READS.has(method)) {
      const reason = refusal();
      if (reason !== undefined) throw new FencedWrite(method, context.getUrl(), reason);
    }
    await kc.applySecurityAuthentication(context);
  };
  return fenced;
}
