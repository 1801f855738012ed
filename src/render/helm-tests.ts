// `helm template` prints a chart's test hooks (`helm.sh/hook: test`) with the release, but nothing applies
// them as part of it: helm install and Flux's helm-controller keep hooks apart and run test hooks only on
// `helm test` (Flux: spec.test.enable), and Argo CD maps only the install/upgrade hooks to sync phases
// (gitops-engine pkg/sync/hook/helm/type.go), so a test hook never runs unless it is also an Argo CD hook.
// Their pods are no workload of the release. Pure.
import type { CachedRender } from './cache.ts';
import { asObj, asStr, type Obj } from './object-access.ts';

/** Helm's names for a test hook ("test-success" is Helm 2's, still read as "test" by Helm 3). */
const TEST_HOOKS = new Set(['test', 'test-success', 'test-failure']);

export function isHelmTestHook(object: Obj): boolean {
  const annotations = asObj(asObj(object.metadata)?.annotations) ?? {};
  if (asStr(annotations['argocd.argoproj.io/hook']) !== undefined) return false;
  const hook = asStr(annotations['helm.sh/hook']);
  if (hook === undefined) return false;
  const types = hook
    .split(',')
    .map((t) => t.trim())
    .filter((t) => t !== '');
  return types.length > 0 && types.every((t) => TEST_HOOKS.has(t));
}

/** A helm render's objects without its test hooks. */
export function withoutHelmTests(out: CachedRender): CachedRender {
  return { ...out, objects: out.objects.filter((o) => !isHelmTestHook(o.object)) };
}
