// The build half of a build Job, as POSIX shell run by the builder image's busybox. It never sees
// containerd's socket; the import half (`enbi import`, src/cli/import.ts) never runs build output. They meet
// at a FIFO on an emptyDir. A failed build touches /work/failed and closes the FIFO: the import half then
// imports nothing.
//
// No flake code runs in this container: it holds the Nix Secret (NIX_USER_CONF_FILES) and the pod's network.
// A streamLayeredImage script is flake code, so the node's Nix daemon runs it in its sandbox (no network, a
// build user, only the script's closure visible) as a derivation that enbi writes (SANDBOXED_IMAGE_NIX), and
// this container reads the tarball it wrote into the FIFO, then deletes it from the node's store.

/**
 * The derivation that runs an image script (the store path in ENBI_IMAGE_SCRIPT) in Nix's sandbox and keeps
 * what it writes to stdout as $out. Its builder is the builder image's static busybox, added to the store by
 * content (Nix 2.8's sandbox has no /bin/sh); its only other input is the script. Not fixed-output, so it has
 * no network. ENBI_NONCE makes each Job's derivation its own: the output is deleted after it was sent, and
 * must not be one another Job is still reading. Single-quoted into BUILD_SCRIPT: it holds no `'`.
 */
export const SANDBOXED_IMAGE_NIX = `let
  script = builtins.storePath (builtins.getEnv "ENBI_IMAGE_SCRIPT");
  busybox = builtins.path { name = "enbi-busybox"; path = /usr/bin; filter = p: t: p == "/usr/bin/busybox"; };
in derivation {
  name = "enbi-image.tar";
  system = builtins.getEnv "ENBI_SYSTEM";
  builder = "\${busybox}/busybox";
  args = [ "sh" "-c" "\\"$script\\" > \\"$out\\"" ];
  inherit script;
  nonce = builtins.getEnv "ENBI_NONCE";
  allowSubstitutes = false;
  preferLocalBuild = true;
}`;
if (SANDBOXED_IMAGE_NIX.includes("'")) throw new Error('SANDBOXED_IMAGE_NIX must not hold a single quote');

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
  echo "enbi: running the image script in Nix's sandbox (streamLayeredImage script)"
  tarball=$(ENBI_IMAGE_SCRIPT="$out" ENBI_NONCE=$(cat /proc/sys/kernel/random/uuid) nix build -L --no-link \
    --print-out-paths --impure --expr '${SANDBOXED_IMAGE_NIX}') || fail "the image script failed in Nix's sandbox"
  echo "enbi: streaming the image ($(stat -c %s "$tarball") bytes in $tarball)"
  sent=1; cat "$tarball" > "$fifo" || fail "reading the image failed"
  deriver=$(nix-store --query --deriver "$tarball")
  if nix store delete "$tarball" "$deriver" 2>/dev/null; then
    echo "enbi: deleted $tarball from the node's store"
  else
    echo "enbi: could not delete $tarball: it stays in the node's store (enbi never collects it) until something on the node runs nix-collect-garbage"
  fi
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
