// `enbi build FLAKE --system SYSTEM [--node NODE] [--image REF]... [--follow]`: the seed's manual mode.
// Creates a NixBuild; with --follow streams the build log until the build ends, exit 1 on failure.
import { CoreV1Api, CustomObjectsApi, type KubeConfig, Log } from '@kubernetes/client-node';
import { GROUP, KIND, type NixBuild, PLURAL, VERSION } from '../api/nixbuild.ts';
import { manualBuildName } from '../build/naming.ts';
import { isKnownSystem } from '../cluster/systems.ts';
import { loadKubeConfig } from '../cluster/read-nodes.ts';
import { sourceKey } from '../contract/container-needs.ts';
import { type FlakeRef, FlakeRefError, formatFlakeRef, parseFlakeRef, withoutAttr } from '../flake/ref.ts';
import { attrKey } from '../flake/attr.ts';
import { LABEL_MANAGED_BY } from '../controller/desired.ts';
import { isConflict } from '../kube/errors.ts';
import { CLI_FIELD_MANAGER } from '../kube/field-manager.ts';
import { command, type Flags, UsageError } from './command.ts';
import { errorMessage } from '../async/error-message.ts';

export const BUILD_HELP = `enbi build FLAKE#ATTR --image REF... --system SYSTEM [--node NODE] [--namespace NS] [--follow]

Creates a NixBuild by hand (the controller runs it). FLAKE must be pinned (?rev=<commit> or github:o/r/<commit>)
and among the controller's allowedFlakes; each --image (at least one) is a tagged reference inside its
allowedImages. Creating NixBuilds is for cluster admins: a NixBuild writes into a node's containerd.
--follow streams the build log until the build ends; exit 1 when it fails (and on bad flags).`;

const OPTIONS = {
  system: { type: 'string' },
  node: { type: 'string' },
  image: { type: 'string', multiple: true },
  namespace: { type: 'string' },
  follow: { type: 'boolean', short: 'f' },
  kubeconfig: { type: 'string' },
} as const;

export default command({
  usage: BUILD_HELP,
  options: OPTIONS,
  positionals: true,
  run: ({ values, positionals }) => runBuild(values, positionals),
});

/** The flake, its system and images from the command line; anything wrong there is a UsageError. */
function buildRequest(values: Flags<typeof OPTIONS>, positionals: string[]) {
  if (positionals.length !== 1) throw new UsageError('one flake reference expected');
  const system = values.system ?? 'x86_64-linux';
  if (!isKnownSystem(system)) throw new UsageError(`unknown system "${system}"`);
  let flake: FlakeRef;
  try {
    flake = parseFlakeRef(positionals[0]!);
  } catch (err) {
    throw err instanceof FlakeRefError ? new UsageError(err.message) : err;
  }
  if (flake.rev === undefined)
    throw new UsageError(`"${positionals[0]}" is not pinned: add ?rev=<commit> (or /<commit>)`);
  const images = values.image ?? [];
  if (images.length === 0) throw new UsageError('--image REF is required: the reference(s) to import the build under');
  return { system, flake, rev: flake.rev, images };
}

async function runBuild(values: Flags<typeof OPTIONS>, positionals: string[]): Promise<number> {
  const { system, flake, rev, images } = buildRequest(values, positionals);
  try {
    const ns = values.namespace ?? 'enbi-system';
    const attr = attrKey(flake.attr);
    const nb: NixBuild = {
      apiVersion: `${GROUP}/${VERSION}`,
      kind: KIND,
      metadata: {
        name: manualBuildName({
          source: sourceKey(flake),
          rev,
          attr,
          system,
          ...(values.node !== undefined ? { node: values.node } : {}),
        }),
        namespace: ns,
        labels: { [LABEL_MANAGED_BY]: 'enbi-cli' },
      },
      spec: {
        flakeUrl: formatFlakeRef(withoutAttr(flake)),
        packageName: attr,
        system,
        imageTag: rev,
        images,
        ...(values.node !== undefined ? { node: values.node } : {}),
      },
    };
    const kc = loadKubeConfig(values.kubeconfig);
    const custom = kc.makeApiClient(CustomObjectsApi);
    await custom
      .createNamespacedCustomObject({
        group: GROUP,
        version: VERSION,
        namespace: ns,
        plural: PLURAL,
        body: nb,
        fieldManager: CLI_FIELD_MANAGER,
      })
      .catch((err: unknown) => {
        if (!isConflict(err)) throw err;
        console.error(`NixBuild ${nb.metadata.name} exists already: following it`);
      });
    console.error(`nixbuild.${GROUP}/${nb.metadata.name} created in ${ns}`);
    if (values.follow !== true) return 0;
    return await follow(kc, ns, nb.metadata.name);
  } catch (err) {
    console.error(`enbi build: ${errorMessage(err).split('\n')[0]}`);
    return 1;
  }
}

/** Streams each attempt's build log; returns 0 when the build succeeds, 1 when it fails for good. */
async function follow(kc: KubeConfig, ns: string, name: string): Promise<number> {
  const custom = kc.makeApiClient(CustomObjectsApi);
  const core = kc.makeApiClient(CoreV1Api);
  const logs = new Log(kc);
  const followed = new Set<string>();
  for (;;) {
    const nb = (await custom.getNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      namespace: ns,
      plural: PLURAL,
      name,
    })) as NixBuild;
    const phase = nb.status?.phase;
    const job = nb.status?.buildJobName;
    if (job !== undefined && !followed.has(job)) {
      const pod = (await core.listNamespacedPod({ namespace: ns, labelSelector: `job-name=${job}` })).items[0];
      const running = pod?.status?.containerStatuses?.some(
        (c) => c.name === 'build' && (c.state?.running !== undefined || c.state?.terminated !== undefined),
      );
      if (pod?.metadata?.name !== undefined && running === true) {
        followed.add(job);
        console.error(`--- ${job} on ${pod.spec?.nodeName ?? '?'}`);
        await new Promise<void>((resolve) => {
          void logs
            .log(ns, pod.metadata!.name!, 'build', process.stdout, { follow: true })
            .then((req) => req.signal.addEventListener('abort', () => resolve()))
            .catch(() => resolve());
          // The log stream ends with the container; poll as a fallback.
          const poll = async () => {
            const p = await core.readNamespacedPod({ name: pod.metadata!.name!, namespace: ns }).catch(() => undefined);
            if (p?.status?.phase === 'Succeeded' || p?.status?.phase === 'Failed' || p === undefined) {
              clearInterval(t);
              resolve();
            }
          };
          const t = setInterval(() => void poll(), 1000);
        });
      }
    }
    if (phase === 'Succeeded') {
      console.error(`Succeeded: ${nb.status?.image ?? ''} ${nb.status?.imageDigest ?? ''} on ${nb.status?.node ?? ''}`);
      return 0;
    }
    if (phase === 'Failed') {
      const ready = nb.status?.conditions?.find((c) => c.type === 'Ready');
      console.error(`Failed: ${ready?.message ?? ''}\n${nb.status?.logExcerpt ?? ''}`);
      return 1;
    }
    await new Promise((r) => setTimeout(r, 1000));
  }
}
