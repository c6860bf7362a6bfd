/**
 * A real HTTP server on 127.0.0.1 that speaks the tracking endpoint's contract and records what
 * it receives: for tests (ours and our users') and the example app.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';

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
  /** Answer only after this many milliseconds (to be slower than a client's timeout). */
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

export interface TestCollector {
  /** `http://127.0.0.1:PORT`: pass it as the `host` option. */
  readonly url: string;
  /** Recorded events so far, in arrival order. */
  readonly events: RecordedEvent[];
  /** How many requests reached the collector, accepted or not. */
  readonly requestCount: number;
  /** Resolves the first `n` matching events once they arrived; rejects on timeout. */
  waitFor(n: number, options?: WaitForOptions): Promise<RecordedEvent[]>;
  /** Forgets recorded events. */
  reset(): void;
  /** Stops the server and closes every connection. */
  close(): Promise<void>;
}

const MAX_BODY_BYTES = 64 * 1024;
const PATH_PATTERN = /^\/e\/([A-Za-z0-9_-]{1,64})$/;

interface Waiter {
  check: () => boolean;
}

/** Starts a collector on 127.0.0.1 on a free port. */
export async function createTestCollector(
  options: TestCollectorOptions = {},
): Promise<TestCollector> {
  const events: RecordedEvent[] = [];
  const waiters = new Set<Waiter>();
  const timers = new Set<NodeJS.Timeout>();
  const maxEvents = options.maxEvents ?? 10_000;
  let requestCount = 0;
  let validCount = 0;

  const server = http.createServer((req, res) => {
    requestCount++;
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
      let reply: CollectorAnswer;
      try {
        reply = options.respond
          ? options.respond(event, validCount)
          : (options.sequence?.[validCount] ?? 202);
      } catch (error) {
        reply = {
          status: 500,
          body: JSON.stringify({ error: `respond() threw: ${String(error)}` }),
        };
      }
      validCount++;
      if (reply === 'hang') return;
      if (reply === 'reset') {
        record(event);
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': '100' });
        res.write('{"ok":');
        setImmediate(() => res.destroy());
        return;
      }
      const response = typeof reply === 'number' ? { status: reply } : reply;
      const finish = () => {
        if (response.status >= 200 && response.status < 300) record(event);
        answer(res, response);
      };
      if (response.delayMs) {
        const timer = setTimeout(() => {
          timers.delete(timer);
          finish();
        }, response.delayMs);
        timers.add(timer);
      } else {
        finish();
      }
    });
  });

  function record(event: RecordedEvent): void {
    events.push(event);
    if (events.length > maxEvents) events.splice(0, events.length - maxEvents);
    try {
      options.onEvent?.(event);
    } catch {
      // A failing onEvent must not take the collector (or the test process) down.
    }
    for (const waiter of waiters) waiter.check();
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://127.0.0.1:${port}`,
    events,
    get requestCount() {
      return requestCount;
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
    reset() {
      events.length = 0;
    },
    close() {
      for (const timer of timers) clearTimeout(timer);
      timers.clear();
      return new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    },
  };
}

function answer(res: http.ServerResponse, response: CollectorResponse): void {
  if (res.destroyed) return;
  res.writeHead(response.status, { 'content-type': 'application/json', ...response.headers });
  res.end(response.body ?? (response.status < 300 ? '{"ok":true}' : '{"error":"refused"}'));
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
