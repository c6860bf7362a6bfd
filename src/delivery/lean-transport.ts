/**
 * A small HTTP/1.1 client for the tracking endpoint, on raw `net`/`tls` sockets: keep-alive pools
 * per origin, one request per connection at a time, and an incremental response parser. Node's
 * `http` client costs several times more CPU per request, for features the endpoint never needs.
 */
import { Buffer } from 'node:buffer';
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import tls from 'node:tls';
import type {
  DeadlineTransport,
  Transport,
  TransportRequest,
  TransportResponse,
} from './transport.js';

export interface LeanTransportOptions {
  /** Connections per origin; requests beyond them wait, first in first out. */
  maxSockets: number;
  /** An idle connection is closed after this long (default 4000: below Node's 5 s keep-alive). */
  idleTimeoutMs?: number;
  /** Extra TLS options for `https:` URLs (`ca` for a private certificate authority, say). */
  tls?: tls.ConnectionOptions;
}

/** Characters of the response body kept for error messages. */
const MAX_BODY_SNIPPET = 512;
/** Bytes enough to decode that many UTF-16 units (at most 3 bytes each, 4 for a pair). */
const SNIPPET_BYTES = MAX_BODY_SNIPPET * 4;
/** Status line and header fields, and separately a chunk-size line or a trailer section. */
const MAX_HEAD = 16 * 1024;
const DEFAULT_IDLE_TIMEOUT_MS = 4000;
/** The longest a Node timer waits (2^31 - 1 ms); a longer delay fires at once. */
const MAX_TIMER_MS = 2 ** 31 - 1;
/** Distinct URLs remembered; the engine uses one. */
const MAX_TARGETS = 64;

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
/** What Node's http client refuses in a header value (CR, LF and NUL among them). */
const INVALID_VALUE = /[^\t\x20-\x7e\x80-\xff]/;
/** The characters of a field name (RFC 9110 `tchar`), by byte: 1 for those. */
const TCHAR = new Uint8Array(256);
for (const c of "!#$%&'*+-.^_`|~0123456789") TCHAR[c.charCodeAt(0)] = 1;
for (let c = 65; c <= 90; c++) TCHAR[c] = TCHAR[c + 32] = 1;
/** A Connection value that needs no token search (see `connectionValue`). */
const KEEP_ALIVE = 'keep-alive';
const CLOSE_TOKEN = /(?:^|,)[ \t]*close[ \t]*(?:,|$)/i;
const KEEP_ALIVE_TOKEN = /(?:^|,)[ \t]*keep-alive[ \t]*(?:,|$)/i;
/** chunked as the last transfer coding (empty list elements after it do not count). */
const CHUNKED_LAST = /(?:^|,)[ \t]*chunked[ \t]*(?:,[ \t]*)*$/i;
/** Framing is this client's business: such headers in a request are left out. */
const OWN_HEADERS = new Set(['host', 'content-length', 'connection', 'transfer-encoding']);
/** A header value of printable ASCII and tabs only: valid, and the same bytes in latin1 and UTF-8. */
const NOT_ASCII_TEXT = /[^\t\x20-\x7e]/;
/** Header names seen valid and not the client's own (a few: the engine's are always the same). */
const knownNames = new Set<string>();
const MAX_KNOWN_NAMES = 64;

const LF = 10;
const CR = 13;
const SP = 32;
const HT = 9;
const SEMICOLON = 59;
const COLON = 58;

// Parser states.
const S_HEAD = 0;
const S_LENGTH = 1;
const S_UNTIL_CLOSE = 2;
const S_CHUNK_SIZE = 3;
const S_CHUNK_SIZE_WS = 4;
const S_CHUNK_EXT = 5;
const S_CHUNK_SIZE_LF = 6;
const S_CHUNK_DATA = 7;
const S_CHUNK_DATA_CR = 8;
const S_CHUNK_DATA_LF = 9;
const S_TRAILER_START = 10;
const S_TRAILER_LINE = 11;
const S_TRAILER_LF = 12;
const S_TRAILER_END_LF = 13;
const S_DONE = 14;

/** A parsed URL: its pool and the start of every request to it. */
interface Target {
  pool: Pool;
  /** `POST <path> HTTP/1.1\r\nHost: <host>\r\n` */
  head: string;
}

/**
 * How {@link PostTransport.post} answers: the caller's `context` back, and either the error or the
 * status, the `Retry-After` header and the start of the body (`''` for a 2xx: nobody reads it).
 */
export type Answer<C> = (
  context: C,
  error: unknown,
  status: number,
  retryAfter: string | undefined,
  body: string,
) => void;

/**
 * The engine's way with this client, the cheapest per request: `sendWithin` without a promise, a
 * request object or a copy of the headers per attempt. `idempotencyKey` goes out as the last
 * header. `answer` is never called before `post` returns.
 */
export interface PostTransport extends DeadlineTransport {
  post<C>(
    url: string,
    headers: Readonly<Record<string, string>>,
    idempotencyKey: string,
    body: string,
    timeoutMs: number,
    answer: Answer<C>,
    context: C,
  ): void;
}

