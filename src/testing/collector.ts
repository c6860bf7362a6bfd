/**
 * A real HTTP server on 127.0.0.1 that speaks the tracking endpoint's contract and records what
 * it receives: for tests (ours and our users') and the example app. It can also stand far away:
 * `latency` delays every answer, and `brownout()` makes it slow (and failing) for a while.
 */
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

/** One event as the collector received it. */
export interface RecordedEvent {
  type: string;
  url?: string;
  referrer?: string;
  name?: string;
  data?: Record<string, unknown>;
  /** The `{trackingCode}` of the request path. */
  trackingCode: string;
  /** Every request header, lower-case names. */
  headers: Record<string, string | string[] | undefined>;
  /** `Date.now()` when it arrived. */
  receivedAt: number;
}

/** What the collector answers: a status, optional headers and body, optionally late. */
export interface CollectorResponse {
  status: number;
  headers?: Record<string, string>;
  body?: string;
  /**
   * Answer this many milliseconds later still (to be slower than a client's timeout). It adds to
   * the collector's `latency`: `latency: 100` and `delayMs: 400` answer after 500 ms.
   */
  delayMs?: number;
}

/**
 * A fault instead of an answer: `'hang'` never answers (the event is not recorded); `'reset'`
 * records the event, starts a 200 answer and cuts the connection mid-response (the client never
 * learns that the event arrived).
 */
export type CollectorFault = 'hang' | 'reset';

/** One answer of the collector: a status, a full response, or a fault. */
export type CollectorAnswer = number | CollectorResponse | CollectorFault;

/**
 * How late the collector answers an event, in milliseconds (>= 0): a number, or a function of the
 * event and its index (counting valid events from 0, as `respond` does), called once per event
 * when it arrives. A function that throws or returns anything but such a number gets that answer
 * sent without delay, and a warning (once per collector).
 */
export type CollectorLatency = number | ((event: RecordedEvent, index: number) => number);

export interface TestCollectorOptions {
  /**
   * How to answer each valid event (`index` counts from 0): a status, a response, or a fault.
   * Only events answered 2xx (or `'reset'`) are recorded in `events`.
   * @default `sequence`, then 202
   */
  respond?: (event: RecordedEvent, index: number) => CollectorAnswer;
  /**
   * A script of answers for the first requests, in order (`[503, 503, 202]`,
   * `[{ status: 429, headers: { 'retry-after': '1' } }]`, `['hang']`); then 202.
   * @default []
   */
  sequence?: readonly CollectorAnswer[];
  /**
   * The distance to the collector: every answer to an event is sent this many milliseconds after
   * the event arrived (`100`, or `(event, index) => index < 50 ? 50 : 3000`). A response's own
   * `delayMs` adds to it; during a `brownout()` with a `latency`, the brownout's replaces it.
   * Events are recorded when their answer is sent, so `waitFor` sees them as the client does.
   * Requests that are not valid events (a wrong path, a bad body) are answered at once.
   * @default 0
   */
  latency?: CollectorLatency;
  /**
   * Port to listen on (127.0.0.1). Reuse a closed collector's port to test recovery.
   * @default a free port
   */
  port?: number;
  /** Called for every recorded event (the example app prints them). */
  onEvent?: (event: RecordedEvent) => void;
  /**
   * Most events kept in `events`; past it the oldest are forgotten (a long-running collector
   * stays bounded).
   * @default 10000
   */
  maxEvents?: number;
}

export interface WaitForOptions {
  /** Only count events for which this returns true. */
  filter?: (event: RecordedEvent) => boolean;
  /**
   * Milliseconds before `waitFor` rejects.
   * @default 2000
   */
  timeout?: number;
}

/** A period in which the collector is slow, failing, or both: see `TestCollector.brownout`. */
export interface BrownoutOptions {
  /**
   * Events arriving during the brownout are answered this late (milliseconds, or a function as
   * for the `latency` option), instead of after the collector's `latency`.
   * @default the collector's `latency`
   */
  latency?: CollectorLatency;
  /**
   * Events arriving during the brownout are answered with this status (200-599) instead of what
   * `respond`/`sequence` say (those are still called, and their index still counts every event).
   * A 2xx status records the events, as always.
   * @default what `respond`/`sequence` say
   */
  status?: number;
  /** Headers sent with `status` (`{ 'retry-after': '2' }`). */
  headers?: Record<string, string>;
  /**
   * The brownout ends by itself after this many milliseconds.
   * @default it lasts until `end()` or `close()`
   */
  durationMs?: number;
}

