/**
 * The inspector: a test collector with a live page, for development. One 127.0.0.1 server answers
 * the tracking endpoint's contract (POST /e/{trackingCode}, handed to a `createTestCollector`
 * behind it) and serves:
 *
 *   GET /           the page: events as they arrive, counts, the watched trackers' stats
 *   GET /events     the same, as server-sent events (a `snapshot` first, then updates)
 *   GET /api/state  a JSON snapshot
 *
 * Everything it shows comes from visitors (URLs, user agents, event data): the page renders it as
 * text only, the server binds 127.0.0.1 only, refuses other Host headers on its own routes (DNS
 * rebinding), and the inspector does not start at all when NODE_ENV is `production`.
 */
import http from 'node:http';
import { randomBytes } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { pipeline } from 'node:stream';
import type { TrackerStats } from '../delivery/engine.js';
import {
  createTestCollector,
  type RecordedEvent,
  type TestCollector,
  type TestCollectorOptions,
} from './collector.js';
import { inspectorPage } from './inspector-page.js';

export interface InspectorOptions extends TestCollectorOptions {
  /**
   * Most inspector pages (event streams) open at once; more are answered 503.
   * @default 20
   */
  maxClients?: number;
  /**
   * Milliseconds between two reads of the watched trackers' `stats()`.
   * @default 1000
   */
  statsIntervalMs?: number;
}

/** What the page shows of one recorded event. */
export interface InspectedEvent {
  /** 1, 2, 3… in arrival order (since the inspector started or was reset). */
  seq: number;
  type: string;
  name?: string;
  url?: string;
  referrer?: string;
  data?: Record<string, unknown>;
  trackingCode: string;
  /** The forwarded visitor IP (`X-Forwarded-For`). */
  ip?: string;
  /** The forwarded visitor `User-Agent`. */
  userAgent?: string;
  /** Every request header, lower-case names. */
  headers: Record<string, string>;
  receivedAt: number;
}

/** A request to the collector that recorded nothing (a wrong path, a bad body, a scripted error). */
export interface RefusedRequest {
  method: string;
  path: string;
  status: number;
  at: number;
}

/** One watched tracker: its latest `stats()`, or why they could not be read. */
export interface WatchedTracker {
  name: string;
  stats?: TrackerStats;
  error?: string;
  updatedAt: number;
}

/** Everything the page shows. Counts are `[key, count]` pairs (keys are visitor-controlled). */
export interface InspectorState {
  /** Where the app's `host` option should point. */
  collectorUrl: string;
  /** The latest events, oldest first (at most 100). */
  events: InspectedEvent[];
  totals: {
    /** Requests forwarded to the collector (the page's own requests excluded). */
    requests: number;
    /** Events recorded (answered 2xx). */
    recorded: number;
    pageviews: number;
    events: number;
  };
  /** Pageviews by URL path. Past 500 paths, the rest are counted under `(other)`. */
  pageviewsByPath: [string, number][];
  /** Custom events by name. Past 500 names, the rest are counted under `(other)`. */
  eventsByName: [string, number][];
  /** How many answers the collector gave, by status. */
  answers: [string, number][];
  /** The latest requests answered other than 2xx, oldest first (at most 20). */
  refused: RefusedRequest[];
  trackers: WatchedTracker[];
}

/** Anything with the tracker's `stats()`: a tracker, or `analytics().tracker`. */
export interface StatsSource {
  stats(): TrackerStats;
}

/** A test collector that also serves the inspector page. */
export interface Inspector extends TestCollector {
  /** The page to open in a browser: `${url}/`. */
  readonly pageUrl: string;
  /**
   * Shows a tracker's stats on the page, read every `statsIntervalMs` (the timer does not keep
   * the process alive). Returns a function that stops watching it.
   */
  watch(tracker: StatsSource, name?: string): () => void;
  /** What the page shows, right now. */
  state(): InspectorState;
}

const MAX_RECENT = 100;
const MAX_KEYS = 500;
const MAX_KEY_LENGTH = 300;
const MAX_REFUSED = 20;
const OTHER = '(other)';
/** A page that reads slower than this many bytes are queued for it is disconnected. */
const MAX_BUFFERED_BYTES = 4 * 1024 * 1024;
const HEARTBEAT_MS = 15_000;
/** Headers that belong to one connection, not to the request: never forwarded. */
const HOP_BY_HOP = [
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
];

/**
 * Starts a collector with the inspector page on 127.0.0.1 (a free port, or `options.port`).
 * Rejects when NODE_ENV is `production`: the page shows visitors' IPs, user agents and data.
 */