export function createLeanTransport(options: LeanTransportOptions): Transport {
  return new LeanTransport(options);
}

class LeanTransport implements PostTransport {
  readonly maxSockets: number;
  readonly idleTimeoutMs: number;
  closed = false;
  private readonly tlsOptions: tls.ConnectionOptions | undefined;
  private readonly targets = new Map<string, Target>();
  private readonly pools = new Map<string, Pool>();
  /**
   * Requests with a deadline (`sendWithin`, `post`) share one timer, set for the earliest
   * deadline and cleared when none is left: a timer per request cost a Timeout object, a list
   * insertion and an unenroll per event, for a deadline that nearly never passes. It is also
   * what keeps the process alive while such requests are out: their sockets stay unref()ed.
   */
  private timed = 0;
  private sweepTimer: NodeJS.Timeout | undefined;
  /** When (performance.now(): a clock that is never set back) the sweep timer fires. */
  private sweepAt = 0;

  constructor(options: LeanTransportOptions) {
    const max = Math.floor(Number(options.maxSockets));
    if (!(max >= 1)) throw new RangeError('maxSockets must be at least 1');
    this.maxSockets = max;
    this.idleTimeoutMs = options.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS;
    this.tlsOptions = options.tls;
  }

  send(request: TransportRequest, signal: AbortSignal): Promise<TransportResponse> {
    return this.start(request, signal, 0);
  }

  /**
   * `send` with a deadline instead of a signal (rejects with a TimeoutError after `timeoutMs`):
   * the engine's way with this client, sparing an AbortController and its listeners per request.
   * `close()` ends what is in flight.
   */
  sendWithin(request: TransportRequest, timeoutMs: number): Promise<TransportResponse> {
    return this.start(request, undefined, timeoutMs);
  }

  post<C>(
    url: string,
    headers: Readonly<Record<string, string>>,
    idempotencyKey: string,
    body: string,
    timeoutMs: number,
    answer: Answer<C>,
    context: C,
  ): void {
    let pending: Pending;
    try {
      if (this.closed) throw closedError();
      const target = this.target(url);
      const data = serialise(target.head, headers, idempotencyKey, body);
      pending = new Pending(this, target.pool, data, undefined);
    } catch (error) {
      queueMicrotask(() => answer(context, error, 0, undefined, ''));
      return;
    }
    pending.answer = answer as Answer<unknown>;
    pending.context = context;
    this.watch(pending, timeoutMs);
    pending.pool.dispatch(pending);
  }

  private start(
    request: TransportRequest,
    signal: AbortSignal | undefined,
    timeoutMs: number,
  ): Promise<TransportResponse> {
    try {
      if (this.closed) throw closedError();
      if (signal?.aborted) throw abortError(signal);
      const target = this.target(request.url);
      const data = serialise(target.head, request.headers, undefined, request.body);
      const pending = new Pending(this, target.pool, data, signal);
      const promise = new Promise<TransportResponse>((resolve, reject) => {
        pending.resolve = resolve;
        pending.reject = reject;
      });
      if (signal) signal.addEventListener('abort', pending);
      else this.watch(pending, timeoutMs);
      target.pool.dispatch(pending);
      return promise;
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /** Gives `pending` its deadline, and the sweep timer an earlier time if it needs one. */
  private watch(pending: Pending, timeoutMs: number): void {
    const now = performance.now();
    pending.deadline = now + timeoutMs;
    this.timed++;
    this.sweepBy(pending.deadline, now);
  }

  private sweepBy(at: number, now: number): void {
    if (this.sweepTimer !== undefined) {
      if (this.sweepAt <= at) return;
      clearTimeout(this.sweepTimer);
    }
    this.sweepAt = at;
    // Past what a timer can wait, it sweeps early and is set again.
    this.sweepTimer = setTimeout(this.sweep, Math.min(MAX_TIMER_MS, Math.max(0, at - now)));
  }

  /** Ends the requests whose deadline has passed; sets the timer for the next deadline. */
  private readonly sweep = (): void => {
    this.sweepTimer = undefined;
    const now = performance.now();
    let next = Infinity;
    const late: Pending[] = [];
    for (const pool of this.pools.values()) {
      for (const conn of pool.conns) {
        const pending = conn.pending;
        if (pending === null) continue;
        if (pending.deadline <= now) late.push(pending);
        else if (pending.deadline < next) next = pending.deadline;
      }
      for (const pending of pool.waiting) {
        if (pending.deadline <= now) late.push(pending);
        else if (pending.deadline < next) next = pending.deadline;
      }
    }
    for (const pending of late) {
      const error = new Error('The endpoint did not answer in time');
      error.name = 'TimeoutError';
      this.abort(pending, error);
    }
    if (this.timed > 0 && next !== Infinity) this.sweepBy(next, now);
  };

  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const pool of this.pools.values()) {
      const waiting = pool.waiting.splice(0);
      for (const conn of [...pool.conns]) {
        const pending = conn.pending;
        conn.pending = null;
        conn.destroy();
        if (pending !== null) this.settle(pending, closedError());
      }
      for (const pending of waiting) this.settle(pending, closedError());
    }
    this.pools.clear();
    this.targets.clear();
    clearTimeout(this.sweepTimer);
    this.sweepTimer = undefined;
  }

