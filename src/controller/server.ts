// The controller's two HTTP endpoints, on separate ports so that a NetworkPolicy can open each to its own
// clients: probes and Prometheus metrics (kubelet, the monitoring stack), and the Git push webhook (the Git
// host, usually through an Ingress). Anyone who reaches a port can send anything: a request line, URL or
// header the handler cannot read is answered 400 (or 431) and counted, never thrown, so that no request can
// stop the process.
//
// The webhook, in order: the body (at most MAX_BODY, and MAX_BODIES_IN_FLIGHT bytes across all requests),
// the signature (webhook-auth.ts; a request nobody signed is answered 401 and costs no memory past that),
// then the guard (webhook-guard.ts): a delivery already accepted (by id or by signed content) is answered
// 200 and does nothing, one over its repository's or its client's rate is answered 429 with Retry-After;
// only then is the push announced (onPush). Each outcome has its counter; log lines about refused
// requests are at most one per kind every LOG_EVERY_MS, with the count of the rest.
import { readFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { type Metrics, renderMetrics } from './metrics.ts';
import { verifyWebhook } from './webhook-auth.ts';
import { type GuardOptions, webhookGuard, type WebhookGuard } from './webhook-guard.ts';
import { errorMessage } from '../async/error-message.ts';

export interface Listen {
  host: string;
  port: number;
}

export interface ServerDeps {
  /** Probes and metrics. */
  listen: Listen;
  /** The webhook's own port; absent: no webhook. */
  webhook?: Listen & { secretFile: string };
  metrics: Metrics;
  ready: () => boolean;
  /** Liveness: false when the controller's work has stopped moving (default: always alive). */
  healthy?: () => boolean;
  onPush: () => void;
  log: (m: string) => void;
  /** Deduplication and rate limits (default GUARD_DEFAULTS). */
  guard?: GuardOptions;
  /** The clock (tests). */
  now?: () => number;
}

export interface RunningServers {
  port: number;
  webhookPort?: number;
  close(): Promise<void>;
}

const MAX_BODY = 5 * 1024 * 1024;
/** Request bodies held at once across the webhook's requests: beyond it a request is answered 503. */
const MAX_BODIES_IN_FLIGHT = 32 * 1024 * 1024;
/** Connections the webhook port holds at once (each may hold a body). */
const MAX_WEBHOOK_CONNECTIONS = 1024;
/** Lines about refused webhooks: at most one per kind this often. */
const LOG_EVERY_MS = 10_000;
/** Node's default; a larger header is answered 431 before any handler runs. */
const MAX_HEADER_BYTES = 16 * 1024;

/** Reads the webhook secret; an empty or unreadable file is a start-up error (an empty HMAC key accepts forgeries). */
export async function readWebhookSecret(file: string): Promise<string> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new Error(`webhook.secretFile ${file}: ${errorMessage(err)}`);
  }
  const secret = text.trim();
  if (secret === '')
    throw new Error(
      `webhook.secretFile ${file} is empty: put the secret your Git host signs pushes with in it (e.g. openssl rand -hex 32), or remove webhook.secretFile to turn the webhook off`,
    );
  return secret;
}

