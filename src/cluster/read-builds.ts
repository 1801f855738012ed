// Reads the NixBuilds of a cluster for `enbi diff` (read only): where each repository was built last (warm
// placement) and which builds run now (load), as the controller plans with them.
import { CustomObjectsApi, type KubeConfig } from '@kubernetes/client-node';
import { GROUP, type NixBuild, PLURAL, VERSION } from '../api/nixbuild.ts';
import { errorMessage } from '../async/error-message.ts';

/**
 * The NixBuilds of `namespace` (the controller's), or of every namespace. A cluster without enbi's CRD has
 * none; one that refuses the list gives a note saying what the plan leaves out.
 */
export async function readNixBuilds(
  kc: KubeConfig,
  namespace?: string,
): Promise<{ builds?: NixBuild[]; note?: string }> {
  const api = kc.makeApiClient(CustomObjectsApi);
  try {
    const list = (
      namespace !== undefined
        ? await api.listNamespacedCustomObject({ group: GROUP, version: VERSION, namespace, plural: PLURAL })
        : await api.listClusterCustomObject({ group: GROUP, version: VERSION, plural: PLURAL })
    ) as { items?: NixBuild[] };
    return { builds: list.items ?? [] };
  } catch (err) {
    if ((err as { code?: number }).code === 404) return { builds: [] };
    return {
      note: `NixBuilds not read (${errorMessage(err).split('\n')[0]}): placement leaves out where builds ran before (warm nodes) and the builds running now`,
    };
  }
}
