#!/bin/sh
# What images/rootfs.ts does, in a Debian container, for the generated Dockerfiles (images/*.Dockerfile):
#   rootfs.sh apt SNAPSHOT SUITE ARCH      apt reads snapshot.debian.org at SNAPSHOT (the lock's versions), knows ARCH
#   rootfs.sh rootfs ARCH OUT LOCK PKG...  the locked .debs of ARCH (in DEBS, else downloaded), sha256-checked,
#                                          unpacked into OUT; then
#                                          PACKAGES_ARCH (more packages on ARCH only), EXCLUDE, LINKS
#                                          (path=target), APPLETS (file: links beside usr/bin/busybox), CA=1,
#                                          DIRS (path=mode)
#   rootfs.sh node ARCH VERSION LOCK OUT   Node's binary from node-linux-(x64|arm64)@VERSION (npm pack), checked
set -eu

lock_line() { # NAME ARCH LOCK -> "name arch version sha256" (the ARCH or the `all` entry)
  awk -v p="$1" -v a="$2" '$1 == p && ($2 == a || $2 == "all") { print; exit }' "$3"
}

case "$1" in
apt)
  snap=$2 suite=$3 arch=$4
  rm -f /etc/apt/sources.list.d/debian.sources
  o="check-valid-until=no signed-by=/usr/share/keyrings/debian-archive-keyring.gpg"
  {
    echo "deb [$o] http://snapshot.debian.org/archive/debian/$snap $suite main"
    echo "deb [$o] http://snapshot.debian.org/archive/debian/$snap $suite-updates main"
    echo "deb [$o] http://snapshot.debian.org/archive/debian-security/$snap $suite-security main"
  } > /etc/apt/sources.list
  [ "$(dpkg --print-architecture)" = "$arch" ] || dpkg --add-architecture "$arch"
  apt-get update -q
  ;;
rootfs)
  arch=$2 out=$3 lock=$4
  shift 4
  eval "more=\${PACKAGES_$arch:-}"
  # shellcheck disable=SC2086
  set -- "$@" $more
  debs=${DEBS:-/tmp/debs}   # .debs already there with the locked sha256 are not downloaded again
  mkdir -p "$debs" "$out"
  chown _apt "$debs" 2>/dev/null || true
  for p in "$@"; do
    line=$(lock_line "$p" "$arch" "$lock")
    [ -n "$line" ] || { echo "images/packages.lock has no $p:$arch" >&2; exit 1; }
    read -r n a v h <<EOF
$line
EOF
    f="${n}_$(echo "$v" | sed 's/:/%3a/g')_${a}.deb"
    if [ "$a" = all ]; then spec="$n=$v"; else spec="$n:$a=$v"; fi
    echo "$h  $debs/$f" | sha256sum -c --quiet --status 2>/dev/null || (cd "$debs" && apt-get download -q "$spec")
    echo "$h  $debs/$f" | sha256sum -c --quiet || { echo "$f: sha256 differs from images/packages.lock" >&2; exit 1; }
    dpkg-deb -x "$debs/$f" "$out"
  done
  for x in ${EXCLUDE:-}; do rm -rf "${out:?}/$x"; done
  for l in ${LINKS:-}; do
    mkdir -p "$out/$(dirname "${l%%=*}")"
    ln -s "${l#*=}" "$out/${l%%=*}"
  done
  if [ -n "${APPLETS:-}" ]; then
    while read -r app; do ln -s busybox "$out/usr/bin/$app"; done < "$APPLETS"
  fi
  if [ "${CA:-0}" = 1 ]; then
    mkdir -p "$out/etc/ssl/certs"
    find "$out/usr/share/ca-certificates" -name '*.crt' | LC_ALL=C sort | while read -r c; do
      cat "$c"
      [ -z "$(tail -c1 "$c")" ] || echo
    done > "$out/etc/ssl/certs/ca-certificates.crt"
  fi
  for d in ${DIRS:-}; do mkdir -p "$out/${d%%=*}" && chmod "${d#*=}" "$out/${d%%=*}"; done
  ;;
node)
  arch=$2 version=$3 lock=$4 out=$5
  case "$arch" in amd64) npmarch=x64 ;; arm64) npmarch=arm64 ;; *) echo "no Node package for $arch" >&2; exit 1 ;; esac
  line=$(lock_line "node-linux-$npmarch" npm "$lock")
  [ -n "$line" ] || { echo "images/packages.lock has no node-linux-$npmarch" >&2; exit 1; }
  read -r n a v h <<EOF
$line
EOF
  [ "$v" = "$version" ] || { echo "images/packages.lock has node-linux-$npmarch $v, package-lock.json's node is $version" >&2; exit 1; }
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack --silent "$n@$v" >/dev/null)
  echo "$h  $tmp/$n-$v.tgz" | sha256sum -c --quiet || { echo "$n-$v.tgz: sha256 differs from images/packages.lock" >&2; exit 1; }
  tar -xzOf "$tmp/$n-$v.tgz" package/bin/node > "$out"
  chmod 755 "$out"
  rm -rf "$tmp"
  ;;
*)
  echo "usage: rootfs.sh apt|rootfs|node ..." >&2
  exit 2
  ;;
esac
