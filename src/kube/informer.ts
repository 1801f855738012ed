// A client-node informer that does not stay dead: the bare informer stops on errors other than 410 Gone,
// so this one restarts it with capped, jittered backoff and counts the restarts.
import {
  type KubeConfig,
  type KubernetesListObject,
  type KubernetesObject,
  ListWatch,
  Watch,
} from '@kubernetes/client-node';
import { backoff } from '../async/backoff.ts';

export interface ResilientInformer<T extends KubernetesObject> {
  list(): readonly T[];
  /** The cached object, if any (namespace for namespaced objects). */
  get(name: string, namespace?: string): T | undefined;
  start(): Promise<void>;
  stop(): Promise<void>;
  /** Times the watch was restarted after an error. */
  restarts(): number;
}

export interface InformerOptions<T extends KubernetesObject> {
  /** The watch path, e.g. `/api/v1/nodes`. */
  path: string;
  /** One page of the list, with the same selectors as the watch: `page` goes into the client call as it is. */
  listPage: (page: ListPage) => Promise<KubernetesListObject<T>>;
  onChange: (obj: T, verb: 'add' | 'update' | 'delete') => void;
  log: (msg: string) => void;
  labelSelector?: string;
  fieldSelector?: string;
  /** Applied to every object before it is cached (listed or watched): keep only what the caller reads. */
  transform?: (o: T) => T;
}

export function resilientInformer<T extends KubernetesObject>(
  kc: KubeConfig,
  o: InformerOptions<T>,
): ResilientInformer<T> {
  const { path, listPage, onChange, log, labelSelector, fieldSelector, transform } = o;
  let stopped = false;
  let restarts = 0;
  let failures = 0;
  let lastError = '';
  // ListWatch reports 'connect' before it lists, so a list that keeps failing (a CRD not installed) would
  // reset the backoff every time: a successful list, or an event, resets it instead.
  const healthy = () => {
    failures = 0;
    lastError = '';
  };
  // listPage must apply the same selectors: the list seeds the cache, the watch keeps it.
  const list = async () => {
    const l = await listInPages(listPage, transform);
    healthy();
    return l;
  };
  const informer = new ListWatch<T>(
    path,
    transform === undefined ? new Watch(kc) : transformingWatch(new Watch(kc), transform),
    list,
    false,
    labelSelector,
    fieldSelector,
  );
  informer.on('add', (o) => (healthy(), onChange(o, 'add')));
  informer.on('update', (o) => (healthy(), onChange(o, 'update')));
  informer.on('delete', (o) => (healthy(), onChange(o, 'delete')));
  informer.on('error', (err) => {
    if (stopped) return;
    restarts++;
    const wait = backoff(++failures, { baseMs: 500, maxMs: 30_000, jitter: true });
    // The same failure again and again is said once (a 404: the resource's CRD is not installed).
    const message = String((err as Error | undefined)?.message ?? err).split('\n')[0]!;
    if (message !== lastError)
      log(`watch ${path} failed (${message}); retrying with backoff (up to 30 s), said once until it changes`);
    lastError = message;
    setTimeout(() => {
      if (!stopped) informer.start().catch((e: unknown) => log(`watch ${path} restart failed: ${String(e)}`));
    }, wait);
  });
  return {
    list: () => informer.list(),
    get: (name, namespace) => informer.get(name, namespace),
    start: () => informer.start(),
    stop: async () => {
      stopped = true;
      await informer.stop();
    },
    restarts: () => restarts,
  };
}

/** A Watch whose events carry transformed objects (ListWatch caches what the watch callback is given). */
function transformingWatch<T>(inner: Watch, transform: (o: T) => T): Watch {
  const w = Object.create(inner) as Watch;
  w.watch = (path, params, callback, done) =>
    inner.watch(
      path,
      params,
      (phase: string, obj: any, raw: any) =>
        callback(phase, phase === 'BOOKMARK' || phase === 'ERROR' ? obj : transform(obj as T), raw),
      done,
    );
  return w;
}

/** The paging arguments of a list call (client-node's generated list methods take them as they are). */
export interface ListPage {
  limit: number;
  _continue?: string;
}

/**
 * A list fetched in pages of PAGE_SIZE (one consistent snapshot: the API server serves every page at the first
 * page's resourceVersion), each page mapped as it arrives: the whole list is never one huge response held
 * with its full objects, which is what sets the peak memory of a big cluster's initial list.
 */
async function listInPages<T extends KubernetesObject>(
  listPage: (page: ListPage) => Promise<KubernetesListObject<T>>,
  map: ((o: T) => T) | undefined,
): Promise<KubernetesListObject<T>> {
  const items: T[] = [];
  let cont: string | undefined;
  let last: KubernetesListObject<T>;
  do {
    last = await listPage({ limit: PAGE_SIZE, ...(cont !== undefined ? { _continue: cont } : {}) });
    for (const o of last.items) items.push(map === undefined ? o : map(o));
    cont = last.metadata?._continue || undefined;
  } while (cont !== undefined);
  return { ...last, items };
}

const PAGE_SIZE = 500;
