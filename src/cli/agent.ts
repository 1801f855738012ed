// `enbi agent --node NAME`: the node agent (a DaemonSet, one per node). Publishes the images the node's
// containerd holds as the cluster-scoped NodeImages object named after the node, and keeps it current.
import { existsSync } from 'node:fs';
import { dirname } from 'node:path';
import { startAgent } from '../agent/agent.ts';
import { socketFor } from '../cluster/socket.ts';
import { LiteApi, loadTarget } from '../kube/lite.ts';
import { command, type Flags, UsageError } from './command.ts';
import { errorMessage } from '../async/error-message.ts';
import { watchHeap } from '../async/heap-watch.ts';

export const AGENT_HELP = `enbi agent --node NAME [--socket PATH] [--kubeconfig FILE] [--resync SECONDS] [--debounce MS]

Publishes the images this node's containerd holds (namespace k8s.io) as the NodeImages object named
after the node, and keeps it current from containerd's event stream.

  --node NAME         this node's name (default: $NODE_NAME, set from the downward API in deploy/agent.yaml)
  --socket PATH       containerd's socket (default: the node's enbi.hrzn.ee/containerd-socket annotation,
                      else by distribution from its kubelet version, as the build Job finds it)
  --kubeconfig FILE   default: in-cluster, else $KUBECONFIG or ~/.kube/config
  --resync SECONDS    full list and observedAt refresh (default 600)
  --debounce MS       window that gathers a burst of image events into one write (default 100)
  --namespace NS      containerd namespace (default k8s.io)
  --builds-namespace NS
                      enbi's namespace (default: $ENBI_NAMESPACE, set from the downward API): the agent follows
                      its NixBuilds and keeps each tag they built, on this node, at one OCI index of every
                      platform built so far, so that Spegel spreads the same answer from every node.
                      '' turns that off (the agent only publishes).`;

const OPTIONS = {
  node: { type: 'string' },
  socket: { type: 'string' },
  kubeconfig: { type: 'string' },
  resync: { type: 'string' },
  debounce: { type: 'string' },
  namespace: { type: 'string' },
  'builds-namespace': { type: 'string' },
} as const;

export default command({ usage: AGENT_HELP, options: OPTIONS, run: ({ values }) => runAgent(values) });

async function runAgent(values: Flags<typeof OPTIONS>): Promise<number> {
  const node = values.node ?? process.env.NODE_NAME;
  if (node === undefined || node === '') throw new UsageError('--node NAME (or NODE_NAME) is required');
  const resync = Number(values.resync ?? '600');
  const debounce = Number(values.debounce ?? '100');
  if (!Number.isFinite(resync) || resync < 1)
    throw new UsageError(`--resync ${values.resync}: a number of seconds, at least 1`);
  if (!Number.isFinite(debounce) || debounce < 0)
    throw new UsageError(`--debounce ${values.debounce}: a number of milliseconds`);
  const log = (m: string) => console.log(`${new Date().toISOString()} ${m}`);
  // The agent has no /metrics: a heap near its limit is one warning line.
  watchHeap({ warn: (m) => log(`warning: ${m}`), info: log });
  try {
    const api = new LiteApi(await loadTarget(values.kubeconfig));
    let socket = values.socket;
    if (socket === undefined) {
      const n = await api.get<{
        metadata?: { annotations?: Record<string, string> };
        status?: { nodeInfo?: { kubeletVersion?: string } };
      }>(`/api/v1/nodes/${encodeURIComponent(node)}`);
      socket = socketFor({
        ...(n.metadata?.annotations ? { annotations: n.metadata.annotations } : {}),
        ...(n.status?.nodeInfo?.kubeletVersion ? { kubeletVersion: n.status.nodeInfo.kubeletVersion } : {}),
      });
    }
    const buildsNamespace = values['builds-namespace'] ?? process.env.ENBI_NAMESPACE ?? '';
    const agent = startAgent({
      node,
      socket,
      api,
      resyncMs: resync * 1000,
      debounceMs: debounce,
      ...(values.namespace ? { namespace: values.namespace } : {}),
      ...(buildsNamespace !== '' ? { buildsNamespace } : {}),
      log,
    });
    log(
      `enbi agent on node ${node}: containerd at ${socket}, resync every ${resync} s${buildsNamespace !== '' ? `, indexes from the NixBuilds of ${buildsNamespace}` : ''}`,
    );
    if (!existsSync(socket))
      log(
        `warning: no socket at ${socket} (yet): in a pod, mount the host directory ${dirname(socket)} at the same path, or pass --socket`,
      );
    const stop = async () => {
      log('stopping');
      await agent.stop();
      process.exit(0);
    };
    process.on('SIGTERM', () => void stop());
    process.on('SIGINT', () => void stop());
    return await new Promise<number>(() => {});
  } catch (err) {
    console.error(`enbi agent: ${errorMessage(err).split('\n')[0]}`);
    return 1;
  }
}
