// Errors from the Kubernetes API, read one way everywhere: the HTTP status, and the API server's own message
// (its Status body), which says what to fix ("refused by the site policy", "exceeded quota", ...).

export function statusCode(err: unknown): number | undefined {
  const code = (err as { code?: unknown }).code;
  return typeof code === 'number' ? code : undefined;
}

/** The API server's message in a client error, else the error's first line. */
export function apiMessage(err: unknown): string {
  const e = err as { code?: number; body?: unknown; message?: string };
  try {
    const body =
      typeof e.body === 'string'
        ? (JSON.parse(e.body) as { message?: string })
        : (e.body as { message?: string } | undefined);
    if (typeof body?.message === 'string') return `${e.code ?? ''} ${body.message}`.trim();
  } catch {
    // not JSON: the error's own message
  }
  return (e.message ?? String(err)).split('\n')[0] ?? '';
}

/** Conflict (409): a create that lost to an identical one, or a write on an old resourceVersion. */
export const isConflict = (err: unknown): boolean => statusCode(err) === 409;
export const isNotFound = (err: unknown): boolean => statusCode(err) === 404;