  /** The signal of a request aborted, or its time ran out: give up on it, and its connection. */
  abort(pending: Pending, error: Error): void {
    if (pending.settled) return;
    const conn = pending.conn;
    if (conn !== null) {
      conn.pending = null;
      conn.destroy();
    } else {
      const at = pending.pool.waiting.indexOf(pending);
      if (at !== -1) pending.pool.waiting.splice(at, 1);
    }
    this.settle(pending, error);
  }

  /** Ends a request with an error. */
  settle(pending: Pending, error: unknown): void {
    if (!this.finished(pending)) return;
    if (pending.answer !== undefined) pending.answer(pending.context, error, 0, undefined, '');
    else pending.reject(error);
  }

  /** Ends a request with the endpoint's answer. */
  answered(pending: Pending, status: number, retryAfter: string | undefined, body: string): void {
    if (!this.finished(pending)) return;
    if (pending.answer !== undefined) {
      pending.answer(pending.context, undefined, status, retryAfter, body);
    } else {
      pending.resolve({ status, retryAfter, body });
    }
  }

  /** Marks a request settled; false when it already was. */
  private finished(pending: Pending): boolean {
    if (pending.settled) return false;
    pending.settled = true;
    pending.conn = null;
    if (pending.signal) {
      pending.signal.removeEventListener('abort', pending);
    } else if (--this.timed === 0 && this.sweepTimer !== undefined) {
      // Nothing left with a deadline: no timer holds the process.
      clearTimeout(this.sweepTimer);
      this.sweepTimer = undefined;
    }
    return true;
  }

  private target(url: string): Target {
    const known = this.targets.get(url);
    if (known !== undefined) return known;
    if (typeof url !== 'string') throw new TypeError('The request URL must be a string');
    const parsed = new URL(url);
    const secure = parsed.protocol === 'https:';
    if (!secure && parsed.protocol !== 'http:') {
      throw new TypeError(`Unsupported protocol ${parsed.protocol} (http: or https: only)`);
    }
    const origin = `${parsed.protocol}//${parsed.host}`;
    let pool = this.pools.get(origin);
    if (pool === undefined) {
      const hostname = parsed.hostname.startsWith('[')
        ? parsed.hostname.slice(1, -1)
        : parsed.hostname;
      const port = parsed.port === '' ? (secure ? 443 : 80) : Number(parsed.port);
      let connect: net.NetConnectOpts | tls.ConnectionOptions;
      if (secure) {
        const options: tls.ConnectionOptions = {
          ALPNProtocols: ['http/1.1'],
          ...this.tlsOptions,
          host: hostname,
          port,
        };
        if (net.isIP(hostname) === 0) options.servername = hostname;
        connect = options;
      } else {
        connect = { host: hostname, port };
      }
      pool = new Pool(this, secure, connect);
      this.pools.set(origin, pool);
    }
    const target: Target = {
      pool,
      head: `POST ${parsed.pathname}${parsed.search} HTTP/1.1\r\nHost: ${parsed.host}\r\n`,
    };
    if (this.targets.size >= MAX_TARGETS) this.targets.clear();
    this.targets.set(url, target);
    return target;
  }
}

/**
 * The request, for one write: header section as latin1 and body as UTF-8. When every header is
 * ASCII (nearly always) both encodings agree, and the request is one string the socket encodes
 * as UTF-8 itself; otherwise one buffer. `idempotencyKey`, when given, is the last header.
 */
function serialise(
  start: string,
  headers: Readonly<Record<string, string>>,
  idempotencyKey: string | undefined,
  body: string,
): string | Buffer {
  if (typeof body !== 'string') throw new TypeError('The request body must be a string');
  let head = start;
  let ascii = true;
  // for...in: no array of keys per request (these are plain objects, nothing inherited).
  for (const name in headers) {
    const value = headers[name];
    const known = knownNames.has(name);
    if (!known && !TOKEN.test(name)) {
      throw new TypeError(`Invalid header name ${JSON.stringify(name)}`);
    }
    if (typeof value !== 'string') throw new TypeError(`Invalid value for header ${name}`);
    if (NOT_ASCII_TEXT.test(value)) {
      if (INVALID_VALUE.test(value)) throw new TypeError(`Invalid value for header ${name}`);
      ascii = false;
    }
    if (!known) {
      if (OWN_HEADERS.has(name.toLowerCase())) continue;
      if (knownNames.size >= MAX_KNOWN_NAMES) knownNames.clear();
      knownNames.add(name);
    }
    // The key given apart replaces one among the headers, as a later property would.
    if (idempotencyKey !== undefined && name === 'idempotency-key') continue;
    head += `${name}: ${value}\r\n`;
  }
  if (idempotencyKey !== undefined) {
    if (typeof idempotencyKey !== 'string') {
      throw new TypeError('Invalid value for header idempotency-key');
    }
    // One test for the usual key (printable ASCII), two for any other.
    if (NOT_ASCII_TEXT.test(idempotencyKey)) {
      if (INVALID_VALUE.test(idempotencyKey)) {
        throw new TypeError('Invalid value for header idempotency-key');
      }
      ascii = false;
    }
    head += `idempotency-key: ${idempotencyKey}\r\n`;
  }
  const bodyLength = Buffer.byteLength(body, 'utf8');
  head += `Content-Length: ${bodyLength}\r\nConnection: keep-alive\r\n\r\n`;
  if (ascii) return head + body;
  const data = Buffer.allocUnsafe(head.length + bodyLength);
  data.write(head, 0, 'latin1');
  data.write(body, head.length, 'utf8');
  return data;
}

