// isomorphic-git's Node HTTP client with a deadline on silence: a Git server that stops answering (before its
// headers, or in the middle of a pack) fails the request after `idleMs` instead of holding the sync forever.
// The connection is aborted, so nothing is left waiting behind the error.
import base from 'isomorphic-git/http/node';
import type { GitHttpRequest, GitHttpResponse, HttpClient } from 'isomorphic-git';

export class GitTimeoutError extends Error {
  override name = 'GitTimeoutError';
}

export function httpWithIdleTimeout(idleMs: number): HttpClient {
  return {
    async request(r: GitHttpRequest): Promise<GitHttpResponse> {
      const ac = new AbortController();
      const what = `${r.method ?? 'GET'} ${redact(r.url)}`;
      const aborted = new Promise<never>((_, reject) =>
        ac.signal.addEventListener('abort', () => reject(ac.signal.reason as Error), { once: true }),
      );
      aborted.catch(() => undefined);
      let timer: NodeJS.Timeout | undefined;
      const arm = () => {
        clearTimeout(timer);
        timer = setTimeout(
          () =>
            ac.abort(
              new GitTimeoutError(`${what}: no answer for ${Math.round(idleMs / 1000)} s (source.timeoutSeconds)`),
            ),
          idleMs,
        );
      };
      arm();
      let res: GitHttpResponse;
      try {
        res = await Promise.race([base.request({ ...r, signal: ac.signal }), aborted]);
      } finally {
        clearTimeout(timer);
      }
      const body = res.body;
      if (body === undefined) return res;
      const it = (body as AsyncIterable<Uint8Array>)[Symbol.asyncIterator]();
      const wrapped: AsyncIterableIterator<Uint8Array> = {
        async next() {
          arm();
          try {
            return await Promise.race([it.next(), aborted]);
          } catch (err) {
            await it.return?.();
            throw err;
          } finally {
            clearTimeout(timer);
          }
        },
        async return() {
          clearTimeout(timer);
          await it.return?.();
          return { done: true, value: undefined };
        },
        [Symbol.asyncIterator]() {
          return this;
        },
      };
      return { ...res, body: wrapped };
    },
  };
}

/** A URL without its credentials, for messages. */
export function redact(url: string): string {
  try {
    const u = new URL(url);
    if (u.username === '' && u.password === '') return url;
    u.username = '';
    u.password = '';
    return u.toString();
  } catch {
    return url;
  }
}
