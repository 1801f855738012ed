#!/usr/bin/env node
// The `enbi` executable: one binary, subcommands.
import { runController } from './controller.ts';
import { runDiff } from './diff.ts';

const USAGE = `enbi — builds Nix flake images on demand inside a Kubernetes cluster

Usage:
  enbi diff (GIT_URL | --dir DIR) [options]   what would be built, for which system, on which node, and why
  enbi controller --config FILE               run the controller against the current kubeconfig's cluster
  enbi help                                   this text

Run "enbi diff --help" for the options of diff.`;

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'diff':
      return runDiff(rest);
    case 'controller':
      return runController(rest);
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      console.log(USAGE);
      return 0;
    default:
      console.error(`enbi: unknown command "${command}"\n\n${USAGE}`);
      return 1;
  }
}

process.exitCode = await main(process.argv.slice(2));