/** One request, from `send` until it settles. Its own `abort` listener (no closure needed). */
class Pending {
  /** A promise's (`send`, `sendWithin`), or `answer` and its context (`post`). */
  resolve!: (response: TransportResponse) => void;
  reject!: (error: unknown) => void;
  answer: Answer<unknown> | undefined = undefined;
  context: unknown = undefined;
  conn: Connection | null = null;
  settled = false;
  retried = false;
  /** When (performance.now()) `sendWithin` or `post` gives up on it; no deadline with a signal. */
  deadline = Infinity;

  constructor(
    readonly transport: LeanTransport,
    readonly pool: Pool,
    readonly data: string | Buffer,
    readonly signal: AbortSignal | undefined,
  ) {}

  handleEvent(): void {
    this.transport.abort(this, abortError(this.signal!));
  }
}

/** The connections to one origin. */
class Pool {
  /** Idle connections, most recently used last. */
  readonly idle: Connection[] = [];
  /** Requests waiting for a connection, oldest first. */
  readonly waiting: Pending[] = [];
  readonly conns = new Set<Connection>();

  constructor(
    readonly transport: LeanTransport,
    readonly secure: boolean,
    readonly connectOptions: net.NetConnectOpts | tls.ConnectionOptions,
  ) {}

  dispatch(pending: Pending): void {
    const conn = this.idle.pop();
    if (conn !== undefined) conn.start(pending);
    else if (this.conns.size < this.transport.maxSockets) this.open(pending);
    else this.waiting.push(pending);
  }

  /** A new connection for `pending`, whatever the count: callers make sure a slot is free. */
  open(pending: Pending): void {
    let conn: Connection;
    try {
      conn = new Connection(this);
    } catch (error) {
      // net.connect() throws on options it refuses (a bad port, say). Settled later, as any
      // failure: `post` promises never to answer before it returns.
      queueMicrotask(() => this.transport.settle(pending, error));
      return;
    }
    this.conns.add(conn);
    conn.start(pending);
  }

  /** A connection finished a response and can carry another request. */
  release(conn: Connection): void {
    const next = this.waiting.shift();
    if (next !== undefined) conn.start(next);
    else conn.rest();
  }

  remove(conn: Connection): void {
    this.conns.delete(conn);
    if (conn.idle) {
      const at = this.idle.indexOf(conn);
      if (at !== -1) this.idle.splice(at, 1);
    }
  }

  /** Slots freed: start waiting requests on new connections. */
  drain(): void {
    while (
      !this.transport.closed &&
      this.waiting.length > 0 &&
      this.conns.size < this.transport.maxSockets
    ) {
      this.open(this.waiting.shift() as Pending);
    }
  }
}

/** One socket, its current request, and the parser of its current response. */
class Connection {
  readonly socket: net.Socket;
  pending: Pending | null = null;
  idle = false;
  private dead = false;
  /** Whether the socket holds the process open (ref()); a new socket does. */
  private held = true;
  /** Requests started on this connection. */
  private used = 0;
  /** Whether any byte of the current response has arrived. */
  private received = false;
  /** The idle timer, and when (performance.now()) the connection last went idle. */
  private timer: NodeJS.Timeout | undefined;
  private idleSince = 0;

  private state = S_HEAD;
  private status = 0;
  private retryAfter: string | undefined = undefined;
  private keepAlive = true;
  /** Bytes left of a Content-Length body or of the current chunk. */
  private remaining = 0;
  /** A header section split across reads is gathered here. */
  private headBuf: Buffer | undefined;
  private headLen = 0;
  /** Bytes of a chunk-size line or of the trailer section so far; hex digits of a chunk size. */
  private lineBytes = 0;
  private digits = 0;
  private snippet: Buffer | undefined;
  private snippetLen = 0;
  /** The body of a 2xx is not read for `post`: its answer has no use for it. */
  private skipBody = false;

  constructor(private readonly pool: Pool) {
    const options = pool.connectOptions;
    this.socket = pool.secure
      ? tls.connect(options as tls.ConnectionOptions)
      : net.connect(options as net.NetConnectOpts);
    this.socket.setNoDelay(true);
    this.socket.on('data', this.onData);
    this.socket.on('end', this.onEnd);
    this.socket.on('error', this.onError);
    this.socket.on('close', this.onClose);
  }

