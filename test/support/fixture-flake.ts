// Offline fixture flakes for build tests: a flake with no inputs whose packages.x86_64-linux.<attr> is a
// plain `derivation { builder = "${./bb}/busybox"; args = [ "sh" "-c" … ]; }` that turns a static busybox,
// committed into the flake's git tree, into a docker-archive image, using nothing but that busybox (no
// nixpkgs, no network). The builder comes from the store, so it builds in Nix's sandbox (the node daemon's),
// where nothing but the build's inputs exists, and with the host's Nix alike.
//
// Variants:
//   archive  $out is a docker-archive tarball (BUILD_SCRIPT's "docker-archive or OCI archive" path)
//   stream   $out is an executable script that writes the tarball to stdout, like
//            dockerTools.streamLayeredImage (BUILD_SCRIPT runs it in the node daemon's sandbox); the parts live
//            in a second output. `snoop` makes the script try to read secrets and reach the network first,
//            `scriptFails` makes it fail.
//   broken   the builder prints BROKEN_MESSAGE to stderr and exits 3
//   not-image  $out is a plain 2 MB file that is no image (the busybox binary, not executable): the build
//            succeeds and the import half rejects what it reads
// The image's Cmd prints `<message> (rev <shortRev>)`: a pod's log shows which commit it runs.
//
// Nix 2.8 fetches `refs/heads/master` for a remote `git+http://…?rev=<sha>` with no `ref`, so the
// repository's branch is master (pass `branch` to test anything else).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { hostBin } from '../cluster/paths.ts';
import { gitEnv, runGit, type GitServer } from './git-server.ts';

export type FixtureVariant = 'archive' | 'stream' | 'broken' | 'not-image';

export interface FixtureFlakeOptions {
  /** What the image's Cmd prints, followed by ` (rev <shortRev>)`. */
  message?: string;
  variant?: FixtureVariant;
  /** The package attribute: packages.<system>.<attr>. Default 'image'. */
  attr?: string;
  /** Nix system of the package and its builder; the busybox must run there. Default x86_64-linux. */
  system?: string;
  /** OCI architecture written into the image config. Default amd64. */
  architecture?: string;
  /** Static busybox committed into the flake. Default the host's (busybox-static). */
  busybox?: string;
  /** Branch to commit on (created when missing). Default master: see the header. */
  branch?: string;
  /**
   * The builder first tries what a hostile build would: write into another build's output (`victim`, a store
   * path), plant `post-build-hook = <hook>` in the Nix configurations a shared HOME or the daemon would
   * read, and reach the daemon's socket. Each attempt's outcome goes to the build log as `enbi-attack: …`.
   */
  attack?: { victim: string; hook: string };
  /** A file of this many MiB of zeros in the layer (`/bulk`): an import long enough to break into. */
  bulkMiB?: number;
  /**
   * A second package, packages.<system>.<poison>, whose derivation lists the image (another build's output)
   * as its input `victim` and, before making an image of its own, tries what a hostile build would with it
   * (POISON_ATTEMPTS): chmod and rewrite it, plant a file beside it, reach the daemon's database and config.
   * Each attempt's outcome goes to the build log as `enbi-poison: <attempt>: <outcome>`.
   */
  poison?: string;
  /**
   * Stream variant only: the image script first tries what a hostile one would where it runs (SNOOP_ATTEMPTS):
   * read the Nix Secret and the build container's Nix configuration, environment and HOME, reach the daemon's
   * socket and the network (`gitUrl`, a URL it GETs; `apiServer`, a host:port it connects to). Each attempt's
   * outcome goes to stderr as `enbi-snoop: <attempt>: done: <what it got>` or `refused: <error>`; then the
   * script writes the image as usual.
   */
  snoop?: { gitUrl: string; apiServer: string };
  /** Stream variant only: the image script prints SCRIPT_FAILS_MESSAGE to stderr and exits 4, writing no image. */
  scriptFails?: boolean;
}

/** What the image script of `scriptFails` prints before it exits 4. */
export const SCRIPT_FAILS_MESSAGE = 'enbi-fixture: this image script fails on purpose';

/** What the snooping image script tries, in order; each line of its stderr names one of these. */
export const SNOOP_ATTEMPTS = [
  'read-secret-file',
  'read-nix-user-conf',
  'read-build-env',
  'read-build-home',
  'reach-daemon-socket',
  'reach-git-server',
  'reach-api-server',
] as const;

