// The `helm template` command line of a request. Release name and namespace come from the repository, so they
// are checked against Helm's and Kubernetes' own rules (a "release name" like --post-renderer=… would run a
// program) and every value is passed as --flag=value, never as a separate word helm could read as a flag. Pure.
import type { HelmRequest } from './request.ts';

const RELEASE = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const NAMESPACE = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

/** `chartPath`: where helm reads the chart (a copy without values.yaml for withoutChartValues), default the request's dir. */
export function helmTemplateArgs(
  r: HelmRequest,
  inlineValueFiles: readonly string[],
  kubeVersion: string,
  chartPath = r.dir,
): string[] | { error: string } {
  if (!RELEASE.test(r.release) || r.release.length > 53)
    return {
      error: `release name "${r.release}" is not a valid Helm release name (lowercase letters, digits, "-" and ".", at most 53)`,
    };
  if (!NAMESPACE.test(r.defaultNamespace) || r.defaultNamespace.length > 63)
    return { error: `namespace "${r.defaultNamespace}" is not a valid namespace name` };
  const args = [
    'template',
    r.release,
    `./${chartPath === '' ? '.' : chartPath}`,
    `--namespace=${r.defaultNamespace}`,
    `--kube-version=${kubeVersion}`,
  ];
  for (const f of [...r.valueFiles, ...inlineValueFiles]) args.push(`--values=./${f}`);
  for (const s of r.set) args.push(`--set=${s}`);
  return args;
}
