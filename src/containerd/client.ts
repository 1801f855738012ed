// A containerd gRPC client over its unix socket, for the few calls enbi makes (see descriptor.ts). Every call
// carries the namespace in the `containerd-namespace` metadata header, as containerd's own clients do.
// The gRPC layer is enbi's own (./grpc/): HTTP/2 from node:http2 and a protobuf codec driven by the
// descriptor, so that the node agent and `enbi import` do not load grpc-js and protobuf.js.
import { Call } from './grpc/call.ts';
import { decodeMessage, encodeMessage } from './grpc/codec.ts';
import { Connection } from './grpc/connection.ts';
import { compileSchema, type Method, type Schema } from './grpc/schema.ts';
import { type CallStatus, Status, type StatusCode } from './grpc/status.ts';
import { CONTAINERD_DESCRIPTOR } from './descriptor.ts';
import { errorMessage } from '../async/error-message.ts';

export { Status, type StatusCode };

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

let schema: Schema | undefined;

/** A method of the descriptor, compiled once (a broken descriptor throws at the first client). */
function method(service: Service, name: string): Method {
  schema ??= compileSchema(CONTAINERD_DESCRIPTOR);
  return schema.method(SERVICES[service], name);
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
  /** The gRPC status code (see Status). */
  readonly code: number;
  /** The server's own message (grpc-message), without the method's name. */
  readonly details: string;
  constructor(message: string, code: number, details = message) {
    super(message);
    this.code = code;
    this.details = details;
  }
}

export const isNotFound = (e: unknown): boolean => e instanceof ContainerdError && e.code === Status.NOT_FOUND;
export const isUnavailable = (e: unknown): boolean => e instanceof ContainerdError && e.code === Status.UNAVAILABLE;
export const isAlreadyExists = (e: unknown): boolean =>
  e instanceof ContainerdError && e.code === Status.ALREADY_EXISTS;

const callError = (service: Service, name: string, s: CallStatus): ContainerdError =>
  new ContainerdError(`containerd ${service}.${name}: ${s.details}`, s.code, s.details);

/** A server stream's events: 'data' per message, then 'end', or 'error' with a ContainerdError. */
export interface ReadableCall<Res> {
  on(event: 'data', listener: (res: Res) => void): this;
  on(event: 'error', listener: (e: ContainerdError) => void): this;
  on(event: 'end', listener: () => void): this;
  off(event: string, listener: (...args: any[]) => void): this;
  /** Ends the call; its 'error' listeners see CANCELLED. */
  cancel(): void;
}

/** A bidirectional stream: a ReadableCall that is also written to. */
export interface DuplexCall<Req, Res> extends ReadableCall<Res> {
  on(event: 'data', listener: (res: Res) => void): this;
  on(event: 'error', listener: (e: ContainerdError) => void): this;
  on(event: 'end' | 'drain', listener: () => void): this;
  /** False when the caller should wait for 'drain'. */
  write(req: Req): boolean;
  /** No more requests. */
  end(): void;
}

export class ContainerdClient {
  readonly socket: string;
  readonly namespace: string;
  /**
   * A containerd lease sent with every call (the `containerd-lease` header): content, ingests and snapshots
   * created under it are kept from garbage collection until the lease is deleted or expires.
   */
  lease: string | undefined;
  readonly #conn: Connection;
  readonly #timeoutMs: number;
  readonly #maxReceiveBytes: number;

  constructor(socket: string, o: ContainerdClientOptions = {}) {
    this.socket = socket;
    this.namespace = o.namespace ?? K8S_NAMESPACE;
    this.#timeoutMs = o.timeoutMs ?? 30_000;
    this.#maxReceiveBytes = o.maxReceiveBytes ?? 64 * 1024 * 1024;
    method('images', 'List'); // compiles the descriptor, so a broken one fails at construction
    this.#conn = new Connection(socket);
  }

