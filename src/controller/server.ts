// The controller's HTTP endpoint: probes, Prometheus metrics, and the Git push webhook.
import { readFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { type Metrics, renderMetrics } from './metrics.ts';
import { verifyWebhook } from './webhook-auth.ts';

export interface ServerDeps {
  host: string;
  port: number;
  metrics: Metrics;
  ready: () => boolean;
  /** Secret of the webhook; undefined disables POST /hooks/git. */
  secretFile?: string;
  onPush: () => void;
  log: (m: string) => void;
}

const MAX_BODY = 5 * 1024 * 1024;

export async function startServer(d: ServerDeps): Promise<{ server: Server; port: number }> {
  const secret = d.secretFile !== undefined ? (await readFile(d.secretFile, 'utf8')).trim() : undefined;
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    if (req.method === 'GET' && url.pathname === '/healthz') return void res.end('ok\n');
    if (req.method === 'GET' && url.pathname === '/readyz') {
      res.statusCode = d.ready() ? 200 : 503;
      return void res.end(d.ready() ? 'ready\n' : 'informers not synced\n');
    }
    if (req.method === 'GET' && url.pathname === '/metrics') {
      res.setHeader('Content-Type', 'text/plain; version=0.0.4');
      return void res.end(renderMetrics(d.metrics));
    }
    if (url.pathname === '/hooks/git') {
      if (secret === undefined) {
        res.statusCode = 404;
        return void res.end('webhook disabled: set webhook.secretFile\n');
      }
      if (req.method !== 'POST') {
        d.metrics.webhooksRejected++;
        res.statusCode = 405;
        return void res.end('POST only\n');
      }
      const chunks: Buffer[] = [];
      let size = 0;
      req.on('data', (c: Buffer) => {
        size += c.length;
        if (size > MAX_BODY) req.destroy();
        else chunks.push(c);
      });
      req.on('end', () => {
        const verdict = verifyWebhook(req.headers, Buffer.concat(chunks), secret);
        if (!verdict.ok) {
          d.metrics.webhooksRejected++;
          d.log(`webhook rejected: ${verdict.reason}`);
          res.statusCode = 401;
          return void res.end(`${verdict.reason}\n`);
        }
        d.metrics.webhooksAccepted++;
        d.log(`webhook from ${verdict.provider}: syncing the source now`);
        d.onPush();
        res.statusCode = 202;
        res.end('sync triggered\n');
      });
      return;
    }
    res.statusCode = 404;
    res.end('not found\n');
  });
  await new Promise<void>((resolve) => server.listen(d.port, d.host, resolve));
  return { server, port: (server.address() as AddressInfo).port };
}
