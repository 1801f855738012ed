// `enbi controller --config FILE`: runs the controller against the cluster of the kubeconfig (in-cluster
// when deployed). A bad configuration stops start-up with every problem listed.
import { randomBytes } from 'node:crypto';
import { homedir, hostname } from 'node:os';
import { join } from 'node:path';
import { loadKubeConfig } from '../cluster/read-nodes.ts';
import { loadControllerConfig } from '../controller/config.ts';
import { type RunningController, startController } from '../controller/controller.ts';
import { startLeaderElection } from '../controller/leader.ts';
import { newMetrics } from '../controller/metrics.ts';
import { readWebhookSecret, startServers } from '../controller/server.ts';
import { sourceState } from '../controller/source-state.ts';
import { gitAuthFrom } from '../source/auth.ts';
import { jsonLogger } from '../controller/log.ts';
import { command, type Flags, UsageError } from './command.ts';
import { errorMessage } from '../async/error-message.ts';
import { watchHeap } from '../async/heap-watch.ts';

export const CONTROLLER_HELP = `enbi controller --config FILE [--kubeconfig FILE] [--cache-dir DIR]

Keeps the plan true: creates NixBuilds for images missing where pods need them, runs their build Jobs,
and reports in their status. Configuration: docs/controller.md ("Configuration").`;

const OPTIONS = {
  config: { type: 'string' },
  kubeconfig: { type: 'string' },
  'cache-dir': { type: 'string' },
} as const;

export default command({ usage: CONTROLLER_HELP, options: OPTIONS, run: ({ values }) => runController(values) });

async function runController(values: Flags<typeof OPTIONS>): Promise<number> {
  if (values.config === undefined) throw new UsageError('--config FILE is required');
  // JSON lines; text from manifests, pods and build logs is escaped, so that no one can forge or hide a line.
  const logger = jsonLogger((line) => console.log(line));
  const log = logger.line;
  try {
    const cfg = await loadControllerConfig(values.config);
    // A bad webhook secret stops start-up before anything else runs.
    if (cfg.webhook.secretFile !== undefined) await readWebhookSecret(cfg.webhook.secretFile);
    const kc = loadKubeConfig(values.kubeconfig);
    const cacheDir =
      values['cache-dir'] ?? join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'enbi', 'git');
    const metrics = newMetrics();
    // A heap near its limit shows on /metrics and in one warning line long before it is fatal.
    watchHeap({
      onSample: (f) => {
        metrics.heapUsedBytes = f.used;
        metrics.heapUsedAfterGcBytes = f.usedAfterGc ?? 0;
        metrics.heapLimitBytes = f.limit;
      },
      warn: (m) => logger.warn(m),
      info: (m) => logger.info(m),
    });
    const source = sourceState(cfg, cacheDir, await gitAuthFrom(cfg.source?.credentialsFile), log);
    // Several replicas: only the Lease holder runs the controller; a standby serves probes and forwards
    // webhooks to the leader through the Lease. One replica (leaderElection.enabled false): it runs at once.
    let controller: RunningController | undefined;
    const lead = async () => {
      controller = await startController({
        cfg,
        kc,
        source,
        metrics,
        log: logger,
        ...(election !== undefined ? { writeRefusal: () => election.writeRefusal() } : {}),
      });
      controller.trigger(true);
    };
    const identity = `${process.env.HOSTNAME ?? hostname()}-${randomBytes(3).toString('hex')}`;
    const election = cfg.leaderElection.enabled
      ? startLeaderElection({
          kc,
          namespace: cfg.namespace,
          name: cfg.leaderElection.leaseName,
          identity,
          leaseSeconds: cfg.leaderElection.leaseSeconds,
          renewSeconds: cfg.leaderElection.renewSeconds,
          retrySeconds: 2,
          log: logger.with({ component: 'leader-election' }),
          onStartedLeading: () =>
            void lead().catch((err: unknown) => fatal(`could not start leading: ${errorMessage(err)}`)),
          // Exit and come back as a standby: no half-stopped controller keeps writing.
          onStoppedLeading: () => fatal('lost the lease: exiting so that only the new leader writes'),
          onSyncRequested: () => controller?.trigger(true),
        })
      : undefined;
    if (election === undefined) await lead();
    const webhook =
      cfg.webhook.secretFile !== undefined ? { ...cfg.webhook.listen, secretFile: cfg.webhook.secretFile } : undefined;
    const servers = await startServers({
      listen: cfg.listen,
      ...(webhook !== undefined ? { webhook } : {}),
      metrics,
      // A standby is ready and alive: it serves probes and forwards webhooks.
      ready: () => (controller !== undefined ? controller.ready() : election !== undefined),
      healthy: () => controller?.healthy() ?? true,
      onPush: () =>
        controller !== undefined
          ? controller.trigger(true)
          : void election
              ?.requestSync()
              .catch((err: unknown) => log(`could not forward the webhook to the leader: ${errorMessage(err)}`)),
      log,
    });
    log(
      `enbi controller running: namespace ${cfg.namespace}, mode ${cfg.mode}, ${election !== undefined ? `leader election on lease ${cfg.namespace}/${cfg.leaderElection.leaseName} as ${identity}` : 'no leader election'}, probes and metrics on :${servers.port}, ${servers.webhookPort !== undefined ? `webhook on :${servers.webhookPort}` : 'no webhook (webhook.secretFile unset)'}`,
    );
    const stop = async () => {
      log('stopping');
      await election?.stop();
      await controller?.stop();
      process.exit(0);
    };
    process.on('SIGTERM', () => void stop());
    process.on('SIGINT', () => void stop());
    return await new Promise<number>(() => {});
  } catch (err) {
    console.error(`enbi controller: ${errorMessage(err)}`);
    return 1;
  }

  function fatal(message: string): never {
    logger.error(message);
    process.exit(1);
  }
}
