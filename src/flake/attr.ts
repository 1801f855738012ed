// Which attribute of a flake Nix builds for a system: a short name means `packages.<system>.<name>`,
// as `nix build flake#name` would try first; a full path is taken literally.

const FULL_PATH_ROOTS = ['packages.', 'legacyPackages.'];

export class AttrError extends Error {
  override name = 'AttrError';
}

export function expandAttr(attr: string | undefined, system: string): string {
  const name = attr ?? 'default';
  if (!FULL_PATH_ROOTS.some((root) => name.startsWith(root))) return `packages.${system}.${name}`;
  // A full path names its own system; building it for another would silently build the wrong thing.
  const pathSystem = name.split('.')[1];
  if (pathSystem !== system) {
    throw new AttrError(
      `attribute "${name}" is for ${pathSystem ?? 'no system'}, not ${system}: use the short name so enbi can pick the system`,
    );
  }
  return name;
}

/** The system-independent part of an attribute, used to key builds across systems. */
export function attrKey(attr: string | undefined): string {
  const name = attr ?? 'default';
  for (const root of FULL_PATH_ROOTS) {
    if (name.startsWith(root)) return name.split('.').slice(2).join('.');
  }
  return name;
}
