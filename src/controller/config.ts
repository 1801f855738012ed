// The controller's configuration: one zod schema, documented in docs/controller.md, read from a YAML file.
// A bad configuration stops start-up with every problem listed.
import { readFile } from 'node:fs/promises';
import { parse } from 'yaml';
import { z } from 'zod';
import { type BuildPolicy, normalizeFlakeSource, normalizeImagePrefix } from '../plan/allow.ts';

const toleration = z.object({
  key: z.string().optional(),
  operator: z.enum(['Exists', 'Equal']).optional(),
  value: z.string().optional(),
  effect: z.enum(['NoSchedule', 'PreferNoSchedule', 'NoExecute']).optional(),
});

export const controllerConfigSchema = z
  .object({
    source: z
      .object({
        url: z
          .url({ protocol: /^https?$/ })
          .refine(
            (u) => {
              const x = new URL(u);
              return x.username === '' && x.password === '';
            },
            {
              message:
                'credentials in source.url end up in logs and caches: remove them from the URL and put "username:password" (or a token) in the file source.credentialsFile names',
            },
          )
          .optional()
          .describe('HTTP(S) Git repository of manifests (no credentials in the URL: see credentialsFile).'),
        dir: z.string().optional().describe('A local directory of manifests instead of Git (watched).'),
        ref: z.string().optional().describe('Branch or tag; default: the remote HEAD.'),
        path: z.string().default('').describe('Sub-path holding the manifests.'),
        intervalSeconds: z
          .number()
          .int()
          .min(5)
          .default(60)
          .describe('How often Git is fetched (webhooks trigger at once).'),
        timeoutSeconds: z
          .number()
          .int()
          .min(1)
          .default(30)
          .describe(
            'A Git request with no answer for this long fails the sync (a hung server cannot hold the source loop).',
          ),
        credentialsFile: z.string().optional().describe('"username:password" or a token on one line.'),
      })
      .refine((s) => (s.url === undefined) !== (s.dir === undefined), {
        message: 'set exactly one of source.url and source.dir',
      })
      .optional()
      .describe(
        'Where the manifests are: the authority on what is built. Absent: only trustedNamespaces can trigger builds.',
      ),
    trustedNamespaces: z
      .array(z.string().min(1))
      .default([])
      .describe(
        'Namespaces whose pods may declare their own flake (opt-in, e.g. clusters without a Git source). Every other pod triggers a build only when it belongs to a workload of the source.',
      ),
    allowedImages: z
      .array(z.string())
      .optional()
      .describe(
        'Image reference prefixes enbi may write into nodes\' containerd, each ending in "/" (e.g. registry.local/). Required.',
      ),
    allowedFlakes: z
      .array(z.string())
      .optional()
      .describe(
        'Flake sources enbi may build: github:<owner>[/<repo>], gitlab:<group>[/<repo>], or an https:// URL prefix. Required.',
      ),
    namespace: z.string().default('enbi-system').describe('Namespace of NixBuilds and build Jobs.'),
    watchNamespaces: z.array(z.string()).default([]).describe('Namespaces whose pods trigger builds; empty: all.'),
    mode: z.enum(['spegel', 'per-node']).default('spegel'),
    buildMode: z.enum(['on-demand', 'eager']).default('on-demand').describe('Default when a workload does not say.'),
    builderImage: z.string().min(1),
    importerImage: z
      .string()
      .min(1)
      .describe(
        "Runs `enbi import`: the controller image (its entrypoint is enbi's CLI), or any image whose entrypoint is.",
      ),
    importerCommand: z
      .array(z.string())
      .optional()
      .describe(
        "The command that starts enbi's CLI in importerImage when its entrypoint does not (the Job adds `import --fifo …`).",
      ),
    cache: z
      .object({
        hostPath: z
          .string()
          .default('/var/lib/enbi/nix')
          .describe('Per-node directory holding the Nix store and ~/.cache/nix.'),
      })
      .default({ hostPath: '/var/lib/enbi/nix' }),
    containerdSocket: z
      .string()
      .optional()
      .describe(
        "Socket path on the nodes. Absent: the node annotation enbi.hrzn.ee/containerd-socket, else found from the node's runtime (k3s, rke2, microk8s, k0s, kubeadm/kind).",
      ),
    builderTolerations: z.array(toleration).default([]),
    builderNodeSelector: z
      .record(z.string(), z.string())
      .default({})
      .describe('Labels a node must carry to run builds (a build pool); empty: any node able to build.'),
    nixOptions: z
      .record(z.string(), z.string())
      .default({})
      .describe(
        "Settings of the Nix client that evaluates each flake (NIX_CONFIG). Builder settings (substituters, trusted-public-keys, extra-platforms) belong to the node's Nix daemon (ConfigMap enbi-nix-daemon): it ignores them from a build.",
      ),
    nixSecretName: z
      .string()
      .optional()
      .describe(
        'A Secret in `namespace` whose key nix.conf holds Nix settings with secrets (access-tokens, netrc-file): mounted read-only into build containers, never written into a pod spec.',
      ),
    maxConcurrentBuildsPerNode: z.number().int().min(1).default(1),
    maxAttempts: z.number().int().min(1).max(20).default(3),
    retryBaseSeconds: z.number().min(0).default(10).describe('Backoff before attempt n is retryBaseSeconds × 2^(n-2).'),
    buildTimeoutSeconds: z.number().int().min(60).default(3600),
    nodeLostSeconds: z
      .number()
      .min(0)
      .default(300)
      .describe(
        'An unfinished build whose node is deleted, or NotReady this long, moves to another node (unless spec.node pins it).',
      ),
    rebuildGraceSeconds: z
      .number()
      .min(0)
      .default(120)
      .describe(
        'A Succeeded build whose image is missing again where a pod waits is rebuilt only this long after it completed (kubelet refreshes its image list every 30 s).',
      ),
    maxRebuilds: z
      .number()
      .int()
      .min(0)
      .default(1)
      .describe('Rebuilds per NixBuild for an image gone missing; then it is Stalled (ImageMissing).'),
    maxNodeImages: z.number().int().min(1).default(50).describe("kubelet's nodeStatusMaxImages."),
    gc: z
      .object({
        enabled: z.boolean().default(true),
        graceSeconds: z
          .number()
          .int()
          .min(0)
          .default(86_400)
          .describe(
            'A NixBuild enbi created is deleted (with its Jobs) this long after no workload of the source, and no waiting trusted pod, names what it builds any more.',
          ),
      })
      .default({ enabled: true, graceSeconds: 86_400 }),
    leaderElection: z
      .object({
        enabled: z
          .boolean()
          .default(true)
          .describe('Run several replicas; one leads (the others stand by and forward webhooks).'),
        leaseName: z.string().default('enbi-controller').describe('The coordination.k8s.io Lease in `namespace`.'),
        leaseSeconds: z
          .number()
          .int()
          .min(2)
          .default(15)
          .describe('A standby takes over after this long without a renewal.'),
        renewSeconds: z.number().int().min(1).default(5),
      })
      .refine((l) => l.renewSeconds * 2 <= l.leaseSeconds, {
        message: 'renewSeconds must be at most half of leaseSeconds',
      })
      .default({ enabled: true, leaseName: 'enbi-controller', leaseSeconds: 15, renewSeconds: 5 }),
    listen: z
      .object({ port: z.number().int().min(0).max(65535).default(8080), host: z.string().default('0.0.0.0') })
      .default({ port: 8080, host: '0.0.0.0' })
      .describe('Probes (/healthz, /readyz) and Prometheus /metrics.'),
    render: z
      .object({
        kustomize: z
          .string()
          .optional()
          .describe(
            'Path of the kustomize binary (else ENBI_KUSTOMIZE, PATH, then the build cache); the controller image ships v5.8.1.',
          ),
        helm: z
          .string()
          .optional()
          .describe(
            'Path of the helm binary (else ENBI_HELM, PATH, then the build cache); the controller image ships v3.22.0.',
          ),
        timeoutSeconds: z
          .number()
          .int()
          .min(1)
          .default(60)
          .describe('One kustomize build or helm template longer than this fails (a problem for that root only).'),
      })
      .default({ timeoutSeconds: 60 })
      .describe('Rendering kustomize directories and Helm charts, as Flux and Argo CD do.'),
    webhook: z
      .object({
        secretFile: z
          .string()
          .optional()
          .describe(
            'HMAC secret (GitHub/Gitea) or token (GitLab) for POST /hooks/git; absent: no webhook. An empty file is a start-up error.',
          ),
        listen: z
          .object({ port: z.number().int().min(0).max(65535).default(8081), host: z.string().default('0.0.0.0') })
          .default({ port: 8081, host: '0.0.0.0' })
          .describe('The webhook has its own port, so that a NetworkPolicy can open it alone to the Git host.'),
      })
      .default({ listen: { port: 8081, host: '0.0.0.0' } }),
  })
  .strict()
  .superRefine((c, ctx) => {
    if (c.source === undefined && c.trustedNamespaces.length === 0) {
      ctx.addIssue({
        code: 'custom',
        path: ['source'],
        message:
          'set source (the Git repository or directory that decides what is built), or list trustedNamespaces whose pods may ask for builds themselves',
      });
    }
    const required = {
      allowedImages: 'the image reference prefixes enbi may write, e.g. [registry.local/]',
      allowedFlakes: 'the flake sources enbi may build, e.g. [github:your-org]',
    } as const;
    for (const [key, what] of Object.entries(required) as [keyof typeof required, string][]) {
      const list = c[key];
      if (list === undefined || list.length === 0) {
        ctx.addIssue({
          code: 'custom',
          path: [key],
          message: `set ${key}: ${what}. enbi writes into every node's container runtime, so nothing is allowed by default`,
        });
        continue;
      }
      for (const [i, entry] of list.entries()) {
        try {
          (key === 'allowedImages' ? normalizeImagePrefix : normalizeFlakeSource)(entry);
        } catch (err) {
          ctx.addIssue({ code: 'custom', path: [key, i], message: (err as Error).message });
        }
      }
    }
  });

export type ControllerConfig = z.infer<typeof controllerConfigSchema>;

/** The allow-lists of a validated configuration, normalised. */
export function policyOf(cfg: ControllerConfig): BuildPolicy {
  return {
    images: (cfg.allowedImages ?? []).map(normalizeImagePrefix),
    flakes: (cfg.allowedFlakes ?? []).map(normalizeFlakeSource),
  };
}

export class ConfigError extends Error {
  override name = 'ConfigError';
}

export function parseControllerConfig(raw: unknown, where = 'configuration'): ControllerConfig {
  const result = controllerConfigSchema.safeParse(raw ?? {});
  if (!result.success) throw new ConfigError(`invalid ${where}:\n${z.prettifyError(result.error)}`);
  return result.data;
}

export async function loadControllerConfig(file: string): Promise<ControllerConfig> {
  let raw: unknown;
  try {
    raw = parse(await readFile(file, 'utf8'));
  } catch (err) {
    throw new ConfigError(`cannot read ${file}: ${(err as Error).message.split('\n')[0]}`);
  }
  return parseControllerConfig(raw, file);
}

export { KNOWN_SOCKETS, SOCKET_ANNOTATION, socketFor } from '../cluster/socket.ts';