export async function createInspector(options: InspectorOptions = {}): Promise<Inspector> {
  if (process.env.NODE_ENV === 'production') {
    throw new Error(
      'zenovay-express: the inspector is a development tool and does not start when NODE_ENV is ' +
        "'production' (it shows visitors' IPs, user agents and event data). Run it without " +
        'NODE_ENV=production, and send production events to Zenovay.',
    );
  }
  const maxClients = options.maxClients ?? 20;
  const statsIntervalMs = options.statsIntervalMs ?? 1000;
  if (!Number.isInteger(maxClients) || maxClients < 1) {
    throw new TypeError(
      `createInspector: maxClients must be a whole number >= 1, got ${String(maxClients)}.`,
    );
  }
  if (typeof statsIntervalMs !== 'number' || !(statsIntervalMs >= 10)) {
    throw new TypeError(
      `createInspector: statsIntervalMs must be a number of milliseconds >= 10, got ${String(statsIntervalMs)}.`,
    );
  }

  const board = new Board(() => inner.requestCount);
  const clients = new Set<http.ServerResponse>();
  const watched = new Set<Watched>();
  let pollTimer: NodeJS.Timeout | undefined;
  let closed = false;
  let trackerCount = 0;
  let collectorUrl = '';

  const inner = await createTestCollector({
    ...options,
    // The collector listens on a free port of its own, behind this server.
    port: undefined,
    onEvent(event) {
      try {
        const update = board.record(event);
        broadcast('collected', update);
      } catch {
        // The page is a bonus: it must never cost the collector an event.
      }
      options.onEvent?.(event);
    },
  });
  const upstream = new URL(inner.url);
  const agent = new http.Agent({ keepAlive: true });

  const server = http.createServer((req, res) => {
    const path = pathOf(req.url);
    const ownRoute =
      (req.method === 'GET' || req.method === 'HEAD') &&
      (path === '/' || path === '/events' || path === '/api/state' || path === '/favicon.ico');
    if (!ownRoute) {
      forward(req, res);
      return;
    }
    req.resume();
    if (!isLocalHost(req.headers.host, port)) {
      send(res, 403, 'text/plain; charset=utf-8', hostRefusal(req.headers.host, port));
      return;
    }
    if (path === '/') {
      const nonce = randomBytes(16).toString('base64');
      send(res, 200, 'text/html; charset=utf-8', inspectorPage(nonce), {
        'content-security-policy':
          `default-src 'none'; script-src 'nonce-${nonce}'; style-src 'nonce-${nonce}'; ` +
          "img-src data:; connect-src 'self'; base-uri 'none'; form-action 'none'; " +
          "frame-ancestors 'none'",
        'x-frame-options': 'DENY',
        'referrer-policy': 'no-referrer',
      });
    } else if (path === '/api/state') {
      send(res, 200, 'application/json; charset=utf-8', JSON.stringify(state()));
    } else if (path === '/events') {
      openStream(req, res);
    } else {
      send(res, 204, 'text/plain', '');
    }
  });

  /** Hands a request to the collector and its answer (or its fault) back to the client. */
  function forward(req: http.IncomingMessage, res: http.ServerResponse): void {
    const headers: http.OutgoingHttpHeaders = { ...req.headers };
    for (const name of HOP_BY_HOP) delete headers[name];
    const outgoing = http.request({
      host: upstream.hostname,
      port: upstream.port,
      method: req.method,
      path: req.url,
      headers,
      agent,
    });
    outgoing.on('response', (answer) => {
      const status = answer.statusCode ?? 502;
      board.answered(req.method ?? '', req.url ?? '', status);
      broadcast('collector', board.collectorUpdate());
      const answerHeaders: http.OutgoingHttpHeaders = { ...answer.headers };
      for (const name of HOP_BY_HOP) delete answerHeaders[name];
      res.writeHead(status, answerHeaders);
      // A collector that cuts its answer short ('reset') cuts this one short as well.
      pipeline(answer, res, (error) => {
        if (error) res.destroy();
      });
    });
    // No answer at all (the collector closed): the client sees a failed connection, as it would.
    outgoing.on('error', () => res.destroy());
    res.on('close', () => {
      if (!res.writableFinished) outgoing.destroy();
    });
    pipeline(req, outgoing, () => undefined);
  }

  function openStream(req: http.IncomingMessage, res: http.ServerResponse): void {
    if (closed) {
      send(res, 503, 'text/plain; charset=utf-8', 'The inspector is closing.');
      return;
    }
    if (clients.size >= maxClients) {
      send(
        res,
        503,
        'text/plain; charset=utf-8',
        `Too many inspector pages are open (${maxClients}): close some and reload.`,
      );
      return;
    }
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-store',
      'x-content-type-options': 'nosniff',
    });
    if (req.method === 'HEAD') {
      res.end();
      return;
    }
    // How long the browser waits before reconnecting after the stream ended.
    res.write('retry: 1000\n\n');
    clients.add(res);
    res.on('close', () => clients.delete(res));
    write(res, 'snapshot', state());
  }

  function broadcast(event: string, payload: unknown): void {
    if (clients.size === 0) return;
    const message = sseMessage(event, payload);
    for (const res of clients) writeRaw(res, message);
  }

  function write(res: http.ServerResponse, event: string, payload: unknown): void {
    writeRaw(res, sseMessage(event, payload));
  }

  function writeRaw(res: http.ServerResponse, message: string): void {
    if (res.writableLength > MAX_BUFFERED_BYTES) {
      // A page that does not read: let it go rather than queue without bound.
      clients.delete(res);
      res.destroy();
      return;
    }
    res.write(message);
  }

  const heartbeat = setInterval(() => {
    for (const res of clients) writeRaw(res, ': keep-alive\n\n');
  }, HEARTBEAT_MS);
  heartbeat.unref();

  function poll(): void {
    let changed = false;
    for (const entry of watched) {
      let next: string;
      try {
        entry.current = { name: entry.name, stats: entry.source.stats(), updatedAt: Date.now() };
        next = JSON.stringify(entry.current.stats);
      } catch (error) {
        const message = error instanceof Error ? error.message : String(error);
        entry.current = { name: entry.name, error: message, updatedAt: Date.now() };
        next = `error: ${message}`;
      }
      if (next !== entry.last) {
        entry.last = next;
        changed = true;
      }
    }
    if (changed) broadcast('stats', trackers());
  }

  function trackers(): WatchedTracker[] {
    return Array.from(watched, (entry) => entry.current);
  }

  function state(): InspectorState {
    return board.snapshot(collectorUrl, trackers());
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  }).catch(async (error: unknown) => {
    agent.destroy();
    await inner.close();
    throw error;
  });
  const { port } = server.address() as AddressInfo;
  collectorUrl = `http://127.0.0.1:${port}`;

  return {
    url: collectorUrl,
    pageUrl: `${collectorUrl}/`,
    get events() {
      return inner.events;
    },
    get requestCount() {
      return inner.requestCount;
    },
    // What the collector behind the page sees: forwarded requests (the page's own are not
    // counted), on this server's connections to it.
    get connectionCount() {
      return inner.connectionCount;
    },
    get connections() {
      return inner.connections;
    },
    get maxConnections() {
      return inner.maxConnections;
    },
    get openRequests() {
      return inner.openRequests;
    },
    get maxOpenRequests() {
      return inner.maxOpenRequests;
    },
    waitFor: (n, waitOptions) => inner.waitFor(n, waitOptions),
    brownout: (brownoutOptions) => inner.brownout(brownoutOptions),
    reset() {
      inner.reset();
      board.reset();
      broadcast('snapshot', state());
    },
    state,
    watch(source, name) {
      if (typeof source?.stats !== 'function') {
        throw new TypeError(
          'inspector.watch() needs a tracker (createTracker(), or analytics().tracker).',
        );
      }
      if (closed) return () => undefined;
      const entry: Watched = {
        source,
        name: name ?? `tracker ${++trackerCount}`,
        current: { name: '', updatedAt: 0 },
        last: undefined,
      };
      watched.add(entry);
      poll();
      if (!pollTimer) {
        pollTimer = setInterval(poll, statsIntervalMs);
        pollTimer.unref();
      }
      return () => {
        if (!watched.delete(entry)) return;
        if (watched.size === 0 && pollTimer) {
          clearInterval(pollTimer);
          pollTimer = undefined;
        }
        broadcast('stats', trackers());
      };
    },
    async close() {
      if (!closed) {
        closed = true;
        clearInterval(heartbeat);
        if (pollTimer) clearInterval(pollTimer);
        pollTimer = undefined;
        watched.clear();
        // End the event streams first: open pages see the end rather than a reset.
        for (const res of clients) res.end();
        clients.clear();
      }
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      agent.destroy();
      await inner.close();
    },
  };
}

