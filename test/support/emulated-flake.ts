// An offline fixture flake for another architecture whose build really runs that architecture's code: the
// derivation's builder *is* the committed foreign static busybox (`builder = "${./bb}/busybox"`, run as
// `busybox sh -c …`), so on an x86_64 node the whole build runs under QEMU through binfmt_misc, and Nix
// accepts it only with `extra-platforms = <system>`. (fixture-flake.ts's flakes run `/bin/sh`, the
// builder image's own busybox, as their builder.)
//
// Proof that it ran emulated, in three places:
//   - the build log says `enbi-fixture: building on <uname -m>`, and the build fails (exit 4) unless
//     `uname -m` is the system's CPU (aarch64 for aarch64-linux);
//   - the image holds /etc/enbi-build-machine with that output;
//   - the image's Cmd prints `<message> (rev <shortRev>), built on <that>, running on <its own uname -m>`.
// The image config says `architecture: <architecture>` (arm64), so it is imported for linux/arm64.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { foreignBusybox } from '../cluster/emulation.ts';
import type { FixtureFlake } from './fixture-flake.ts';
import { gitEnv, runGit, type GitServer } from './git-server.ts';

export interface EmulatedFlakeOptions {
  /** Nix system of the package; its builder runs that CPU's code. Default aarch64-linux. */
  system?: string;
  /** OCI architecture of the busybox and the image. Default arm64. */
  architecture?: string;
  /** The static busybox of that architecture. Default the one install-deps.sh fetched (foreignBusybox()). */
  busybox?: string;
  /** First part of what the image prints. */
  message?: string;
  /** packages.<system>.<attr>. Default 'image'. */
  attr?: string;
  /** Branch to commit on. Default master (Nix 2.8 fetches master for `?rev=` without `ref`). */
  branch?: string;
  /**
   * Several systems in one flake, each `packages.<system>.<attr>` built by its own CPU's busybox (the host's
   * natively, a foreign one under QEMU): one flake revision, one image per platform. Overrides
   * system/architecture/busybox.
   */
  targets?: { system: string; architecture: string; busybox: string }[];
}

export interface EmulatedFlake extends FixtureFlake {
  /** What `uname -m` says inside the build: the system's CPU (aarch64). */
  machine: string;
}

export const EMULATED_MESSAGE = 'hello from the emulated enbi fixture flake';

