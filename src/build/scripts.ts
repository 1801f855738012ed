// The build half of a build Job, as POSIX shell run by the builder image's busybox. It never sees
// containerd's socket; the import half (`enbi import`, src/cli/import.ts) never runs build output. They meet
// at a FIFO on an emptyDir, so a streamLayeredImage script streams straight into containerd with no copy on
// disk. A failed build touches /work/failed and closes the FIFO: the import half then imports nothing.

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
