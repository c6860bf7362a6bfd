/**
 * Every option of the package, its default, and its validation: the one place they live.
 *
 * `resolveTrackerOptions` and `resolveAnalyticsOptions` run once, in the factories. They never
 * mutate what the user passed, and throw a `TypeError` that says how to fix a bad option.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { compileTrust, type TrustFunction, type TrustProxy } from './request/trust.js';
import { consoleLogger, Reporter, type Logger } from './logger.js';
import type { Transport } from './delivery/transport.js';
import { resolveProxy } from './delivery/proxy-transport.js';
import type { EngineOptions } from './delivery/engine.js';
import type { Tracker, WireEvent } from './tracker.js';
import type { RequestAnalytics } from './request/context.js';
import type { BotTest } from './request/bots.js';
import { isPageStatus } from './request/pageview-rules.js';
import { resolveOutbox, type OutboxConfig, type OutboxOption } from './outbox/config.js';

export const DEFAULT_HOST = 'https://api.zenovay.com';
export const TRACKING_CODE_ENV = 'ZENOVAY_TRACKING_CODE';
/** The most requests in flight, and connections open, to the endpoint: any setting. */
export const MAX_CONNECTIONS = 512;
/** The adaptive limit's default ceiling. */
export const DEFAULT_MAX_CONCURRENCY = 256;
/** How many nice steps below the process the delivery worker runs by default (Linux). */
export const DEFAULT_WORKER_NICE = 10;
const TRACKING_CODE_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;