const nixString = (s: string): string => JSON.stringify(s).replace(/\$\{/g, '\\${');

/** flake.nix of the emulated fixture: only builtins, only the committed busybox, which is the builder. */
const targetsOf = (o: EmulatedFlakeOptions) =>
  o.targets ?? [
    {
      system: o.system ?? 'aarch64-linux',
      architecture: o.architecture ?? 'arm64',
      busybox: o.busybox ?? foreignBusybox(o.architecture ?? 'arm64'),
    },
  ];
/** The flake's directory holding a target's busybox: `bb` for one target (as before), `bb-<system>` for several. */
const bbDir = (o: EmulatedFlakeOptions, system: string) => (o.targets === undefined ? 'bb' : `bb-${system}`);

export function emulatedFlakeNix(o: EmulatedFlakeOptions = {}): string {
  const targets = targetsOf(o);
  return `{
  description = "enbi fixture flake (emulated): each system's busybox is its builder itself, no inputs";
  outputs = { self }:
    let
      rev = self.shortRev or "dirty";
      tag = "enbi.test/fixture-emulated:\${rev}";
      mk = { system, architecture, bb, machine }: let
      config = builtins.toJSON {
        inherit architecture;
        os = "linux";
        created = "1970-01-01T00:00:00Z";
        config = {
          Cmd = [ "/bin/busybox" "sh" "-c" ("echo \\"$(cat /etc/enbi-message) (rev " + rev + "), built on $(cat /etc/enbi-build-machine), running on $(uname -m)\\"") ];
          Env = [ "PATH=/bin" ];
          WorkingDir = "/";
        };
        rootfs = { type = "layers"; diff_ids = [ "@DIFFID@" ]; };
      };
      manifest = builtins.toJSON [ { Config = "config.json"; RepoTags = [ tag ]; Layers = [ "layer.tar" ]; } ];
      # Runs as \`busybox sh -c\`: every command below is that busybox, i.e. the target CPU's code.
      script = ''
        set -eu
        $BB mkdir -p "$TMPDIR/bin"
        # Only the applets used: each link is a process, and each process here starts an emulator.
        for a in cat chmod cp cut ln mkdir sed sha256sum tar touch uname; do $BB ln -s "$BB" "$TMPDIR/bin/$a"; done
        PATH="$TMPDIR/bin"; export PATH
        m=$(uname -m)
        echo "enbi-fixture: building on $m"
        [ "$m" = "$EXPECT_MACHINE" ] || { echo "enbi-fixture: expected to run on $EXPECT_MACHINE, not $m" >&2; exit 4; }
        cd "$TMPDIR"
        mkdir -p root/bin root/etc
        cp "$BB" root/bin/busybox
        chmod 0755 root/bin/busybox
        for a in sh cat uname echo; do ln -s busybox "root/bin/$a"; done
        printf '%s\\n' "$m" > root/etc/enbi-build-machine
        printf '%s\\n' "$MESSAGE" > root/etc/enbi-message
        touch -h -d '1970-01-01 00:00:01' root/bin/* root/etc/* root/bin root/etc root
        tar -cf layer.tar --numeric-owner -C root bin etc
        d=$(sha256sum layer.tar | cut -d ' ' -f 1)
        printf '%s' "$config" | sed "s/@DIFFID@/sha256:$d/" > config.json
        printf '%s' "$manifest" > manifest.json
        touch -d '1970-01-01 00:00:01' layer.tar config.json manifest.json
        tar -cf "$out" manifest.json config.json layer.tar
      '';
      in derivation {
        name = "enbi-fixture-emulated";
        inherit system config manifest;
        builder = bb;
        args = [ "sh" "-c" script ];
        BB = bb;
        EXPECT_MACHINE = machine;
        MESSAGE = ${nixString(o.message ?? EMULATED_MESSAGE)};
      };
    in {
${targets
  .map(
    (t) => `      # Called through a path named busybox: as <hash>-busybox it would answer "applet not found".
      packages.${nixString(t.system)}.${nixString(o.attr ?? 'image')} = mk { system = ${nixString(t.system)}; architecture = ${nixString(t.architecture)}; bb = "\${./${bbDir(o, t.system)}}/busybox"; machine = ${nixString(t.system.replace(/-linux$/, ''))}; };`,
  )
  .join('\n')}
    };
}
`;
}

/** Creates (or adds a commit to) bare repository `name` on the git server holding the emulated fixture. */
export async function createEmulatedFlake(
  server: GitServer,
  name: string,
  o: EmulatedFlakeOptions = {},
): Promise<EmulatedFlake> {
  const branch = o.branch ?? 'master';
  const system = o.system ?? 'aarch64-linux';
  const dir = join(server.root, `${name}.git`);
  const env = gitEnv(server.root);
  const exists = await runGit(['rev-parse', '--git-dir'], { cwd: dir, env }).then(
    () => true,
    () => false,
  );
  if (!exists) await runGit(['init', '--quiet', '--bare', `--initial-branch=${branch}`, dir], { env });
  const git = (args: string[], input?: Buffer): Promise<string> => server.git(name, args, input);
  // Plumbing: the busybox must be committed executable (mode 100755).
  const blob = (data: Buffer | string): Promise<string> => git(['hash-object', '-w', '--stdin'], Buffer.from(data));
  const flake = await blob(emulatedFlakeNix(o));
  const dirs: string[] = [];
  for (const t of targetsOf(o)) {
    const bbTree = await git(['mktree'], Buffer.from(`100755 blob ${await blob(readFileSync(t.busybox))}\tbusybox\n`));
    dirs.push(`040000 tree ${bbTree}\t${bbDir(o, t.system)}\n`);
  }
  const root = await git(['mktree'], Buffer.from(`${dirs.sort().join('')}100644 blob ${flake}\tflake.nix\n`));
  const parent = await git(['rev-parse', '--verify', '--quiet', `refs/heads/${branch}^{commit}`]).catch(() => '');
  const rev = await git(
    ['commit-tree', root, ...(parent !== '' ? ['-p', parent] : [])],
    Buffer.from(`emulated fixture flake (${system})\n`),
  );
  await git(['update-ref', `refs/heads/${branch}`, rev]);
  const url = server.url(name);
  const shortRev = rev.slice(0, 7);
  const machine = system.replace(/-linux$/, '');
  return {
    url,
    rev,
    shortRev,
    flakeUrl: `git+${url}?rev=${rev}`,
    attr: o.attr ?? 'image',
    system,
    repoTag: `enbi.test/fixture-emulated:${shortRev}`,
    machine,
    expectedOutput: `${o.message ?? EMULATED_MESSAGE} (rev ${shortRev}), built on ${machine}, running on ${machine}`,
  };
}
