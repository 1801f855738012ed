// Reads the locked inputs of a committed flake.lock: an indirect reference `myapp#image` in a manifest
// is pinned by the `myapp` input of the nearest flake.lock beside (or above) the manifest.
import type { FlakeRef } from './ref.ts';
import { isFullRev } from './ref.ts';
import { errorMessage } from '../async/error-message.ts';

export class FlakeLockError extends Error {
  override name = 'FlakeLockError';
}

type Obj = Record<string, unknown>;
const str = (o: Obj, k: string): string | undefined => (typeof o[k] === 'string' ? (o[k] as string) : undefined);

/** Input name → locked reference (without attribute). Inputs of a type enbi cannot pin are left out. */
export function parseFlakeLock(text: string, file: string): Map<string, FlakeRef> {
  let lock: Obj;
  try {
    lock = JSON.parse(text) as Obj;
  } catch (err) {
    throw new FlakeLockError(`${file}: not valid JSON (${errorMessage(err)})`);
  }
  const nodes = lock.nodes as Record<string, Obj> | undefined;
  const rootName = typeof lock.root === 'string' ? lock.root : 'root';
  const root = nodes?.[rootName];
  if (nodes === undefined || root === undefined)
    throw new FlakeLockError(`${file}: no nodes.${rootName}: not a flake.lock`);
  const out = new Map<string, FlakeRef>();
  for (const [input, target] of Object.entries((root.inputs as Obj | undefined) ?? {})) {
    // A `follows` input is a path of names; enbi only pins direct inputs.
    if (typeof target !== 'string') continue;
    const locked = nodes[target]?.locked as Obj | undefined;
    const ref = locked !== undefined ? lockedToRef(locked) : undefined;
    if (ref !== undefined) out.set(input, ref);
  }
  return out;
}

function lockedToRef(locked: Obj): FlakeRef | undefined {
  const rev = str(locked, 'rev');
  if (rev === undefined || !isFullRev(rev)) return undefined;
  const type = str(locked, 'type');
  const dir = str(locked, 'dir');
  const base: FlakeRef = (() => {
    switch (type) {
      case 'github':
      case 'gitlab':
      case 'sourcehut': {
        const r: FlakeRef = { type, owner: str(locked, 'owner')!, repo: str(locked, 'repo')!, rev, params: {} };
        const host = str(locked, 'host');
        if (host !== undefined) r.host = host;
        return r;
      }
      case 'git': {
        const r: FlakeRef = { type: 'git', url: str(locked, 'url')!, rev, params: {} };
        const ref = str(locked, 'ref');
        if (ref !== undefined) r.ref = ref;
        return r;
      }
      default:
        return { type: 'path', params: {} };
    }
  })();
  if (base.type === 'path') return undefined;
  if (dir !== undefined) base.dir = dir;
  return base;
}

/** The locked reference of `input` in the flake.lock nearest to `file` (same directory, then parents). */
export function findLockedInput(
  locks: ReadonlyMap<string, ReadonlyMap<string, FlakeRef>>,
  file: string,
  input: string,
): { ref: FlakeRef; lockFile: string } | { searched: string[] } {
  const searched: string[] = [];
  const parts = file.split('/').slice(0, -1);
  for (let i = parts.length; i >= 0; i--) {
    const dir = parts.slice(0, i).join('/');
    const lockFile = dir === '' ? 'flake.lock' : `${dir}/flake.lock`;
    const lock = locks.get(lockFile);
    if (lock === undefined) continue;
    searched.push(lockFile);
    const ref = lock.get(input);
    if (ref !== undefined) return { ref, lockFile };
  }
  return { searched };
}