/** Options of `createTracker()`; `analytics()` accepts them too. */
export interface TrackerOptions {
  /**
   * The site's tracking code (the `data-tracking-code` of the Zenovay script): 1-64 of
   * `A-Z a-z 0-9 _ -`.
   * @default process.env.ZENOVAY_TRACKING_CODE
   */
  trackingCode?: string;
  /**
   * Origin (with an optional base path) of the tracking endpoint; events go to
   * `{host}/e/{trackingCode}`.
   * @default 'https://api.zenovay.com'
   */
  host?: string;
  /**
   * The site's public origin (with an optional base path), e.g. `'https://shop.example'`. The
   * middleware builds page URLs on
   * it instead of the visitor-chosen `Host` header (recommended in production); a standalone
   * tracker uses it as the `url` of events that have none.
   * @default undefined (page URLs come from the request's protocol and host)
   */
  siteUrl?: string;
  /**
   * How many requests to the endpoint may be in flight at once. `'auto'` adapts the limit to the
   * endpoint's distance and health: it grows while events wait and the endpoint's latency holds,
   * and shrinks on 429s, 5xx answers, timeouts, network errors and latency that climbs (see
   * `maxConcurrency`). A number (1-512) is a fixed limit.
   * @default 'auto'
   */
  concurrency?: number | 'auto';
  /**
   * The ceiling of the adaptive limit (`concurrency: 'auto'`), and so of the connections to the
   * endpoint (1-512). Ignored with a fixed `concurrency`.
   * @default 256
   */
  maxConcurrency?: number;
  /**
   * How many events may wait for a free connection. Past it, new events are dropped (reason
   * `queue_full`) instead of growing memory.
   * @default 10000
   */
  maxQueueSize?: number;
  /**
   * Milliseconds one request to the endpoint may take before it is aborted (1-600000).
   * @default 5000
   */
  timeout?: number;
  /**
   * Where problems and decisions are reported. `false` silences everything. Info lines, warnings
   * and errors carry a stable `ZENOVAY_*` code; each code repeats at most once a minute.
   * @default info, warnings and errors to the console (debug lines dropped)
   */
  logger?: Logger | false;
  /**
   * How many times a failed attempt (network error, timeout, 408, 5xx but 501/505) is retried.
   * 429s do not count: they pause sending instead.
   * @default 3
   */
  maxRetries?: number;
  /**
   * Milliseconds of the first retry's backoff ceiling; it doubles per retry (full jitter: the
   * wait is random between 0 and the ceiling).
   * @default 500
   */
  retryDelay?: number;
  /**
   * Largest backoff ceiling, in milliseconds.
   * @default 30000
   */
  maxRetryDelay?: number;
  /**
   * Drop events of a visitor IP beyond the endpoint's limits (60 per 10 s, 5,000 per hour),
   * which it would refuse anyway (dropped, reason `rate_limited`). Memory stays bounded
   * however many IPs arrive.
   * @default true
   */
  visitorRateLimit?: boolean;
  /**
   * A limit on all requests together, for setups where the endpoint sees the server's own IP:
   * at most `limit` requests per `interval` milliseconds (e.g. `{ limit: 60, interval: 10000 }`).
   * Requests wait rather than being dropped.
   * @default undefined (no global limit)
   */
  globalRateLimit?: { limit: number; interval: number };
  /**
   * Shorten the visitor's IP before it leaves the process: IPv4 to its /24 (`203.0.113.0`),
   * IPv6 to its /48. Geolocation keeps city-level precision at best.
   * @default false
   */
  anonymizeIp?: boolean;
  /**
   * The HTTP proxy to reach the endpoint through: its URL, with credentials when it needs them
   * (`'http://user:pass@proxy.internal:3128'`). `false` goes direct whatever the environment
   * says. When not given, the environment decides once, at construction, as curl and Node do:
   * `https_proxy` / `HTTPS_PROXY` for an https endpoint (`http_proxy` / `HTTP_PROXY` for an http
   * one), unless `no_proxy` / `NO_PROXY` lists the endpoint's host. An https endpoint is reached
   * through a CONNECT tunnel (undici's `ProxyAgent`). Not used with a custom `transport`.
   * @default from the environment variables (direct when none is set)
   */
  proxy?: string | false;
  /**
   * Sends one request to the endpoint. Replace it to route events elsewhere (a proxy, a queue,
   * a test double).
   * @default the package's keep-alive HTTP/1.1 client (`http:` and `https:`)
   */
  transport?: Transport;
  /**
   * Send from a worker thread: the request thread only hands each event over (events cross
   * together, every few, up to 50, milliseconds), and the worker runs the queue, the retries
   * and the HTTP client. `false` sends from the main thread, with the same behaviour and
   * counters. A custom `transport` runs on the main thread (functions cannot cross threads), so
   * it cannot be combined with `worker: true`.
   * @default true (false with a custom `transport`, or a Redis client object as `outbox.redis`)
   */
  worker?: boolean;
  /**
   * On Linux, how many nice steps lower the delivery worker's thread runs than the process (up
   * to nice 19), so that when every core is busy it yields the CPU to the threads that serve
   * requests and catches up when one is free. `0` keeps the process's priority. Ignored on
   * other systems (where a priority applies to the whole process) and with `worker: false`.
   * @default 10
   */
  workerNice?: number;
  /**
   * Keep every accepted event in a durable outbox until the endpoint has answered for it, so
   * that a killed process, a short deploy or a long outage loses nothing: `{ dir }` (a directory
   * on this machine, one process at a time) or `{ redis }` (a Redis Stream shared by every
   * instance). Written from the delivery worker; see "Keeping events across restarts" in the README.
   * @default undefined (events wait in memory only)
   */
  outbox?: OutboxOption;
}

/** A path pattern: a string is a prefix of the path, a RegExp is tested against the path. */
export type PathPattern = string | RegExp;

