// A real Git smart-HTTP server for tests and benches: a Node `http` server on 127.0.0.1 that runs
// `git http-backend` as a CGI for every request, serving bare repositories from a temporary directory,
// with optional Basic auth and counters of requests and bytes so a test can show what a fetch transferred.
// Repositories are written with the native git CLI (fast-import and plumbing) under a fixed identity.
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync, inflateSync } from 'node:zlib';

export const HTTP_BACKEND = '/usr/lib/git-core/git-http-backend';

/** File contents by path; `null` deletes the path in `commit`. */
/** Path → content (a symlink when `{ symlink: target }`, deleted when null). */
export type FileMap = Record<string, string | Buffer | null | { symlink: string }>;

export interface GitServerOptions {
  /** Require HTTP Basic auth with exactly these credentials. */
  auth?: { username: string; password: string };
  /**
   * Address to listen on (default 127.0.0.1), e.g. the test cluster's bridge gateway so that pods can
   * fetch. baseUrl and url() use it; for a wildcard (0.0.0.0, ::) they say 127.0.0.1: use urlAt().
   */
  host?: string;
  /** Port to listen on (default: any free one). */
  port?: number;
  /** Directory of the bare repositories (default: a new temporary one, removed on close); repositories in it are served. */
  root?: string;
}

export interface RequestRecord {
  method: string;
  path: string;
  status: number;
  /** Response body bytes sent to the client. */
  bytesOut: number;
  /** Request body bytes received (as sent, before any gunzip). */
  bytesIn: number;
}

export interface GitServerStats {
  requests: number;
  bytesOut: number;
  bytesIn: number;
  unauthorized: number;
  log: RequestRecord[];
}

export interface CommitOptions {
  branch?: string;
  message?: string;
  /** Where a branch that does not exist yet starts (a branch, tag or commit); a root commit when absent. */
  from?: string;
}

export interface GitServer {
  /** http://127.0.0.1:PORT */
  baseUrl: string;
  /** Directory holding the bare repositories (`<name>.git`). */
  root: string;
  readonly stats: GitServerStats;
  resetStats(): void;
  /** Clone URL of a repository served here. */
  url(name: string): string;
  /** Clone URL of a repository through another address of this host (when listening on a wildcard). */
  urlAt(host: string, name: string): string;
  /** The port the server listens on. */
  port: number;
  /**
   * Makes fetches hang as a stuck server does: 'mid-pack' answers git-upload-pack's headers and a first
   * packet line, then nothing; 'silent' never answers it. 'off' ends the hung responses and serves again.
   */
  hang(mode: 'off' | 'mid-pack' | 'silent'): void;
  /** Creates a bare repository whose HEAD names `defaultBranch` (main) with one commit of `files`; returns the commit. */
  createRepo(name: string, files: FileMap, options?: { defaultBranch?: string; message?: string }): Promise<string>;
  /** Commits `files` (added, replaced or, when null, deleted) on top of `branch` (created when missing); returns the commit. */
  commit(name: string, files: FileMap, options?: CommitOptions): Promise<string>;
  /** Tags `target` (a branch, tag or commit); annotated when `message` is given. Returns the tag ref's target oid. */
  tag(name: string, tag: string, target: string, message?: string): Promise<string>;
  /** Runs the native git CLI in a repository's directory with the fixed identity; returns trimmed stdout. */
  git(name: string, args: readonly string[], input?: Buffer): Promise<string>;
  close(): Promise<void>;
}

const IDENTITY = { name: 'Enbi Test', email: 'test@enbi.invalid' };
const BASE_TIME = 1_700_000_000;

/** The environment every native git call gets: no user or system configuration, a fixed identity. */
export function gitEnv(home: string): NodeJS.ProcessEnv {
  return {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    HOME: home,
    GIT_CONFIG_NOSYSTEM: '1',
    GIT_CONFIG_GLOBAL: '/dev/null',
    GIT_TERMINAL_PROMPT: '0',
    GIT_AUTHOR_NAME: IDENTITY.name,
    GIT_AUTHOR_EMAIL: IDENTITY.email,
    GIT_AUTHOR_DATE: `${BASE_TIME} +0000`,
    GIT_COMMITTER_NAME: IDENTITY.name,
    GIT_COMMITTER_EMAIL: IDENTITY.email,
    GIT_COMMITTER_DATE: `${BASE_TIME} +0000`,
    LANG: 'C',
  };
}