interface Watched {
  source: StatsSource;
  name: string;
  current: WatchedTracker;
  last: string | undefined;
}

/** Counts and the latest events, bounded whatever visitors send. */
class Board {
  private seq = 0;
  private recent: InspectedEvent[] = [];
  private pageviews = 0;
  private customEvents = 0;
  private readonly byPath = new Map<string, number>();
  private readonly byName = new Map<string, number>();
  private readonly answers = new Map<string, number>();
  private refused: RefusedRequest[] = [];

  /** `requests`: how many requests reached the collector so far. */
  constructor(private readonly requests: () => number) {}

  record(event: RecordedEvent) {
    const inspected = inspect(event, ++this.seq);
    this.recent.push(inspected);
    if (this.recent.length > MAX_RECENT) this.recent.shift();
    let count: { pageviewsByPath?: [string, number]; eventsByName?: [string, number] };
    if (event.type === 'pageview') {
      this.pageviews++;
      count = { pageviewsByPath: bump(this.byPath, pathKey(event.url)) };
    } else {
      this.customEvents++;
      count = { eventsByName: bump(this.byName, nameKey(event.name)) };
    }
    return { event: inspected, ...count, totals: this.totals() };
  }

  answered(method: string, url: string, status: number): void {
    bump(this.answers, String(status));
    if (status < 200 || status >= 300) {
      this.refused.push({
        method: method.slice(0, 16),
        path: url.slice(0, MAX_KEY_LENGTH),
        status,
        at: Date.now(),
      });
      if (this.refused.length > MAX_REFUSED) this.refused.shift();
    }
  }