/** Options of `analytics()`. */
export interface AnalyticsOptions extends TrackerOptions {
  /**
   * An existing tracker to send through (shared with webhooks or other middleware). The
   * delivery options (`trackingCode`, `host`, `concurrency`, `maxConcurrency`, `maxQueueSize`, `timeout`,
   * `maxRetries`, `retryDelay`, `maxRetryDelay`, `visitorRateLimit`, `globalRateLimit`,
   * `anonymizeIp`, `proxy`, `transport`, `worker`, `workerNice`, `outbox`) then belong to that tracker and may not be given here.
   * @default a new tracker built from these options
   */
  tracker?: Tracker;
  /**
   * Which proxies in front of the app are trusted to say who the visitor is, with Express's
   * `trust proxy` semantics: `true`, a hop count, `'loopback'`, `'uniquelocal'`, addresses or
   * CIDR ranges (string or array), or `(addr, hop) => boolean`. When not given, an Express app's
   * own `trust proxy` setting is used; elsewhere (Connect, plain `http`) nothing is trusted.
   * @default the Express app's setting, else false
   */
  trustProxy?: TrustProxy;
  /**
   * A header your platform sets to the client IP (`'cf-connecting-ip'`, `'x-real-ip'`,
   * `'true-client-ip'`, `'fly-client-ip'`). Only set it when that platform is really in front:
   * otherwise a visitor can send the header. When absent or invalid, `trustProxy` applies.
   * @default undefined (not used)
   */
  ipHeader?: string;
  /**
   * Query parameters kept in `url` and `referrer`: `'all'`, `'none'`, or a list of names where a
   * trailing `*` matches a prefix. Everything else is dropped before it leaves the process.
   * @default ['utm_*']
   */
  queryParams?: 'all' | 'none' | readonly string[];
  /**
   * More paths that are never pageviews, tested against the path without its query string.
   * @default []
   */
  skipPaths?: readonly PathPattern[];
  /**
   * Called when a response finishes; return `true` to not count it as a pageview.
   * @default undefined
   */
  skip?: (req: IncomingMessage, res: ServerResponse) => boolean;
  /**
   * Which response statuses count as a page.
   * @default (status) => (status >= 200 && status < 300) || status === 304
   */
  countStatus?: (status: number) => boolean;
  /**
   * Your own bot test, given the user agent and the rule's verdict: return the final verdict
   * (extend: `(ua, bot) => bot || /MyMonitor/.test(ua ?? '')`; replace: ignore `bot`). For
   * pageviews the verdict is isbot's; for `req.track` it is the events' rule, in which HTTP
   * client libraries (okhttp, axios, curl, ...) are not bots and crawlers are.
   * @default undefined (the rules alone; a missing or empty user agent is a bot)
   */
  isBot?: BotTest;
  /**
   * Sees every pageview and `req.track` event before it is sent, with the request's context:
   * return the event (changed or not) to send it, or `null` to not send it.
   * @default undefined
   */
  beforeSend?: (event: WireEvent, context: RequestAnalytics) => WireEvent | null;
  /**
   * Skip static assets, recognised by the path's file extension (`.js`, `.css`, `.png`, ...).
   * @default true
   */
  skipAssets?: boolean;
  /**
   * Skip paths under `/api/` (and `/api` itself).
   * @default true
   */
  skipApi?: boolean;
  /**
   * Skip `/robots.txt`, `/sitemap.xml`, `/favicon.ico` and everything under `/.well-known/`.
   * @default true
   */
  skipWellKnown?: boolean;
  /**
   * Skip prefetch and prerender requests (`Sec-Purpose`, `Purpose`, `X-Moz: prefetch`).
   * @default true
   */
  skipPrefetch?: boolean;
  /**
   * Skip bots (isbot); a missing or empty `User-Agent` is a bot. Applies to `req.track` too,
   * where only crawlers are bots: HTTP client libraries (okhttp, axios, curl, ...) are not.
   * @default true
   */
  skipBots?: boolean;
  /**
   * Honour `Sec-GPC: 1` and `DNT: 1`: no pageview and no `req.track` event for that visitor.
   * @default true
   */
  respectPrivacySignals?: boolean;
}

/** What `resolveTrackerOptions` makes of `TrackerOptions`: the engine's settings and more. */
export interface TrackerConfig extends Omit<EngineOptions, 'transport' | 'random' | 'outbox'> {
  trackingCode: string;
  /** Origin (and optional base path) without a trailing slash. */
  siteUrl: string | undefined;
  anonymizeIp: boolean;
  /** undefined: the default keep-alive HTTP transport. */
  transport: Transport | undefined;
  /** The proxy's URL (credentials included), or undefined: direct (or a custom transport). */
  proxy: string | undefined;
  /** Delivery runs on a worker thread. */
  worker: boolean;
  /** Nice steps the worker's thread runs below the process (Linux). */
  workerNice: number;
  /** The durable outbox, when there is one. */
  outbox: OutboxConfig | undefined;
}

