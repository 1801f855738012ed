// Flake references as Nix understands them: URL-like (`git+https://…?ref=…&rev=…`) and the
// shorthand forms (`github:owner/repo/ref-or-rev`, `gitlab:`, `sourcehut:`, indirect `nixpkgs/branch`),
// each optionally followed by `#attribute`. Only what enbi needs to pin, fetch and name builds.

export type FlakeRefType = 'github' | 'gitlab' | 'sourcehut' | 'git' | 'indirect' | 'path' | 'tarball';

export interface FlakeRef {
  type: FlakeRefType;
  /** github/gitlab/sourcehut owner (gitlab subgroups as `group/sub`), indirect: the registry id. */
  owner?: string;
  repo?: string;
  /** Host override for gitlab/sourcehut/github (`?host=`). */
  host?: string;
  /** git/path/tarball: the full URL without `git+`, query and fragment (e.g. `https://host/x.git`). */
  url?: string;
  ref?: string;
  rev?: string;
  dir?: string;
  /** Remaining query parameters, kept so that formatting round-trips. */
  params: Record<string, string>;
  /** The attribute after `#`, undefined when absent (Nix then builds `default`). */
  attr?: string;
}

export class FlakeRefError extends Error {
  override name = 'FlakeRefError';
}

const FULL_REV = /^[0-9a-f]{40}$/;
const REF_NAME = /^[A-Za-z0-9._\-/+@]+$/;

export function isFullRev(s: string): boolean {
  return FULL_REV.test(s);
}

/**
 * Query parameters that carry secrets, by name (lower case, letters and digits only): `access_token`,
 * `private_token`, `token`, `X-Amz-Signature`, `X-Amz-Credential`, `sig` (Azure SAS), `password`, `apikey`, ….
 * Nix's own parameters (ref, rev, dir, host, narHash, submodules, shallow, keytype, publicKey, …) never match.
 */
const SECRET_PARAM =
  /token|secret|passw|credential|signature|auth|apikey|accesskey|privatekey|sessionkey|^(sig|key|pass|pw|pwd)$/;
const isSecretParam = (name: string): boolean => SECRET_PARAM.test(name.toLowerCase().replace(/[^a-z0-9]/g, ''));

/** Where a flake's fetch credentials belong instead of its URL. */
export const FLAKE_CREDENTIALS_HINT =
  'remove them, and put the token in the Secret that the controller setting nixSecretName names (its key nix.conf: ' +
  '`access-tokens = <host>=<token>`, or a `netrc-file`): Nix reads it from a file mounted into the build, never written into a NixBuild, a Job or a log (docs/build-job.md)';

/**
 * The reference as it may be shown: user info (`//user:token@`), the values of secret-named query parameters
 * and a `host=` with an `@` replaced by `***`. Every message about a reference shows this, never the input.
 */
