// The two halves of a build Job, as POSIX shell run by the images' busybox. The build half never sees
// containerd's socket; the import half never runs build output. They meet at a FIFO on an emptyDir, so a
// streamLayeredImage script streams straight into containerd with no copy on disk.

/** Builds ENBI_INSTALLABLE (Nix settings come in NIX_CONFIG), then writes the image to the FIFO. */
export const BUILD_SCRIPT = String.raw`set -u
fifo=/work/image.fifo
[ -p "$fifo" ] || mkfifo "$fifo"
# Once the FIFO was opened for the image, the import half has seen EOF (or stopped reading): opening it
# again would wait forever for a reader that never comes.
sent=""
fail() { echo "enbi: $1" >&2; touch /work/failed; [ -n "$sent" ] || : > "$fifo"; exit 1; }
echo "enbi: building $ENBI_INSTALLABLE"
nix build -L --out-link /work/result "$ENBI_INSTALLABLE" || fail "nix build failed"
out=$(readlink /work/result)
echo "enbi: built $out"
printf '{"storePath":"%s"}' "$out" > /dev/termination-log
if [ -f "$out" ] && [ -x "$out" ]; then
  echo "enbi: streaming the image (streamLayeredImage script)"
  sent=1; "$out" > "$fifo" || fail "the image script failed"
elif [ "$(head -c 2 "$out" | od -An -tx1 | tr -d ' \n')" = "1f8b" ]; then
  echo "enbi: decompressing the image (gzipped tarball)"
  sent=1; gzip -dc "$out" > "$fifo" || fail "gzip -d failed"
elif [ -f "$out" ]; then
  echo "enbi: sending the image (docker-archive or OCI archive)"
  sent=1; cat "$out" > "$fifo" || fail "reading the image failed"
else
  fail "$out is not an image: build a docker-archive, an OCI archive, a gzipped tarball or a streamLayeredImage script"
fi
echo "enbi: image sent"
`;

/** Imports the image from the FIFO, tags it with every reference in ENBI_IMAGES, pins it, reports the digest. */
export const IMPORT_SCRIPT = String.raw`set -u
fifo=/work/image.fifo
while [ ! -p "$fifo" ]; do sleep 0.2; done
c() { ctr --address "$CONTAINERD_ADDRESS" -n k8s.io "$@"; }
# containerd 2's ctr imports through the transfer service by default, whose progress output names no image
# the way the parsing below needs; --local (absent from 1.x) keeps the client-side import and its
# "unpacking NAME (DIGEST)...done" line.
how=""; ctr images import --help 2>&1 | grep -q -e '--local' && how=--local
if [ -n "$ENBI_PLATFORM" ]; then out=$(c images import $how --platform "$ENBI_PLATFORM" - < "$fifo" 2>&1); else out=$(c images import $how - < "$fifo" 2>&1); fi
rc=$?
echo "$out"
[ -e /work/failed ] && { echo "enbi: the build failed; nothing to import" >&2; exit 1; }
[ "$rc" -eq 0 ] || { echo "enbi: ctr images import failed ($rc)" >&2; exit 1; }
name=$(echo "$out" | sed -n 's/^unpacking \(.*\) (sha256:.*$/\1/p' | head -n 1)
[ -n "$name" ] || { echo "enbi: could not read the imported image's name" >&2; exit 1; }
first=""
for want in $ENBI_IMAGES; do
  [ -n "$first" ] || first=$want
  if [ "$want" != "$name" ]; then c images tag --force "$name" "$want" > /dev/null || exit 1; fi
  c images label "$want" io.cri-containerd.pinned=pinned > /dev/null || exit 1
done
if [ -n "$first" ] && ! echo " $ENBI_IMAGES " | grep -q " $name "; then c images rm "$name" > /dev/null; fi
[ -n "$first" ] || first=$name
digest=$(c images ls "name==$first" | awk 'NR == 2 { print $3 }')
[ -n "$digest" ] || { echo "enbi: $first is not in containerd after import" >&2; exit 1; }
printf '{"image":"%s","digest":"%s"}' "$first" "$digest" > /dev/termination-log
echo "enbi: imported $first $digest"
`;
