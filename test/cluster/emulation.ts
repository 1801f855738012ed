// Nodes that can also build another architecture's Nix system, as a real cluster gets them: binfmt_misc
// with QEMU's user-mode emulator registered with the F (fix binary) flag, so that the kernel opens the
// interpreter once at registration and foreign binaries run inside any container (whose filesystem has no
// QEMU), and the node labelled `enbi.hrzn.ee/builds.<system>=true`, which is how enbi learns it.
//
// binfmt_misc is not per node: a registration holds for the whole host (every node of every cluster
// here, and everything else on the machine). So the harness only ever adds: it mounts binfmt_misc when it
// is not mounted, registers the emulator when no entry of that name exists, and otherwise uses the entry
// it finds as it is (refusing one it cannot use, with the reason). It never changes, disables or removes a
// registration, not even its own at `down`: another cluster or process may use it by then, exactly as it
// may use one registered by someone else. Remove it by hand with `echo -1 > /proc/sys/fs/binfmt_misc/qemu-aarch64`.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { cacheDir, hostBin } from './paths.ts';
import { run } from './proc.ts';

export const BINFMT_DIR = '/proc/sys/fs/binfmt_misc';
/** Where Debian's qemu-user-static puts its registrations (magic, mask, interpreter, flags). */
export const BINFMT_CONF_DIR = '/usr/lib/binfmt.d';
/** enbi's node label for a system a node builds besides its own (src/contract/keys.ts NODE_BUILDS_PREFIX). */
export const BUILDS_LABEL_PREFIX = 'enbi.hrzn.ee/builds.';

/** Nix CPU name → QEMU's name for its user-mode emulator (qemu-<name>-static, binfmt entry qemu-<name>). */
const QEMU_CPU: Readonly<Record<string, string>> = {
  aarch64: 'aarch64',
  armv7l: 'arm',
  i686: 'i386',
  riscv64: 'riscv64',
  powerpc64le: 'ppc64le',
  s390x: 's390x',
  mips64el: 'mips64el',
  loongarch64: 'loongarch64',
};

/** QEMU's name for a Nix system's CPU, or an error for a system the harness cannot emulate. */
export function qemuCpu(system: string): string {
  const m = /^(.+)-linux$/.exec(system);
  const cpu = m?.[1] !== undefined ? QEMU_CPU[m[1]] : undefined;
  if (cpu === undefined)
    throw new Error(
      `cannot emulate ${system}: known are ${Object.keys(QEMU_CPU)
        .map((c) => `${c}-linux`)
        .join(', ')}`,
    );
  return cpu;
}

export const buildsLabel = (system: string): string => `${BUILDS_LABEL_PREFIX}${system}`;

export interface BinfmtEntry {
  name: string;
  enabled: boolean;
  interpreter: string;
  flags: string;
}