/** What `resolveAnalyticsOptions` makes of `AnalyticsOptions`. */
export interface AnalyticsConfig {
  /** Set when the user passed an existing tracker. */
  tracker: Tracker | undefined;
  /** Set when the middleware builds its own tracker. */
  trackerConfig: TrackerConfig | undefined;
  siteUrl: string | undefined;
  reporter: Reporter;
  /** undefined: use the Express app's `trust proxy fn`, or trust nothing. */
  trust: TrustFunction | undefined;
  /** Lower-case header name, or undefined. */
  ipHeader: string | undefined;
  queryPolicy: QueryPolicy;
  skipPaths: readonly PathPattern[];
  skip: ((req: IncomingMessage, res: ServerResponse) => boolean) | undefined;
  countStatus: (status: number) => boolean;
  isBot: BotTest | undefined;
  beforeSend: AnalyticsOptions['beforeSend'];
  /** NODE_ENV was 'production' when the middleware was created. */
  production: boolean;
  skipAssets: boolean;
  skipApi: boolean;
  skipWellKnown: boolean;
  skipPrefetch: boolean;
  skipBots: boolean;
  respectPrivacySignals: boolean;
}

/** Compiled form of `queryParams`. */
export type QueryPolicy =
  | { kind: 'all' }
  | { kind: 'none' }
  | { kind: 'list'; names: ReadonlySet<string>; prefixes: readonly string[] };

/** Options that configure a tracker's delivery: not allowed next to an existing `tracker`. */
const DELIVERY_KEYS = [
  'trackingCode',
  'host',
  'concurrency',
  'maxConcurrency',
  'maxQueueSize',
  'timeout',
  'maxRetries',
  'retryDelay',
  'maxRetryDelay',
  'visitorRateLimit',
  'globalRateLimit',
  'anonymizeIp',
  'proxy',
  'transport',
  'worker',
  'workerNice',
  'outbox',
] as const satisfies readonly (keyof TrackerOptions)[];

const TRACKER_KEYS = [
  ...DELIVERY_KEYS,
  'siteUrl',
  'logger',
] as const satisfies readonly (keyof TrackerOptions)[];

const ANALYTICS_KEYS = [
  ...TRACKER_KEYS,
  'tracker',
  'trustProxy',
  'ipHeader',
  'queryParams',
  'skipPaths',
  'skip',
  'countStatus',
  'isBot',
  'beforeSend',
  'skipAssets',
  'skipApi',
  'skipWellKnown',
  'skipPrefetch',
  'skipBots',
  'respectPrivacySignals',
] as const satisfies readonly (keyof AnalyticsOptions)[];

export function resolveTrackerOptions(
  options: TrackerOptions | undefined,
  caller = 'createTracker',
): TrackerConfig {
  const opts = checkObject(options, caller);
  checkKeys(opts, TRACKER_KEYS, caller);
  return buildTrackerConfig(opts as TrackerOptions, caller);
}