export function redactFlakeUrl(text: string): string {
  return text
    .replace(/\/\/[^/?#\s]*@/g, '//***@')
    .replace(/([?&])([^=&#]*)=([^&#]*)/g, (all, sep: string, name: string, value: string) => {
      let key = name;
      try {
        key = decodeURIComponent(name);
      } catch {
        // shown as written
      }
      return isSecretParam(key) || (key === 'host' && /@|%40/i.test(value)) ? `${sep}${name}=***` : all;
    });
}

/**
 * What in a reference is a credential (a user name or password in its URL, a secret-named query parameter,
 * user info in `?host=`), or undefined. `git+ssh://git@host/…` names an SSH login, not a secret: allowed
 * without a password.
 */
export function flakeCredentials(ref: FlakeRef): string | undefined {
  if (ref.url !== undefined && (ref.type === 'git' || ref.type === 'tarball')) {
    let u: URL | undefined;
    try {
      u = new URL(ref.url);
    } catch {
      u = undefined;
    }
    if (u !== undefined) {
      if (u.password !== '') return 'a password in the URL';
      if (u.username !== '' && u.protocol !== 'ssh:') return 'a user name or token in the URL';
      for (const name of u.searchParams.keys()) if (isSecretParam(name)) return `the query parameter "${name}"`;
    }
  }
  if (ref.host?.includes('@') === true) return 'user info in "host="';
  for (const name of Object.keys(ref.params)) if (isSecretParam(name)) return `the query parameter "${name}"`;
  return undefined;
}

/** The refusal of a reference that carries credentials, or undefined: what `flakeCredentials` found and where they belong. */
export function flakeCredentialsProblem(ref: FlakeRef, shown: string): string | undefined {
  const what = flakeCredentials(ref);
  if (what === undefined) return undefined;
  return `flake reference "${shown}" carries credentials (${what}), which would end up in the NixBuild, the build Job's environment and logs: ${FLAKE_CREDENTIALS_HINT}`;
}

/**
 * Parses a flake reference; throws FlakeRefError with a message that names the problem. A reference carrying
 * credentials is refused (see flakeCredentials), and no message repeats them (see redactFlakeUrl).
 */
export function parseFlakeRef(raw: string): FlakeRef {
  const text = raw.trim();
  const input = redactFlakeUrl(raw);
  if (text === '') throw new FlakeRefError('empty flake reference');
  if (/\s/.test(text)) throw new FlakeRefError(`flake reference "${input}" contains whitespace`);

  const hashAt = text.indexOf('#');
  const main = hashAt >= 0 ? text.slice(0, hashAt) : text;
  const attr = hashAt >= 0 ? decode(text.slice(hashAt + 1), input) : undefined;
  if (attr !== undefined && attr === '')
    throw new FlakeRefError(`flake reference "${input}" has an empty attribute after "#"`);

  const queryAt = main.indexOf('?');
  const body = queryAt >= 0 ? main.slice(0, queryAt) : main;
  const params = parseQuery(queryAt >= 0 ? main.slice(queryAt + 1) : '', input);

  const ref: FlakeRef = parseBody(body, input);
  applyParams(ref, params, input);
  if (attr !== undefined) ref.attr = attr;
  const credentials = flakeCredentialsProblem(ref, input);
  if (credentials !== undefined) throw new FlakeRefError(credentials);
  validate(ref, input);
  return ref;
}

function decode(s: string, input: string, shown = s): string {
  try {
    return decodeURIComponent(s);
  } catch {
    throw new FlakeRefError(`flake reference "${input}": bad %-escape in "${shown}"`);
  }
}

function parseQuery(query: string, input: string): Map<string, string> {
  const out = new Map<string, string>();
  if (query === '') return out;
  for (const part of query.split('&')) {
    if (part === '') continue;
    const eq = part.indexOf('=');
    if (eq <= 0) throw new FlakeRefError(`flake reference "${input}": query parameter "${part}" is not name=value`);
    const name = decode(part.slice(0, eq), input);
    if (out.has(name)) throw new FlakeRefError(`flake reference "${input}": parameter "${name}" appears twice`);
    out.set(
      name,
      decode(part.slice(eq + 1), input, isSecretParam(name) || name === 'host' ? '***' : part.slice(eq + 1)),
    );
  }
  return out;
}

function parseBody(body: string, input: string): FlakeRef {
  const colon = body.indexOf(':');
  const scheme = colon > 0 && /^[a-z][a-z0-9+.-]*$/.test(body.slice(0, colon)) ? body.slice(0, colon) : undefined;
  switch (scheme) {
    case 'github':
    case 'gitlab':
    case 'sourcehut':
      return parseHosted(scheme, body.slice(colon + 1), input);
    case 'git+https':
    case 'git+http':
    case 'git+ssh':
    case 'git+file':
      return parseUrlRef('git', body.slice(4), input);
    case 'path':
      return { type: 'path', url: body.slice(colon + 1), params: {} };
    case 'tarball+https':
    case 'tarball+http':
    case 'file+https':
    case 'file+http':
      return parseUrlRef('tarball', body.slice(body.indexOf('+') + 1), input);
    case 'https':
    case 'http':
      if (/\.(tar(\.[a-z0-9]+)?|tgz|zip)$/.test(body)) return parseUrlRef('tarball', body, input);
      throw new FlakeRefError(
        `flake reference "${input}": plain ${scheme}: URLs must point at an archive; for a Git repository write git+${scheme}://…`,
      );
    case 'flake':
      return parseIndirect(body.slice(colon + 1), input);
    case undefined:
      if (body.startsWith('.') || body.startsWith('/')) return { type: 'path', url: body, params: {} };
      return parseIndirect(body, input);
    default:
      throw new FlakeRefError(
        `flake reference "${input}": unsupported scheme "${scheme}:" (use github:, gitlab:, sourcehut:, git+https:, git+http:, git+ssh:, git+file:, path:, or an indirect id)`,
      );
  }
}

function parseHosted(type: 'github' | 'gitlab' | 'sourcehut', rest: string, input: string): FlakeRef {
  const segments = rest.split('/').map((s) => decode(s, input));
  if (segments.length < 2 || segments.length > 3 || segments.some((s) => s === '')) {
    throw new FlakeRefError(`flake reference "${input}": expected ${type}:OWNER/REPO[/REF-OR-REV]`);
  }
  const [owner, repo, refOrRev] = segments as [string, string, string | undefined];
  const ref: FlakeRef = { type, owner, repo, params: {} };
  if (refOrRev !== undefined) {
    if (isFullRev(refOrRev)) ref.rev = refOrRev;
    else ref.ref = refOrRev;
  }
  return ref;
}

function parseUrlRef(type: 'git' | 'tarball', url: string, input: string): FlakeRef {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new FlakeRefError(`flake reference "${input}": "${redactFlakeUrl(url)}" is not a valid URL`);
  }
  if (type === 'git' && parsed.protocol !== 'file:' && parsed.hostname === '') {
    throw new FlakeRefError(`flake reference "${input}": URL has no host`);
  }
  return { type, url, params: {} };
}

function parseIndirect(body: string, input: string): FlakeRef {
  const segments = body.split('/');
  if (segments.length > 2 || segments.some((s) => s === '') || !/^[A-Za-z][A-Za-z0-9_-]*$/.test(segments[0] ?? '')) {
    throw new FlakeRefError(
      `flake reference "${input}": not a known form (expected e.g. github:owner/repo, git+https://host/repo.git, or an input id like "myapp")`,
    );
  }
  const ref: FlakeRef = { type: 'indirect', owner: segments[0]!, params: {} };
  const second = segments[1];
  if (second !== undefined) {
    if (isFullRev(second)) ref.rev = second;
    else ref.ref = second;
  }
  return ref;
}

function applyParams(ref: FlakeRef, params: Map<string, string>, input: string): void {
  for (const [name, value] of params) {
    if (name === 'rev') {
      if (ref.rev !== undefined && ref.rev !== value)
        throw new FlakeRefError(`flake reference "${input}": two different revisions`);
      ref.rev = value;
    } else if (name === 'ref') {
      if (ref.ref !== undefined && ref.ref !== value)
        throw new FlakeRefError(`flake reference "${input}": two different refs`);
      ref.ref = value;
    } else if (name === 'dir') ref.dir = value;
    else if (name === 'host') ref.host = value;
    else ref.params[name] = value;
  }
}

function validate(ref: FlakeRef, input: string): void {
  if (ref.rev !== undefined && !isFullRev(ref.rev)) {
    throw new FlakeRefError(`flake reference "${input}": rev "${ref.rev}" is not a full 40-character commit hash`);
  }
  if (ref.ref !== undefined && (!REF_NAME.test(ref.ref) || ref.ref.includes('..'))) {
    throw new FlakeRefError(`flake reference "${input}": "${ref.ref}" is not a valid Git ref name`);
  }
  if (ref.dir !== undefined && (ref.dir.startsWith('/') || ref.dir.split('/').includes('..'))) {
    throw new FlakeRefError(
      `flake reference "${input}": dir "${ref.dir}" must be a relative path inside the repository`,
    );
  }
}

/** The canonical text of a reference: shorthand forms stay shorthand, parameters sorted. */
export function formatFlakeRef(ref: FlakeRef): string {
  const query = new Map<string, string>();
  let body: string;
  switch (ref.type) {
    case 'github':
    case 'gitlab':
    case 'sourcehut': {
      const parts = [ref.owner!, ref.repo!].map(encodeSegment);
      // A rev wins the path slot; a ref that travels beside it goes into the query.
      if (ref.rev !== undefined) {
        parts.push(ref.rev);
        if (ref.ref !== undefined) query.set('ref', ref.ref);
      } else if (ref.ref !== undefined && !ref.ref.includes('/')) parts.push(ref.ref);
      else if (ref.ref !== undefined) query.set('ref', ref.ref);
      body = `${ref.type}:${parts.join('/')}`;
      if (ref.host !== undefined) query.set('host', ref.host);
      break;
    }
    case 'indirect':
      body =
        ref.owner! +
        (ref.rev !== undefined ? `/${ref.rev}` : ref.ref !== undefined && !ref.ref.includes('/') ? `/${ref.ref}` : '');
      if (ref.rev !== undefined && ref.ref !== undefined) query.set('ref', ref.ref);
      if (ref.rev === undefined && ref.ref?.includes('/')) query.set('ref', ref.ref);
      break;
    case 'git':
      body = `git+${ref.url!}`;
      if (ref.ref !== undefined) query.set('ref', ref.ref);
      if (ref.rev !== undefined) query.set('rev', ref.rev);
      break;
    case 'tarball':
      body =
        ref.url!.startsWith('http') && /\.(tar(\.[a-z0-9]+)?|tgz|zip)$/.test(ref.url!)
          ? ref.url!
          : `tarball+${ref.url!}`;
      break;
    case 'path':
      body = ref.url!.startsWith('.') || ref.url!.startsWith('/') ? ref.url! : `path:${ref.url!}`;
      break;
  }
  if (ref.dir !== undefined) query.set('dir', ref.dir);
  for (const [k, v] of Object.entries(ref.params)) query.set(k, v);
  const q = [...query.keys()].sort().map((k) => `${encodeQuery(k)}=${encodeQuery(query.get(k)!)}`);
  return body + (q.length > 0 ? `?${q.join('&')}` : '') + (ref.attr !== undefined ? `#${ref.attr}` : '');
}

function encodeSegment(s: string): string {
  return s.replaceAll('%', '%25').replaceAll('/', '%2F');
}

function encodeQuery(s: string): string {
  return s.replace(/[%&=#?\s]/g, (c) => encodeURIComponent(c));
}

/** The same flake at a fixed revision (the ref is kept as documentation of where it came from). */
export function pinFlakeRef(ref: FlakeRef, rev: string): FlakeRef {
  if (!isFullRev(rev)) throw new FlakeRefError(`cannot pin to "${rev}": not a full commit hash`);
  return { ...ref, params: { ...ref.params }, rev };
}

/** The flake without its attribute: what identifies the source tree. */
export function withoutAttr(ref: FlakeRef): FlakeRef {
  const { attr: _attr, ...rest } = ref;
  return { ...rest, params: { ...ref.params } };
}

/** The Git URL a hosted or git reference fetches from, for resolving a branch to a revision. */
export function gitUrlOf(ref: FlakeRef): string | undefined {
  switch (ref.type) {
    case 'github':
      return `https://${ref.host ?? 'github.com'}/${ref.owner}/${ref.repo}.git`;
    case 'gitlab':
      return `https://${ref.host ?? 'gitlab.com'}/${ref.owner}/${ref.repo}.git`;
    case 'sourcehut':
      return `https://${ref.host ?? 'git.sr.ht'}/${ref.owner}/${ref.repo}`;
    case 'git':
      return ref.url;
    default:
      return undefined;
  }
}
