// What enbi's two images hold, the one definition that images/build.ts assembles and the generated
// Dockerfiles (images/*.Dockerfile) follow. Versions are not here: Debian packages are pinned in
// images/packages.lock, Node in package-lock.json (the `node` devDependency), npm modules in package-lock.json.

/**
 * Debian release of both images' packages (images/packages.lock pins its versions), and the
 * snapshot.debian.org time whose archive holds the locked versions (the Dockerfiles' apt source): the newest
 * Date of the apt lists the lock was written from (trixie-security, 2026-12-05). Debian 13 (trixie) for its
 * Nix: 2.26.3, where bookworm has 2.8.0 (2022) without the fixes for the 2024–2025 sandbox and daemon
 * advisories; its Nix needs trixie's libc (2.38 or later), so the whole root comes from trixie.
 */
export const DEBIAN = { suite: 'trixie', snapshot: '20261205T033330Z' };

export interface PlatformInfo {
  /** Debian architecture (dpkg, apt-get download name:ARCH). */
  deb: string;
  /** Multiarch triplet: the loader searches /lib/TRIPLET and /usr/lib/TRIPLET. */
  triplet: string;
  /** The npm package that carries this platform's Node binary (node-linux-X). */
  npm: string;
  /** OCI platform. */
  architecture: string;
  variant?: string;
}

export const PLATFORMS: Record<string, PlatformInfo> = {
  'linux/amd64': { deb: 'amd64', triplet: 'x86_64-linux-gnu', npm: 'x64', architecture: 'amd64' },
  'linux/arm64': { deb: 'arm64', triplet: 'aarch64-linux-gnu', npm: 'arm64', architecture: 'arm64', variant: 'v8' },
};

/** Files of the packages that no container runs: documentation, shell completions, git's Perl and web UI. */
export const EXCLUDE = [
  'etc/bash_completion.d',
  'usr/share/bash-completion',
  'usr/share/bug',
  'usr/share/doc',
  'usr/share/doc-base',
  'usr/share/fish',
  'usr/share/gitweb',
  'usr/share/info',
  'usr/share/lintian',
  'usr/share/locale',
  'usr/share/man',
  'usr/share/perl5',
  'usr/share/zsh',
];

/** A Go program built from its module for the image's architecture (images/gotools.ts). */
export interface GoTool {
  name: string;
  module: string;
  version: string;
  ldflags: (version: string) => string;
  /** Where it goes in the image, and the environment variable that names it for enbi. */
  path: string;
  env: string;
}

/** kustomize and helm for rendering (src/render), the versions and stamps of test/cluster/build-{kustomize,helm}.sh. */
export const RENDER_TOOLS: GoTool[] = [
  {
    name: 'kustomize',
    module: 'sigs.k8s.io/kustomize/kustomize/v5',
    version: 'v5.8.1',
    path: 'usr/local/bin/kustomize',
    env: 'ENBI_KUSTOMIZE',
    ldflags: (v) => `-s -X sigs.k8s.io/kustomize/api/provenance.version=kustomize/${v}`,
  },
  {
    name: 'helm',
    module: 'helm.sh/helm/v3/cmd/helm',
    version: 'v3.22.0',
    path: 'usr/local/bin/helm',
    env: 'ENBI_HELM',
    // Unstamped, helm reports v0 and believes the cluster is Kubernetes v1.20.
    ldflags: (v) =>
      [
        `-s -X helm.sh/helm/v3/internal/version.version=${v} -X helm.sh/helm/v3/internal/version.gitTreeState=clean`,
        ...['helm.sh/helm/v3/pkg/chartutil', 'helm.sh/helm/v3/pkg/lint/rules'].map(
          (p) => `-X ${p}.k8sVersionMajor=1 -X ${p}.k8sVersionMinor=34`,
        ),
      ].join(' '),
  },
];

export interface ImageDef {
  /** Short name: archive images/out/NAME.oci.tar, Dockerfile images/NAME.Dockerfile, files under images/NAME/. */
  name: 'builder' | 'controller';
  /** Repository under the registry prefix: ghcr.io/hrzn/REPOSITORY:VERSION. */
  repository: string;
  description: string;
  /**
   * Debian packages whose files (less EXCLUDE) make the root file system. base-files first: Debian's root
   * layout, merged /usr (bin, lib, sbin and on amd64 lib64 are links into /usr, where every trixie package
   * puts its files; the loader is found through them), /etc/os-release.
   */
  packages: string[];
  /** More packages on one Debian architecture only (what its build of a binary loads there alone). */
  archPackages: Record<string, string[]>;
  /** ELF files (TRIPLET replaced) whose shared libraries must all be in the image: the build fails otherwise. */
  executables: string[];
  /** Symbolic links the packages' maintainer scripts or the host would make. */
  links: { path: string; target: string }[];
  /** busybox's applets as links beside it in /usr/bin, so also in /bin (the list is images/NAME/busybox.applets, checked against busybox). */
  busyboxApplets: boolean;
  /** /etc/ssl/certs/ca-certificates.crt from ca-certificates' certificates, as update-ca-certificates writes it. */
  caBundle: boolean;
  /** Node at /nodejs/bin/node and enbi's compiled CLI with its production modules under /app. */
  app: boolean;
  /** Go programs built for the image's architecture. */
  goTools: GoTool[];
  /** Empty directories the image needs (mode 1777 for tmp). */
  dirs: { path: string; mode: number }[];
  config: { Env: string[]; Entrypoint?: string[]; Cmd?: string[]; User?: string; WorkingDir: string };
}

