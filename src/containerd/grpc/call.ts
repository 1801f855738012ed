// One gRPC call on an HTTP/2 stream: request messages written as they come, response messages emitted as
// 'data', then exactly one of 'end' (status OK) or 'error' (any other status, as the error the client makes
// of it). Unary, server-streaming and bidirectional calls are all this one object; the client decides how
// many messages to write. cancel() and the deadline end the call at once, as CANCELLED and DEADLINE_EXCEEDED.
import { EventEmitter } from 'node:events';
import { type ClientHttp2Stream, constants, type IncomingHttpHeaders } from 'node:http2';
import type { Connection } from './connection.ts';
import { frame, framePrefix, FrameReader, FrameTooLargeError } from './frame.ts';

/** Messages at least this long are written as prefix + parts (no copy into one frame buffer). */
const ZERO_COPY_BYTES = 64 * 1024;
import { type CallStatus, grpcTimeout, Status, statusFromHttp, statusFromMetadata, statusFromReset } from './status.ts';
import { errorMessage } from '../../async/error-message.ts';

export interface CallSpec<Req, Res> {
  path: string;
  /** Metadata sent as headers (e.g. containerd-namespace). */
  metadata: Record<string, string>;
  /** Deadline of the whole call, in ms from now; none when undefined. */
  deadlineMs: number | undefined;
  maxReceiveBytes: number;
  encode: (req: Req) => Buffer[];
  decode: (buf: Buffer) => Res;
  /** The error emitted for a status other than OK. */
  error: (status: CallStatus) => Error;
}

export class Call<Req, Res> extends EventEmitter {
  readonly #spec: CallSpec<Req, Res>;
  readonly #conn: Connection;
  readonly #frames: FrameReader;
  #stream: ClientHttp2Stream | undefined;
  #status: CallStatus | undefined;
  #done = false;
  #deadline: NodeJS.Timeout | undefined;

  constructor(conn: Connection, spec: CallSpec<Req, Res>) {
    super();
    this.#conn = conn;
    this.#spec = spec;
    this.#frames = new FrameReader(spec.maxReceiveBytes);
    conn.retain();
    try {
      this.#stream = this.#open();
    } catch (e) {
      // No session (closed client, or one that cannot start streams): fail as grpc-js does, UNAVAILABLE.
      process.nextTick(() => this.#finish({ code: Status.UNAVAILABLE, details: errorMessage(e) }));
      return;
    }
    if (spec.deadlineMs !== undefined) {
      this.#deadline = setTimeout(
        () => this.#abort({ code: Status.DEADLINE_EXCEEDED, details: 'Deadline exceeded' }),
        spec.deadlineMs,
      );
    }
  }

  /** Sends one request message; false when the caller should wait for 'drain'. */
  write(req: Req): boolean {
    const parts = this.#spec.encode(req);
    const s = this.#stream;
    if (this.#done || s === undefined || s.writableEnded) return true;
    let len = 0;
    for (const p of parts) len += p.length;
    if (len < ZERO_COPY_BYTES) return s.write(frame(parts));
    // A large message (a 1 MiB Write chunk): its data buffer goes to the socket as it is, in one writev.
    s.cork();
    let ok = s.write(framePrefix(len));
    for (const p of parts) ok = s.write(p);
    s.uncork();
    return ok;
  }

  /** No more request messages (half-close). */
  end(): void {
    if (!this.#done && this.#stream !== undefined && !this.#stream.writableEnded) this.#stream.end();
  }

  /** Ends the call now: 'error' with CANCELLED, the stream reset. */
  cancel(): void {
    this.#abort({ code: Status.CANCELLED, details: 'Cancelled on client' });
  }

  #open(): ClientHttp2Stream {
    let session = this.#conn.session();
    const headers = {
      ':method': 'POST',
      ':scheme': 'http',
      ':path': this.#spec.path,
      ':authority': 'localhost',
      'content-type': 'application/grpc',
      te: 'trailers',
      'user-agent': 'enbi-grpc',
      ...(this.#spec.deadlineMs !== undefined ? { 'grpc-timeout': grpcTimeout(this.#spec.deadlineMs) } : {}),
      ...this.#spec.metadata,
    };
    let stream: ClientHttp2Stream;
    try {
      stream = session.request(headers, { endStream: false });
    } catch {
      // A session that cannot start streams any more (going away, destroyed): once more on a new one.
      this.#conn.discard(session);
      session = this.#conn.session();
      stream = session.request(headers, { endStream: false });
    }
    let streamError: Error | undefined;
    stream.on('response', (h: IncomingHttpHeaders) => {
      const http = statusFromHttp(Number(h[':status']), h['content-type']);
      // A trailers-only response carries the status in its headers.
      this.#status ??= statusFromMetadata(h) ?? http;
    });
    stream.on('data', (chunk: Buffer) => this.#receive(chunk));
    stream.on('trailers', (h: IncomingHttpHeaders) => {
      this.#status ??= statusFromMetadata(h) ?? { code: Status.UNKNOWN, details: 'trailers without grpc-status' };
    });
    stream.on('drain', () => this.emit('drain'));
    stream.on('error', (e: Error) => (streamError = e));
    // All response data has been read: the status is known, unless the stream broke.
    stream.on('end', () => {
      if (this.#status === undefined) return;
      this.#finish(this.#status);
      // The server is done; our side of a bidirectional call may still be open.
      if (!stream.closed) stream.close(constants.NGHTTP2_NO_ERROR);
    });
    stream.on('close', () => {
      if (this.#done) return;
      const dropped =
        this.#conn.failure(session) ??
        (session.destroyed || session.closed ? new Error('connection closed') : undefined);
      this.#finish(
        this.#status ??
          (dropped !== undefined
            ? { code: Status.UNAVAILABLE, details: `connection dropped: ${dropped.message}` }
            : stream.rstCode !== undefined && stream.rstCode !== constants.NGHTTP2_NO_ERROR
              ? statusFromReset(stream.rstCode)
              : streamError !== undefined
                ? { code: Status.UNAVAILABLE, details: streamError.message }
                : { code: Status.UNKNOWN, details: 'stream ended without a status' }),
      );
    });
    return stream;
  }

  #receive(chunk: Buffer): void {
    if (this.#done) return;
    let messages: Buffer[];
    let decoded: Res[];
    try {
      messages = this.#frames.push(chunk);
      decoded = messages.map((m) => this.#spec.decode(m));
    } catch (e) {
      const code = e instanceof FrameTooLargeError ? Status.RESOURCE_EXHAUSTED : Status.INTERNAL;
      this.#abort({ code, details: `response could not be read: ${errorMessage(e)}` });
      return;
    }
    for (const d of decoded) {
      if (this.#done) return; // a 'data' listener cancelled the call
      this.emit('data', d);
    }
  }

  #abort(status: CallStatus): void {
    if (this.#done) return;
    const s = this.#stream;
    if (s !== undefined && !s.closed && !s.destroyed) s.close(constants.NGHTTP2_CANCEL);
    this.#finish(status);
  }

  #finish(status: CallStatus): void {
    if (this.#done) return;
    this.#done = true;
    clearTimeout(this.#deadline);
    this.#conn.release();
    if (status.code === Status.OK && this.#frames.pending > 0)
      status = { code: Status.INTERNAL, details: 'stream ended inside a message' };
    if (status.code === Status.OK) this.emit('end');
    // A call nobody listens to for errors (a cancelled subscription) must not throw an unhandled 'error'.
    else if (this.listenerCount('error') > 0) this.emit('error', this.#spec.error(status));
  }
}