/** A running brownout. */
export interface Brownout {
  /** False once it ended (by `end()`, its `durationMs`, a newer brownout, or `close()`). */
  readonly active: boolean;
  /**
   * Ends it now; calling it again does nothing. Events that arrived during it keep the answer and
   * the delay they were given; events arriving from now on are answered as before it.
   */
  end(): void;
}

export interface TestCollector {
  /** `http://127.0.0.1:PORT`: pass it as the `host` option. */
  readonly url: string;
  /**
   * Recorded events so far, in arrival order. An event appears once its answer was sent: with a
   * latency, one that arrived earlier but is answered later is put in its place then.
   */
  readonly events: RecordedEvent[];
  /** How many requests reached the collector, accepted or not. */
  readonly requestCount: number;
  /** How many connections the collector accepted so far. */
  readonly connectionCount: number;
  /** Connections open now. */
  readonly connections: number;
  /** The most connections that were open at once. */
  readonly maxConnections: number;
  /** Requests received and not yet answered (or given up by their client) now. */
  readonly openRequests: number;
  /** The most requests that were open at once. */
  readonly maxOpenRequests: number;
  /** Resolves the first `n` matching events once they arrived; rejects on timeout. */
  waitFor(n: number, options?: WaitForOptions): Promise<RecordedEvent[]>;
  /**
   * Starts a brownout: events arriving from now on are answered late (`latency`) and/or with
   * `status`, until `durationMs` passed or the returned handle's `end()` is called. A new
   * brownout ends the one before it. Needs `latency` or `status`.
   * @throws TypeError on a bad option, naming it
   */
  brownout(options: BrownoutOptions): Brownout;
  /** Forgets recorded events. */
  reset(): void;
  /**
   * Stops the server and closes every connection at once: answers still waiting out a latency
   * are never sent, and no timer of the collector is left behind.
   */
  close(): Promise<void>;
}

const MAX_BODY_BYTES = 64 * 1024;
const PATH_PATTERN = /^\/e\/([A-Za-z0-9_-]{1,64})$/;
/** The longest delay a timer can wait (about 24.8 days). */
const MAX_DELAY_MS = 2_147_483_647;
/**
 * How long an idle connection stays open. Clients close idle connections first (ours after 4 s,
 * undici's after 4 s, Node's agent a second before the `Keep-Alive: timeout` we announce), so no
 * request is sent on a connection the collector is closing.
 */
const KEEP_ALIVE_TIMEOUT_MS = 30_000;
/** Room for many connections arriving at once (the kernel caps it at `somaxconn`). */
const LISTEN_BACKLOG = 4096;

interface Waiter {
  check: () => boolean;
  /** close() came first: reject at once, rather than keep the process alive until the timeout. */
  abandon: () => void;
}

interface ActiveBrownout {
  latency: CollectorLatency | undefined;
  status: number | undefined;
  headers: Record<string, string> | undefined;
  timer: NodeJS.Timeout | undefined;
  active: boolean;
}