export function resolveAnalyticsOptions(options: AnalyticsOptions | undefined): AnalyticsConfig {
  const caller = 'analytics';
  const raw = checkObject(options, caller);
  checkKeys(raw, ANALYTICS_KEYS, caller);
  const opts = raw as AnalyticsOptions;

  let tracker: Tracker | undefined;
  let trackerConfig: TrackerConfig | undefined;
  if (opts.tracker !== undefined) {
    tracker = checkTracker(opts.tracker);
    const clash = DELIVERY_KEYS.filter((key) => opts[key] !== undefined);
    if (clash.length > 0) {
      throw new TypeError(
        `zenovay-express: analytics() got both \`tracker\` and ${clash.map((k) => `\`${k}\``).join(', ')}. ` +
          'Those options configure delivery: pass them to createTracker() instead, or drop `tracker`.',
      );
    }
  } else {
    trackerConfig = buildTrackerConfig(opts, caller);
  }

  const siteUrl = trackerConfig ? trackerConfig.siteUrl : resolveSiteUrl(opts.siteUrl, caller);
  const reporter = trackerConfig?.reporter ?? new Reporter(resolveLogger(opts.logger, caller));

  return {
    tracker,
    trackerConfig,
    siteUrl,
    reporter,
    trust: resolveTrust(opts.trustProxy),
    ipHeader: resolveIpHeader(opts.ipHeader),
    queryPolicy: resolveQueryPolicy(opts.queryParams),
    skipPaths: resolveSkipPaths(opts.skipPaths),
    skip: optionalFunction(opts.skip, 'skip', '(req, res) => boolean', caller),
    countStatus:
      optionalFunction(opts.countStatus, 'countStatus', '(status) => boolean', caller) ??
      isPageStatus,
    isBot: optionalFunction(opts.isBot, 'isBot', '(userAgent, isbotVerdict) => boolean', caller),
    beforeSend: optionalFunction(
      opts.beforeSend,
      'beforeSend',
      '(event, context) => event | null',
      caller,
    ),
    production: process.env.NODE_ENV === 'production',
    skipAssets: bool(opts.skipAssets, 'skipAssets', true, caller),
    skipApi: bool(opts.skipApi, 'skipApi', true, caller),
    skipWellKnown: bool(opts.skipWellKnown, 'skipWellKnown', true, caller),
    skipPrefetch: bool(opts.skipPrefetch, 'skipPrefetch', true, caller),
    skipBots: bool(opts.skipBots, 'skipBots', true, caller),
    respectPrivacySignals: bool(opts.respectPrivacySignals, 'respectPrivacySignals', true, caller),
  };
}

function buildTrackerConfig(opts: TrackerOptions, caller: string): TrackerConfig {
  const trackingCode = resolveTrackingCode(opts.trackingCode, caller);
  const host = resolveHost(opts.host, caller);
  const transport = resolveTransport(opts.transport, caller);
  const reporter = new Reporter(resolveLogger(opts.logger, caller));
  return {
    trackingCode,
    endpoint: `${host}/e/${trackingCode}`,
    siteUrl: resolveSiteUrl(opts.siteUrl, caller),
    concurrency: resolveConcurrency(opts.concurrency, caller),
    maxConcurrency: integer(
      opts.maxConcurrency,
      'maxConcurrency',
      DEFAULT_MAX_CONCURRENCY,
      1,
      MAX_CONNECTIONS,
      caller,
    ),
    maxQueueSize: integer(opts.maxQueueSize, 'maxQueueSize', 10_000, 0, 10_000_000, caller),
    timeoutMs: integer(opts.timeout, 'timeout', 5000, 1, 600_000, caller),
    maxRetries: integer(opts.maxRetries, 'maxRetries', 3, 0, 100, caller),
    retryDelayMs: integer(opts.retryDelay, 'retryDelay', 500, 0, 600_000, caller),
    maxRetryDelayMs: integer(opts.maxRetryDelay, 'maxRetryDelay', 30_000, 0, 3_600_000, caller),
    visitorRateLimit: bool(opts.visitorRateLimit, 'visitorRateLimit', true, caller),
    globalRateLimit: resolveGlobalRateLimit(opts.globalRateLimit, caller),
    anonymizeIp: bool(opts.anonymizeIp, 'anonymizeIp', false, caller),
    reporter,
    transport,
    proxy: resolveProxy(
      opts.proxy,
      host,
      transport !== undefined,
      caller,
      process.env,
      (code, text) => reporter.warn(code, text),
    ),
    ...resolveDelivery(opts, trackingCode, transport, caller),
    workerNice: integer(opts.workerNice, 'workerNice', DEFAULT_WORKER_NICE, 0, 19, caller),
  };
}

/** Where delivery runs, and its outbox: a Redis client object keeps it on the main thread. */
function resolveDelivery(
  opts: TrackerOptions,
  trackingCode: string,
  transport: Transport | undefined,
  caller: string,
): { worker: boolean; outbox: OutboxConfig | undefined } {
  const outbox = resolveOutbox(opts.outbox, trackingCode, caller);
  const clientObject = outbox?.kind === 'redis' && typeof outbox.redis !== 'string';
  if (clientObject && opts.worker === true) {
    throw new TypeError(
      `zenovay-express: ${caller}() got \`worker: true\` and a Redis client object as \`outbox.redis\`. ` +
        'A client cannot reach the delivery worker: pass a redis:// URL instead, or drop `worker` (delivery then runs on the main thread).',
    );
  }
  const worker = clientObject
    ? bool(opts.worker, 'worker', false, caller)
    : resolveWorker(opts.worker, transport, caller);
  return { worker, outbox };
}

