// Whose files a Flux or Argo CD object renders: enbi renders one only from the repository and ref it reads.
// A Flux Kustomization or HelmRelease names its source (sourceRef → a GitRepository, OCIRepository or Bucket
// found in the repository, written or rendered); an Argo CD Application names a repoURL and targetRevision.
// Their URL is compared with the URL enbi reads, both normalised (scheme, user, port, `.git`, trailing slash
// and case dropped; `git@host:org/repo` is `ssh://git@host/org/repo`), then their ref with the ref enbi reads
// when both are known. Anything else is another source: listed, never rendered from this repository. Pure.
import type { ManifestObject } from '../manifests/scan.ts';
import { asObj, asStr, groupOf, metaOf, type Obj } from './object-access.ts';

/** What enbi reads: the repository's URL and ref (absent when not known, as for a directory without --source-url). */
export interface ReadRepository {
  url?: string;
  /** Branch or tag enbi reads; refs are not compared when absent. */
  ref?: string;
  /** The commit enbi reads (a Git source). */
  commit?: string;
}

/** `undefined`: this repository; else why not, a message for a warning ("another source: …"). */
export type Verdict = undefined | string;

/** A Git (or OCI, or bucket) URL as `host/path`: comparable whatever its scheme, user, port or `.git`. */
export function normalizeRepoUrl(url: string): string {
  let host: string;
  let path: string;
  const s = url.trim();
  const scp = /^(?:[^@/\s]+@)?([^:/\s]+):(?!\/\/)(.*)$/.exec(s);
  if (scp !== null && !/^[a-z][a-z0-9+.-]*:\/\//i.test(s)) {
    host = scp[1]!;
    path = scp[2]!;
  } else {
    try {
      const u = new URL(s);
      host = u.hostname;
      path = decodeURIComponent(u.pathname);
    } catch {
      return s
        .toLowerCase()
        .replace(/\/+$/, '')
        .replace(/\.git$/, '');
    }
  }
  host = host.toLowerCase().replace(/^www\./, '');
  path = path
    .replace(/^\/+/, '')
    .replace(/\/+$/, '')
    .replace(/\.git$/, '')
    .replace(/\/+$/, '');
  // Azure DevOps writes one repository three ways.
  if (host === 'ssh.dev.azure.com' && path.startsWith('v3/')) [host, path] = ['dev.azure.com', path.slice(3)];
  const vs = /^([^.]+)\.visualstudio\.com$/.exec(host);
  if (vs !== null) [host, path] = ['dev.azure.com', `${vs[1]}/${path}`];
  if (host === 'dev.azure.com') path = path.replace('/_git/', '/');
  return `${host}/${path}`.toLowerCase();
}

export function sameRepository(a: string, b: string): boolean {
  return normalizeRepoUrl(a) === normalizeRepoUrl(b);
}

