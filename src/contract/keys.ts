// The annotation keys of enbi's contract. They live on the pod template (on a Pod: its own metadata),
// so that every pod carries them and the on-demand trigger can read them from the pod itself.

export const PREFIX = 'enbi.hrzn.ee/';

/** Flake of the pod's only container. */
export const FLAKE = `${PREFIX}flake`;
/** Flake of one named container: `enbi.hrzn.ee/flake.<container>` (init containers too). */
export const FLAKE_FOR = `${PREFIX}flake.`;
/** `on-demand` (default): build for a system when a pod needs it; `eager`: for every system it can schedule to. */
export const BUILD_MODE = `${PREFIX}build`;

/** The pre-alpha's keys, still accepted: flakeUrl + packageName build the container whose tag is imageTag. */
export const LEGACY_FLAKE_URL = `${PREFIX}nixbuild-flakeUrl`;
export const LEGACY_IMAGE_TAG = `${PREFIX}nixbuild-imageTag`;
export const LEGACY_PACKAGE_NAME = `${PREFIX}nixbuild-packageName`;

/** Node label: `enbi.hrzn.ee/builds.<system>=true` says the node can build that system (binfmt + Nix extra-platforms). */
export const NODE_BUILDS_PREFIX = `${PREFIX}builds.`;
/** Node label: `enbi.hrzn.ee/builder=false` keeps builds off the node. */
export const NODE_BUILDER = `${PREFIX}builder`;

export const CONTAINER_NAME = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