function resolveConcurrency(value: unknown, caller: string): number | 'auto' {
  if (value === undefined || value === 'auto') return 'auto';
  if (
    typeof value === 'number' &&
    Number.isInteger(value) &&
    value >= 1 &&
    value <= MAX_CONNECTIONS
  ) {
    return value;
  }
  throw new TypeError(
    `zenovay-express: ${caller}() option \`concurrency\` must be 'auto' (the default: the limit ` +
      `adapts to the endpoint) or a whole number from 1 to ${MAX_CONNECTIONS} (a fixed limit), got ${describe(value)}.`,
  );
}

function resolveWorker(value: unknown, transport: Transport | undefined, caller: string): boolean {
  const worker = bool(value, 'worker', transport === undefined, caller);
  if (worker && transport !== undefined) {
    throw new TypeError(
      `zenovay-express: ${caller}() got \`worker: true\` and a custom \`transport\`. A transport's ` +
        'functions cannot run on the delivery worker: drop `worker` (a custom transport sends from the main thread).',
    );
  }
  return worker;
}

function resolveTrackingCode(value: unknown, caller: string): string {
  const fromEnv = process.env[TRACKING_CODE_ENV];
  const code = value ?? (fromEnv === '' ? undefined : fromEnv);
  if (code === undefined) {
    throw new TypeError(
      `zenovay-express: ${caller}() needs a tracking code. Pass { trackingCode: 'YOUR_CODE' } ` +
        `or set the ${TRACKING_CODE_ENV} environment variable (the code is the ` +
        '`data-tracking-code` of your Zenovay script).',
    );
  }
  if (typeof code !== 'string' || !TRACKING_CODE_PATTERN.test(code)) {
    const source = value === undefined ? TRACKING_CODE_ENV : '`trackingCode`';
    throw new TypeError(
      `zenovay-express: ${source} must be 1-64 characters of A-Z, a-z, 0-9, _ and -, ` +
        `got ${describe(code)}. Copy the \`data-tracking-code\` of your Zenovay script exactly.`,
    );
  }
  return code;
}

function resolveHost(value: unknown, caller: string): string {
  if (value === undefined) return DEFAULT_HOST;
  const url = parseHttpUrl(value, 'host', "'https://api.zenovay.com'", caller);
  if (url.search || url.hash) {
    throw new TypeError(
      `zenovay-express: ${caller}() option \`host\` must not have a query or fragment, got ${describe(value)}.`,
    );
  }
  return url.origin + url.pathname.replace(/\/+$/, '');
}

function resolveSiteUrl(value: unknown, caller: string): string | undefined {
  if (value === undefined) return undefined;
  const url = parseHttpUrl(value, 'siteUrl', "'https://shop.example'", caller);
  if (url.search || url.hash) {
    throw new TypeError(
      `zenovay-express: ${caller}() option \`siteUrl\` must be an origin like 'https://shop.example' ` +
        `without query or fragment, got ${describe(value)}.`,
    );
  }
  return url.origin + url.pathname.replace(/\/+$/, '');
}

function parseHttpUrl(value: unknown, name: string, example: string, caller: string): URL {
  let url: URL | undefined;
  if (typeof value === 'string') {
    try {
      url = new URL(value);
    } catch {
      url = undefined;
    }
  }
  if (!url || (url.protocol !== 'https:' && url.protocol !== 'http:')) {
    throw new TypeError(
      `zenovay-express: ${caller}() option \`${name}\` must be an http(s) URL such as ${example}, got ${describe(value)}.`,
    );
  }
  return url;
}

function resolveLogger(value: unknown, caller: string): Logger {
  if (value === undefined) return consoleLogger;
  if (value === false) return {};
  if (typeof value !== 'object' || value === null) {
    throw new TypeError(
      `zenovay-express: ${caller}() option \`logger\` must be an object with debug/info/warn/error ` +
        `methods (console works) or false, got ${describe(value)}.`,
    );
  }
  for (const level of ['debug', 'info', 'warn', 'error'] as const) {
    const fn = (value as Record<string, unknown>)[level];
    if (fn !== undefined && typeof fn !== 'function') {
      throw new TypeError(
        `zenovay-express: ${caller}() option \`logger.${level}\` must be a function, got ${describe(fn)}.`,
      );
    }
  }
  const logger = value as Logger;
  // Bind so that `console` and class-based loggers keep their `this`.
  return {
    debug: logger.debug?.bind(logger),
    info: logger.info?.bind(logger),
    warn: logger.warn?.bind(logger),
    error: logger.error?.bind(logger),
  };
}

