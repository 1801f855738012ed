// Argo CD's kustomize.images entries ("[old=]new[:tag|@digest]", the `kustomize edit set image` syntax) as
// kustomize `images` entries. Pure.
import type { KustomizeImage } from './request.ts';

export function parseArgoImage(spec: string): KustomizeImage {
  const eq = spec.indexOf('=');
  const old = eq >= 0 ? spec.slice(0, eq) : undefined;
  const image = eq >= 0 ? spec.slice(eq + 1) : spec;
  let name = image;
  let tag: string | undefined;
  let digest: string | undefined;
  const at = image.indexOf('@');
  if (at >= 0) {
    name = image.slice(0, at);
    digest = image.slice(at + 1);
  } else {
    const colon = image.lastIndexOf(':');
    if (colon > image.lastIndexOf('/')) {
      name = image.slice(0, colon);
      tag = image.slice(colon + 1);
    }
  }
  const out: KustomizeImage = { name: old ?? name };
  if (old !== undefined && old !== name) out.newName = name;
  if (tag !== undefined) out.newTag = tag;
  if (digest !== undefined) out.digest = digest;
  return out;
}
