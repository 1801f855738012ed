// `enbi status`: the NixBuilds like `kubectl get nixbuilds`, with the reason of each failure.
import { CustomObjectsApi } from '@kubernetes/client-node';
import { GROUP, type NixBuild, PLURAL, VERSION } from '../api/nixbuild.ts';
import { loadKubeConfig } from '../cluster/read-nodes.ts';
import { table } from '../diff/render.ts';
import { command, type Flags } from './command.ts';
import { errorMessage } from '../async/error-message.ts';

export const STATUS_HELP = `enbi status [-n NAMESPACE] [--kubeconfig FILE]

Lists the NixBuilds like "kubectl get nixbuilds", with the reason of each failure.

  -n, --namespace NS   enbi's namespace (default enbi-system)
  --kubeconfig FILE    default: $KUBECONFIG or ~/.kube/config

Exit codes: 0 listed, none failed; 4 some failed; 1 bad flags, or the NixBuilds could not be read.`;

const OPTIONS = { namespace: { type: 'string', short: 'n' }, kubeconfig: { type: 'string' } } as const;

export default command({ usage: STATUS_HELP, options: OPTIONS, run: ({ values }) => runStatus(values) });

async function runStatus(values: Flags<typeof OPTIONS>): Promise<number> {
  try {
    const kc = loadKubeConfig(values.kubeconfig);
    const ns = values.namespace ?? 'enbi-system';
    const list = (await kc
      .makeApiClient(CustomObjectsApi)
      .listNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: ns, plural: PLURAL })) as {
      items: NixBuild[];
    };
    if (list.items.length === 0) {
      console.log(`No NixBuilds in ${ns}.`);
      return 0;
    }
    const rows = [['NAME', 'PHASE', 'SYSTEM', 'NODE', 'IMAGE', 'ATTEMPTS', 'REASON']];
    for (const nb of list.items) {
      const ready = nb.status?.conditions?.find((c) => c.type === 'Ready');
      const reason = ready !== undefined && ready.status !== 'True' ? `${ready.reason}: ${ready.message}` : '';
      rows.push([
        nb.metadata.name,
        nb.status?.phase ?? 'Pending',
        nb.spec.system,
        nb.status?.node ?? nb.spec.node ?? '',
        nb.status?.image ?? nb.spec.images?.[0] ?? '',
        String(nb.status?.attempts ?? 0),
        reason,
      ]);
    }
    console.log(table(rows));
    return list.items.some((nb) => nb.status?.phase === 'Failed') ? 4 : 0;
  } catch (err) {
    console.error(`enbi status: ${errorMessage(err).split('\n')[0]}`);
    return 1;
  }
}