function resolveTransport(value: unknown, caller: string): Transport | undefined {
  if (value === undefined) return undefined;
  if (
    typeof value !== 'object' ||
    value === null ||
    typeof (value as Transport).send !== 'function'
  ) {
    throw new TypeError(
      `zenovay-express: ${caller}() option \`transport\` must be an object with a send(request, signal) method, got ${describe(value)}.`,
    );
  }
  return value as Transport;
}

function checkTracker(value: unknown): Tracker {
  const t = value as Partial<Tracker> | null;
  if (
    typeof t !== 'object' ||
    t === null ||
    typeof t.trackEvent !== 'function' ||
    typeof t.trackPageview !== 'function' ||
    typeof t.flush !== 'function' ||
    typeof t.close !== 'function' ||
    typeof t.stats !== 'function'
  ) {
    throw new TypeError(
      `zenovay-express: analytics() option \`tracker\` must be a tracker from createTracker(), got ${describe(value)}.`,
    );
  }
  return t as Tracker;
}

function resolveTrust(value: unknown): TrustFunction | undefined {
  if (value === undefined) return undefined;
  try {
    return compileTrust(value as TrustProxy);
  } catch (error) {
    throw new TypeError(
      `zenovay-express: analytics() option \`trustProxy\` must be true/false, a hop count, 'loopback', ` +
        `'linklocal', 'uniquelocal', an IP/CIDR (string or array) or (addr, hop) => boolean; ` +
        `got ${describe(value)} (${(error as Error).message}).`,
      { cause: error },
    );
  }
}

function resolveGlobalRateLimit(
  value: unknown,
  caller: string,
): { limit: number; interval: number } | undefined {
  if (value === undefined) return undefined;
  const v = value as { limit?: unknown; interval?: unknown } | null;
  if (
    typeof v === 'object' &&
    v !== null &&
    Object.keys(v).every((k) => k === 'limit' || k === 'interval') &&
    Number.isInteger(v.limit) &&
    (v.limit as number) >= 1 &&
    Number.isInteger(v.interval) &&
    (v.interval as number) >= 1
  ) {
    return { limit: v.limit as number, interval: v.interval as number };
  }
  throw new TypeError(
    `zenovay-express: ${caller}() option \`globalRateLimit\` must be { limit, interval } with whole ` +
      `numbers >= 1 (requests per milliseconds), e.g. { limit: 60, interval: 10000 }; got ${describe(value)}.`,
  );
}

const HEADER_NAME = /^[A-Za-z0-9!#$%&'*+.^_`|~-]+$/;

function resolveIpHeader(value: unknown): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value === 'string' && HEADER_NAME.test(value)) {
    const name = value.toLowerCase();
    if (name === 'x-forwarded-for' || name === 'forwarded') {
      throw new TypeError(
        `zenovay-express: analytics() option \`ipHeader\` is for single-value headers such as ` +
          `'cf-connecting-ip'; for ${value} use \`trustProxy\` (or Express's 'trust proxy'), which reads it safely.`,
      );
    }
    return name;
  }
  throw new TypeError(
    `zenovay-express: analytics() option \`ipHeader\` must be a header name such as 'cf-connecting-ip', ` +
      `got ${describe(value)}.`,
  );
}

function resolveQueryPolicy(value: unknown): QueryPolicy {
  if (value === undefined) return compileQueryList(['utm_*']);
  if (value === 'all') return { kind: 'all' };
  if (value === 'none') return { kind: 'none' };
  if (Array.isArray(value) && value.every((v) => typeof v === 'string' && v.length > 0)) {
    return compileQueryList(value as string[]);
  }
  throw new TypeError(
    `zenovay-express: analytics() option \`queryParams\` must be 'all', 'none' or an array of ` +
      `parameter names (a trailing * matches a prefix, e.g. ['utm_*', 'ref']), got ${describe(value)}.`,
  );
}

function compileQueryList(list: readonly string[]): QueryPolicy {
  const names = new Set<string>();
  const prefixes: string[] = [];
  for (const entry of list) {
    if (entry.endsWith('*')) prefixes.push(entry.slice(0, -1));
    else names.add(entry);
  }
  return { kind: 'list', names, prefixes };
}