export interface RunResult {
  stdout: Buffer;
  stderr: string;
  code: number;
}

/** Spawns a process asynchronously (never spawnSync: the server answering it may live in this process). */
export function run(
  cmd: string,
  args: readonly string[],
  opts: { cwd?: string; env?: NodeJS.ProcessEnv; input?: Buffer } = {},
): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: opts.cwd, env: opts.env, stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => err.push(c));
    child.on('error', reject);
    child.on('close', (code) =>
      resolve({ stdout: Buffer.concat(out), stderr: Buffer.concat(err).toString('utf8'), code: code ?? -1 }),
    );
    child.stdin.on('error', () => {});
    child.stdin.end(opts.input);
  });
}

/** Runs git and fails with its stderr when it exits non-zero. */
export async function runGit(
  args: readonly string[],
  opts: { cwd?: string; env: NodeJS.ProcessEnv; input?: Buffer },
): Promise<string> {
  const r = await run('git', args, opts);
  if (r.code !== 0) throw new Error(`git ${args.join(' ')} failed (${r.code}): ${r.stderr.trim()}`);
  return r.stdout.toString('utf8').trim();
}

/** A URL on 127.0.0.1 whose port was free a moment ago and is now closed: nothing listens there. */
export async function closedPortUrl(path = '/repo.git'): Promise<string> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return `http://127.0.0.1:${port}${path}`;
}

