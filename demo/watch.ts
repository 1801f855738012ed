// What enbi does, live: every second the demo reads the NixBuilds, their Jobs and the app's pods and prints
// each change once, with the time since the watch began, until every app pod runs the image it names.
import { BatchV1Api, CoreV1Api, CustomObjectsApi, type KubeConfig, type V1Pod } from '@kubernetes/client-node';
import { GROUP, type NixBuild, PLURAL, VERSION } from '../src/api/nixbuild.ts';

export interface WatchOptions {
  kc: KubeConfig;
  /** enbi's namespace (NixBuilds, Jobs). */
  namespace: string;
  /** The app's namespace and the images its pods must run. */
  appNamespace: string;
  images: string[];
  timeoutMs: number;
  print: (line: string) => void;
  /**
   * Runs once the watch has taken note of what is there already (printed only when it changes): what
   * starts the story, e.g. applying the app.
   */
  begin?: () => Promise<void>;
}

export interface RunningPod {
  name: string;
  image: string;
  node: string;
  /** The NixBuild that built the image, when enbi built it. */
  build?: NixBuild;
}

/** A pod's state in a few words: phase, or why its container waits. */
export function podState(p: V1Pod): string {
  const waiting = p.status?.containerStatuses?.[0]?.state?.waiting;
  if (waiting?.reason !== undefined)
    return `${waiting.reason}${waiting.reason === 'ErrImageNeverPull' ? ' (its image is not on the node: enbi builds it)' : ''}`;
  return p.status?.phase ?? 'Pending';
}

export async function watchUntilRunning(o: WatchOptions): Promise<RunningPod[]> {
  const core = o.kc.makeApiClient(CoreV1Api);
  const batch = o.kc.makeApiClient(BatchV1Api);
  const custom = o.kc.makeApiClient(CustomObjectsApi);
  const seen = new Map<string, string>();
  const t0 = Date.now();
  let quiet = o.begin !== undefined;
  const say = (key: string, text: string): void => {
    if (seen.get(key) === text) return;
    seen.set(key, text);
    if (!quiet) o.print(`[${((Date.now() - t0) / 1000).toFixed(0).padStart(4)} s] ${text}`);
  };
  for (;;) {
    const builds = (
      (await custom.listNamespacedCustomObject({
        group: GROUP,
        version: VERSION,
        namespace: o.namespace,
        plural: PLURAL,
      })) as { items: NixBuild[] }
    ).items;
    for (const b of builds) {
      const ready = b.status?.conditions?.find((c) => c.type === 'Ready');
      say(
        `nb/${b.metadata.name}`,
        `NixBuild ${b.metadata.name}: ${b.status?.phase ?? 'planned'}${ready?.message ? ` (${ready.message})` : ''}`,
      );
    }
    for (const j of (await batch.listNamespacedJob({ namespace: o.namespace, labelSelector: 'enbi.hrzn.ee/nixbuild' }))
      .items) {
      const st = j.status?.succeeded
        ? 'complete'
        : j.status?.failed
          ? 'failed'
          : j.status?.active
            ? 'running'
            : 'created';
      say(`job/${j.metadata?.name}`, `Job ${j.metadata?.name}: ${st}`);
    }
    const pods = (await core.listNamespacedPod({ namespace: o.appNamespace })).items.filter(
      (p) => p.metadata?.deletionTimestamp === undefined,
    );
    for (const p of pods)
      say(
        `pod/${p.metadata?.name}`,
        `pod ${o.appNamespace}/${p.metadata?.name} (${p.spec?.containers[0]?.image}): ${podState(p)}`,
      );
    if (quiet) {
      quiet = false;
      await o.begin!();
      continue;
    }
    const running = pods.filter(
      (p) => p.status?.phase === 'Running' && o.images.includes(p.spec?.containers[0]?.image ?? ''),
    );
    if (
      running.length > 0 &&
      running.length === pods.length &&
      o.images.every((i) => running.some((p) => p.spec?.containers[0]?.image === i))
    ) {
      return running.map((p) => {
        const image = p.spec!.containers[0]!.image!;
        const build = builds.find((b) => b.status?.image === image || b.spec.images?.includes(image));
        return {
          name: p.metadata!.name!,
          image,
          node: p.spec?.nodeName ?? '',
          ...(build !== undefined ? { build } : {}),
        };
      });
    }
    const failed = builds.find((b) => b.status?.phase === 'Failed');
    if (failed !== undefined)
      throw new Error(
        `NixBuild ${failed.metadata.name} failed: ${failed.status?.conditions?.find((c) => c.type === 'Ready')?.message ?? ''}\n${failed.status?.logExcerpt ?? ''}`,
      );
    if (Date.now() - t0 > o.timeoutMs)
      throw new Error(
        `the app's pods were not Running after ${o.timeoutMs / 1000} s: kubectl get pods -n ${o.appNamespace}; kubectl get nixbuilds,jobs -n ${o.namespace}`,
      );
    await new Promise((r) => setTimeout(r, 1000));
  }
}