/** Starts a collector on 127.0.0.1 on a free port. */
export async function createTestCollector(
  options: TestCollectorOptions = {},
): Promise<TestCollector> {
  if (options.latency !== undefined) checkLatency(options.latency, 'createTestCollector');
  const events: RecordedEvent[] = [];
  const waiters = new Set<Waiter>();
  const timers = new Set<NodeJS.Timeout>();
  const maxEvents = options.maxEvents ?? 10_000;
  let requestCount = 0;
  let validCount = 0;
  let connectionCount = 0;
  let connections = 0;
  let maxConnections = 0;
  let openRequests = 0;
  let maxOpenRequests = 0;
  const sockets = new Set<Socket>();
  /** Each recorded event's index among valid events, in arrival order. */
  const arrival = new WeakMap<RecordedEvent, number>();
  let brownout: ActiveBrownout | undefined;
  let warnedLatency = false;
  let closed = false;

  const server = http.createServer((req, res) => {
    requestCount++;
    openRequests++;
    if (openRequests > maxOpenRequests) maxOpenRequests = openRequests;
    res.once('close', () => openRequests--);
    const match = req.method === 'POST' ? PATH_PATTERN.exec(req.url ?? '') : null;
    if (!match) {
      req.resume();
      answer(res, { status: 404, body: '{"error":"not found: POST /e/{trackingCode}"}' });
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size <= MAX_BODY_BYTES) chunks.push(chunk);
    });
    req.on('end', () => {
      const event = parseEvent(Buffer.concat(chunks).toString('utf8'), match[1]!, req.headers);
      if (size > MAX_BODY_BYTES || !event) {
        answer(res, { status: 400, body: '{"error":"invalid event"}' });
        return;
      }
      const index = validCount++;
      let reply: CollectorAnswer;
      try {
        reply = options.respond
          ? options.respond(event, index)
          : (options.sequence?.[index] ?? 202);
      } catch (error) {
        reply = {
          status: 500,
          body: JSON.stringify({ error: `respond() threw: ${String(error)}` }),
        };
      }
      const during = brownout;
      if (during?.status !== undefined) reply = { status: during.status, headers: during.headers };
      if (reply === 'hang') return;
      const latency = delayOf(during?.latency ?? options.latency, event, index);
      if (reply === 'reset') {
        later(latency, () => {
          record(event, index);
          if (res.destroyed) return;
          res.writeHead(200, { 'content-type': 'application/json', 'content-length': '100' });
          res.write('{"ok":');
          setImmediate(() => res.destroy());
        });
        return;
      }
      const response = typeof reply === 'number' ? { status: reply } : reply;
      later(latency + validDelay(response.delayMs), () => {
        if (response.status >= 200 && response.status < 300) record(event, index);
        answer(res, response);
      });
    });
  });
  server.keepAliveTimeout = KEEP_ALIVE_TIMEOUT_MS;
  // Unbounded on purpose: as many connections, and requests on each, as clients open.
  // (`headersTimeout` and `requestTimeout` bound receiving a request, never a late answer.)
  server.maxRequestsPerSocket = 0;
  server.on('connection', (socket) => {
    connectionCount++;
    connections++;
    if (connections > maxConnections) maxConnections = connections;
    sockets.add(socket);
    socket.once('close', () => {
      connections--;
      sockets.delete(socket);
    });
  });

  /** Runs `fn` after `ms` (at once for 0), on a timer that `close()` clears. */
  function later(ms: number, fn: () => void): void {
    if (ms <= 0) {
      fn();
      return;
    }
    if (closed) return;
    const timer = setTimeout(
      () => {
        timers.delete(timer);
        fn();
      },
      Math.min(ms, MAX_DELAY_MS),
    );
    timers.add(timer);
  }

  /** The delay for one event; a latency function that fails costs nothing but a warning. */
  function delayOf(
    latency: CollectorLatency | undefined,
    event: RecordedEvent,
    index: number,
  ): number {
    if (latency === undefined) return 0;
    if (typeof latency === 'number') return latency;
    let problem: string;
    try {
      const ms = latency(event, index);
      if (isDelay(ms)) return ms;
      problem = `returned ${describe(ms)}`;
    } catch (error) {
      problem = `threw ${String(error)}`;
    }
    if (!warnedLatency) {
      warnedLatency = true;
      process.emitWarning(
        `createTestCollector: the latency function ${problem} for event #${index}; that answer ` +
          `was sent without delay (so will be any other it fails for). Return a number of ` +
          `milliseconds from 0 to ${MAX_DELAY_MS}.`,
        { code: 'ZENOVAY_COLLECTOR_LATENCY' },
      );
    }
    return 0;
  }

  function record(event: RecordedEvent, index: number): void {
    // Answers can overtake each other (a latency function, a brownout's end): keep arrival order.
    arrival.set(event, index);
    let at = events.length;
    while (at > 0 && (arrival.get(events[at - 1]!) ?? -1) > index) at--;
    if (at === events.length) events.push(event);
    else events.splice(at, 0, event);
    if (events.length > maxEvents) events.splice(0, events.length - maxEvents);
    try {
      options.onEvent?.(event);
    } catch {
      // A failing onEvent must not take the collector (or the test process) down.
    }
    for (const waiter of waiters) waiter.check();
  }

  function endBrownout(which: ActiveBrownout): void {
    if (!which.active) return;
    which.active = false;
    if (which.timer) clearTimeout(which.timer);
    which.timer = undefined;
    if (brownout === which) brownout = undefined;
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ port: options.port ?? 0, host: '127.0.0.1', backlog: LISTEN_BACKLOG }, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://127.0.0.1:${port}`,
    events,
    get requestCount() {
      return requestCount;
    },
    get connectionCount() {
      return connectionCount;
    },
    get connections() {
      return connections;
    },
    get maxConnections() {
      return maxConnections;
    },
    get openRequests() {
      return openRequests;
    },
    get maxOpenRequests() {
      return maxOpenRequests;
    },
    waitFor(n, waitOptions = {}) {
      const { filter, timeout = 2000 } = waitOptions;
      const matching = () => (filter ? events.filter(filter) : events);
      return new Promise<RecordedEvent[]>((resolve, reject) => {
        const waiter: Waiter = {
          check: () => {
            const found = matching();
            if (found.length < n) return false;
            waiters.delete(waiter);
            clearTimeout(timer);
            resolve(found.slice(0, n));
            return true;
          },
          abandon: () => {
            waiters.delete(waiter);
            clearTimeout(timer);
            reject(
              new Error(
                `createTestCollector: closed while waiting for ${n} event(s)${filter ? ' matching the filter' : ''}; ` +
                  `${matching().length} had arrived.`,
              ),
            );
          },
        };
        const timer = setTimeout(() => {
          waiters.delete(waiter);
          const found = matching();
          reject(
            new Error(
              `createTestCollector: expected ${n} event(s)${filter ? ' matching the filter' : ''} ` +
                `within ${timeout} ms, got ${found.length} (of ${events.length} recorded): ` +
                JSON.stringify(
                  events.slice(-5).map(({ type, name, url }) => ({ type, name, url })),
                ),
            ),
          );
        }, timeout);
        if (!waiter.check()) waiters.add(waiter);
      });
    },
    brownout(brownoutOptions) {
      const next = checkBrownout(brownoutOptions);
      if (brownout) endBrownout(brownout);
      if (closed) {
        next.active = false;
      } else {
        brownout = next;
        if (brownoutOptions.durationMs !== undefined) {
          next.timer = setTimeout(() => endBrownout(next), brownoutOptions.durationMs);
        }
      }
      return {
        get active() {
          return next.active;
        },
        end: () => endBrownout(next),
      };
    },
    reset() {
      events.length = 0;
    },
    close() {
      closed = true;
      if (brownout) endBrownout(brownout);
      for (const waiter of [...waiters]) waiter.abandon();
      for (const timer of timers) clearTimeout(timer);
      timers.clear();
      const closing = new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      // The server reports closed before its sockets do: wait for them too, so that the counters
      // read 0 once close() resolved.
      const gone = [...sockets].map(
        (socket) => new Promise<void>((resolve) => socket.once('close', () => resolve())),
      );
      for (const socket of sockets) socket.destroy();
      return Promise.all([closing, ...gone]).then(() => undefined);
    },
  };
}