const stripRef = (ref: string) => ref.replace(/^refs\/(heads|tags)\//, '');

/** A Flux GitRepository's spec.ref, in Flux's precedence (commit, name, semver, tag, branch; none: master). */
function fluxRef(ref: Obj | undefined): { kind: 'commit' | 'name' | 'semver' | 'tag' | 'branch'; value: string } {
  for (const kind of ['commit', 'name', 'semver', 'tag', 'branch'] as const) {
    const v = asStr(ref?.[kind]);
    if (v !== undefined) return { kind, value: v };
  }
  return { kind: 'branch', value: 'master' };
}

/** undefined when a ref an object names is what enbi reads (or cannot be told), else what enbi reads instead. */
function refDiffers(
  kind: 'commit' | 'name' | 'semver' | 'tag' | 'branch' | 'revision',
  value: string,
  repo: ReadRepository,
): string | undefined {
  if (kind === 'semver') return undefined; // a range of tags: not compared
  if (kind === 'commit' || (kind === 'revision' && /^[0-9a-f]{40}$/i.test(value))) {
    if (repo.commit === undefined || repo.commit.toLowerCase().startsWith(value.toLowerCase())) return undefined;
    return `enbi reads commit ${repo.commit}`;
  }
  if (kind === 'revision' && (value === 'HEAD' || /[*^~<>=|\s]/.test(value))) return undefined; // the default branch, or a semver range
  if (repo.ref === undefined || stripRef(value) === stripRef(repo.ref)) return undefined;
  return `enbi reads ${repo.ref}`;
}

const another = (url: string, described: string, note?: string) =>
  `another source: ${url} (${described}): not rendered${note !== undefined ? ` (${note})` : ''}`;
const NO_URL =
  'the URL of the directory enbi reads is not known: with enbi diff --dir, give --source-url if it is this repository';

/** Another source's verdict on its URL alone, or undefined when it is the repository enbi reads. */
function urlVerdict(url: string, described: string, repo: ReadRepository): Verdict {
  if (repo.url === undefined) return another(url, described, NO_URL);
  return sameRepository(url, repo.url) ? undefined : another(url, described);
}

const FLUX_SOURCE_GROUP = 'source.toolkit.fluxcd.io';

/** The Flux source object `kind namespace/name` among the objects found (written or rendered), if there. */
export function findFluxSource(
  objects: readonly ManifestObject[],
  kind: string,
  name: string,
  namespace: string,
): Obj | undefined {
  return objects.find(
    (o) =>
      o.object.kind === kind &&
      groupOf(o.object) === FLUX_SOURCE_GROUP &&
      metaOf(o.object).name === name &&
      metaOf(o.object).namespace === namespace,
  )?.object;
}

/**
 * Whether a Flux sourceRef (of a Kustomization, a HelmRelease's chart, a HelmChart) is the repository enbi
 * reads. `namespace`: the referring object's, the default of the reference's.
 */
export function fluxSourceVerdict(
  sourceRef: Obj | undefined,
  namespace: string,
  objects: readonly ManifestObject[],
  repo: ReadRepository,
): Verdict {
  const kind = asStr(sourceRef?.kind) ?? 'GitRepository';
  const name = asStr(sourceRef?.name) ?? '?';
  const ns = asStr(sourceRef?.namespace) ?? namespace;
  const described = `${kind} ${ns}/${name}`;
  const source = findFluxSource(objects, kind, name, ns);
  if (source === undefined)
    return `not rendered: its source, ${described}, is not in this repository, so which repository it reads is not known`;
  const spec = asObj(source.spec) ?? {};
  if (kind === 'Bucket')
    return urlVerdict(
      `${asStr(spec.provider) === 'gcp' ? 'gs' : 's3'}://${asStr(spec.endpoint) ?? '?'}/${asStr(spec.bucketName) ?? '?'}`,
      described,
      repo,
    );
  const url = asStr(spec.url) ?? '?';
  if (kind !== 'GitRepository') return urlVerdict(url, described, repo);
  const ref = fluxRef(asObj(spec.ref));
  const withRef = `${described}, ${ref.kind} ${ref.value}`;
  const byUrl = urlVerdict(url, withRef, repo);
  if (byUrl !== undefined) return byUrl;
  const differs = refDiffers(ref.kind, ref.value, repo);
  return differs === undefined ? undefined : another(url, withRef, differs);
}

/** Whether an Argo CD Application's source (repoURL, targetRevision) is the repository enbi reads. */
export function argoSourceVerdict(source: Obj, repo: ReadRepository): Verdict {
  const url = asStr(source.repoURL);
  if (url === undefined) return 'not rendered: its source has no repoURL';
  const revision = asStr(source.targetRevision) ?? 'HEAD';
  const described = `targetRevision ${revision}`;
  const byUrl = urlVerdict(url, described, repo);
  if (byUrl !== undefined) return byUrl;
  const differs = refDiffers('revision', revision, repo);
  return differs === undefined ? undefined : another(url, described, differs);
}
