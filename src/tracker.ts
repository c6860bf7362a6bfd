/**
 * The tracker: checks and builds events, then hands them to delivery (a worker thread or the
 * in-thread engine). Shared by
 * `createTracker()` and `analytics()`; it never sees a request, only plain visitor data.
 */
import { randomUUID } from 'node:crypto';
import { MAX_TIMER_MS, type Delivery, type TrackerStats } from './delivery/delivery.js';
import { DeliveryEngine } from './delivery/engine.js';
import { createDefaultTransport } from './delivery/default-transport.js';
import { WorkerDelivery } from './delivery/worker-delivery.js';
import { engineStore } from './outbox/config.js';
import type { TrackerEventName, TrackerListener } from './delivery/events.js';
import {
  describe,
  resolveTrackerOptions,
  type QueryPolicy,
  type TrackerConfig,
  type TrackerOptions,
} from './options.js';
import type { Reporter } from './logger.js';
import { forwardedHeaders, type ClientHints } from './request/forwarded-headers.js';
import {
  buildPageview,
  jsonBytesOver,
  pageviewParts,
  tooLargeMessage,
  type PageviewHeaders,
} from './request/pageview-event.js';

/** Longest event name accepted. */
export const MAX_NAME_LENGTH = 256;
const DEFAULT_CLOSE_TIMEOUT_MS = 5000;
/** An absolute http(s) URL with a host and no white space or control characters anywhere. */
// eslint-disable-next-line no-control-regex
const ABSOLUTE_URL = /^https?:\/\/[^\s/?#\u0000-\u001f\u007f]+[^\s\u0000-\u001f\u007f]*$/i;
// eslint-disable-next-line no-control-regex
const CONTROL_CHARS = /[\u0000-\u001f\u007f]/;

/** Custom event properties: any JSON-serialisable object. */
export type EventData = Record<string, unknown>;

/** Who an event is about, as far as the caller knows. Everything is optional. */
export interface Visitor {
  /** The page the event happened on (absolute, or a path when `siteUrl` is set). */
  url?: string;
  /** The page before it. */
  referrer?: string;
  /** The visitor's `User-Agent`, forwarded for device detection. */
  userAgent?: string;
  /** The visitor's IP, forwarded as `X-Forwarded-For` for geolocation. */
  ip?: string;
  /** The visitor's user-agent client hints. */
  clientHints?: ClientHints;
}

/** The JSON body the endpoint receives. */
export interface WireEvent {
  type: 'pageview' | 'event';
  url?: string;
  referrer?: string;
  name?: string;
  data?: EventData;
}

export interface CloseOptions {
  /**
   * Milliseconds to wait for queued and in-flight events before dropping them (reason `closed`).
   * @default 5000
   */
  timeout?: number;
}

/** Sends pageviews and events. Its promises never reject. */
export interface Tracker {
  /** A custom event. Resolves true once the endpoint accepted it, false otherwise. */
  trackEvent(name: string, data?: EventData, visitor?: Visitor): Promise<boolean>;
  /** A pageview of `url` (absolute, or a path when `siteUrl` is set). */
  trackPageview(url: string, visitor?: Visitor): Promise<boolean>;
  /** Resolves when everything accepted so far is settled. */
  flush(): Promise<void>;
  /**
   * Stops intake, flushes, drops what is left at the timeout, releases sockets and timers.
   * Rejects only for a bad `timeout` (a TypeError).
   */
  close(options?: CloseOptions): Promise<void>;
  /** Counters; `enqueued = delivered + failed + dropped + queued + inFlight` at every moment. */
  stats(): TrackerStats;
  /** Subscribes to `error`, `drop`, `retry` or `circuit`. Optional: nothing is thrown without listeners. */
  on<K extends TrackerEventName>(name: K, listener: TrackerListener<K>): this;
  /** Unsubscribes a listener given to `on`. */
  off<K extends TrackerEventName>(name: K, listener: TrackerListener<K>): this;
}

/** Builds a standalone tracker (webhooks, jobs). Throws on bad options. */
export function createTracker(options?: TrackerOptions): Tracker {
  return new ZenovayTracker(resolveTrackerOptions(options));
}

export class ZenovayTracker implements Tracker {
  /** Where events go: a worker thread, or the in-thread engine. */
  readonly delivery: Delivery;
  private readonly reporter: Reporter;
  private readonly siteUrl: string | undefined;
  private readonly anonymizeIp: boolean;
  private readonly closeCallbacks: (() => void)[] = [];

  constructor(config: TrackerConfig) {
    this.reporter = config.reporter;
    this.siteUrl = config.siteUrl;
    this.anonymizeIp = config.anonymizeIp;
    const { transport, worker, reporter } = config;
    const engine = {
      endpoint: config.endpoint,
      concurrency: config.concurrency,
      maxConcurrency: config.maxConcurrency,
      proxy: config.proxy,
      maxQueueSize: config.maxQueueSize,
      timeoutMs: config.timeoutMs,
      maxRetries: config.maxRetries,
      retryDelayMs: config.retryDelayMs,
      maxRetryDelayMs: config.maxRetryDelayMs,
      visitorRateLimit: config.visitorRateLimit,
      globalRateLimit: config.globalRateLimit,
    };
    const { outbox } = config;
    this.delivery = worker
      ? new WorkerDelivery({
          config: {
            ...engine,
            anonymizeIp: config.anonymizeIp,
            outbox,
            workerNice: config.workerNice,
          },
          reporter,
        })
      : new DeliveryEngine({
          ...engine,
          reporter,
          transport: transport ?? createDefaultTransport(engine),
          outbox:
            outbox &&
            engineStore(outbox, reporter, randomUUID().slice(0, 24), (keys) =>
              (this.delivery as DeliveryEngine).outboxLost(keys),
            ),
        });
  }

  trackEvent(name: string, data?: EventData, visitor?: Visitor): Promise<boolean> {
    if (
      typeof name !== 'string' ||
      name.trim() === '' ||
      name.length > MAX_NAME_LENGTH ||
      CONTROL_CHARS.test(name)
    ) {
      return this.invalid(
        `trackEvent() needs a name that is a non-empty string of at most ${MAX_NAME_LENGTH} characters without control characters, got ${describe(name)}.`,
      );
    }
    if (data !== undefined && !isPlainObject(data)) {
      return this.invalid(
        `trackEvent('${name}') data must be a plain object such as { value: 9.99 }, got ${describe(data)}.`,
      );
    }
    const event: WireEvent = { type: 'event' };
    const url = this.eventUrl(visitor?.url);
    if (url === null)
      return this.invalid(`trackEvent('${name}') got a url that is not an http(s) URL.`);
    if (url !== undefined) event.url = url;
    this.addReferrer(event, visitor);
    event.name = name;
    if (data !== undefined) event.data = data;
    return this.send(event, visitor, `trackEvent('${name}')`);
  }

  trackPageview(url: string, visitor?: Visitor): Promise<boolean> {
    const absolute = typeof url === 'string' ? this.eventUrl(url) : null;
    if (!absolute) {
      return this.invalid(
        `trackPageview() needs an absolute http(s) URL${this.siteUrl ? ' or a path' : ' (or set `siteUrl` to pass paths)'}, got ${describe(url)}.`,
      );
    }
    const event: WireEvent = { type: 'pageview', url: absolute };
    this.addReferrer(event, visitor);
    return this.send(event, visitor, 'trackPageview()');
  }

  flush(): Promise<void> {
    return this.delivery.flush();
  }

  /** Called once, when `close()` is first called (the middleware lets go of what it holds then). */
  onClose(callback: () => void): void {
    this.closeCallbacks.push(callback);
  }

  close(options?: CloseOptions): Promise<void> {
    const timeout = options?.timeout ?? DEFAULT_CLOSE_TIMEOUT_MS;
    if (typeof timeout !== 'number' || !Number.isFinite(timeout) || timeout < 0) {
      return Promise.reject(
        new TypeError(
          `zenovay-express: close({ timeout }) must be a number of milliseconds >= 0, got ${describe(timeout)}.`,
        ),
      );
    }
    for (const callback of this.closeCallbacks.splice(0)) callback();
    // setTimeout fires at once past 2^31 - 1 ms: a longer wait is that long.
    return this.delivery.close(Math.min(timeout, MAX_TIMER_MS));
  }

  stats(): TrackerStats {
    return this.delivery.stats();
  }

  on<K extends TrackerEventName>(name: K, listener: TrackerListener<K>): this {
    this.delivery.events.on(name, listener);
    return this;
  }

  off<K extends TrackerEventName>(name: K, listener: TrackerListener<K>): this {
    this.delivery.events.off(name, listener);
    return this;
  }

  /**
   * The middleware's pageview, from the parts it has read: `origin` is a checked one (`siteUrl`
   * or the request's), `ip` a normalised one. No Visitor object, no promise (nobody awaits a
   * pageview). On the worker, the worker builds it; otherwise it is built here.
   */
  sendPageview(
    policy: QueryPolicy,
    origin: string,
    target: string,
    ip: string | undefined,
    headers: PageviewHeaders,
  ): void {
    const delivery = this.delivery;
    if (delivery instanceof WorkerDelivery) {
      delivery.submitPageview(policy, origin, target, ip, headers);
      return;
    }
    const built = buildPageview(
      pageviewParts(origin, target, ip, headers),
      policy,
      this.anonymizeIp,
    );
    if ('tooLarge' in built) void this.invalid(tooLargeMessage('a pageview', built.tooLarge));
    else delivery.submit(built.body, built.headers);
  }

  /** Serialises once, checks the size, and hands the event to the engine. */
  private send(event: WireEvent, visitor: Visitor | undefined, what: string): Promise<boolean> {
    const body = this.serialise(event, what);
    if (body === undefined) return Promise.resolve(false);
    const headers = forwardedHeaders(
      visitor?.userAgent,
      visitor?.ip,
      visitor?.clientHints,
      this.anonymizeIp,
    );
    // forwardedHeaders forwards one valid IP or none: a given IP that did not make it was bad.
    if (visitor?.ip !== undefined && headers['x-forwarded-for'] === undefined) {
      this.reporter.warn(
        'ZENOVAY_BAD_IP',
        `${what} got visitor.ip ${describe(visitor.ip)}, which is not an IP address; it is not forwarded.`,
      );
    }
    return new Promise<boolean>((resolve) =>
      this.delivery.submit(body, headers, (outcome) => resolve(outcome.kind === 'delivered')),
    );
  }

  /** The event as JSON, once; undefined (counted and reported as invalid) when it cannot be or is too large. */
  private serialise(event: WireEvent, what: string): string | undefined {
    let body: string;
    try {
      body = JSON.stringify(event);
    } catch (error) {
      void this.invalid(`${what} data cannot be serialised to JSON: ${(error as Error).message}.`);
      return undefined;
    }
    return this.tooLarge(body, what) ? undefined : body;
  }

  /** Whether the JSON is too large (then counted and reported as invalid). */
  private tooLarge(body: string, what: string): boolean {
    const bytes = jsonBytesOver(body);
    if (bytes === undefined) return false;
    void this.invalid(tooLargeMessage(what, bytes));
    return true;
  }

  private addReferrer(event: WireEvent, visitor: Visitor | undefined): void {
    const referrer = visitor?.referrer;
    if (typeof referrer === 'string' && referrer !== '') event.referrer = referrer;
  }

  /** An absolute URL for an event: as given, resolved on `siteUrl`, or `siteUrl` itself; null when invalid. */
  private eventUrl(url: string | undefined): string | undefined | null {
    if (url === undefined || url === '') return this.siteUrl;
    if (typeof url !== 'string') return null;
    if (this.siteUrl && url.startsWith('/') && !url.startsWith('//')) return this.siteUrl + url;
    return ABSOLUTE_URL.test(url) ? url : null;
  }

  private invalid(message: string): Promise<boolean> {
    this.reporter.warn('ZENOVAY_INVALID_EVENT', message);
    this.delivery.reject('invalid');
    return Promise.resolve(false);
  }
}

function isPlainObject(value: unknown): value is EventData {
  if (typeof value !== 'object' || value === null) return false;
  const proto = Object.getPrototypeOf(value) as unknown;
  return proto === Object.prototype || proto === null;
}
