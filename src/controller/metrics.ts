// Counters the controller exposes in Prometheus text format on /metrics.
export interface Metrics {
  reconciles: number;
  reconcileErrors: number;
  statusConflicts: number;
  writesFenced: number;
  lastReconcileSeconds: number;
  buildsCreated: number;
  buildsSucceeded: number;
  buildsFailed: number;
  informerRestarts: number;
  webhooksAccepted: number;
  webhooksRejected: number;
  webhooksDuplicate: number;
  webhooksThrottled: number;
  webhookDeliveriesRemembered: number;
  nodesWithAgentInventory: number;
  podsRefused: number;
  httpBadRequests: number;
  workQueueDepth: number;
  buildsCollected: number;
  renderRootsUnknown: number;
  heapUsedBytes: number;
  heapUsedAfterGcBytes: number;
  heapLimitBytes: number;
}

export function newMetrics(): Metrics {
  return {
    reconciles: 0,
    reconcileErrors: 0,
    statusConflicts: 0,
    writesFenced: 0,
    lastReconcileSeconds: 0,
    buildsCreated: 0,
    buildsSucceeded: 0,
    buildsFailed: 0,
    informerRestarts: 0,
    webhooksAccepted: 0,
    webhooksRejected: 0,
    webhooksDuplicate: 0,
    webhooksThrottled: 0,
    webhookDeliveriesRemembered: 0,
    nodesWithAgentInventory: 0,
    podsRefused: 0,
    httpBadRequests: 0,
    workQueueDepth: 0,
    buildsCollected: 0,
    renderRootsUnknown: 0,
    heapUsedBytes: 0,
    heapUsedAfterGcBytes: 0,
    heapLimitBytes: 0,
  };
}

const HELP: Record<keyof Metrics, [string, 'counter' | 'gauge']> = {
  reconciles: ['Plan passes run', 'counter'],
  reconcileErrors: ['Plan passes, creations and build reconciles that failed (each retried with backoff)', 'counter'],
  statusConflicts: [
    'Decisions dropped because the NixBuild changed since it was read (its write refused with 409, or a newer version found before starting a Job): made again from the newer copy',
    'counter',
  ],
  writesFenced: [
    'Writes not sent because this replica could no longer be sure it leads (its lease renewal is too old)',
    'counter',
  ],
  lastReconcileSeconds: ['Duration of the last plan pass', 'gauge'],
  buildsCreated: ['NixBuilds created by the planner', 'counter'],
  buildsSucceeded: ['NixBuilds that reached Succeeded', 'counter'],
  buildsFailed: ['NixBuilds that reached Failed', 'counter'],
  informerRestarts: ['Watches restarted after an error', 'counter'],
  webhooksAccepted: ['Push webhooks accepted', 'counter'],
  webhooksRejected: ['Push webhooks rejected (bad or stale signature, method, size)', 'counter'],
  webhooksDuplicate: [
    'Push webhooks answered 200 doing nothing: a delivery (by id or by signed content) already accepted, a replay or a retry',
    'counter',
  ],
  webhooksThrottled: ['Push webhooks answered 429: over the rate per repository or per client address', 'counter'],
  webhookDeliveriesRemembered: [
    'Keys (delivery ids, body digests) the webhook remembers to refuse replays (bounded)',
    'gauge',
  ],
  nodesWithAgentInventory: [
    'Nodes whose images came from a fresh agent inventory at the last reconcile (the rest: Node.status.images)',
    'gauge',
  ],
  podsRefused: [
    'Waiting pods told (an Event) that enbi builds nothing for them: no Git workload matches, or the policy refuses',
    'counter',
  ],
  httpBadRequests: ['HTTP requests refused as malformed (bad request line, URL or headers)', 'counter'],
  workQueueDepth: ['NixBuilds queued or being reconciled, at the end of the last plan pass', 'gauge'],
  buildsCollected: [
    'NixBuilds deleted (with their Jobs) after nothing named what they build for gc.graceSeconds',
    'counter',
  ],
  renderRootsUnknown: [
    'Render roots (kustomize, Helm) whose last render failed or timed out: unknown, so nothing they named at their last good render is collected',
    'gauge',
  ],
  heapUsedBytes: ['V8 heap in use, garbage included (read every 5 s)', 'gauge'],
  heapUsedAfterGcBytes: [
    'V8 heap in use right after the last full collection: what the process holds; 0 before the first',
    'gauge',
  ],
  heapLimitBytes: [
    "V8's heap limit (heap_size_limit): past it the process exits; it follows the container's memory limit",
    'gauge',
  ],
};

export function renderMetrics(m: Metrics): string {
  return (Object.keys(HELP) as (keyof Metrics)[])
    .map((k) => {
      const name = `enbi_${k.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`)}${HELP[k][1] === 'counter' ? '_total' : ''}`;
      return `# HELP ${name} ${HELP[k][0]}\n# TYPE ${name} ${HELP[k][1]}\n${name} ${m[k]}`;
    })
    .join('\n')
    .concat('\n');
}
