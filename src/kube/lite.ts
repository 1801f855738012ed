// A small Kubernetes API client for the node agent, which runs on every node and needs four requests (read
// its Node, read/create its NodeImages, patch that object's status): JSON over node:https with the
// ServiceAccount token (re-read at every request: projected tokens rotate) or a kubeconfig's client
// certificate. @kubernetes/client-node costs about 85 MiB resident just loaded; this costs nothing.
import { readFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { request as httpRequest } from 'node:http';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { AGENT_FIELD_MANAGER } from './field-manager.ts';

export interface ApiTarget {
  server: string;
  ca?: Buffer;
  cert?: Buffer;
  key?: Buffer;
  /** Bearer token, read when a request is made. */
  token?: () => string;
  insecure?: boolean;
}

/** An HTTP error from the API server: `code` is the status, `body` its Status JSON (as client-node's errors). */
export class LiteApiError extends Error {
  override name = 'LiteApiError';
  readonly code: number;
  readonly body: string;
  constructor(code: number, body: string, what: string) {
    super(`${what}: HTTP ${code}: ${messageOf(body)}`);
    this.code = code;
    this.body = body;
  }
}

function messageOf(body: string): string {
  try {
    return (JSON.parse(body) as { message?: string }).message ?? body.slice(0, 200);
  } catch {
    return body.slice(0, 200);
  }
}

export class LiteApi {
  readonly target: ApiTarget;
  /** Sent as ?fieldManager= on every write, so managedFields name the agent. */
  readonly fieldManager: string;
  constructor(target: ApiTarget, fieldManager = AGENT_FIELD_MANAGER) {
    this.target = target;
    this.fieldManager = fieldManager;
  }

  get<T>(path: string): Promise<T> {
    return this.request<T>('GET', path);
  }

  post<T>(path: string, body: unknown): Promise<T> {
    return this.request<T>('POST', path, body, 'application/json');
  }

  mergePatch<T>(path: string, body: unknown): Promise<T> {
    return this.request<T>('PATCH', path, body, 'application/merge-patch+json');
  }

  request<T>(method: string, path: string, body?: unknown, contentType?: string): Promise<T> {
    const t = this.target;
    const url = new URL(path, t.server);
    if (method === 'POST' || method === 'PUT' || method === 'PATCH')
      url.searchParams.set('fieldManager', this.fieldManager);
    const data = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const headers: Record<string, string> = {
      Accept: 'application/json',
      ...(data !== undefined
        ? { 'Content-Type': contentType ?? 'application/json', 'Content-Length': String(data.length) }
        : {}),
    };
    const token = t.token?.();
    if (token !== undefined && token !== '') headers.Authorization = `Bearer ${token}`;
    const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
    return new Promise<T>((resolve, reject) => {
      const req = send(
        url,
        {
          method,
          headers,
          ...(url.protocol === 'https:'
            ? { ca: t.ca, cert: t.cert, key: t.key, rejectUnauthorized: t.insecure !== true }
            : {}),
          timeout: 30_000,
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('error', reject);
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            const code = res.statusCode ?? 0;
            if (code < 200 || code > 299) return reject(new LiteApiError(code, text, `${method} ${url.pathname}`));
            try {
              resolve((text === '' ? undefined : JSON.parse(text)) as T);
            } catch (err) {
              reject(err);
            }
          });
        },
      );
      req.on('timeout', () => req.destroy(new Error(`${method} ${url.pathname}: no answer in 30 s`)));
      req.on('error', reject);
      req.end(data);
    });
  }

  /**
   * A streamed GET (a watch): calls onLine for each line of the body as it arrives; resolves when the server
   * ends the response (a watch's timeoutSeconds), rejects on an HTTP error or a broken connection.
   */
  stream(path: string, onLine: (line: string) => void, signal?: AbortSignal): Promise<void> {
    const t = this.target;
    const url = new URL(path, t.server);
    const headers: Record<string, string> = { Accept: 'application/json' };
    const token = t.token?.();
    if (token !== undefined && token !== '') headers.Authorization = `Bearer ${token}`;
    const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
    return new Promise<void>((resolve, reject) => {
      const req = send(
        url,
        {
          method: 'GET',
          headers,
          ...(signal ? { signal } : {}),
          ...(url.protocol === 'https:'
            ? { ca: t.ca, cert: t.cert, key: t.key, rejectUnauthorized: t.insecure !== true }
            : {}),
        },
        (res) => {
          const code = res.statusCode ?? 0;
          let pending = '';
          res.setEncoding('utf8');
          res.on('data', (chunk: string) => {
            pending += chunk;
            if (code < 200 || code > 299) return;
            let nl: number;
            while ((nl = pending.indexOf('\n')) >= 0) {
              const line = pending.slice(0, nl);
              pending = pending.slice(nl + 1);
              if (line.trim() !== '') onLine(line);
            }
          });
          res.on('error', reject);
          res.on('end', () => {
            if (code < 200 || code > 299) return reject(new LiteApiError(code, pending, `GET ${url.pathname}`));
            if (pending.trim() !== '') onLine(pending);
            resolve();
          });
        },
      );
      req.on('error', reject);
      req.end();
    });
  }
}

