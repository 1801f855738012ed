// Go programs an image ships (the controller's kustomize and helm, for rendering), built with `go install
// MODULE@VERSION` (the module's own go.mod and go.sum, checked against the checksum database) for the
// image's architecture: static (CGO_ENABLED=0), -trimpath, stamped as the project's build scripts stamp
// them. Same Go toolchain, same bytes. Cached by tool, version, architecture and `go version`.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { GoTool } from './definition.ts';

function goBinary(): string {
  for (const g of ['go', '/usr/local/go/bin/go']) {
    try {
      execFileSync(g, ['version'], { stdio: 'ignore' });
      return g;
    } catch {
      /* next */
    }
  }
  throw new Error(
    'go not found: install Go >= 1.24 (the controller image builds kustomize and helm from their modules)',
  );
}

/** The tool's binary for a Go architecture (amd64, arm64), built or from the cache. */
export function goTool(tool: GoTool, goarch: string, cache: string): Buffer {
  const go = goBinary();
  const goVersion = execFileSync(go, ['env', 'GOVERSION'], { encoding: 'utf8' }).trim();
  const dir = join(cache, 'gotools', `${tool.name}-${tool.version}-${goarch}-${goVersion}`);
  const bin = join(dir, tool.name);
  if (existsSync(bin)) return readFileSync(bin);
  mkdirSync(dir, { recursive: true });
  // go install refuses GOBIN for another architecture: a scratch GOPATH (the module cache stays shared).
  const gopath = mkdtempSync(join(cache, 'gotools', 'gopath-'));
  try {
    const gomodcache = execFileSync(go, ['env', 'GOMODCACHE'], { encoding: 'utf8' }).trim();
    execFileSync(go, ['install', `-ldflags=${tool.ldflags(tool.version)}`, `${tool.module}@${tool.version}`], {
      env: {
        ...process.env,
        GOPATH: gopath,
        GOMODCACHE: gomodcache,
        GOBIN: '',
        GOOS: 'linux',
        GOARCH: goarch,
        CGO_ENABLED: '0',
        GOTOOLCHAIN: 'local',
        GOFLAGS: '-trimpath',
      },
      stdio: ['ignore', 'inherit', 'inherit'],
    });
    const hostArch = process.arch === 'x64' ? 'amd64' : process.arch;
    const built = join(gopath, 'bin', ...(goarch === hostArch ? [] : [`linux_${goarch}`]), tool.name);
    renameSync(built, bin);
    return readFileSync(bin);
  } finally {
    execFileSync('chmod', ['-R', 'u+w', gopath]);
    rmSync(gopath, { recursive: true, force: true });
  }
}
