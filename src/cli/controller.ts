// `enbi controller --config FILE`: runs the controller against the cluster of the kubeconfig (in-cluster
// when deployed). A bad configuration stops start-up with every problem listed.
import { homedir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { loadKubeConfig } from '../cluster/read-nodes.ts';
import { loadControllerConfig } from '../controller/config.ts';
import { startController } from '../controller/controller.ts';
import { newMetrics } from '../controller/metrics.ts';
import { startServer } from '../controller/server.ts';
import { sourceState } from '../controller/source-state.ts';
import { gitAuthFrom } from '../source/auth.ts';

export const CONTROLLER_HELP = `enbi controller --config FILE [--kubeconfig FILE] [--cache-dir DIR]

Keeps the plan true: creates NixBuilds for images missing where pods need them, runs their build Jobs,
and reports in their status. Configuration: see the README ("The controller").`;

export async function runController(argv: string[]): Promise<number> {
  const { values } = parseArgs({ args: argv, options: { config: { type: 'string' }, kubeconfig: { type: 'string' }, 'cache-dir': { type: 'string' }, help: { type: 'boolean', short: 'h' } } });
  if (values.help === true) {
    console.log(CONTROLLER_HELP);
    return 0;
  }
  const log = (m: string) => console.log(`${new Date().toISOString()} ${m}`);
  try {
    if (values.config === undefined) throw new Error('--config FILE is required');
    const cfg = await loadControllerConfig(values.config);
    const kc = loadKubeConfig(values.kubeconfig);
    const cacheDir = values['cache-dir'] ?? join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'enbi', 'git');
    const metrics = newMetrics();
    const source = sourceState(cfg, cacheDir, await gitAuthFrom(cfg.source?.credentialsFile), log);
    const controller = await startController({ cfg, kc, source, metrics, log });
    const { port } = await startServer({ host: cfg.listen.host, port: cfg.listen.port, metrics, ready: controller.ready, ...(cfg.webhook.secretFile !== undefined ? { secretFile: cfg.webhook.secretFile } : {}), onPush: () => controller.trigger(true), log });
    log(`enbi controller running: namespace ${cfg.namespace}, mode ${cfg.mode}, http on :${port}`);
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
