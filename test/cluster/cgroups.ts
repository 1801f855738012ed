// Per-node cgroup roots (cgroup v1 here): kubelet wants its cgroupRoot to exist in every hierarchy, and
// tearing a node down means killing what runs under it and removing the directories.
import { existsSync, mkdirSync, readFileSync, readdirSync, rmdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

/** Mount points of every cgroup hierarchy (v1 controllers and the v2 one, if mounted). */
export function cgroupMounts(): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .filter((l) => / - cgroup2? /.test(l))
    .map((l) => l.split(' ')[4])
    .filter((m): m is string => !!m);
}

export function createCgroupRoot(root: string): void {
  for (const m of cgroupMounts()) {
    const dir = join(m, root);
    mkdirSync(dir, { recursive: true });
    // A new cpuset cgroup has no cpus or mems until told, and then nothing can run in it.
    if (existsSync(join(dir, 'cpuset.cpus'))) {
      for (const f of ['cpuset.cpus', 'cpuset.mems']) {
        if (readFileSync(join(dir, f), 'utf8').trim() === '') {
          writeFileSync(join(dir, f), readFileSync(join(dirname(dir), f), 'utf8'));
        }
      }
    }
  }
}

function subdirsDeepestFirst(dir: string): string[] {
  if (!existsSync(dir)) return [];
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    if (e.isDirectory()) out.push(...subdirsDeepestFirst(join(dir, e.name)));
  }
  out.push(dir);
  return out;
}

/** Pids of every process in root or below, in any hierarchy. */
export function cgroupPids(root: string): number[] {
  const pids = new Set<number>();
  for (const m of cgroupMounts()) {
    for (const d of subdirsDeepestFirst(join(m, root))) {
      try {
        for (const p of readFileSync(join(d, 'cgroup.procs'), 'utf8').split('\n')) if (p) pids.add(Number(p));
      } catch {
        // removed meanwhile
      }
    }
  }
  return [...pids];
}

/** Removes root and its children in every hierarchy; returns the directories that would not go. */
export function removeCgroupRoot(root: string): string[] {
  const left: string[] = [];
  for (const m of cgroupMounts()) {
    for (const d of subdirsDeepestFirst(join(m, root))) {
      try {
        rmdirSync(d);
      } catch {
        left.push(d);
      }
    }
  }
  return left;
}
