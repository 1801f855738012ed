// Plain HTTPS calls to the API server with client certificates, for health checks during start-up
// (no client library needed before the cluster exists).
import { request } from 'node:https';
import { readFileSync } from 'node:fs';

export interface Cred {
  ca: string;
  cert: string;
  key: string;
}

export async function apiGet(server: string, cred: Cred, path: string, timeoutMs = 5_000): Promise<{ status: number; body: string }> {
  const files = { ca: readFileSync(cred.ca), cert: readFileSync(cred.cert), key: readFileSync(cred.key) };
  return await new Promise((res, rej) => {
    const req = request(new URL(path, server), { ...files, timeout: timeoutMs }, (r) => {
      let body = '';
      r.setEncoding('utf8');
      r.on('data', (d) => (body += d));
      r.on('end', () => res({ status: r.statusCode ?? 0, body }));
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${path}: no answer in ${timeoutMs} ms`)));
    req.on('error', rej);
    req.end();
  });
}
