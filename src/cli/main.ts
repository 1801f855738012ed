#!/usr/bin/env node
// The `enbi` executable: one binary, subcommands.
// Subcommands are loaded when called: `enbi import` (the build Job's import container) needs only the gRPC
// modules, not the Kubernetes client and Git.

const USAGE = `enbi — builds Nix flake images on demand inside a Kubernetes cluster

Usage:
  enbi diff (GIT_URL | --dir DIR) [options]   what would be built, for which system, on which node, and why
  enbi controller --config FILE               run the controller against the current kubeconfig's cluster
  enbi build FLAKE#ATTR --system S [--follow]  create a NixBuild by hand and stream its log
  enbi status [-n NAMESPACE]                  NixBuilds with the reason of each failure
  enbi agent --node NAME [--socket PATH]      node agent: publish the node's containerd images (NodeImages)
  enbi import [--fifo PATH] [--image REF]...  import an image archive into containerd, labelled for Spegel
  enbi help                                   this text

Run "enbi diff --help" for the options of diff.`;

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'diff':
      return (await import('./diff.ts')).runDiff(rest);
    case 'controller':
      return (await import('./controller.ts')).runController(rest);
    case 'build':
      return (await import('./build.ts')).runBuild(rest);
    case 'status':
      return (await import('./status.ts')).runStatus(rest);
    case 'agent':
      return (await import('./agent.ts')).runAgent(rest);
    case 'import':
      return (await import('./import.ts')).runImport(rest);
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
