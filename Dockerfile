# The controller image: Node 24, the compiled CLI, and kustomize and helm for rendering (the versions
# test/cluster/build-kustomize.sh and build-helm.sh build for the tests). Build: docker build -t enbi .
FROM golang:1.26-bookworm AS render-tools
ARG KUSTOMIZE_VERSION=v5.8.1
ARG HELM_VERSION=v3.22.0
# Same flags as the build scripts: static, version-stamped (helm also believes it talks to Kubernetes 1.34).
RUN CGO_ENABLED=0 GOBIN=/out GOFLAGS=-trimpath go install \
      -ldflags="-s -X sigs.k8s.io/kustomize/api/provenance.version=kustomize/${KUSTOMIZE_VERSION}" \
      sigs.k8s.io/kustomize/kustomize/v5@${KUSTOMIZE_VERSION} \
 && CGO_ENABLED=0 GOBIN=/out GOFLAGS=-trimpath go install \
      -ldflags="-s -X helm.sh/helm/v3/internal/version.version=${HELM_VERSION} -X helm.sh/helm/v3/internal/version.gitTreeState=clean -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=34 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=34" \
      helm.sh/helm/v3/cmd/helm@${HELM_VERSION}

FROM node:24-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --omit=optional --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npx tsc -p tsconfig.build.json && npm prune --omit=dev

FROM gcr.io/distroless/nodejs24-debian12:nonroot
WORKDIR /app
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/dist ./dist
COPY package.json ./
COPY --from=render-tools /out/kustomize /out/helm /usr/local/bin/
ENV ENBI_KUSTOMIZE=/usr/local/bin/kustomize ENBI_HELM=/usr/local/bin/helm
ENTRYPOINT ["/nodejs/bin/node", "/app/dist/cli/main.js"]
