# syntax=docker/dockerfile:1
# GENERATED from images/definition.ts by `npm run images -- --dockerfiles`: do not edit (a unit test
# fails when this file differs from what the definition generates).
# A build Job's build container and the agent's Nix daemon: Debian 13's Nix 2.26, git, nixbld build users, a static busybox as /bin/sh.
# The same content as `npm run images` assembles; that script's archives are also bit-for-bit reproducible.
# From the repository root:
#   docker buildx build --platform linux/amd64,linux/arm64 -f images/builder.Dockerfile -t ghcr.io/hrzn/enbi-builder:0.1.0 .
#   buildah build --platform linux/amd64 -f images/builder.Dockerfile -t ghcr.io/hrzn/enbi-builder:0.1.0 .

FROM --platform=$BUILDPLATFORM debian:trixie-slim AS rootfs
ARG TARGETARCH
COPY images/packages.lock images/rootfs.sh /images/
COPY images/builder/ /images/builder/
# The archive as it was when the lock was written: every locked version is there, with the locked sha256.
RUN sh /images/rootfs.sh apt 20261205T033330Z trixie "$TARGETARCH"
RUN EXCLUDE='etc/bash_completion.d usr/share/bash-completion usr/share/bug usr/share/doc usr/share/doc-base usr/share/fish usr/share/gitweb usr/share/info usr/share/lintian usr/share/locale usr/share/man usr/share/perl5 usr/share/zsh' \
    LINKS='' \
    DIRS='root=700 tmp=1777 nix=755' \
    APPLETS=/images/builder/busybox.applets \
    CA=1 \
    PACKAGES_amd64=libcpuid17 \
    sh /images/rootfs.sh rootfs "$TARGETARCH" /rootfs /images/packages.lock \
    base-files bash-static busybox-static ca-certificates git nix-bin libacl1 libarchive13t64 libboost-context1.83.0 libbrotli1 libbsd0 libbz2-1.0 libc6 libcom-err2 libcurl3t64-gnutls libffi8 libgc1 libgcc-s1 libgit2-1.9 libgmp10 libgnutls30t64 libgssapi-krb5-2 libhogweed6t64 libhttp-parser2.9 libidn2-0 libk5crypto3 libkeyutils1 libkrb5-3 libkrb5support0 libldap2 liblowdown2 liblz4-1 liblzma5 libmbedcrypto16 libmbedtls21 libmbedx509-7 libmd0 libnettle8t64 libnghttp2-14 libnghttp3-9 libngtcp2-16 libngtcp2-crypto-gnutls8 libp11-kit0 libpcre2-8-0 libpsl5t64 libreadline8t64 librtmp1 libsasl2-2 libseccomp2 libsodium23 libsqlite3-0 libssh2-1t64 libssl3t64 libstdc++6 libtasn1-6 libtinfo6 libunistring5 libxml2 libxxhash0 libzstd1 zlib1g

FROM scratch
COPY --from=rootfs /rootfs/ /

COPY images/builder/rootfs/ /

ENV PATH="/usr/bin:/bin" NIX_SSL_CERT_FILE="/etc/ssl/certs/ca-certificates.crt" GIT_SSL_CAINFO="/etc/ssl/certs/ca-certificates.crt"
CMD ["/bin/sh"]
WORKDIR /
LABEL org.opencontainers.image.description="A build Job's build container and the agent's Nix daemon: Debian 13's Nix 2.26, git, nixbld build users, a static busybox as /bin/sh" \
      org.opencontainers.image.title="enbi-builder" \
      org.opencontainers.image.version="0.1.0"