/**
 * The builder image's Nix build users (images/builder/rootfs/etc/passwd and group): the daemon runs every
 * build as one of them (`build-users-group = nixbld`), so that no build runs as the daemon's root and none
 * can change another's outputs. A build holds its user until it ends, and one more build waits for a free
 * one: 32 as Nix's installer and NixOS make, for `max-jobs` up to 32 (deploy/'s nix.conf leaves Nix's
 * default, 1; `max-jobs = auto` is one per core). Host uids 30001–30032 while they build: the daemon
 * container shares the node's user namespace.
 */
export const NIX_BUILD_USERS = { group: 'nixbld', gid: 30000, firstUid: 30001, count: 32 };

const CA = '/etc/ssl/certs/ca-certificates.crt';

export const IMAGES: ImageDef[] = [
  {
    name: 'builder',
    repository: 'enbi-builder',
    description:
      "A build Job's build container and the agent's Nix daemon: Debian 13's Nix 2.26, git, nixbld build users, a static busybox as /bin/sh",
    packages: [
      'base-files',
      'bash-static',
      'busybox-static',
      'ca-certificates',
      'git',
      'nix-bin',
      // What nix, git and git-remote-http load (the build checks this closure for every platform).
      'libacl1',
      'libarchive13t64',
      'libboost-context1.83.0',
      'libbrotli1',
      'libbsd0',
      'libbz2-1.0',
      'libc6',
      'libcom-err2',
      'libcurl3t64-gnutls',
      'libffi8',
      'libgc1',
      'libgcc-s1',
      'libgit2-1.9',
      'libgmp10',
      'libgnutls30t64',
      'libgssapi-krb5-2',
      'libhogweed6t64',
      'libhttp-parser2.9',
      'libidn2-0',
      'libk5crypto3',
      'libkeyutils1',
      'libkrb5-3',
      'libkrb5support0',
      'libldap2',
      'liblowdown2',
      'liblz4-1',
      'liblzma5',
      'libmbedcrypto16',
      'libmbedtls21',
      'libmbedx509-7',
      'libmd0',
      'libnettle8t64',
      'libnghttp2-14',
      'libnghttp3-9',
      'libngtcp2-16',
      'libngtcp2-crypto-gnutls8',
      'libp11-kit0',
      'libpcre2-8-0',
      'libpsl5t64',
      'libreadline8t64',
      'librtmp1',
      'libsasl2-2',
      'libseccomp2',
      'libsodium23',
      'libsqlite3-0',
      'libssh2-1t64',
      'libssl3t64',
      'libstdc++6',
      'libtasn1-6',
      'libtinfo6',
      'libunistring5',
      'libxml2',
      'libxxhash0',
      'libzstd1',
      'zlib1g',
    ],
    // Nix reads x86 CPU features with libcpuid; its arm64 build does not link it (there is none for arm64).
    archPackages: { amd64: ['libcpuid17'] },
    // bash-static: Debian's Nix binds it as /bin/sh into every sandbox (its built-in sandbox-paths); the
    // daemon fails every sandboxed build where it is missing.
    executables: ['usr/bin/nix', 'usr/bin/git', 'usr/lib/git-core/git-remote-http', 'usr/bin/bash-static'],
    // nix-bin ships usr/libexec/nix/build-remote → ../../bin/nix itself (Nix runs itself so for remote builds).
    links: [],
    busyboxApplets: true,
    caBundle: true,
    app: false,
    goTools: [],
    // Nix's binaries stay outside /nix: the node's cache volume is mounted there.
    dirs: [
      { path: 'root', mode: 0o700 },
      { path: 'tmp', mode: 0o1777 },
      { path: 'nix', mode: 0o755 },
    ],
    config: {
      Env: ['PATH=/usr/bin:/bin', `NIX_SSL_CERT_FILE=${CA}`, `GIT_SSL_CAINFO=${CA}`],
      Cmd: ['/bin/sh'],
      WorkingDir: '/',
    },
  },
  {
    name: 'controller',
    repository: 'enbi',
    description:
      "enbi controller, node agent and the build Job's importer (`enbi import`): Node 24, the compiled CLI, kustomize and helm",
    packages: ['base-files', 'ca-certificates', 'libc6', 'libgcc-s1', 'libstdc++6'],
    archPackages: {},
    executables: ['nodejs/bin/node'],
    links: [],
    busyboxApplets: false,
    caBundle: true,
    app: true,
    goTools: RENDER_TOOLS,
    dirs: [
      { path: 'home/nonroot', mode: 0o755 },
      { path: 'tmp', mode: 0o1777 },
    ],
    // As distroless's nonroot images: the Deployment sets the user anyway, the importer runs as 0.
    config: {
      Env: [
        'PATH=/nodejs/bin:/usr/local/bin:/usr/bin:/bin',
        'NODE_ENV=production',
        `SSL_CERT_FILE=${CA}`,
        ...RENDER_TOOLS.map((t) => `${t.env}=/${t.path}`),
      ],
      Entrypoint: ['/nodejs/bin/node', '/app/dist/cli/main.js'],
      Cmd: ['--help'],
      User: '65532:65532',
      WorkingDir: '/app',
    },
  },
];

export const CA_BUNDLE = CA.slice(1);

/** Labels of the image config (and the Dockerfile's LABEL): no dates, so they never change a digest. */
export function labels(def: ImageDef, version: string): Record<string, string> {
  return {
    'org.opencontainers.image.description': def.description,
    'org.opencontainers.image.title': def.repository,
    'org.opencontainers.image.version': version,
  };
}

/** The packages of an image on a Debian architecture. */
export const packagesFor = (def: ImageDef, deb: string): string[] => [
  ...def.packages,
  ...(def.archPackages[deb] ?? []),
];
