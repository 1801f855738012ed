// What the node agent knows of enbi's finished builds: for each image reference, the platform manifests
// NixBuilds recorded (status.manifest), followed by list + watch in enbi's namespace over the small API
// client. Only the controller writes NixBuild status, so these are as trusted as the controller.
import { GROUP, VERSION } from '../api/group.ts';
import { imageNames } from '../containerd/import/labels.ts';
import type { Candidate } from '../image/platform-index.ts';
import type { LiteApi } from '../kube/lite.ts';
import { backoff } from '../async/backoff.ts';
import { errorMessage } from '../async/error-message.ts';

interface BuildLike {
  metadata?: { name?: string; resourceVersion?: string };
  spec?: { images?: unknown };
  status?: {
    manifest?: { digest?: unknown; size?: unknown; mediaType?: unknown; platform?: unknown };
    completionTime?: unknown;
    conditions?: unknown;
  };
}

/** The controller's verdict that a build's image name is Git's and its flake is not (src/plan/claims.ts). */
const CLAIMED = 'ImageClaimed';

interface Recorded {
  names: string[];
  candidate: Candidate;
}

/**
 * A build's normalized image names and recorded manifest, or undefined when it has none yet, or when the
 * controller found its image name claimed by Git for another flake (what it imported is not spread, and
 * its names count as no longer named). Pure.
 */
export function recordedManifest(b: BuildLike): Recorded | undefined {
  const m = b.status?.manifest;
  if (m === undefined || !Array.isArray(b.spec?.images)) return undefined;
  const conditions = Array.isArray(b.status?.conditions)
    ? (b.status.conditions as { type?: unknown; reason?: unknown }[])
    : [];
  if (conditions.some((c) => c?.type === 'Ready' && c.reason === CLAIMED)) return undefined;
  let names: string[];
  try {
    names = imageNames((b.spec.images as unknown[]).filter((i): i is string => typeof i === 'string')).map(
      (n) => n.name,
    );
  } catch {
    return undefined; // the controller's spec check refuses such a build: it never recorded a manifest
  }
  const completedAt = typeof b.status?.completionTime === 'string' ? b.status.completionTime : undefined;
  const build = b.metadata?.name;
  const candidate: Candidate = {
    digest: String(m.digest),
    size: Number(m.size),
    mediaType: String(m.mediaType),
    platform: String(m.platform),
    ...(completedAt !== undefined ? { completedAt } : {}),
    ...(build !== undefined && build !== '' ? { build } : {}),
  };
  return { names, candidate };
}

export interface BuildManifests {
  /** Manifests recorded for an image name (normalized, tagged). */
  candidates(name: string): Candidate[];
  /** Names with at least one recorded manifest. */
  names(): string[];
  readonly ready: Promise<void>;
  stop(): void;
}

/**
 * Lists and watches NixBuilds of `namespace`; calls onChange with the image names whose manifests changed,
 * and those whose last NixBuild went away (deleted, or gone at a relist): orphaned. A name nothing named
 * when the agent started is never reported orphaned. A broken watch lists again after a backoff.
 */
export function watchBuildManifests(
  api: LiteApi,
  namespace: string,
  onChange: (names: string[], orphaned: string[]) => void,
  log: (m: string) => void = () => {},
): BuildManifests {
  const path = `/apis/${GROUP}/${VERSION}/namespaces/${encodeURIComponent(namespace)}/nixbuilds`;
  const byBuild = new Map<string, Recorded>();
  const byName = new Map<string, Map<string, Candidate>>();
  let stopped = false;
  let failures = 0;
  const abort = new AbortController();
  let resolveReady!: () => void;
  const ready = new Promise<void>((r) => (resolveReady = r));

  const orphaned = new Set<string>();
  const index = (build: string, rec: Recorded | undefined): string[] => {
    const old = byBuild.get(build);
    const key = (r: Recorded | undefined) => (r === undefined ? '' : JSON.stringify([r.names, r.candidate]));
    if (key(old) === key(rec)) return [];
    for (const n of old?.names ?? []) byName.get(n)?.delete(build);
    if (rec === undefined) byBuild.delete(build);
    else byBuild.set(build, rec);
    for (const n of rec?.names ?? []) {
      let m = byName.get(n);
      if (m === undefined) byName.set(n, (m = new Map()));
      m.set(build, rec!.candidate);
    }
    for (const n of old?.names ?? []) if ((byName.get(n)?.size ?? 0) === 0) orphaned.add(n);
    for (const n of rec?.names ?? []) orphaned.delete(n);
    return [...new Set([...(old?.names ?? []), ...(rec?.names ?? [])])];
  };
  const report = (names: Iterable<string>): void => {
    const changed = [...new Set(names)];
    const gone = [...orphaned];
    orphaned.clear();
    if (changed.length > 0 || gone.length > 0) onChange(changed, gone);
  };

  async function loop(): Promise<void> {
    while (!stopped) {
      try {
        const list = await api.get<{ items: BuildLike[]; metadata: { resourceVersion: string } }>(path);
        const seen = new Set<string>();
        const changed = new Set<string>();
        for (const b of list.items) {
          const name = b.metadata?.name ?? '';
          seen.add(name);
          for (const n of index(name, recordedManifest(b))) changed.add(n);
        }
        for (const name of [...byBuild.keys()])
          if (!seen.has(name)) for (const n of index(name, undefined)) changed.add(n);
        report(changed);
        resolveReady();
        failures = 0;
        let rv = list.metadata.resourceVersion;
        // Watch until the server ends it, then resume from the last version seen.
        for (;;) {
          let gone = false;
          await api.stream(
            `${path}?watch=1&allowWatchBookmarks=true&timeoutSeconds=300&resourceVersion=${encodeURIComponent(rv)}`,
            (line) => {
              const e = JSON.parse(line) as { type: string; object: BuildLike & { code?: number } };
              if (e.type === 'ERROR') {
                gone = true;
                return;
              }
              if (e.object.metadata?.resourceVersion !== undefined) rv = e.object.metadata.resourceVersion;
              if (e.type === 'BOOKMARK') return;
              report(
                index(e.object.metadata?.name ?? '', e.type === 'DELETED' ? undefined : recordedManifest(e.object)),
              );
            },
            abort.signal,
          );
          if (gone || stopped) break;
        }
      } catch (e) {
        if (stopped) return;
        failures++;
        const delay = backoff(failures, { baseMs: 1000, maxMs: 30_000 });
        log(
          `watching NixBuilds in ${namespace} failed (${errorMessage(e).split('\n')[0]}); listing again in ${delay} ms`,
        );
        await new Promise((r) => setTimeout(r, delay));
      }
    }
  }
  void loop();

  return {
    candidates: (name) => [...(byName.get(name)?.values() ?? [])],
    names: () => [...byName.entries()].filter(([, m]) => m.size > 0).map(([n]) => n),
    ready,
    stop(): void {
      stopped = true;
      abort.abort();
    },
  };
}