function resolveSkipPaths(value: unknown): readonly PathPattern[] {
  if (value === undefined) return [];
  if (
    Array.isArray(value) &&
    value.every((p) => (typeof p === 'string' && p.startsWith('/')) || p instanceof RegExp)
  ) {
    // Copy, and drop the global/sticky flags whose lastIndex would make test() stateful.
    return value.map((p: PathPattern) =>
      p instanceof RegExp && (p.global || p.sticky)
        ? new RegExp(p.source, p.flags.replace(/[gy]/g, ''))
        : p,
    );
  }
  throw new TypeError(
    `zenovay-express: analytics() option \`skipPaths\` must be an array of path prefixes starting ` +
      `with '/' or RegExps, e.g. ['/admin', /^\\/preview\\//], got ${describe(value)}.`,
  );
}

function checkObject(value: unknown, caller: string): Record<string, unknown> {
  if (value === undefined) return {};
  if (typeof value === 'object' && value !== null && !Array.isArray(value)) {
    if (isRequestLike(value)) {
      throw new TypeError(
        `zenovay-express: ${caller} was called with a request. Call the factory: ` +
          `app.use(${caller}()) rather than app.use(${caller}).`,
      );
    }
    return value as Record<string, unknown>;
  }
  throw new TypeError(
    `zenovay-express: ${caller}() takes an options object, got ${describe(value)}.`,
  );
}

function isRequestLike(value: object): boolean {
  const v = value as Record<string, unknown>;
  return typeof v.headers === 'object' && typeof v.method === 'string' && 'socket' in v;
}

function checkKeys(opts: Record<string, unknown>, known: readonly string[], caller: string): void {
  for (const key of Object.keys(opts)) {
    if (known.includes(key)) continue;
    const suggestion = closest(key, known);
    throw new TypeError(
      `zenovay-express: ${caller}() got an unknown option \`${key}\`.` +
        (suggestion ? ` Did you mean \`${suggestion}\`?` : ` Known options: ${known.join(', ')}.`),
    );
  }
}

function bool(value: unknown, name: string, fallback: boolean, caller: string): boolean {
  if (value === undefined) return fallback;
  if (typeof value === 'boolean') return value;
  throw new TypeError(
    `zenovay-express: ${caller}() option \`${name}\` must be true or false, got ${describe(value)}.`,
  );
}

function integer(
  value: unknown,
  name: string,
  fallback: number,
  min: number,
  max: number,
  caller: string,
): number {
  if (value === undefined) return fallback;
  if (typeof value === 'number' && Number.isInteger(value) && value >= min && value <= max) {
    return value;
  }
  throw new TypeError(
    `zenovay-express: ${caller}() option \`${name}\` must be a whole number from ${min} to ${max}, got ${describe(value)}.`,
  );
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
function optionalFunction<F extends (...args: any[]) => unknown>(
  value: F | undefined,
  name: string,
  shape: string,
  caller: string,
): F | undefined {
  if (value === undefined) return undefined;
  if (typeof value === 'function') return value;
  throw new TypeError(
    `zenovay-express: ${caller}() option \`${name}\` must be a function ${shape}, got ${describe(value)}.`,
  );
}

/** `'abc' (string)`, `42 (number)`, `null`: how a bad value is shown in an error. */
export function describe(value: unknown): string {
  if (value === null) return 'null';
  if (value === undefined) return 'undefined';
  if (typeof value === 'string') return `${JSON.stringify(value.slice(0, 80))} (string)`;
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') {
    return `${String(value)} (${typeof value})`;
  }
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'function') return 'a function';
  return `an object`;
}

/** The known name closest to `key`, when it is close enough to be a likely typo. */
export function closest(key: string, known: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Infinity;
  const lower = key.toLowerCase();
  for (const candidate of known) {
    const d = editDistance(lower, candidate.toLowerCase());
    if (d < bestDistance) {
      bestDistance = d;
      best = candidate;
    }
  }
  return bestDistance <= Math.max(2, Math.floor(key.length / 3)) ? best : undefined;
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      current[j] = Math.min(previous[j]! + 1, current[j - 1]! + 1, previous[j - 1]! + cost);
    }
    previous = current;
  }
  return previous[b.length]!;
}
