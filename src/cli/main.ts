#!/usr/bin/env node
// The `enbi` executable: one binary, subcommands.
import { runAgent } from './agent.ts';
import { runBuild } from './build.ts';
import { runController } from './controller.ts';
import { runDiff } from './diff.ts';
import { runStatus } from './status.ts';

const USAGE = `enbi — builds Nix flake images on demand inside a Kubernetes cluster

Usage:
  enbi diff (GIT_URL | --dir DIR) [options]   what would be built, for which system, on which node, and why
  enbi controller --config FILE               run the controller against the current kubeconfig's cluster
  enbi build FLAKE#ATTR --system S [--follow]  create a NixBuild by hand and stream its log
  enbi status [-n NAMESPACE]                  NixBuilds with the reason of each failure
  enbi agent --node NAME [--socket PATH]      node agent: publish the node's containerd images (NodeImages)
  enbi help                                   this text

Run "enbi diff --help" for the options of diff.`;

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'diff':
      return runDiff(rest);
    case 'controller':
      return runController(rest);
    case 'build':
      return runBuild(rest);
    case 'status':
      return runStatus(rest);
    case 'agent':
      return runAgent(rest);
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