/** A binfmt_misc entry as the kernel shows it, or undefined when there is none of that name. */
export function readBinfmt(name: string): BinfmtEntry | undefined {
  let text: string;
  try {
    text = readFileSync(join(BINFMT_DIR, name), 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
  const field = (k: string): string => new RegExp(`^${k} (.*)$`, 'm').exec(text)?.[1]?.trim() ?? '';
  return { name, enabled: /^enabled$/m.test(text), interpreter: field('interpreter'), flags: field('flags:') };
}

/** The registration line of Debian's qemu-user-static for this CPU, with the F flag. */
function registration(cpu: string): { name: string; line: string; interpreter: string } {
  const conf = join(BINFMT_CONF_DIR, `qemu-${cpu}.conf`);
  if (!existsSync(conf))
    throw new Error(`${conf} is missing: run \`bash test/cluster/install-deps.sh\` (installs qemu-user-static)`);
  const line = readFileSync(conf, 'utf8')
    .split('\n')
    .find((l) => l.startsWith(':'));
  // :name:type:offset:magic:mask:interpreter:flags (magic and mask hold no ':' in Debian's files)
  const parts = line?.split(':');
  if (line === undefined || parts === undefined || parts.length !== 8)
    throw new Error(`${conf}: no binfmt_misc registration line`);
  const [, name = '', , , , , interpreter = '', flags = ''] = parts;
  if (!existsSync(interpreter))
    throw new Error(`${interpreter} (named by ${conf}) is missing: run \`bash test/cluster/install-deps.sh\``);
  // F: the kernel opens the interpreter now, so it runs inside containers that do not have it.
  const withF = flags.includes('F') ? flags : `${flags}F`;
  return { name, interpreter, line: [...parts.slice(0, 7), withF].join(':') };
}

/** Checks, changing nothing, that this host has what emulating `system` needs (throws what to install). */
export function preflightEmulation(system: string): void {
  registration(qemuCpu(system));
}

/** Mounts binfmt_misc at its usual place when it is not mounted (host-wide; left mounted). */
async function mountBinfmt(log: (m: string) => void): Promise<void> {
  if (existsSync(join(BINFMT_DIR, 'register'))) return;
  log(`mounting binfmt_misc on ${BINFMT_DIR}`);
  try {
    await run(hostBin('mount'), ['-t', 'binfmt_misc', 'binfmt_misc', BINFMT_DIR]);
  } catch (e) {
    // Another cluster's `up` may have mounted it meanwhile.
    if (!existsSync(join(BINFMT_DIR, 'register')))
      throw new Error(`cannot mount binfmt_misc (needs root): ${(e as Error).message}`);
  }
  const status = readFileSync(join(BINFMT_DIR, 'status'), 'utf8').trim();
  if (status !== 'enabled')
    throw new Error(
      `binfmt_misc is ${status} on this host (${BINFMT_DIR}/status): the harness does not enable it for everyone; \`echo 1 > ${BINFMT_DIR}/status\` does`,
    );
}

/** Whether an entry runs foreign binaries inside containers; the reason when it does not. */
function unusable(e: BinfmtEntry): string | undefined {
  if (!e.enabled) return `it is disabled`;
  if (!e.flags.includes('F'))
    return `it lacks the F flag (flags "${e.flags}"), so its interpreter ${e.interpreter} would have to exist inside every container`;
  return undefined;
}

/**
 * Makes this host run `system`'s binaries through QEMU, in containers too: registers qemu-<cpu> with the F
 * flag unless an entry of that name exists; an existing usable one is used as it is. Returns what it did.
 */
export async function ensureEmulation(system: string, log: (m: string) => void): Promise<'registered' | 'existing'> {
  const cpu = qemuCpu(system);
  const reg = registration(cpu);
  await mountBinfmt(log);
  const found = readBinfmt(reg.name);
  if (found === undefined) {
    try {
      writeFileSync(join(BINFMT_DIR, 'register'), reg.line);
      log(
        `registered binfmt_misc ${reg.name} → ${reg.interpreter} (flags ${reg.line.split(':')[7]}) for ${system}; host-wide, left registered at \`down\``,
      );
    } catch (e) {
      // EEXIST: registered meanwhile by someone else; judged below like any existing entry.
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST')
        throw new Error(`registering ${reg.name} in ${BINFMT_DIR}/register failed: ${(e as Error).message}`);
    }
  }
  const now = readBinfmt(reg.name);
  if (now === undefined) throw new Error(`${BINFMT_DIR}/${reg.name} is missing right after registering it`);
  const why = unusable(now);
  if (why !== undefined) {
    throw new Error(
      `the host's binfmt_misc entry ${reg.name} cannot serve ${system} builds in containers: ${why}. ` +
        `It was not made by this harness, which never changes another's registration: fix it by hand (echo -1 > ${BINFMT_DIR}/${reg.name} removes it; the harness then registers its own)`,
    );
  }
  if (found !== undefined)
    log(`binfmt_misc ${reg.name} already registered (flags ${now.flags}): using it for ${system}`);
  return found === undefined ? 'registered' : 'existing';
}

/** Why this host cannot run `system`'s binaries in containers right now, or undefined when it can. */
export function emulationMissing(system: string): string | undefined {
  let cpu: string;
  try {
    cpu = qemuCpu(system);
  } catch (e) {
    return (e as Error).message;
  }
  if (!existsSync(join(BINFMT_DIR, 'register'))) return `binfmt_misc is not mounted on ${BINFMT_DIR}`;
  const e = readBinfmt(`qemu-${cpu}`);
  if (e === undefined) return `no binfmt_misc entry qemu-${cpu}`;
  return unusable(e);
}

/**
 * For a test that runs `system`'s binaries: makes the host able to (ensureEmulation, idempotent) and fails,
 * never skips, when it cannot. Each such test file calls it in its own `before`, so that it passes alone and
 * in any order, not only after another file registered QEMU (test/cluster/README.md, "Host state").
 */
export async function requireEmulation(system: string, log: (m: string) => void = () => undefined): Promise<void> {
  await ensureEmulation(system, log);
  const missing = emulationMissing(system);
  if (missing !== undefined) throw new Error(`this host cannot run ${system} binaries in containers: ${missing}`);
}

/** The static busybox for an OCI architecture (arm64) that install-deps.sh fetched, or an error saying how to get it. */
export function foreignBusybox(architecture = 'arm64'): string {
  const path = join(cacheDir(), 'busybox', architecture, 'busybox');
  if (!existsSync(path)) {
    throw new Error(
      `${path} is missing: run \`bash test/cluster/install-deps.sh\` (as root), which fetches Debian's busybox-static:${architecture}`,
    );
  }
  return path;
}