const SA_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

/** In a pod: the API server from the environment and the ServiceAccount's token and CA. */
export function inClusterTarget(): ApiTarget | undefined {
  const host = process.env.KUBERNETES_SERVICE_HOST;
  const port = process.env.KUBERNETES_SERVICE_PORT;
  if (host === undefined || port === undefined) return undefined;
  let ca: Buffer;
  try {
    ca = readFileSync(join(SA_DIR, 'ca.crt'));
  } catch {
    return undefined;
  }
  return {
    server: `https://${host.includes(':') ? `[${host}]` : host}:${port}`,
    ca,
    token: () => readFileSync(join(SA_DIR, 'token'), 'utf8').trim(),
  };
}

/** The current context of a kubeconfig file (embedded data or file paths; client certificate or token). */
export async function kubeconfigTarget(file: string): Promise<ApiTarget> {
  const { parse } = await import('yaml');
  const doc = parse(readFileSync(file, 'utf8')) as Kubeconfig;
  const ctx = doc.contexts?.find((c) => c.name === doc['current-context'])?.context ?? doc.contexts?.[0]?.context;
  const cluster = doc.clusters?.find((c) => c.name === ctx?.cluster)?.cluster;
  const user = doc.users?.find((u) => u.name === ctx?.user)?.user ?? {};
  if (cluster?.server === undefined) throw new Error(`${file}: no cluster server in the current context`);
  const dir = file.slice(0, file.lastIndexOf('/') + 1);
  const read = (data: string | undefined, path: string | undefined): Buffer | undefined =>
    data !== undefined
      ? Buffer.from(data, 'base64')
      : path !== undefined
        ? readFileSync(path.startsWith('/') ? path : dir + path)
        : undefined;
  const token = user.token ?? (user.tokenFile !== undefined ? readFileSync(user.tokenFile, 'utf8').trim() : undefined);
  const t: ApiTarget = { server: cluster.server };
  const ca = read(cluster['certificate-authority-data'], cluster['certificate-authority']);
  const cert = read(user['client-certificate-data'], user['client-certificate']);
  const key = read(user['client-key-data'], user['client-key']);
  if (ca !== undefined) t.ca = ca;
  if (cert !== undefined) t.cert = cert;
  if (key !== undefined) t.key = key;
  if (token !== undefined) t.token = () => token;
  if (cluster['insecure-skip-tls-verify'] === true) t.insecure = true;
  return t;
}

/** --kubeconfig FILE, else in-cluster, else $KUBECONFIG (its first file), else ~/.kube/config. */
export async function loadTarget(kubeconfig?: string): Promise<ApiTarget> {
  if (kubeconfig !== undefined) return kubeconfigTarget(kubeconfig);
  const inCluster = inClusterTarget();
  if (inCluster !== undefined) return inCluster;
  const env = process.env.KUBECONFIG?.split(':').find((f) => f !== '');
  return kubeconfigTarget(env ?? join(homedir(), '.kube', 'config'));
}

interface Kubeconfig {
  'current-context'?: string;
  contexts?: { name: string; context: { cluster: string; user: string } }[];
  clusters?: {
    name: string;
    cluster: {
      server: string;
      'certificate-authority-data'?: string;
      'certificate-authority'?: string;
      'insecure-skip-tls-verify'?: boolean;
    };
  }[];
  users?: {
    name: string;
    user: {
      token?: string;
      tokenFile?: string;
      'client-certificate-data'?: string;
      'client-certificate'?: string;
      'client-key-data'?: string;
      'client-key'?: string;
    };
  }[];
}

/** What the agent reads of a client-node KubeConfig (tests hand one over); structural, so nothing is imported. */
export interface KubeConfigLike {
  getCurrentCluster(): { server: string; caData?: string; caFile?: string; skipTLSVerify?: boolean } | null;
  getCurrentUser(): { certData?: string; certFile?: string; keyData?: string; keyFile?: string; token?: string } | null;
}

export function targetFromKubeConfig(kc: KubeConfigLike): ApiTarget {
  const cluster = kc.getCurrentCluster();
  if (cluster === null) throw new Error('no cluster in the kubeconfig');
  const user = kc.getCurrentUser() ?? {};
  const read = (data: string | undefined, path: string | undefined) =>
    data !== undefined ? Buffer.from(data, 'base64') : path !== undefined ? readFileSync(path) : undefined;
  const t: ApiTarget = { server: cluster.server };
  const ca = read(cluster.caData, cluster.caFile);
  const cert = read(user.certData, user.certFile);
  const key = read(user.keyData, user.keyFile);
  if (ca !== undefined) t.ca = ca;
  if (cert !== undefined) t.cert = cert;
  if (key !== undefined) t.key = key;
  if (user.token !== undefined) {
    const token = user.token;
    t.token = () => token;
  }
  if (cluster.skipTLSVerify === true) t.insecure = true;
  return t;
}
