// Container image references, normalized the way containerd and kubelet name them
// (`nginx:1` → `docker.io/library/nginx:1`), so that a manifest's image matches a node's list.

export interface ImageRef {
  /** Registry host, with port when given. */
  registry: string;
  /** Repository path below the registry. */
  repository: string;
  tag?: string;
  digest?: string;
}

export class ImageRefError extends Error {
  override name = 'ImageRefError';
}

const DEFAULT_REGISTRY = 'docker.io';
const PATH_COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const TAG = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;
const DIGEST = /^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}$/;

export function parseImageRef(input: string): ImageRef {
  let rest = input.trim();
  if (rest === '') throw new ImageRefError('empty image reference');
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!DIGEST.test(digest)) throw new ImageRefError(`image "${input}": "${digest}" is not a valid digest`);
  }
  let tag: string | undefined;
  const lastColon = rest.lastIndexOf(':');
  if (lastColon > rest.lastIndexOf('/')) {
    tag = rest.slice(lastColon + 1);
    rest = rest.slice(0, lastColon);
    if (!TAG.test(tag)) throw new ImageRefError(`image "${input}": "${tag}" is not a valid tag`);
  }
  const slash = rest.indexOf('/');
  const first = slash >= 0 ? rest.slice(0, slash) : '';
  const hasRegistry = slash >= 0 && (first.includes('.') || first.includes(':') || first === 'localhost');
  const registry = hasRegistry ? first : DEFAULT_REGISTRY;
  let repository = hasRegistry ? rest.slice(slash + 1) : rest;
  if (registry === DEFAULT_REGISTRY && !repository.includes('/')) repository = `library/${repository}`;
  if (repository === '' || !repository.split('/').every((c) => PATH_COMPONENT.test(c))) {
    throw new ImageRefError(
      `image "${input}": "${repository}" is not a valid repository name (lowercase letters, digits, separators)`,
    );
  }
  const ref: ImageRef = { registry, repository };
  if (tag !== undefined) ref.tag = tag;
  if (digest !== undefined) ref.digest = digest;
  return ref;
}

/** `registry/repository[:tag][@digest]`, fully qualified. */
export function formatImageRef(ref: ImageRef): string {
  return `${ref.registry}/${ref.repository}${ref.tag !== undefined ? `:${ref.tag}` : ''}${ref.digest !== undefined ? `@${ref.digest}` : ''}`;
}

/** The fully qualified name of a reference, or the input unchanged when it does not parse. */
export function normalizeImageName(input: string): string {
  try {
    return formatImageRef(parseImageRef(input));
  } catch {
    return input;
  }
}