  start(pending: Pending): void {
    this.pending = pending;
    pending.conn = this;
    this.used++;
    this.received = false;
    this.state = S_HEAD;
    this.headLen = 0;
    this.snippetLen = 0;
    this.status = 0;
    this.retryAfter = undefined;
    this.keepAlive = true;
    this.idle = false;
    // What keeps the process alive while a request is out: the sweep timer for a request with a
    // deadline (`post`, `sendWithin`: the engine's), so its socket needs no ref() and unref() per
    // request; the socket itself for one with a signal only.
    const hold = pending.signal !== undefined;
    if (hold !== this.held) {
      this.held = hold;
      if (hold) this.socket.ref();
      else this.socket.unref();
    }
    this.socket.write(pending.data);
  }

  /** Idle: out of the way of the process exiting, and closed if it stays idle. */
  rest(): void {
    this.idle = true;
    this.pool.idle.push(this);
    if (this.held) {
      this.held = false;
      this.socket.unref();
    }
    this.idleSince = performance.now();
    // The timer is not moved at each request (a refresh per request was a list removal and
    // insertion per event): when it fires, it checks how long the connection has been idle.
    if (this.timer === undefined) this.idleIn(this.pool.transport.idleTimeoutMs);
  }

  private idleIn(ms: number): void {
    this.timer = setTimeout(this.onIdleTimeout, ms);
    this.timer.unref();
  }

  /**
   * Closes the connection and frees its slot (for a waiting request unless `drain` is false); its
   * request, if any, is the caller's business.
   */
  destroy(drain = true): void {
    if (this.dead) return;
    this.dead = true;
    this.pool.remove(this);
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.socket.destroy();
    if (drain) this.pool.drain();
  }

  private readonly onIdleTimeout = (): void => {
    this.timer = undefined;
    // Busy: rest() sets the timer again.
    if (!this.idle) return;
    const left = this.idleSince + this.pool.transport.idleTimeoutMs - performance.now();
    if (left <= 0) this.destroy();
    else this.idleIn(left);
  };

  private readonly onData = (chunk: Buffer): void => {
    if (this.dead) return;
    if (this.pending === null) {
      // Nothing was asked: whatever this is, the connection cannot be trusted any more.
      this.destroy();
      return;
    }
    this.received = true;
    const end = chunk.length;
    let at = 0;
    while (at < end) {
      switch (this.state) {
        case S_HEAD:
          at = this.readHead(chunk, at);
          break;
        case S_LENGTH: {
          const n = Math.min(this.remaining, end - at);
          this.keep(chunk, at, at + n);
          at += n;
          this.remaining -= n;
          if (this.remaining === 0) this.state = S_DONE;
          break;
        }
        case S_UNTIL_CLOSE:
          this.keep(chunk, at, end);
          at = end;
          break;
        default:
          at = this.readChunked(chunk, at);
      }
      if (at < 0) return;
      if (this.state === S_DONE) {
        this.complete(at < end);
        return;
      }
    }
  };

  private readonly onEnd = (): void => {
    if (this.pending !== null && this.state === S_UNTIL_CLOSE && !this.dead) {
      this.complete(true);
      return;
    }
    this.gone(undefined);
  };

  private readonly onError = (error: Error): void => {
    this.gone(error);
  };

  private readonly onClose = (): void => {
    this.gone(undefined);
  };

  /** The socket ended, failed or closed under us. */
  private gone(error: Error | undefined): void {
    if (this.dead) return;
    const pending = this.pending;
    this.pending = null;
    // The slot goes to a retry of this request before anything waiting.
    this.destroy(false);
    if (pending !== null) {
      pending.conn = null;
      const code = (error as { code?: unknown } | undefined)?.code;
      if (
        !this.received &&
        this.used > 1 &&
        !pending.retried &&
        !this.pool.transport.closed &&
        (error === undefined || code === 'ECONNRESET' || code === 'EPIPE')
      ) {
        // A reused connection the server had closed as we wrote: once more, on a new connection.
        pending.retried = true;
        this.pool.open(pending);
      } else {
        this.pool.transport.settle(
          pending,
          error ?? hangUp(this.received ? 'before the response was complete' : 'before a response'),
        );
      }
    }
    this.pool.drain();
  }

  /**
   * The response is complete: reuse the connection or close it, then answer. In that order: a
   * `post` answer sends the caller's next request at once, and it should find this connection
   * free (answered first, a runner went from one connection to another, one more than it needs).
   */
  private complete(extraBytes: boolean): void {
    const pending = this.pending as Pending;
    this.pending = null;
    let body = '';
    if (this.snippetLen > 0) {
      body = (this.snippet as Buffer).toString('utf8', 0, this.snippetLen);
      if (body.length > MAX_BODY_SNIPPET) body = body.slice(0, MAX_BODY_SNIPPET);
    }
    const { status, retryAfter } = this;
    if (this.keepAlive && !extraBytes && !this.pool.transport.closed) this.pool.release(this);
    else this.destroy();
    this.pool.transport.answered(pending, status, retryAfter, body);
  }

  /** {@link fail} for the header parser: returns false. */
  private bad(message: string): false {
    this.fail(message);
    return false;
  }

  /** Rejects the request with a parse error and drops the connection; returns -1. */
  private fail(message: string): -1 {
    const pending = this.pending;
    this.pending = null;
    this.destroy();
    if (pending !== null) {
      const error = new Error(`Malformed HTTP response: ${message}`) as Error & { code: string };
      error.code = 'ERR_MALFORMED_RESPONSE';
      this.pool.transport.settle(pending, error);
    }
    return -1;
  }