export async function startGitServer(options: GitServerOptions = {}): Promise<GitServer> {
  const root = options.root ?? (await mkdtemp(join(tmpdir(), 'enbi-git-server-')));
  const env = gitEnv(root);
  const stats: GitServerStats = { requests: 0, bytesOut: 0, bytesIn: 0, unauthorized: 0, log: [] };
  let clock = 0;

  let hangMode: 'off' | 'mid-pack' | 'silent' = 'off';
  const hung: (() => void)[] = [];
  const server: Server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      if (!res.headersSent) res.writeHead(500, { 'Content-Type': 'text/plain' });
      res.end(`git-server: ${(err as Error).message}\n`);
    });
  });

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const record: RequestRecord = {
      method: req.method ?? 'GET',
      path: req.url ?? '/',
      status: 0,
      bytesOut: 0,
      bytesIn: 0,
    };
    stats.requests++;
    stats.log.push(record);
    const count = (chunk: Buffer): void => {
      record.bytesOut += chunk.length;
      stats.bytesOut += chunk.length;
    };

    let remoteUser: string | undefined;
    if (options.auth !== undefined) {
      remoteUser = checkBasicAuth(req.headers.authorization, options.auth);
      if (remoteUser === undefined) {
        stats.unauthorized++;
        record.status = 401;
        req.resume();
        const body = Buffer.from('authentication required\n');
        count(body);
        res.writeHead(401, {
          'WWW-Authenticate': 'Basic realm="enbi-test"',
          'Content-Type': 'text/plain',
          'Content-Length': body.length,
        });
        res.end(body);
        return;
      }
    }

    // The request body, inflated when the client compressed it (native git gzips large negotiation requests).
    const raw: Buffer[] = [];
    for await (const chunk of req) raw.push(chunk as Buffer);
    const sent = Buffer.concat(raw);
    record.bytesIn = sent.length;
    stats.bytesIn += sent.length;
    const encoding = (req.headers['content-encoding'] ?? '').toLowerCase();
    const body =
      encoding === 'gzip' || encoding === 'x-gzip'
        ? gunzipSync(sent)
        : encoding === 'deflate'
          ? inflateSync(sent)
          : sent;

    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    if (hangMode !== 'off' && req.method === 'POST' && url.pathname.endsWith('/git-upload-pack')) {
      record.status = 200;
      if (hangMode === 'mid-pack') {
        res.writeHead(200, { 'Content-Type': 'application/x-git-upload-pack-result', 'Cache-Control': 'no-cache' });
        res.write('0008NAK\n');
      }
      await new Promise<void>((resolve) => hung.push(resolve));
      res.destroy();
      return;
    }
    const cgiEnv: NodeJS.ProcessEnv = {
      ...env,
      GIT_PROJECT_ROOT: root,
      GIT_HTTP_EXPORT_ALL: '1',
      GATEWAY_INTERFACE: 'CGI/1.1',
      SERVER_PROTOCOL: `HTTP/${req.httpVersion}`,
      SERVER_SOFTWARE: 'enbi-test-git-server',
      REQUEST_METHOD: req.method ?? 'GET',
      PATH_INFO: decodeURIComponent(url.pathname),
      QUERY_STRING: url.search.replace(/^\?/, ''),
      CONTENT_TYPE: req.headers['content-type'] ?? '',
      CONTENT_LENGTH: String(body.length),
      REMOTE_ADDR: req.socket.remoteAddress ?? '127.0.0.1',
    };
    if (remoteUser !== undefined) {
      cgiEnv.REMOTE_USER = remoteUser;
      cgiEnv.AUTH_TYPE = 'Basic';
    }
    // Other request headers as HTTP_*: http-backend reads HTTP_GIT_PROTOCOL (protocol v2) this way.
    for (const [name, value] of Object.entries(req.headers)) {
      const lower = name.toLowerCase();
      if (
        value === undefined ||
        ['authorization', 'content-type', 'content-length', 'content-encoding', 'transfer-encoding'].includes(lower)
      )
        continue;
      cgiEnv[`HTTP_${lower.toUpperCase().replace(/-/g, '_')}`] = Array.isArray(value) ? value.join(', ') : value;
    }

    const child = spawn(HTTP_BACKEND, [], { env: cgiEnv, stdio: ['pipe', 'pipe', 'pipe'] });
    const stderr: Buffer[] = [];
    child.stderr.on('data', (c: Buffer) => stderr.push(c));
    child.stdin.on('error', () => {});
    child.stdin.end(body);

    // CGI output: headers (with an optional Status), a blank line, then the body, streamed through.
    let head = Buffer.alloc(0);
    let headersDone = false;
    const finished = new Promise<void>((resolve, reject) => {
      child.on('error', reject);
      child.on('close', (code) => {
        if (!headersDone) {
          const message = Buffer.from(
            `git http-backend exited ${code} before sending headers: ${Buffer.concat(stderr).toString('utf8')}`,
          );
          record.status = 500;
          count(message);
          res.writeHead(500, { 'Content-Type': 'text/plain' });
          res.end(message);
        } else {
          res.end();
        }
        resolve();
      });
    });
    child.stdout.on('data', (chunk: Buffer) => {
      if (headersDone) {
        count(chunk);
        if (!res.write(chunk)) {
          child.stdout.pause();
          res.once('drain', () => child.stdout.resume());
        }
        return;
      }
      head = Buffer.concat([head, chunk]);
      const sep = findHeaderEnd(head);
      if (sep === undefined) return;
      headersDone = true;
      const headerText = head.subarray(0, sep.index).toString('latin1');
      const rest = head.subarray(sep.index + sep.length);
      let status = 200;
      let statusText: string | undefined;
      const headers: Record<string, string> = {};
      for (const line of headerText.split(/\r?\n/)) {
        const colon = line.indexOf(':');
        if (colon <= 0) continue;
        const key = line.slice(0, colon).trim();
        const value = line.slice(colon + 1).trim();
        if (key.toLowerCase() === 'status') {
          const m = /^(\d{3})\s*(.*)$/.exec(value);
          if (m !== null) {
            status = Number(m[1]);
            statusText = m[2] || undefined;
          }
        } else {
          headers[key] = value;
        }
      }
      record.status = status;
      if (statusText !== undefined) res.writeHead(status, statusText, headers);
      else res.writeHead(status, headers);
      if (rest.length > 0) {
        count(rest);
        res.write(rest);
      }
    });
    await finished;
  }

  const host = options.host ?? '127.0.0.1';
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, host, resolve);
  });
  const { port } = server.address() as AddressInfo;
  const urlHost = (h: string): string => (h.includes(':') ? `[${h}]` : h);
  const baseUrl = `http://${host === '0.0.0.0' || host === '::' ? '127.0.0.1' : urlHost(host)}:${port}`;

  const repoDir = (name: string): string => join(root, `${name}.git`);

  async function git(name: string, args: readonly string[], input?: Buffer): Promise<string> {
    return runGit(args, { cwd: repoDir(name), env, ...(input !== undefined ? { input } : {}) });
  }

  async function commit(name: string, files: FileMap, opts: CommitOptions = {}): Promise<string> {
    const branch = opts.branch ?? (await git(name, ['symbolic-ref', '--short', 'HEAD']));
    const ref = `refs/heads/${branch}`;
    const parent = (
      await run('git', ['rev-parse', '--verify', '--quiet', `${ref}^{commit}`], { cwd: repoDir(name), env })
    ).stdout
      .toString('utf8')
      .trim();
    // One fast-import stream per commit: fast even for thousands of files, and deterministic (fixed identity, fixed clock).
    const when = `${BASE_TIME + ++clock * 60} +0000`;
    const message = Buffer.from(opts.message ?? `commit ${clock}`);
    const parts: Buffer[] = [
      Buffer.from(
        `commit ${ref}\nauthor ${IDENTITY.name} <${IDENTITY.email}> ${when}\ncommitter ${IDENTITY.name} <${IDENTITY.email}> ${when}\ndata ${message.length}\n`,
      ),
      message,
      Buffer.from('\n'),
    ];
    const start =
      parent !== ''
        ? parent
        : opts.from !== undefined
          ? await git(name, ['rev-parse', '--verify', `${opts.from}^{commit}`])
          : '';
    if (start !== '') parts.push(Buffer.from(`from ${start}\n`));
    for (const [path, content] of Object.entries(files)) {
      if (/[\n"]/.test(path) || path.startsWith('/')) throw new Error(`unsupported path ${JSON.stringify(path)}`);
      if (content === null) {
        parts.push(Buffer.from(`D ${path}\n`));
        continue;
      }
      const link = typeof content === 'object' && !Buffer.isBuffer(content) ? content.symlink : undefined;
      const data =
        link !== undefined
          ? Buffer.from(link)
          : typeof content === 'string'
            ? Buffer.from(content)
            : (content as Buffer);
      parts.push(
        Buffer.from(`M ${link !== undefined ? '120000' : '100644'} inline ${path}\ndata ${data.length}\n`),
        data,
        Buffer.from('\n'),
      );
    }
    parts.push(Buffer.from('\n'));
    await git(name, ['fast-import', '--quiet', '--date-format=raw'], Buffer.concat(parts));
    return git(name, ['rev-parse', `${ref}^{commit}`]);
  }

  return {
    baseUrl,
    root,
    stats,
    resetStats(): void {
      stats.requests = 0;
      stats.bytesOut = 0;
      stats.bytesIn = 0;
      stats.unauthorized = 0;
      stats.log = [];
    },
    hang(mode): void {
      hangMode = mode;
      if (mode === 'off') for (const release of hung.splice(0)) release();
    },
    url: (name: string) => `${baseUrl}/${name}.git`,
    urlAt: (h: string, name: string) => `http://${urlHost(h)}:${port}/${name}.git`,
    port,
    async createRepo(name, files, opts = {}): Promise<string> {
      const branch = opts.defaultBranch ?? 'main';
      await runGit(['init', '--quiet', '--bare', `--initial-branch=${branch}`, repoDir(name)], { env });
      return commit(name, files, { branch, message: opts.message ?? 'initial' });
    },
    commit,
    async tag(name, tag, target, message): Promise<string> {
      const args = message === undefined ? ['tag', tag, target] : ['tag', '-a', '-m', message, tag, target];
      await git(name, args);
      return git(name, ['rev-parse', `refs/tags/${tag}`]);
    },
    git,
    async close(): Promise<void> {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      // A root the caller gave is theirs to keep.
      if (options.root === undefined) await rm(root, { recursive: true, force: true });
    },
  };
}

function checkBasicAuth(
  header: string | undefined,
  expected: { username: string; password: string },
): string | undefined {
  const m = /^Basic\s+(\S+)$/i.exec(header ?? '');
  if (m === null) return undefined;
  const decoded = Buffer.from(m[1]!, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 0) return undefined;
  const username = decoded.slice(0, colon);
  const password = decoded.slice(colon + 1);
  return username === expected.username && password === expected.password ? username : undefined;
}

function findHeaderEnd(buf: Buffer): { index: number; length: number } | undefined {
  const crlf = buf.indexOf('\r\n\r\n');
  const lf = buf.indexOf('\n\n');
  if (crlf >= 0 && (lf < 0 || crlf <= lf)) return { index: crlf, length: 4 };
  if (lf >= 0) return { index: lf, length: 2 };
  return undefined;
}