  #call<Req, Res>(service: Service, name: string, deadlineMs: number | undefined): Call<Req, Res> {
    const m = method(service, name);
    return new Call<Req, Res>(this.#conn, {
      path: m.path,
      metadata: {
        'containerd-namespace': this.namespace,
        ...(this.lease !== undefined ? { 'containerd-lease': this.lease } : {}),
      },
      deadlineMs,
      maxReceiveBytes: this.#maxReceiveBytes,
      encode: (req) => encodeMessage(m.request, req),
      decode: (buf) => decodeMessage(m.response, buf) as Res,
      error: (s) => callError(service, name, s),
    });
  }

  unary<Res>(service: Service, name: string, request: unknown, timeoutMs = this.#timeoutMs): Promise<Res> {
    return new Promise((resolve, reject) => {
      const call = this.#call<unknown, Res>(service, name, timeoutMs);
      try {
        call.write(request);
      } catch (e) {
        call.cancel(); // no listeners yet: nothing is emitted
        reject(
          new ContainerdError(
            `containerd ${service}.${name}: request could not be encoded: ${errorMessage(e)}`,
            Status.INTERNAL,
          ),
        );
        return;
      }
      call.end();
      let response: Res | undefined;
      call.on('data', (r: Res) => (response = r));
      call.on('error', reject);
      call.on('end', () =>
        response !== undefined
          ? resolve(response)
          : reject(callError(service, name, { code: Status.INTERNAL, details: 'no response message' })),
      );
    });
  }

  /** A server stream; `deadlineMs` bounds the whole stream (none by default: event streams are endless). */
  stream<Res>(service: Service, name: string, request: unknown, deadlineMs?: number): ReadableCall<Res> {
    const call = this.#call<unknown, Res>(service, name, deadlineMs);
    call.write(request);
    call.end();
    return call;
  }

  /**
   * A bidirectional stream (content.v1 Write). Errors arrive as ContainerdError on the stream's 'error'
   * event; `deadlineMs` bounds the whole stream (none by default).
   */
  duplex<Req, Res>(service: Service, name: string, deadlineMs?: number): DuplexCall<Req, Res> {
    return this.#call<Req, Res>(service, name, deadlineMs);
  }

  /** The error of a stream call, as a ContainerdError naming the method (stream errors already are). */
  static streamError(service: Service, name: string, e: Error & { code?: number; details?: string }): ContainerdError {
    if (e instanceof ContainerdError) return e;
    return new ContainerdError(
      `containerd ${service}.${name}: ${e.details || e.message}`,
      e.code ?? Status.UNKNOWN,
      e.details || e.message,
    );
  }

  /** Collects a finite server stream. */
  collect<Res>(service: Service, name: string, request: unknown, timeoutMs = this.#timeoutMs): Promise<Res[]> {
    return new Promise((resolve, reject) => {
      const out: Res[] = [];
      const s = this.stream<Res>(service, name, request, timeoutMs);
      s.on('data', (d: Res) => out.push(d));
      s.on('error', reject);
      s.on('end', () => resolve(out));
    });
  }

  /** containerd's version, e.g. { version: '1.6.20~ds1', revision: '…' }. */
  version(): Promise<{ version: string; revision: string }> {
    return this.unary('version', 'Version', {});
  }

  /** Resolves once the socket answers (or rejects after timeoutMs), trying again every 200 ms. */
  async waitForReady(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      let last: Error;
      try {
        await withTimeout(this.#conn.connected(), deadline - Date.now());
        return;
      } catch (e) {
        last = e as Error;
      }
      if (Date.now() + 200 >= deadline || this.#conn.closed) {
        throw new ContainerdError(
          `containerd at ${this.socket}: not ready within ${timeoutMs} ms (${last.message})`,
          Status.UNAVAILABLE,
          last.message,
        );
      }
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  close(): void {
    this.#conn.close();
  }
}

function withTimeout(p: Promise<void>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>(
    (_, reject) => (timer = setTimeout(() => reject(new Error('timed out')), Math.max(0, ms))),
  );
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}
