// NixBuild names are derived from what is built, so a restarted controller finds the build it already
// started instead of starting a second one.
import { createHash } from 'node:crypto';

export interface BuildIdentity {
  /** The pinned flake without attribute (sourceKey). */
  source: string;
  rev: string;
  attr: string;
  system: string;
  /** Only in per-node mode, where each node builds and imports for itself. */
  node?: string;
}

/**
 * The names the controller gives its builds end in ten hex digits; no one else may take one ahead of it (a
 * NixBuild under such a name runs only while the controller plans that build). `enbi build` names end in
 * `-m` and nine hex digits instead, so a manual build can never hold a name the controller will want.
 */
const CONTROLLER_NAME = /^[a-z0-9-]+-[0-9a-f]{7}-[a-z0-9-]+-[0-9a-f]{10}$/;

export function isControllerName(name: string): boolean {
  return CONTROLLER_NAME.test(name);
}

/** The name `enbi build` gives a manual build: like the controller's, but never one the controller uses. */
export function manualBuildName(id: BuildIdentity): string {
  const name = nixBuildName(id);
  return `${name.slice(0, -11)}-m${name.slice(-10, -1)}`;
}

const dns = (s: string, max: number) =>
  s
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, max)
    .replace(/-+$/g, '');

/** `<attr>-<rev7>-<system>-<hash>`, at most 52 characters so the Job's pods (name + 11) stay under 63. */
export function nixBuildName(id: BuildIdentity): string {
  const hash = createHash('sha256')
    .update(JSON.stringify([id.source, id.attr, id.system, id.node ?? '']))
    .digest('hex')
    .slice(0, 10);
  const system = id.system.replace('-linux', '').replace(/_/g, '-');
  const attr = dns(id.attr.split('.').pop() ?? id.attr, 18) || 'build';
  return `${attr}-${id.rev.slice(0, 7)}-${dns(system, 11)}-${hash}`;
}