  /** Keeps the start of the body, enough for the snippet. */
  private keep(chunk: Buffer, start: number, end: number): void {
    const room = SNIPPET_BYTES - this.snippetLen;
    if (room <= 0 || start >= end || this.skipBody) return;
    this.snippet ??= Buffer.allocUnsafe(SNIPPET_BYTES);
    const n = Math.min(room, end - start);
    chunk.copy(this.snippet, this.snippetLen, start, start + n);
    this.snippetLen += n;
  }

  /** Reads header-section bytes from `at`; returns where the rest starts, or -1 on failure. */
  private readHead(chunk: Buffer, at: number): number {
    if (this.headLen === 0) {
      const end = headEnd(chunk, at, at, chunk.length);
      if (end !== -1) {
        if (end - at > MAX_HEAD) return this.fail('header section too large');
        return this.onHead(chunk, at, end) ? end : -1;
      }
    }
    const buf = (this.headBuf ??= Buffer.allocUnsafe(MAX_HEAD));
    const before = this.headLen;
    const n = Math.min(MAX_HEAD - before, chunk.length - at);
    chunk.copy(buf, before, at, at + n);
    this.headLen = before + n;
    const end = headEnd(buf, 0, before, this.headLen);
    if (end === -1) {
      return this.headLen >= MAX_HEAD ? this.fail('header section too large') : at + n;
    }
    this.headLen = 0;
    return this.onHead(buf, 0, end) ? at + (end - before) : -1;
  }

  /**
   * Parses a complete header section, from its bytes: one pass, and a string only for the value
   * of a field this client reads (Node's own `Connection: keep-alive` is told apart without one).
   * False when it failed the request.
   */
  private onHead(buf: Buffer, start: number, end: number): boolean {
    // Status line: HTTP/1.x NNN[ reason]. The section ends in an empty line, so a section this
    // short is no response at all.
    if (end - start < 14 || !isHttp1(buf, start) || buf[start + 8] !== SP) {
      return this.bad('bad status line');
    }
    const minor = buf[start + 7]!;
    const d0 = buf[start + 9]! - 48;
    const d1 = buf[start + 10]! - 48;
    const d2 = buf[start + 11]! - 48;
    const after = buf[start + 12];
    if (
      (minor !== 48 && minor !== 49) ||
      !(d0 >= 1 && d0 <= 9 && d1 >= 0 && d1 <= 9 && d2 >= 0 && d2 <= 9) ||
      (after !== SP && after !== CR && after !== LF)
    ) {
      return this.bad('bad status line');
    }
    const status = d0 * 100 + d1 * 10 + d2;
    const http10 = minor === 48;

    let contentLength = -1;
    let transferEncoding: string | undefined;
    let connection: string | undefined;
    let retryAfter: string | undefined;
    /** Which tracked field the previous line was, for an obsolete folded continuation. */
    let last = 0;
    // Line ends are found with Buffer#indexOf (native, and cheaper than a loop in JavaScript
    // from a few bytes on); the section ends in a line feed, so every search finds one.
    let line = buf.indexOf(LF, start + 12) + 1;
    for (;;) {
      const first = buf[line]!;
      if (first === LF || (first === CR && buf[line + 1] === LF)) break;
      let field: number;
      let from: number;
      if (first === SP || first === HT) {
        if (last === 0) {
          line = buf.indexOf(LF, line) + 1;
          continue;
        }
        field = last;
        from = line;
      } else {
        let colon = line;
        while (TCHAR[buf[colon]!] === 1) colon++;
        if (colon === line || buf[colon] !== COLON) return this.bad('bad header line');
        field = fieldOf(buf, line, colon);
        last = field;
        if (field === 0) {
          line = buf.indexOf(LF, colon) + 1;
          continue;
        }
        from = colon + 1;
      }
      const eol = buf.indexOf(LF, from);
      const lineEnd = buf[eol - 1] === CR ? eol - 1 : eol;
      line = eol + 1;
      // The value, without leading and trailing spaces and tabs.
      let to = lineEnd;
      while (from < to && (buf[from] === SP || buf[from] === HT)) from++;
      while (to > from && (buf[to - 1] === SP || buf[to - 1] === HT)) to--;
      if (field === F_CONTENT_LENGTH && first !== SP && first !== HT) {
        const length = contentLengthOf(buf, from, to);
        if (length < 0 || (contentLength !== -1 && length !== contentLength)) {
          return this.bad('bad Content-Length');
        }
        contentLength = length;
        continue;
      }
      switch (field) {
        case F_TRANSFER_ENCODING: {
          const value = buf.toString('latin1', from, to);
          // Folded, or with a control character (NUL, a bare CR), the framing is anybody's
          // guess: refuse, as for Content-Length, rather than read until a close that a
          // kept-alive connection never brings.
          if (first === SP || first === HT || INVALID_VALUE.test(value)) {
            return this.bad('bad Transfer-Encoding');
          }
          transferEncoding =
            transferEncoding === undefined ? value : `${transferEncoding}, ${value}`;
          break;
        }
        case F_CONNECTION: {
          const value = connectionValue(buf, from, to);
          connection = connection === undefined ? value : `${connection}, ${value}`;
          break;
        }
        case F_RETRY_AFTER: {
          const value = buf.toString('latin1', from, to);
          // Like Node: a repeated Retry-After is ignored, a folded line continues the value.
          if (retryAfter === undefined) retryAfter = value;
          else if (first === SP || first === HT) retryAfter = `${retryAfter} ${value}`;
          break;
        }
        default:
          // A folded Content-Length: refuse rather than guess.
          return this.bad('bad Content-Length');
      }
    }

    if (status < 200) {
      // 100 Continue, 103 Early Hints: the answer is still to come. 101 was never asked for.
      if (status === 101) return this.bad('unexpected 101 Switching Protocols');
      this.state = S_HEAD;
      return true;
    }
    this.status = status;
    this.retryAfter = retryAfter;
    this.skipBody = status < 300 && this.pending!.answer !== undefined;
    this.keepAlive =
      connection === undefined
        ? !http10
        : connection === KEEP_ALIVE
          ? true
          : !CLOSE_TOKEN.test(connection) && (!http10 || KEEP_ALIVE_TOKEN.test(connection));
    if (status === 204 || status === 304) {
      this.state = S_DONE;
    } else if (transferEncoding !== undefined) {
      if (contentLength !== -1) {
        return this.bad('both Content-Length and Transfer-Encoding');
      }
      if (CHUNKED_LAST.test(transferEncoding)) {
        this.state = S_CHUNK_SIZE;
        this.remaining = 0;
        this.digits = 0;
        this.lineBytes = 0;
      } else {
        this.state = S_UNTIL_CLOSE;
        this.keepAlive = false;
      }
    } else if (contentLength !== -1) {
      this.remaining = contentLength;
      this.state = contentLength === 0 ? S_DONE : S_LENGTH;
    } else {
      this.state = S_UNTIL_CLOSE;
      this.keepAlive = false;
    }
    return true;
  }

