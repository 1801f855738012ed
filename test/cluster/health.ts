// Plain HTTPS calls to the API server with client certificates, for health checks during start-up
// (no client library needed before the cluster exists).
import { request } from 'node:https';
import { readFileSync } from 'node:fs';

export interface Cred {
  ca: string;
  cert: string;
  key: string;
}

export async function apiGet(
  server: string,
  cred: Cred,
  path: string,
  timeoutMs = 5_000,
): Promise<{ status: number; body: string }> {
  return await apiRequest(server, cred, 'GET', path, undefined, timeoutMs);
}

/** A merge patch; throws unless the API server accepts it. */
export async function apiMergePatch(server: string, cred: Cred, path: string, patch: object): Promise<void> {
  const r = await apiRequest(server, cred, 'PATCH', path, {
    type: 'application/merge-patch+json',
    data: JSON.stringify(patch),
  });
  if (r.status >= 300) throw new Error(`PATCH ${path}: ${r.status} ${r.body}`);
}

async function apiRequest(
  server: string,
  cred: Cred,
  method: string,
  path: string,
  body?: { type: string; data: string },
  timeoutMs = 5_000,
): Promise<{ status: number; body: string }> {
  const files = { ca: readFileSync(cred.ca), cert: readFileSync(cred.cert), key: readFileSync(cred.key) };
  const headers = body ? { 'content-type': body.type } : {};
  return await new Promise((res, rej) => {
    const req = request(new URL(path, server), { ...files, method, headers, timeout: timeoutMs }, (r) => {
      let text = '';
      r.setEncoding('utf8');
      r.on('data', (d) => (text += d));
      r.on('end', () => res({ status: r.statusCode ?? 0, body: text }));
    });
    req.on('timeout', () => req.destroy(new Error(`${method} ${path}: no answer in ${timeoutMs} ms`)));
    req.on('error', rej);
    req.end(body?.data);
  });
}
