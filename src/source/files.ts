// The files a source hands to the pipeline: manifests and the flake.lock files that pin indirect flakes.
import { isManifestPath } from '../manifests/scan.ts';

export interface SourceFile {
  /** Relative to the source root, forward slashes. */
  path: string;
  text: string;
}

export function isLockPath(path: string): boolean {
  return path === 'flake.lock' || path.endsWith('/flake.lock');
}

export function isSourceFile(path: string): boolean {
  return isLockPath(path) || isManifestPath(path);
}
