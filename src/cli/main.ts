#!/usr/bin/env node
// The `enbi` executable: one binary, subcommands.
// Subcommands are loaded when called: `enbi import` (the build Job's import container) needs only the gRPC
// modules, not the Kubernetes client and Git.
import { type Command, EXIT_USAGE, runCommand, UsageError } from './command.ts';
import { printable } from '../text/printable.ts';

const USAGE = `enbi — builds Nix flake images on demand inside a Kubernetes cluster

Usage:
  enbi diff (GIT_URL | --dir DIR) [options]   what would be built, for which system, on which node, and why
  enbi controller --config FILE               run the controller against the current kubeconfig's cluster
  enbi build FLAKE#ATTR --system S [--follow]  create a NixBuild by hand and stream its log
  enbi status [-n NAMESPACE]                  NixBuilds with the reason of each failure
  enbi agent --node NAME [--socket PATH]      node agent: publish the node's containerd images (NodeImages)
  enbi import [--fifo PATH] [--image REF]...  import an image archive into containerd, labelled for Spegel
  enbi help                                   this text

Run "enbi COMMAND --help" for its options. A bad command line (unknown option, bad value) exits 1.`;

// Each module exports its Command; loaded only when called.
const COMMANDS: Record<string, () => Promise<{ default: Command }>> = {
  diff: () => import('./diff.ts'),
  controller: () => import('./controller.ts'),
  build: () => import('./build.ts'),
  status: () => import('./status.ts'),
  agent: () => import('./agent.ts'),
  import: () => import('./import.ts'),
};

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === 'help' || name === '--help' || name === '-h') {
    console.log(USAGE);
    return 0;
  }
  const load = Object.hasOwn(COMMANDS, name) ? COMMANDS[name] : undefined;
  if (load === undefined) {
    console.error(`enbi: unknown command "${printable(name)}"\n\n${USAGE}`);
    return EXIT_USAGE;
  }
  try {
    return await runCommand((await load()).default, rest);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    // One line, whatever the command: the user's own text could hold newlines or control characters.
    console.error(`enbi ${name}: ${printable(err.message.replace(/\s*\n\s*/g, ' '))} (see enbi ${name} --help)`);
    return EXIT_USAGE;
  }
}

process.exitCode = await main(process.argv.slice(2));
