# syntax=docker/dockerfile:1
# GENERATED from images/definition.ts by `npm run images -- --dockerfiles`: do not edit (a unit test
# fails when this file differs from what the definition generates).
# enbi controller, node agent and the build Job's importer (`enbi import`): Node 24, the compiled CLI, kustomize and helm.
# The same content as `npm run images` assembles; that script's archives are also bit-for-bit reproducible.
# From the repository root:
#   docker buildx build --platform linux/amd64,linux/arm64 -f images/controller.Dockerfile -t ghcr.io/hrzn/enbi:0.1.0 .
#   buildah build --platform linux/amd64 -f images/controller.Dockerfile -t ghcr.io/hrzn/enbi:0.1.0 .

FROM --platform=$BUILDPLATFORM node:24.21.0-trixie-slim AS app
ARG TARGETARCH
WORKDIR /src
COPY package.json package-lock.json tsconfig.json tsconfig.build.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY src ./src
COPY images/packages.lock images/rootfs.sh /images/
# npm run build, then the modules `npm ci --omit=dev` keeps; Node's binary package for TARGETARCH, checked.
RUN node node_modules/typescript/bin/tsc -p tsconfig.build.json && npm prune --omit=dev --ignore-scripts \
    && rm -rf node_modules/.bin node_modules/.package-lock.json \
    && sh /images/rootfs.sh node "$TARGETARCH" 24.21.0 /images/packages.lock /node

FROM --platform=$BUILDPLATFORM golang:1.26-bookworm AS kustomize
ARG TARGETARCH
# go install MODULE@VERSION: the module's own go.mod and go.sum; static, -trimpath, stamped as images/gotools.ts does.
RUN GOOS=linux GOARCH=$TARGETARCH CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-trimpath \
    go install -ldflags='-s -X sigs.k8s.io/kustomize/api/provenance.version=kustomize/v5.8.1' sigs.k8s.io/kustomize/kustomize/v5@v5.8.1 \
    && mkdir -p /out && cp "$(find /go/bin -type f -name kustomize)" /out/kustomize

FROM --platform=$BUILDPLATFORM golang:1.26-bookworm AS helm
ARG TARGETARCH
# go install MODULE@VERSION: the module's own go.mod and go.sum; static, -trimpath, stamped as images/gotools.ts does.
RUN GOOS=linux GOARCH=$TARGETARCH CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-trimpath \
    go install -ldflags='-s -X helm.sh/helm/v3/internal/version.version=v3.22.0 -X helm.sh/helm/v3/internal/version.gitTreeState=clean -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=34 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=34' helm.sh/helm/v3/cmd/helm@v3.22.0 \
    && mkdir -p /out && cp "$(find /go/bin -type f -name helm)" /out/helm

FROM --platform=$BUILDPLATFORM debian:trixie-slim AS rootfs
ARG TARGETARCH
COPY images/packages.lock images/rootfs.sh /images/
COPY images/controller/ /images/controller/
# The archive as it was when the lock was written: every locked version is there, with the locked sha256.
RUN sh /images/rootfs.sh apt 20261205T033330Z trixie "$TARGETARCH"
RUN EXCLUDE='etc/bash_completion.d usr/share/bash-completion usr/share/bug usr/share/doc usr/share/doc-base usr/share/fish usr/share/gitweb usr/share/info usr/share/lintian usr/share/locale usr/share/man usr/share/perl5 usr/share/zsh' \
    LINKS='' \
    DIRS='home/nonroot=755 tmp=1777' \
    APPLETS='' \
    CA=1 \
    sh /images/rootfs.sh rootfs "$TARGETARCH" /rootfs /images/packages.lock \
    base-files ca-certificates libc6 libgcc-s1 libstdc++6

FROM scratch
COPY --from=rootfs /rootfs/ /

COPY --from=app /node /nodejs/bin/node
COPY --from=app /src/package.json /app/package.json
COPY --from=app /src/dist /app/dist
COPY --from=app /src/node_modules /app/node_modules

COPY --from=kustomize /out/kustomize /usr/local/bin/kustomize

COPY --from=helm /out/helm /usr/local/bin/helm

COPY images/controller/rootfs/ /

ENV PATH="/nodejs/bin:/usr/local/bin:/usr/bin:/bin" NODE_ENV="production" SSL_CERT_FILE="/etc/ssl/certs/ca-certificates.crt" ENBI_KUSTOMIZE="/usr/local/bin/kustomize" ENBI_HELM="/usr/local/bin/helm"
ENTRYPOINT ["/nodejs/bin/node","/app/dist/cli/main.js"]
CMD ["--help"]
USER 65532:65532
WORKDIR /app
LABEL org.opencontainers.image.description="enbi controller, node agent and the build Job's importer (`enbi import`): Node 24, the compiled CLI, kustomize and helm" \
      org.opencontainers.image.title="enbi" \
      org.opencontainers.image.version="0.1.0"