  /** Reads chunked framing and data from `at`; returns where it stopped, or -1 on failure. */
  private readChunked(chunk: Buffer, at: number): number {
    const end = chunk.length;
    while (at < end) {
      const state = this.state;
      if (state === S_CHUNK_DATA) {
        const n = Math.min(this.remaining, end - at);
        this.keep(chunk, at, at + n);
        at += n;
        this.remaining -= n;
        if (this.remaining === 0) this.state = S_CHUNK_DATA_CR;
        continue;
      }
      const c = chunk[at] as number;
      at++;
      if (++this.lineBytes > MAX_HEAD) {
        return this.fail(state >= S_TRAILER_START ? 'trailers too large' : 'chunk line too long');
      }
      switch (state) {
        case S_CHUNK_SIZE: {
          const hex = hexValue(c);
          if (hex >= 0) {
            if (++this.digits > 12) return this.fail('chunk size too large');
            this.remaining = this.remaining * 16 + hex;
          } else if (this.digits === 0) {
            return this.fail('bad chunk size');
          } else if (c === CR) {
            this.state = S_CHUNK_SIZE_LF;
          } else if (c === SEMICOLON) {
            this.state = S_CHUNK_EXT;
          } else if (c === SP || c === HT) {
            this.state = S_CHUNK_SIZE_WS;
          } else {
            return this.fail('bad chunk size');
          }
          break;
        }
        case S_CHUNK_SIZE_WS:
          if (c === SEMICOLON) this.state = S_CHUNK_EXT;
          else if (c === CR) this.state = S_CHUNK_SIZE_LF;
          else if (c !== SP && c !== HT) return this.fail('bad chunk size');
          break;
        case S_CHUNK_EXT:
          if (c === CR) this.state = S_CHUNK_SIZE_LF;
          else if ((c < SP && c !== HT) || c === 127) return this.fail('bad chunk extension');
          break;
        case S_CHUNK_SIZE_LF:
          if (c !== LF) return this.fail('bad chunk size line');
          this.lineBytes = 0;
          this.digits = 0;
          this.state = this.remaining === 0 ? S_TRAILER_START : S_CHUNK_DATA;
          break;
        case S_CHUNK_DATA_CR:
          if (c !== CR) return this.fail('missing CRLF after chunk data');
          this.state = S_CHUNK_DATA_LF;
          break;
        case S_CHUNK_DATA_LF:
          if (c !== LF) return this.fail('missing CRLF after chunk data');
          this.lineBytes = 0;
          this.state = S_CHUNK_SIZE;
          break;
        case S_TRAILER_START:
          this.state = c === CR ? S_TRAILER_END_LF : S_TRAILER_LINE;
          if (c === LF) return this.fail('bad trailer');
          break;
        case S_TRAILER_LINE:
          if (c === CR) this.state = S_TRAILER_LF;
          else if (c === LF) return this.fail('bad trailer');
          break;
        case S_TRAILER_LF:
          if (c !== LF) return this.fail('bad trailer');
          this.state = S_TRAILER_START;
          break;
        case S_TRAILER_END_LF:
          if (c !== LF) return this.fail('bad trailer');
          this.state = S_DONE;
          return at;
      }
    }
    return at;
  }
}

