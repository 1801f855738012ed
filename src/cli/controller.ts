// `enbi controller --config FILE`: runs the controller against the cluster of the kubeconfig (in-cluster
// when deployed). A bad configuration stops start-up with every problem listed.
import { homedir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { loadKubeConfig } from '../cluster/read-nodes.ts';
import { loadControllerConfig } from '../controller/config.ts';
import { startController } from '../controller/controller.ts';
import { newMetrics } from '../controller/metrics.ts';
import { readWebhookSecret, startServers } from '../controller/server.ts';
import { sourceState } from '../controller/source-state.ts';
import { gitAuthFrom } from '../source/auth.ts';
import { jsonLogger } from '../controller/log.ts';

export const CONTROLLER_HELP = `enbi controller --config FILE [--kubeconfig FILE] [--cache-dir DIR]

Keeps the plan true: creates NixBuilds for images missing where pods need them, runs their build Jobs,
and reports in their status. Configuration: see the README ("The controller").`;

export async function runController(argv: string[]): Promise<number> {
  const { values } = parseArgs({ args: argv, options: { config: { type: 'string' }, kubeconfig: { type: 'string' }, 'cache-dir': { type: 'string' }, help: { type: 'boolean', short: 'h' } } });
  if (values.help === true) {
    console.log(CONTROLLER_HELP);
    return 0;
  }
  // JSON lines; text from manifests, pods and build logs is escaped, so that no one can forge or hide a line.
  const logger = jsonLogger((line) => console.log(line));
  const log = logger.line;
  try {
    if (values.config === undefined) throw new Error('--config FILE is required');
    const cfg = await loadControllerConfig(values.config);
    // A bad webhook secret stops start-up before anything else runs.
    if (cfg.webhook.secretFile !== undefined) await readWebhookSecret(cfg.webhook.secretFile);
    const kc = loadKubeConfig(values.kubeconfig);
    const cacheDir = values['cache-dir'] ?? join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'enbi', 'git');
    const metrics = newMetrics();
    const source = sourceState(cfg, cacheDir, await gitAuthFrom(cfg.source?.credentialsFile), log);
    const controller = await startController({ cfg, kc, source, metrics, log: logger });
    const webhook = cfg.webhook.secretFile !== undefined ? { ...cfg.webhook.listen, secretFile: cfg.webhook.secretFile } : undefined;
    const servers = await startServers({ listen: cfg.listen, ...(webhook !== undefined ? { webhook } : {}), metrics, ready: controller.ready, healthy: controller.healthy, onPush: () => controller.trigger(true), log });
    log(`enbi controller running: namespace ${cfg.namespace}, mode ${cfg.mode}, probes and metrics on :${servers.port}, ${servers.webhookPort !== undefined ? `webhook on :${servers.webhookPort}` : 'no webhook (webhook.secretFile unset)'}`);
    controller.trigger(true);
    const stop = async () => {
      log('stopping');
      await controller.stop();
      process.exit(0);
    };
    process.on('SIGTERM', () => void stop());
    process.on('SIGINT', () => void stop());
    return await new Promise<number>(() => {});
  } catch (err) {
    console.error(`enbi controller: ${(err as Error).message}`);
    return 1;
  }
}
