// One HTTP/2 session to a unix socket, made on first use and made again on the next call after it is gone
// (containerd restarted, or it sent GOAWAY): calls in flight on a dropped session fail UNAVAILABLE, the next
// one connects afresh. The session holds the event loop only while calls are in flight.
import { type ClientHttp2Session, connect } from 'node:http2';
import { connect as netConnect } from 'node:net';

export class Connection {
  readonly socket: string;
  #session: ClientHttp2Session | undefined;
  /** Why the current session failed, for the calls it fails. */
  #sessionError = new WeakMap<ClientHttp2Session, Error>();
  #active = 0;
  #closed = false;

  constructor(socket: string) {
    this.socket = socket;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** A usable session: the current one, or a new one when there is none or it is going away. */
  session(): ClientHttp2Session {
    if (this.#closed) throw new Error('the client was closed');
    const s = this.#session;
    if (s !== undefined && !s.closed && !s.destroyed) return s;
    return this.#open();
  }

  /** Drops the current session (after a failure to start a stream on it), so the next call opens another. */
  discard(s: ClientHttp2Session): void {
    if (this.#session === s) this.#session = undefined;
    if (!s.destroyed) s.destroy();
  }

  /** The error that ended this session, if one did. */
  failure(s: ClientHttp2Session): Error | undefined {
    return this.#sessionError.get(s);
  }

  /** A call started: keep the process alive while it runs. */
  retain(): void {
    if (this.#active++ === 0) this.#session?.ref();
  }

  release(): void {
    if (--this.#active === 0) this.#session?.unref();
  }

  /** Resolves when a session is connected; rejects with the reason it could not connect. */
  async connected(): Promise<void> {
    const s = this.session();
    if (!s.connecting && !s.destroyed) return;
    await new Promise<void>((resolve, reject) => {
      const done = (err?: Error): void => {
        s.off('connect', onConnect);
        s.off('close', onClose);
        if (err) reject(err);
        else resolve();
      };
      const onConnect = (): void => done();
      const onClose = (): void => done(this.#sessionError.get(s) ?? new Error('connection closed'));
      s.once('connect', onConnect);
      s.once('close', onClose);
    });
  }

  close(): void {
    this.#closed = true;
    const s = this.#session;
    this.#session = undefined;
    if (s !== undefined) {
      s.close();
      s.unref();
    }
  }

  #open(): ClientHttp2Session {
    const s = connect('http://localhost', {
      createConnection: () => netConnect(this.socket),
      // No server push in gRPC; a large header table is not needed either.
      settings: { enablePush: false },
    });
    s.on('error', (e: Error) => this.#sessionError.set(s, e));
    s.on('goaway', () => {
      if (this.#session === s) this.#session = undefined;
    });
    s.on('close', () => {
      if (this.#session === s) this.#session = undefined;
    });
    if (this.#active === 0) s.unref();
    this.#session = s;
    return s;
  }
}