const F_CONTENT_LENGTH = 1;
const F_TRANSFER_ENCODING = 2;
const F_CONNECTION = 3;
const F_RETRY_AFTER = 4;

/** Which of the fields this client reads `buf[start, end)` names (0: none). */
function fieldOf(buf: Buffer, start: number, end: number): number {
  switch (end - start) {
    case 10:
      return sameName(buf, start, 'connection') ? F_CONNECTION : 0;
    case 11:
      return sameName(buf, start, 'retry-after') ? F_RETRY_AFTER : 0;
    case 14:
      return sameName(buf, start, 'content-length') ? F_CONTENT_LENGTH : 0;
    case 17:
      return sameName(buf, start, 'transfer-encoding') ? F_TRANSFER_ENCODING : 0;
    default:
      return 0;
  }
}

/** Case-insensitive comparison of bytes with a lower-case name (letters and '-' only). */
function sameName(buf: Buffer, start: number, name: string): boolean {
  for (let i = 0; i < name.length; i++) {
    const want = name.charCodeAt(i);
    const c = buf[start + i]!;
    // ASCII letters fold to lower case with | 0x20; '-' must be itself (a CR would fold to it).
    if ((want === 45 ? c : c | 0x20) !== want) return false;
  }
  return true;
}

/** Whether `buf` holds `HTTP/1.` at `start`. */
function isHttp1(buf: Buffer, start: number): boolean {
  return (
    buf[start] === 72 &&
    buf[start + 1] === 84 &&
    buf[start + 2] === 84 &&
    buf[start + 3] === 80 &&
    buf[start + 4] === 47 &&
    buf[start + 5] === 49 &&
    buf[start + 6] === 46
  );
}

/** A Content-Length value from its (trimmed) bytes: digits read in place; -1 when invalid. */
function contentLengthOf(buf: Buffer, start: number, end: number): number {
  if (end - start > 15) return parseContentLength(buf.toString('latin1', start, end));
  let n = 0;
  for (let i = start; i < end; i++) {
    const c = buf[i]!;
    // Not a plain number (a list, or not digits): the general reading decides.
    if (c < 48 || c > 57) return parseContentLength(buf.toString('latin1', start, end));
    n = n * 10 + (c - 48);
  }
  return end > start ? n : -1;
}

/**
 * A Connection value: the one most servers send (`keep-alive`, in any case) as the shared
 * {@link KEEP_ALIVE}, with no string made; anything else as its latin1 text.
 */
function connectionValue(buf: Buffer, start: number, end: number): string {
  if (end - start === 10 && sameName(buf, start, KEEP_ALIVE)) return KEEP_ALIVE;
  return buf.toString('latin1', start, end);
}

/** `text[start, end)` without leading and trailing spaces and tabs. */
function trimmed(text: string, start: number, end: number): string {
  while (start < end && (text.charCodeAt(start) === SP || text.charCodeAt(start) === HT)) start++;
  while (end > start && (text.charCodeAt(end - 1) === SP || text.charCodeAt(end - 1) === HT)) end--;
  return text.slice(start, end);
}

/** A Content-Length value (a number, or a list of the same number); -1 when invalid. */
function parseContentLength(value: string): number {
  let result = -1;
  for (const part of value.includes(',') ? value.split(',') : [value]) {
    // Spaces and tabs only: String#trim would also drop VT, FF, NBSP and the like.
    const digits = trimmed(part, 0, part.length);
    if (!/^\d{1,15}$/.test(digits)) return -1;
    const n = Number(digits);
    if (result !== -1 && n !== result) return -1;
    result = n;
  }
  return result;
}

function hexValue(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  const lower = c | 0x20;
  if (lower >= 97 && lower <= 102) return lower - 87;
  return -1;
}

/**
 * Where the header section in `buf[start, end)` ends (just after its empty line), looking for
 * line feeds from `from`; -1 when it has not ended yet. Lines end in CRLF (or a bare LF).
 */
function headEnd(buf: Buffer, start: number, from: number, end: number): number {
  let i = buf.indexOf(LF, from);
  while (i !== -1 && i < end) {
    if (i - 1 >= start && buf[i - 1] === LF) return i + 1;
    if (i - 2 >= start && buf[i - 1] === CR && buf[i - 2] === LF) return i + 1;
    i = buf.indexOf(LF, i + 1);
  }
  return -1;
}

function abortError(signal: AbortSignal): Error {
  const error = new Error('The operation was aborted', { cause: signal.reason }) as Error & {
    code: string;
  };
  error.name = 'AbortError';
  error.code = 'ABORT_ERR';
  return error;
}

function closedError(): Error {
  const error = new Error('The transport is closed') as Error & { code: string };
  error.code = 'ERR_TRANSPORT_CLOSED';
  return error;
}

function hangUp(when: string): Error {
  const error = new Error(`socket hang up: the connection closed ${when}`) as Error & {
    code: string;
  };
  error.code = 'ECONNRESET';
  return error;
}