  collectorUpdate() {
    return { totals: this.totals(), answers: [...this.answers], refused: this.refused };
  }

  totals() {
    return {
      requests: this.requests(),
      recorded: this.pageviews + this.customEvents,
      pageviews: this.pageviews,
      events: this.customEvents,
    };
  }

  snapshot(collectorUrl: string, trackers: WatchedTracker[]): InspectorState {
    return {
      collectorUrl,
      events: [...this.recent],
      totals: this.totals(),
      pageviewsByPath: [...this.byPath],
      eventsByName: [...this.byName],
      answers: [...this.answers],
      refused: [...this.refused],
      trackers,
    };
  }

  reset(): void {
    this.seq = 0;
    this.recent = [];
    this.pageviews = 0;
    this.customEvents = 0;
    this.byPath.clear();
    this.byName.clear();
    this.answers.clear();
    this.refused = [];
  }
}

/** Adds one to `key` (or to `(other)` once the map is full); returns the new count. */
function bump(map: Map<string, number>, key: string): [string, number] {
  const slot = map.has(key) || map.size < MAX_KEYS ? key : OTHER;
  const count = (map.get(slot) ?? 0) + 1;
  map.set(slot, count);
  return [slot, count];
}

function pathKey(url: string | undefined): string {
  if (url === undefined) return '(no url)';
  try {
    return new URL(url).pathname.slice(0, MAX_KEY_LENGTH);
  } catch {
    return url.slice(0, MAX_KEY_LENGTH);
  }
}

function nameKey(name: string | undefined): string {
  return name === undefined ? '(no name)' : name.slice(0, MAX_KEY_LENGTH);
}

function inspect(event: RecordedEvent, seq: number): InspectedEvent {
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(event.headers)) {
    if (value !== undefined) headers[name] = Array.isArray(value) ? value.join(', ') : value;
  }
  const inspected: InspectedEvent = {
    seq,
    type: event.type,
    trackingCode: event.trackingCode,
    headers,
    receivedAt: event.receivedAt,
  };
  if (event.name !== undefined) inspected.name = event.name;
  if (event.url !== undefined) inspected.url = event.url;
  if (event.referrer !== undefined) inspected.referrer = event.referrer;
  if (event.data !== undefined) inspected.data = event.data;
  if (headers['x-forwarded-for'] !== undefined) inspected.ip = headers['x-forwarded-for'];
  if (headers['user-agent'] !== undefined) inspected.userAgent = headers['user-agent'];
  return inspected;
}

/** One server-sent event. JSON has no raw line breaks, so one `data:` line carries it. */
function sseMessage(event: string, payload: unknown): string {
  return `event: ${event}\ndata: ${JSON.stringify(payload)}\n\n`;
}

function send(
  res: http.ServerResponse,
  status: number,
  type: string,
  body: string,
  headers: http.OutgoingHttpHeaders = {},
): void {
  res.writeHead(status, {
    'content-type': type,
    'cache-control': 'no-store',
    'x-content-type-options': 'nosniff',
    ...headers,
  });
  res.end(body);
}

function pathOf(url: string | undefined): string {
  const end = (url ?? '').search(/[?#]/);
  return end === -1 ? (url ?? '') : (url ?? '').slice(0, end);
}

/** Only the names of this machine, with this port: another name is a DNS-rebinding attempt. */
function isLocalHost(host: string | undefined, port: number): boolean {
  return host === `127.0.0.1:${port}` || host === `localhost:${port}`;
}

function hostRefusal(host: string | undefined, port: number): string {
  return (
    `The inspector only answers as 127.0.0.1:${port} or localhost:${port}, not as ` +
    `${JSON.stringify(host ?? '')}: open http://127.0.0.1:${port}/ on this machine.`
  );
}
