// Render output kept by a hash of everything that decides it (the request, the tool version, each input file's
// content hash), so a sync reruns kustomize/helm only for roots whose inputs changed. Bounded: the oldest
// entries go first.
import { createHash } from 'node:crypto';
import type { Problem } from '../problems.ts';
import type { RenderedObject } from './output.ts';

export interface CachedRender {
  objects: RenderedObject[];
  problems: Problem[];
}

export class RenderCache {
  readonly #entries = new Map<string, CachedRender>();
  readonly maxEntries: number;
  constructor(maxEntries = 2_000) {
    this.maxEntries = maxEntries;
  }

  get(key: string): CachedRender | undefined {
    const hit = this.#entries.get(key);
    if (hit !== undefined) {
      this.#entries.delete(key);
      this.#entries.set(key, hit);
    }
    return hit;
  }

  set(key: string, value: CachedRender): void {
    this.#entries.set(key, value);
    for (const oldest of this.#entries.keys()) {
      if (this.#entries.size <= this.maxEntries) break;
      this.#entries.delete(oldest);
    }
  }
}

export function renderKey(parts: {
  request: unknown;
  tool: string;
  inputs: readonly string[];
  hashes: ReadonlyMap<string, string>;
}): string {
  const h = createHash('sha256').update(canonicalJson(parts.request)).update('\0').update(parts.tool);
  for (const p of parts.inputs)
    h.update('\0')
      .update(p)
      .update('\0')
      .update(parts.hashes.get(p) ?? '');
  return h.digest('hex');
}

/** JSON with object keys sorted: the same request read from a file or from kustomize's output hashes alike. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}