function answer(res: http.ServerResponse, response: CollectorResponse): void {
  if (res.destroyed) return;
  try {
    res.writeHead(response.status, { 'content-type': 'application/json', ...response.headers });
  } catch (error) {
    // A header `respond()` made up that HTTP cannot carry: say so, never crash the test process.
    res.writeHead(500, { 'content-type': 'application/json' });
    res.end(
      JSON.stringify({ error: `the collector could not send that answer: ${String(error)}` }),
    );
    return;
  }
  res.end(response.body ?? (response.status < 300 ? '{"ok":true}' : '{"error":"refused"}'));
}

function isDelay(value: unknown): value is number {
  return typeof value === 'number' && value >= 0 && value <= MAX_DELAY_MS;
}

/** A response's `delayMs`, or 0 when it is not a usable delay. */
function validDelay(value: unknown): number {
  return isDelay(value) ? value : 0;
}

function describe(value: unknown): string {
  if (typeof value === 'string') return `the string ${JSON.stringify(value)}`;
  if (typeof value === 'function') return 'a function';
  if (value === null || typeof value !== 'object') return String(value);
  return Array.isArray(value) ? 'an array' : 'an object';
}

/** Throws a TypeError that names `latency` and says what it takes. */
function checkLatency(value: unknown, where: string): void {
  if (typeof value === 'function' || isDelay(value)) return;
  let hint = '';
  if (value === Infinity) hint = " To never answer, use sequence: ['hang'].";
  else if (typeof value === 'string' && isDelay(Number(value)) && value.trim() !== '') {
    hint = ` Pass the number ${Number(value)}, not a string.`;
  }
  throw new TypeError(
    `${where}: latency must be a number of milliseconds from 0 to ${MAX_DELAY_MS} (e.g. 100) ` +
      `or a function (event, index) => milliseconds, got ${describe(value)}.${hint}`,
  );
}

