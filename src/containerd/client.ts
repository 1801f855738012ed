// A containerd gRPC client over its unix socket, for the few calls enbi makes (see descriptor.ts). Every call
// carries the namespace in the `containerd-namespace` metadata header, as containerd's own clients do.
import * as grpc from '@grpc/grpc-js';
import { fromJSON } from '@grpc/proto-loader';
import { CONTAINERD_DESCRIPTOR } from './descriptor.ts';

/** Kubernetes' images live in this containerd namespace. */
export const K8S_NAMESPACE = 'k8s.io';

const SERVICES = {
  images: 'containerd.services.images.v1.Images',
  events: 'containerd.services.events.v1.Events',
  content: 'containerd.services.content.v1.Content',
  version: 'containerd.services.version.v1.Version',
  leases: 'containerd.services.leases.v1.Leases',
  snapshots: 'containerd.services.snapshots.v1.Snapshots',
  diff: 'containerd.services.diff.v1.Diff',
  containers: 'containerd.services.containers.v1.Containers',
} as const;
export type Service = keyof typeof SERVICES;

type Method = grpc.MethodDefinition<unknown, unknown>;
let methods: Map<string, Method> | undefined;

/** The method definitions, built once from the descriptor. */
function method(service: Service, name: string): Method {
  if (methods === undefined) {
    // longs as numbers (sizes and timestamps fit in 2^53), defaults so that absent strings are '' and maps {}.
    const pkg = fromJSON(CONTAINERD_DESCRIPTOR as unknown as Parameters<typeof fromJSON>[0], { longs: Number, enums: String, defaults: true });
    methods = new Map();
    for (const [key, full] of Object.entries(SERVICES)) {
      const svc = pkg[full] as grpc.ServiceDefinition;
      for (const [m, def] of Object.entries(svc)) methods.set(`${key}.${m}`, def as Method);
    }
  }
  const m = methods.get(`${service}.${name}`);
  if (m === undefined) throw new Error(`containerd client: no method ${service}.${name} in the descriptor`);
  return m;
}

export interface ContainerdClientOptions {
  namespace?: string;
  /** Deadline of each unary call (default 30 s). */
  timeoutMs?: number;
  /** Largest response accepted (default 64 MiB: a List of many thousand images). */
  maxReceiveBytes?: number;
}

export class ContainerdError extends Error {
  override name = 'ContainerdError';
  readonly code: grpc.status;
  constructor(message: string, code: grpc.status) {
    super(message);
    this.code = code;
  }
}

export const isNotFound = (e: unknown): boolean => e instanceof ContainerdError && e.code === grpc.status.NOT_FOUND;
export const isUnavailable = (e: unknown): boolean => e instanceof ContainerdError && e.code === grpc.status.UNAVAILABLE;

const wrap = (service: Service, name: string, e: grpc.ServiceError): ContainerdError =>
  new ContainerdError(`containerd ${service}.${name}: ${e.details || e.message}`, e.code);

export const isAlreadyExists = (e: unknown): boolean => e instanceof ContainerdError && e.code === grpc.status.ALREADY_EXISTS;

export class ContainerdClient {
  readonly socket: string;
  readonly namespace: string;
  /**
   * A containerd lease sent with every call (the `containerd-lease` header): content, ingests and snapshots
   * created under it are kept from garbage collection until the lease is deleted or expires.
   */
  lease: string | undefined;
  readonly #client: grpc.Client;
  readonly #timeoutMs: number;

  constructor(socket: string, o: ContainerdClientOptions = {}) {
    this.socket = socket;
    this.namespace = o.namespace ?? K8S_NAMESPACE;
    this.#timeoutMs = o.timeoutMs ?? 30_000;
    method('images', 'List'); // builds the definitions, so a broken descriptor fails at construction
    this.#client = new grpc.Client(`unix:${socket}`, grpc.credentials.createInsecure(), {
      'grpc.max_receive_message_length': o.maxReceiveBytes ?? 64 * 1024 * 1024,
      // containerd restarts are the normal case on a node: reconnect quickly, then back off.
      'grpc.initial_reconnect_backoff_ms': 200,
      'grpc.max_reconnect_backoff_ms': 5_000,
      'grpc.default_authority': 'localhost',
    });
  }

  #metadata(): grpc.Metadata {
    const md = new grpc.Metadata();
    md.set('containerd-namespace', this.namespace);
    if (this.lease !== undefined) md.set('containerd-lease', this.lease);
    return md;
  }

  unary<Res>(service: Service, name: string, request: unknown, timeoutMs = this.#timeoutMs): Promise<Res> {
    const m = method(service, name);
    return new Promise((resolve, reject) => {
      this.#client.makeUnaryRequest(m.path, m.requestSerialize, m.responseDeserialize, request, this.#metadata(), { deadline: Date.now() + timeoutMs }, (err, res) => {
        if (err) reject(wrap(service, name, err));
        else resolve(res as Res);
      });
    });
  }

  /** A server stream; `deadlineMs` bounds the whole stream (none by default: event streams are endless). */
  stream<Res>(service: Service, name: string, request: unknown, deadlineMs?: number): grpc.ClientReadableStream<Res> {
    const m = method(service, name);
    const options: grpc.CallOptions = deadlineMs !== undefined ? { deadline: Date.now() + deadlineMs } : {};
    return this.#client.makeServerStreamRequest(m.path, m.requestSerialize, m.responseDeserialize, request, this.#metadata(), options) as grpc.ClientReadableStream<Res>;
  }

  /**
   * A bidirectional stream (content.v1 Write). Errors arrive as ContainerdError on the stream's 'error'
   * event; `deadlineMs` bounds the whole stream (none by default).
   */
  duplex<Req, Res>(service: Service, name: string, deadlineMs?: number): grpc.ClientDuplexStream<Req, Res> {
    const m = method(service, name);
    const options: grpc.CallOptions = deadlineMs !== undefined ? { deadline: Date.now() + deadlineMs } : {};
    return this.#client.makeBidiStreamRequest(m.path, m.requestSerialize, m.responseDeserialize, this.#metadata(), options) as grpc.ClientDuplexStream<Req, Res>;
  }

  /** The error of a stream call, as a ContainerdError naming the method. */
  static streamError(service: Service, name: string, e: grpc.ServiceError): ContainerdError {
    return wrap(service, name, e);
  }

  /** Collects a finite server stream. */
  collect<Res>(service: Service, name: string, request: unknown, timeoutMs = this.#timeoutMs): Promise<Res[]> {
    return new Promise((resolve, reject) => {
      const out: Res[] = [];
      const s = this.stream<Res>(service, name, request, timeoutMs);
      s.on('data', (d: Res) => out.push(d));
      s.on('error', (e: grpc.ServiceError) => reject(wrap(service, name, e)));
      s.on('end', () => resolve(out));
    });
  }

  /** containerd's version, e.g. { version: '1.6.20~ds1', revision: '…' }. */
  version(): Promise<{ version: string; revision: string }> {
    return this.unary('version', 'Version', {});
  }

  /** Resolves once the socket answers (or rejects after timeoutMs). */
  waitForReady(timeoutMs: number): Promise<void> {
    return new Promise((resolve, reject) => {
      this.#client.waitForReady(Date.now() + timeoutMs, (err) => (err ? reject(new ContainerdError(`containerd at ${this.socket}: ${err.message}`, grpc.status.UNAVAILABLE)) : resolve()));
    });
  }

  close(): void {
    this.#client.close();
  }
}