export async function startServers(d: ServerDeps): Promise<RunningServers> {
  const secret = d.webhook !== undefined ? await readWebhookSecret(d.webhook.secretFile) : undefined;
  const probes = hardened(d, (req, res, url) => {
    if (req.method !== 'GET' && req.method !== 'HEAD') return reply(res, 405, 'GET only\n');
    if (url.pathname === '/healthz')
      return (d.healthy?.() ?? true)
        ? reply(res, 200, 'ok\n')
        : reply(res, 503, 'stalled: pending work has not moved\n');
    if (url.pathname === '/readyz')
      return d.ready() ? reply(res, 200, 'ready\n') : reply(res, 503, 'informers not synced\n');
    if (url.pathname === '/metrics') {
      res.setHeader('Content-Type', 'text/plain; version=0.0.4');
      return reply(res, 200, renderMetrics(d.metrics));
    }
    return reply(res, 404, 'not found\n');
  });
  const servers: Server[] = [probes];
  const port = await listen(probes, d.listen);
  let webhookPort: number | undefined;
  if (d.webhook !== undefined && secret !== undefined) {
    const ctx: WebhookContext = {
      secret,
      guard: webhookGuard(d.guard),
      inFlight: 0,
      quiet: quietLog(d.log, d.now ?? Date.now),
    };
    const hook = hardened(d, (req, res, url) => {
      if (url.pathname !== '/hooks/git') return reply(res, 404, 'not found\n');
      if (req.method !== 'POST') {
        d.metrics.webhooksRejected++;
        return reply(res, 405, 'POST only\n');
      }
      receiveWebhook(req, res, ctx, d);
    });
    hook.maxConnections = MAX_WEBHOOK_CONNECTIONS;
    servers.push(hook);
    webhookPort = await listen(hook, d.webhook);
  }
  return {
    port,
    ...(webhookPort !== undefined ? { webhookPort } : {}),
    close: async () => {
      await Promise.all(servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
    },
  };
}

/** A server whose handler never throws past it and whose malformed requests are answered, not fatal. */
function hardened(d: ServerDeps, handle: (req: IncomingMessage, res: ServerResponse, url: URL) => void): Server {
  const server = createServer(
    { maxHeaderSize: MAX_HEADER_BYTES, requestTimeout: 30_000, headersTimeout: 10_000 },
    (req, res) => {
      let url: URL;
      try {
        url = new URL(req.url ?? '/', 'http://enbi.invalid');
      } catch {
        d.metrics.httpBadRequests++;
        return reply(res, 400, 'malformed URL\n');
      }
      try {
        handle(req, res, url);
      } catch (err) {
        d.log(`http handler failed on ${req.method} ${url.pathname}: ${errorMessage(err)}`);
        if (!res.headersSent) reply(res, 500, 'internal error\n');
        else res.destroy();
      }
    },
  );
  // A request line or header Node cannot parse (or one over the size limit) never reaches the handler.
  server.on('clientError', (err: Error & { code?: string }, socket: Socket) => {
    d.metrics.httpBadRequests++;
    if (socket.writable && !socket.destroyed) {
      const status = err.code === 'HPE_HEADER_OVERFLOW' ? '431 Request Header Fields Too Large' : '400 Bad Request';
      socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
    } else socket.destroy();
  });
  return server;
}

interface WebhookContext {
  secret: string;
  guard: WebhookGuard;
  /** Body bytes held by requests being read. */
  inFlight: number;
  quiet: (kind: string, message: string) => void;
}

function receiveWebhook(req: IncomingMessage, res: ServerResponse, ctx: WebhookContext, d: ServerDeps): void {
  const chunks: Buffer[] = [];
  let size = 0;
  let refused = false;
  const release = () => {
    ctx.inFlight -= size;
    size = 0;
  };
  const refuse = (status: number, body: string) => {
    refused = true;
    release();
    chunks.length = 0;
    d.metrics.webhooksRejected++;
    reply(res, status, body);
    req.destroy();
  };
  req.on('data', (c: Buffer) => {
    if (refused) return;
    if (size + c.length > MAX_BODY) return refuse(413, 'body too large\n');
    if (ctx.inFlight + c.length > MAX_BODIES_IN_FLIGHT)
      return refuse(503, 'busy: too many webhook bodies being received\n');
    size += c.length;
    ctx.inFlight += c.length;
    chunks.push(c);
  });
  req.on('error', () => undefined);
  req.on('close', () => {
    if (!refused) release();
  });
  req.on('end', () => {
    if (refused) return;
    const body = Buffer.concat(chunks);
    release();
    const now = d.now?.() ?? Date.now();
    const verdict = verifyWebhook(req.headers, body, ctx.secret, now);
    if (!verdict.ok) {
      d.metrics.webhooksRejected++;
      ctx.quiet('rejected', `webhook rejected: ${verdict.reason}`);
      return reply(res, 401, `${verdict.reason}\n`);
    }
    const decision = ctx.guard.check(verdict, body, req.socket.remoteAddress, now);
    d.metrics.webhookDeliveriesRemembered = ctx.guard.remembered();
    const from = `${verdict.provider}${verdict.deliveryId !== undefined ? ` delivery ${verdict.deliveryId.slice(0, 64)}` : ''} (${decision.repository})`;
    if (decision.outcome === 'duplicate') {
      d.metrics.webhooksDuplicate++;
      ctx.quiet(
        'duplicate',
        `webhook from ${from} already accepted (same ${decision.by === 'id' ? 'delivery id' : 'signed content'}): nothing done`,
      );
      return reply(res, 200, 'duplicate delivery: already accepted, nothing done\n');
    }
    if (decision.outcome === 'throttled') {
      d.metrics.webhooksThrottled++;
      ctx.quiet(
        'throttled',
        `webhook from ${from} over the rate per ${decision.per}: answered 429, the source syncs on its own timer`,
      );
      res.setHeader('Retry-After', String(decision.retryAfterSeconds));
      return reply(res, 429, `too many deliveries per ${decision.per}: retry in ${decision.retryAfterSeconds} s\n`);
    }
    d.metrics.webhooksAccepted++;
    d.log(`webhook from ${from}: syncing the source now`);
    d.onPush();
    reply(res, 202, 'sync triggered\n');
  });
}

/** A log sink that writes at most one line per kind every LOG_EVERY_MS, saying how many it left out. */
function quietLog(log: (m: string) => void, now: () => number): (kind: string, message: string) => void {
  const last = new Map<string, { at: number; skipped: number }>();
  return (kind, message) => {
    const t = now();
    const l = last.get(kind);
    if (l !== undefined && t - l.at < LOG_EVERY_MS) {
      l.skipped++;
      return;
    }
    log(
      l !== undefined && l.skipped > 0
        ? `${message} (and ${l.skipped} more like it in the last ${Math.round((t - l.at) / 1000)} s)`
        : message,
    );
    last.set(kind, { at: t, skipped: 0 });
  };
}

function reply(res: ServerResponse, status: number, body: string): void {
  res.statusCode = status;
  res.end(body);
}

async function listen(server: Server, at: Listen): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(at.port, at.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return (server.address() as AddressInfo).port;
}