function checkBrownout(options: BrownoutOptions): ActiveBrownout {
  const where = 'collector.brownout';
  if (typeof options !== 'object' || options === null) {
    throw new TypeError(
      `${where}: pass the options, e.g. { latency: 2000, status: 503, durationMs: 5000 }, got ${describe(options)}.`,
    );
  }
  const { latency, status, headers, durationMs } = options;
  if (latency !== undefined) checkLatency(latency, where);
  if (
    status !== undefined &&
    !(typeof status === 'number' && Number.isInteger(status) && status >= 200 && status <= 599)
  ) {
    throw new TypeError(
      `${where}: status must be a whole number from 200 to 599 (e.g. 503), got ${describe(status)}.`,
    );
  }
  if (headers !== undefined && (typeof headers !== 'object' || headers === null)) {
    throw new TypeError(
      `${where}: headers must be an object of header names to values, got ${describe(headers)}.`,
    );
  }
  for (const [name, value] of Object.entries(headers ?? {})) {
    try {
      http.validateHeaderName(name);
      http.validateHeaderValue(name, value);
    } catch {
      throw new TypeError(
        `${where}: headers must be valid HTTP header names and values (e.g. { 'retry-after': '1' }), ` +
          `got ${JSON.stringify(name)}: ${describe(value)}.`,
      );
    }
  }
  if (
    durationMs !== undefined &&
    !(typeof durationMs === 'number' && durationMs > 0 && durationMs <= MAX_DELAY_MS)
  ) {
    throw new TypeError(
      `${where}: durationMs must be a number of milliseconds from 1 to ${MAX_DELAY_MS}, got ` +
        `${describe(durationMs)}. Leave it out to end the brownout with end().`,
    );
  }
  if (latency === undefined && status === undefined) {
    throw new TypeError(
      `${where}: give it a latency, a status or both (e.g. { latency: 2000, status: 503 }).`,
    );
  }
  return { latency, status, headers, timer: undefined, active: true };
}

function parseEvent(
  text: string,
  trackingCode: string,
  headers: http.IncomingHttpHeaders,
): RecordedEvent | undefined {
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof body !== 'object' || body === null) return undefined;
  const b = body as Record<string, unknown>;
  if (b.type !== 'pageview' && b.type !== 'event') return undefined;
  const event: RecordedEvent = {
    type: b.type,
    trackingCode,
    headers: { ...headers },
    receivedAt: Date.now(),
  };
  if (typeof b.url === 'string') event.url = b.url;
  if (typeof b.referrer === 'string') event.referrer = b.referrer;
  if (typeof b.name === 'string') event.name = b.name;
  if (typeof b.data === 'object' && b.data !== null) event.data = b.data as Record<string, unknown>;
  return event;
}
