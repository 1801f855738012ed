// Kubernetes (GOARCH) architectures and the Nix systems that run them.

const ARCH_TO_SYSTEM: Readonly<Record<string, string>> = {
  amd64: 'x86_64',
  arm64: 'aarch64',
  arm: 'armv7l',
  '386': 'i686',
  riscv64: 'riscv64',
  ppc64le: 'powerpc64le',
  s390x: 's390x',
  mips64le: 'mips64el',
  loong64: 'loongarch64',
};

const OS_TO_NIX: Readonly<Record<string, string>> = { linux: 'linux', darwin: 'darwin' };

/** `amd64` + `linux` → `x86_64-linux`; undefined for combinations Nix has no system for. */
export function nixSystemOf(arch: string, os = 'linux'): string | undefined {
  const cpu = ARCH_TO_SYSTEM[arch];
  const nixOs = OS_TO_NIX[os];
  return cpu !== undefined && nixOs !== undefined ? `${cpu}-${nixOs}` : undefined;
}

/** `aarch64-linux` → { arch: 'arm64', os: 'linux' }: the OCI platform an image for that system carries. */
export function platformOf(system: string): { arch: string; os: string } | undefined {
  const dash = system.lastIndexOf('-');
  const cpu = system.slice(0, dash);
  const os = system.slice(dash + 1);
  const arch = Object.keys(ARCH_TO_SYSTEM).find((a) => ARCH_TO_SYSTEM[a] === cpu);
  return arch !== undefined && OS_TO_NIX[os] !== undefined ? { arch, os } : undefined;
}

export const KNOWN_SYSTEMS: readonly string[] = Object.values(ARCH_TO_SYSTEM).map((cpu) => `${cpu}-linux`);

export function isKnownSystem(system: string): boolean {
  return platformOf(system) !== undefined;
}