/** Shell run by the snooping image script (BB is the busybox; there is no PATH where Nix runs it). */
export function snoopScript(o: { gitUrl: string; apiServer: string }): string {
  const api = new URL(`tcp://${o.apiServer}`);
  const git = new URL(o.gitUrl);
  // Inside the single-quoted argument of try: plain URLs and addresses, double-quoted.
  const q = (x: string) => {
    if (/['"$`]/.test(x)) throw new Error(`snoop: ${x} holds a quote or a $`);
    return `"${x}"`;
  };
  return [
    'say() { echo "enbi-snoop: $1: $2" >&2; }',
    // What an attempt got (its output, or its error) on one line, cut short.
    'line() { r=$($BB tr "\\n" " " | $BB head -c 300); echo "\${r:-(no output)}"; }',
    'try() { if r=$( (eval "$2") 2>&1); then say "$1" "done: $(printf %s "$r" | line)"; else say "$1" "refused: $(printf %s "$r" | line)"; fi; }',
    `try read-secret-file '$BB cat /etc/enbi/nix-secret/nix.conf'`,
    `try read-nix-user-conf '$BB cat "\${NIX_USER_CONF_FILES:?is not set}"'`,
    `try read-build-env 'for f in /proc/[0-9]*/environ; do $BB tr "\\0" "\\n" < "$f"; done 2>/dev/null | $BB grep -E "^(NIX_USER_CONF_FILES|ENBI_INSTALLABLE|NIX_REMOTE)="'`,
    `try read-build-home '$BB ls -A /home/build'`,
    `try reach-daemon-socket '$BB test -S /nix/var/nix/daemon-socket/socket && echo the socket is there'`,
    // An HTTP GET by hand: the static busybox's wget crashes here (glibc's resolver, statically linked).
    // (stdin stays open a moment: the server closes the connection as soon as nc closes its side).
    `try reach-git-server '{ printf ${q(`GET ${git.pathname}/info/refs?service=git-upload-pack HTTP/1.0\\r\\n\\r\\n`)}; $BB sleep 2; } | $BB nc -w 5 ${q(git.hostname)} ${q(git.port)}'`,
    `try reach-api-server '$BB nc -w 5 ${q(api.hostname)} ${q(api.port)} </dev/null && echo connected'`,
  ].join('\n');
}

/** What the poison package tries, in order; each line of its log names one of these. */
export const POISON_ATTEMPTS = [
  'chmod-victim',
  'append-victim',
  'replace-victim',
  'plant-beside-victim',
  'write-db',
  'write-daemon-conf',
  'write-store-root',
  'append-pending-output',
  'read-pending-chroot',
  'read-pending-build-dir',
] as const;

export interface FixtureFlake {
  /** Clone URL, e.g. http://10.0.0.1:PORT/app.git */
  url: string;
  /** The commit: 40 hex digits. */
  rev: string;
  shortRev: string;
  /** `git+<url>?rev=<rev>`: a flakeUrl as a NixBuild names it. */
  flakeUrl: string;
  attr: string;
  system: string;
  /** The reference the archive's RepoTags name (enbi retags it). */
  repoTag: string;
  /** The line the image prints when it runs. */
  expectedOutput: string;
}

export const DEFAULT_MESSAGE = 'hello from the enbi fixture flake';
/** What the broken variant's builder prints before it fails. */
export const BROKEN_MESSAGE = 'enbi-fixture: this build is broken on purpose';

const nixString = (s: string): string => JSON.stringify(s).replace(/\$\{/g, '\\${');

/** flake.nix of a fixture: only builtins, only the committed busybox. */
export function fixtureFlakeNix(o: FixtureFlakeOptions = {}): string {
  const variant = o.variant ?? 'archive';
  const attr = o.attr ?? 'image';
  const system = o.system ?? 'x86_64-linux';
  const message = o.message ?? DEFAULT_MESSAGE;
  return `{
  description = "enbi fixture flake (${variant}): a docker-archive made by a static busybox, no inputs";
  outputs = { self }:
    let
      system = ${nixString(system)};
      rev = self.shortRev or "dirty";
      tag = "enbi.test/fixture-${variant}:\${rev}";
      # Called through a path named busybox: as <hash>-busybox it would answer "applet not found".
      bb = "\${./bb}/busybox";
      config = builtins.toJSON {
        architecture = ${nixString(o.architecture ?? 'amd64')};
        os = "linux";
        created = "1970-01-01T00:00:00Z";
        config = { Cmd = [ "/bin/busybox" "echo" (${nixString(message)} + " (rev \${rev})") ]; Env = [ "PATH=/bin" ]; WorkingDir = "/"; };
        rootfs = { type = "layers"; diff_ids = [ "@DIFFID@" ]; };
      };
      manifest = builtins.toJSON [ { Config = "config.json"; RepoTags = [ tag ]; Layers = [ "layer.tar" ]; } ];
      # Nix gives builders PATH=/path-not-set: every tool is the committed busybox, linked by applet name.
      prelude = ''
        set -eu
        $BB mkdir -p "$TMPDIR/bin"
        for a in $($BB --list); do $BB ln -s "$BB" "$TMPDIR/bin/$a"; done
        PATH="$TMPDIR/bin"; export PATH
        cd "$TMPDIR"
        mkdir -p root/bin
        cp "$BB" root/bin/busybox
        chmod 0755 root/bin/busybox
        ln -s busybox root/bin/sh
        ${
          o.bulkMiB !== undefined
            ? `dd if=/dev/zero of=root/bulk bs=1048576 count=${Math.floor(o.bulkMiB)} 2>/dev/null
        touch -d '1970-01-01 00:00:01' root/bulk`
            : ''
        }
        touch -h -d '1970-01-01 00:00:01' root/bin/sh root/bin/busybox root/bin root
        tar -cf layer.tar --numeric-owner -C root bin${o.bulkMiB !== undefined ? ' bulk' : ''}
        d=$(sha256sum layer.tar | cut -d ' ' -f 1)
        printf '%s' "$config" | sed "s/@DIFFID@/sha256:$d/" > config.json
        printf '%s' "$manifest" > manifest.json
        touch -d '1970-01-01 00:00:01' layer.tar config.json manifest.json
      '';
      attack = ${
        o.attack !== undefined
          ? `''
        victim=${nixString(o.attack.victim)}
        if [ -e "$victim" ]; then echo "enbi-attack: victim visible" >&2; else echo "enbi-attack: victim not visible" >&2; fi
        for t in "$victim/pwned" /nix/var/enbi/home/.config/nix/nix.conf /etc/nix/nix.conf /nix/var/nix/daemon-socket/socket; do
          if $BB mkdir -p "$($BB dirname "$t")" 2>/dev/null && echo ${nixString(`post-build-hook = ${o.attack.hook}`)} > "$t" 2>/dev/null; then
            echo "enbi-attack: wrote $t (in the sandbox)" >&2
          else
            echo "enbi-attack: could not write $t" >&2
          fi
        done
      ''`
          : '""'
      };
      scripts = {
        archive = prelude + ''
          tar -cf "$out" manifest.json config.json layer.tar
        '';
        stream = prelude + ''
          mkdir -p "$parts"
          mv manifest.json config.json layer.tar "$parts/"
          { printf '#!%s sh\\nBB=%s\\n' "$BB" "$BB"; printf '%s\\n' "$snoop"
            printf 'exec %s tar -cf - -C %s manifest.json config.json layer.tar\\n' "$BB" "$parts"; } > "$out"
          chmod 0555 "$out"
        '';
        broken = ''
          echo ${nixString(BROKEN_MESSAGE)} >&2
          exit 3
        '';
        not-image = ''
          $BB cp "$BB" "$out"
          $BB chmod 0444 "$out"
        '';
      };
      # Runs after the prelude (PATH holds busybox's applets). Every attempt is reported, none ends the build.
      poisonAttack = ''
        try() { if ( eval "$2" ) >/dev/null 2>&1; then echo "enbi-poison: $1: done" >&2; else echo "enbi-poison: $1: refused" >&2; fi; }
        echo "enbi-poison: builder uid $(id -u), uid_map $(tr -s ' ' < /proc/self/uid_map | tr '\\n' ';')" >&2
        try chmod-victim 'chmod u+w "$victim"'
        try append-victim 'echo poisoned >> "$victim"'
        try replace-victim 'rm -f "$victim" && echo poisoned > "$victim"'
        try plant-beside-victim 'echo poisoned > "$victim.planted"'
        try write-db 'echo poisoned >> /nix/var/nix/db/db.sqlite'
        try write-daemon-conf 'echo "post-build-hook = /bin/false" >> /etc/enbi/nix-daemon/nix.conf'
        try write-store-root 'echo poisoned > /nix/store/enbi-poison-planted'
        # The slow package's output while it is being built (the test starts that build first): its path,
        # its build's chroot in the store, its build directory.
        echo "enbi-poison: at $(date +%s), pending $pending" >&2
        try append-pending-output 'test -e "$pending" && echo poisoned >> "$pending"'
        try read-pending-chroot 'ls -d /nix/store/*-enbi-fixture-slow.drv.chroot'
        try read-pending-build-dir 'ls -d /tmp/nix-build-enbi-fixture-slow* /build/../nix-build-enbi-fixture-slow*'
      '';
      # The same image as the default package, built slowly: its output is written, then held for 25 s
      # before the build ends, so that another build can try it while it is in progress.
      slow = derivation {
        name = "enbi-fixture-slow";
        inherit system config manifest;
        builder = bb;
        BB = bb;
        args = [ "sh" "-c" (prelude + ''
          tar -cf "$out" manifest.json config.json layer.tar
          echo "enbi-slow: holding the output from $(date +%s)" >&2
          sleep 25
          echo "enbi-slow: released at $(date +%s)" >&2
        '') ];
      };
      drv = derivation ({
        name = "enbi-fixture-${variant}";
        inherit system config manifest;
        # From the store, not /bin/sh: Nix's sandbox (the node daemon's) holds nothing but the build's inputs.
        builder = bb;
        args = [ "sh" "-c" (attack + scripts.${nixString(variant)}) ];
        BB = bb;
        snoop = ${nixString([o.snoop !== undefined ? snoopScript(o.snoop) : '', o.scriptFails === true ? `echo ${JSON.stringify(SCRIPT_FAILS_MESSAGE)} >&2; exit 4` : ''].filter((x) => x !== '').join('\n'))};
      } // (if ${nixString(variant)} == "stream" then { outputs = [ "out" "parts" ]; } else { }));
      poison = derivation {
        name = "enbi-fixture-poison";
        inherit system config manifest;
        builder = bb;
        BB = bb;
        # Another build's output as an input: present in the sandbox, as any dependency is.
        victim = drv;
        # And a build's output path that is not an input: only its name, no dependency on it.
        pending = builtins.unsafeDiscardStringContext slow.outPath;
        args = [ "sh" "-c" (prelude + poisonAttack + ''
          tar -cf "$out" manifest.json config.json layer.tar
        '') ];
      };
    in {
      packages.\${system} = { ${nixString(attr)} = drv; }${o.poison !== undefined ? ` // { ${nixString(o.poison)} = poison; slow = slow; }` : ''};
    };
}
`;
}

/** Creates (or adds a commit to) bare repository `name` on the git server holding a fixture flake. */
export async function createFixtureFlake(
  server: GitServer,
  name: string,
  o: FixtureFlakeOptions = {},
): Promise<FixtureFlake> {
  const branch = o.branch ?? 'master';
  const dir = join(server.root, `${name}.git`);
  const env = gitEnv(server.root);
  const exists = await runGit(['rev-parse', '--git-dir'], { cwd: dir, env }).then(
    () => true,
    () => false,
  );
  if (!exists) await runGit(['init', '--quiet', '--bare', `--initial-branch=${branch}`, dir], { env });
  const git = (args: string[], input?: Buffer): Promise<string> => server.git(name, args, input);
  // Plumbing rather than the server's commit(), which writes every file as 100644: busybox must be executable.
  const blob = (data: Buffer | string): Promise<string> => git(['hash-object', '-w', '--stdin'], Buffer.from(data));
  const busybox = await blob(readFileSync(o.busybox ?? hostBin('busybox')));
  const flake = await blob(fixtureFlakeNix(o));
  const bbTree = await git(['mktree'], Buffer.from(`100755 blob ${busybox}\tbusybox\n`));
  const root = await git(['mktree'], Buffer.from(`040000 tree ${bbTree}\tbb\n100644 blob ${flake}\tflake.nix\n`));
  const parent = await git(['rev-parse', '--verify', '--quiet', `refs/heads/${branch}^{commit}`]).catch(() => '');
  const message = Buffer.from(`fixture flake (${o.variant ?? 'archive'})\n`);
  const rev = await git(['commit-tree', root, ...(parent !== '' ? ['-p', parent] : [])], message);
  await git(['update-ref', `refs/heads/${branch}`, rev]);
  const url = server.url(name);
  const shortRev = rev.slice(0, 7);
  return {
    url,
    rev,
    shortRev,
    flakeUrl: `git+${url}?rev=${rev}`,
    attr: o.attr ?? 'image',
    system: o.system ?? 'x86_64-linux',
    repoTag: `enbi.test/fixture-${o.variant ?? 'archive'}:${shortRev}`,
    expectedOutput: `${o.message ?? DEFAULT_MESSAGE} (rev ${shortRev})`,
  };
}
