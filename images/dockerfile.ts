// The Dockerfile of each image, generated from images/definition.ts so that Docker/Buildah builds hold
// what images/build.ts assembles: the same locked packages (images/packages.lock, from the Debian
// snapshot that holds those versions), the same exclusions, links, applets, CA bundle, static files, Node
// binary package and enbi build, the same config. images/rootfs.sh does in shell what rootfs.ts does.
import { DEBIAN, EXCLUDE, labels, type ImageDef } from './definition.ts';

/** The Go image of the Dockerfiles' go install stages (the Go this repository's scripts use). */
const GO_IMAGE = '1.26-bookworm';

const HEADER = (def: ImageDef, ref: string): string => `# syntax=docker/dockerfile:1
# GENERATED from images/definition.ts by \`npm run images -- --dockerfiles\`: do not edit (a unit test
# fails when this file differs from what the definition generates).
# ${def.description}.
# The same content as \`npm run images\` assembles; that script's archives are also bit-for-bit reproducible.
# From the repository root:
#   docker buildx build --platform linux/amd64,linux/arm64 -f images/${def.name}.Dockerfile -t ${ref} .
#   buildah build --platform linux/amd64 -f images/${def.name}.Dockerfile -t ${ref} .
`;

const q = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;

/** The environment rootfs.sh gets for an image: what rootfs.ts takes from the definition. */
export function rootfsEnv(def: ImageDef, imagesDir = '/images'): Record<string, string> {
  return {
    EXCLUDE: EXCLUDE.join(' '),
    LINKS: def.links.map((l) => `${l.path}=${l.target}`).join(' '),
    DIRS: def.dirs.map((d) => `${d.path}=${d.mode.toString(8)}`).join(' '),
    APPLETS: def.busyboxApplets ? `${imagesDir}/${def.name}/busybox.applets` : '',
    CA: def.caBundle ? '1' : '0',
    ...Object.fromEntries(Object.entries(def.archPackages).map(([a, pkgs]) => [`PACKAGES_${a}`, pkgs.join(' ')])),
  };
}

/** The Debian stage: the locked packages of TARGETARCH unpacked into /rootfs as rootfs.ts does. */
function rootfsStage(def: ImageDef): string {
  const env = Object.entries(rootfsEnv(def)).map(
    ([k, v]) => `${k}=${v === '' ? "''" : /^[\w./-]+$/.test(v) ? v : q(v)}`,
  );
  return `FROM --platform=$BUILDPLATFORM debian:${DEBIAN.suite}-slim AS rootfs
ARG TARGETARCH
COPY images/packages.lock images/rootfs.sh /images/
COPY images/${def.name}/ /images/${def.name}/
# The archive as it was when the lock was written: every locked version is there, with the locked sha256.
RUN sh /images/rootfs.sh apt ${DEBIAN.snapshot} ${DEBIAN.suite} "$TARGETARCH"
RUN ${env.join(' \\\n    ')} \\
    sh /images/rootfs.sh rootfs "$TARGETARCH" /rootfs /images/packages.lock \\
    ${def.packages.join(' ')}
`;
}

function configLines(def: ImageDef, ref: string, version: string): string {
  const c = def.config;
  const lines = [
    `ENV ${c.Env.map((e) => {
      const i = e.indexOf('=');
      return `${e.slice(0, i)}=${JSON.stringify(e.slice(i + 1))}`;
    }).join(' ')}`,
    ...(c.Entrypoint ? [`ENTRYPOINT ${JSON.stringify(c.Entrypoint)}`] : []),
    ...(c.Cmd ? [`CMD ${JSON.stringify(c.Cmd)}`] : []),
    ...(c.User ? [`USER ${c.User}`] : []),
    `WORKDIR ${c.WorkingDir}`,
    `LABEL ${Object.entries(labels(def, version))
      .map(([k, v]) => `${k}=${JSON.stringify(v)}`)
      .join(' \\\n      ')}`,
  ];
  return lines.join('\n') + '\n';
}

export function dockerfile(def: ImageDef, ref: string, version: string, nodeVersion: string): string {
  const parts = [HEADER(def, ref)];
  if (def.app) {
    parts.push(`FROM --platform=$BUILDPLATFORM node:${nodeVersion}-${DEBIAN.suite}-slim AS app
ARG TARGETARCH
WORKDIR /src
COPY package.json package-lock.json tsconfig.json tsconfig.build.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY src ./src
COPY images/packages.lock images/rootfs.sh /images/
# npm run build, then the modules \`npm ci --omit=dev\` keeps; Node's binary package for TARGETARCH, checked.
RUN node node_modules/typescript/bin/tsc -p tsconfig.build.json && npm prune --omit=dev --ignore-scripts \\
    && rm -rf node_modules/.bin node_modules/.package-lock.json \\
    && sh /images/rootfs.sh node "$TARGETARCH" ${nodeVersion} /images/packages.lock /node
`);
  }
  for (const t of def.goTools) {
    parts.push(`FROM --platform=$BUILDPLATFORM golang:${GO_IMAGE} AS ${t.name}
ARG TARGETARCH
# go install MODULE@VERSION: the module's own go.mod and go.sum; static, -trimpath, stamped as images/gotools.ts does.
RUN GOOS=linux GOARCH=$TARGETARCH CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-trimpath \\
    go install -ldflags=${q(t.ldflags(t.version))} ${t.module}@${t.version} \\
    && mkdir -p /out && cp "$(find /go/bin -type f -name ${t.name})" /out/${t.name}
`);
  }
  parts.push(rootfsStage(def));
  parts.push(`FROM scratch
COPY --from=rootfs /rootfs/ /
`);
  if (def.app) {
    parts.push(`COPY --from=app /node /nodejs/bin/node
COPY --from=app /src/package.json /app/package.json
COPY --from=app /src/dist /app/dist
COPY --from=app /src/node_modules /app/node_modules
`);
  }
  for (const t of def.goTools) parts.push(`COPY --from=${t.name} /out/${t.name} /${t.path}\n`);
  parts.push(`COPY images/${def.name}/rootfs/ /
`);
  parts.push(configLines(def, ref, version));
  return parts.join('\n');
}
