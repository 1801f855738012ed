// The node's Nix daemon, as deploy/nix-daemon.yaml's `nix-daemon` container runs it, for tests whose nodes are
// processes on this machine: the host's Debian 12 nix 2.8 (the builder image carries trixie's 2.26: docs/build-job.md,
// "Where the tests' daemon differs"), with the image's build users (install-build-deps.sh), started as root in a private
// mount namespace whose /nix is the node's cache directory (the controller's cache.hostPath), with the
// nix.conf of deploy/nix-daemon.yaml's ConfigMap plus what this offline machine needs. Build Jobs then find its
// socket at /nix/var/nix/daemon-socket/socket in the store they mount read-only.
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { promisify } from 'node:util';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { hostBin } from '../cluster/paths.ts';
import { until } from './kube.ts';

export interface NixDaemon {
  socket: string;
  /** Everything the daemon printed (accepted connections, warnings about ignored client settings). */
  log(): string;
  /**
   * Runs the host's `nix`/`nix-store` as a client of this daemon (as root, which deploy/'s nix.conf does not
   * trust either), where /nix is the node's store read-only, as a build Job sees it. Resolves with stdout.
   */
  client(args: string[]): Promise<string>;
  stop(): Promise<void>;
}

/** The daemon's nix.conf as deploy/nix-daemon.yaml ships it. */
export function deployedDaemonConf(): string {
  const docs = parseAllDocuments(readFileSync(new URL('../../deploy/nix-daemon.yaml', import.meta.url), 'utf8')).map(
    (d) => d.toJS() as { kind?: string; metadata?: { name?: string }; data?: Record<string, string> },
  );
  const conf = docs.find((d) => d.kind === 'ConfigMap' && d.metadata?.name === 'enbi-nix-daemon')?.data?.['nix.conf'];
  if (conf === undefined) throw new Error('deploy/nix-daemon.yaml has no ConfigMap enbi-nix-daemon with nix.conf');
  return conf;
}

/**
 * Starts the daemon for a node's cache directory. `extraPlatforms` as a node with binfmt emulation sets it;
 * no substituters (no network here).
 */
export async function startNixDaemon(cacheDir: string, o: { extraPlatforms?: string[] } = {}): Promise<NixDaemon> {
  mkdirSync(cacheDir, { recursive: true });
  const confDir = join(cacheDir, '..', `nix-daemon-conf-${process.pid}`);
  mkdirSync(confDir, { recursive: true });
  writeFileSync(
    join(confDir, 'nix.conf'),
    `${deployedDaemonConf()}\n# test machine: offline\nsubstituters =\nextra-platforms = ${(o.extraPlatforms ?? []).join(' ')}\n`,
  );
  const socket = join(cacheDir, 'var/nix/daemon-socket/socket');
  // /nix on this machine is only a mount point, created once; the store is the cache directory.
  const script =
    'mkdir -p /nix && mount --bind "$1" /nix && mkdir -p /nix/var/nix/daemon-socket && rm -f /nix/var/nix/daemon-socket/socket && exec "$2" daemon';
  let out = '';
  const child: ChildProcess = spawn(
    'unshare',
    ['--mount', '--propagation', 'private', 'sh', '-c', script, 'nix-daemon', cacheDir, hostBin('nix')],
    {
      env: { ...process.env, NIX_CONF_DIR: confDir },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  let exited = false;
  child.on('exit', () => (exited = true));
  await until(
    'the Nix daemon socket',
    async () => {
      if (exited) throw new Error(`the Nix daemon exited: ${out}`);
      return existsSync(socket) ? true : undefined;
    },
    30_000,
    100,
  );
  const clientScript = 'mkdir -p /nix && mount --bind -o ro "$1" /nix && shift && exec "$@"';
  return {
    socket,
    log: () => out,
    client: async (args) => {
      const [cmd = 'nix', ...rest] = args;
      const r = await promisify(execFile)(
        'unshare',
        [
          '--mount',
          '--propagation',
          'private',
          'sh',
          '-c',
          clientScript,
          'nix-client',
          cacheDir,
          hostBin(cmd),
          ...rest,
        ],
        {
          env: { ...process.env, NIX_REMOTE: 'daemon', NIX_CONFIG: 'experimental-features = nix-command flakes' },
          maxBuffer: 64 << 20,
        },
      );
      return r.stdout;
    },
    stop: async () => {
      if (exited) return;
      child.kill('SIGTERM');
      await until('the Nix daemon to stop', async () => (exited ? true : undefined), 10_000, 100).catch(() =>
        child.kill('SIGKILL'),
      );
    },
  };
}
