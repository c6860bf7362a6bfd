/**
 * `req.analytics`: what the middleware knows about the visitor of one request. Each field is
 * worked out the first time something reads it (the middleware itself, or app code) and then
 * kept, so a request that is never tracked pays for none of it.
 */
import type { IncomingMessage } from 'node:http';
import type { TLSSocket } from 'node:tls';
import type { AnalyticsConfig } from '../options.js';
import { isBotRequest, isTrackBotRequest } from './bots.js';
import { ipFromHeader, resolveClientIp } from './client-ip.js';
import { parseDevice, type DeviceInfo } from './device.js';
import { clientHintsOf, type ClientHints } from './forwarded-headers.js';
import { originOf, pageUrl, referrerUrl } from './page-url.js';
import { trustFor, type TrustFunction } from './trust.js';
import type { TrackFunction, TrackOptions } from '../middleware.js';
import type { FinishHandler } from './finish.js';
import type { EventData } from '../tracker.js';

/** The resolved context of a request, as `req.analytics`. */
export interface RequestAnalytics {
  /** The visitor's IP under the trust-proxy setting (or `ipHeader`), normalised; undefined if unknown. */
  readonly ip: string | undefined;
  /** The visitor's `User-Agent`. */
  readonly userAgent: string | undefined;
  /** The absolute page URL with the query policy applied; undefined when the host is invalid. */
  readonly url: string | undefined;
  /** The `Referer` with the query policy applied; undefined when absent or invalid. */
  readonly referrer: string | undefined;
  /**
   * Whether the visitor is a bot by the pageview rule (isbot, then your `isBot`). `req.track`
   * uses a narrower rule, in which HTTP client libraries (okhttp, axios, curl, ...) are not
   * bots, so an event can be sent for a request where this is `true`.
   */
  readonly isBot: boolean;
  /** Browser, OS and device type (ua-parser-js), parsed when first read. */
  readonly device: DeviceInfo;
}

type ContextConfig = Pick<
  AnalyticsConfig,
  'trust' | 'ipHeader' | 'siteUrl' | 'queryPolicy' | 'isBot'
>;

const UNSET = Symbol('unset');
type Lazy<T> = T | typeof UNSET;

/** What `req.track` calls: the middleware's handler, given the request's context. */
export type TrackHandler = (
  context: RequestContext,
  name: string,
  data: EventData | undefined,
  options: TrackOptions | undefined,
) => Promise<boolean>;

/**
 * One request's context. The headers and the configuration are private fields, so that logging
 * `req.analytics` shows what it knows and never the request's cookies or authorization.
 *
 * It keeps no reference to the request itself. A request without a `rawHeaders` array finds
 * its context as its value in a `WeakMap` (attach.ts), and a value that points back to its key
 * keeps the key alive through V8's minor GCs: every such request, its response and their
 * buffers would be promoted to the old generation (`--trace-gc-nvp`: a bare
 * `weakMap.set(req, { req })` promoted 1.7 KB more per request than `weakMap.set(req, {})`).
 */
export class RequestContext implements RequestAnalytics {
  /** The request's prototype (an Express app's `app.request`), where its `app` is read. */
  readonly #prototype: object | null;
  readonly #method: string | undefined;
  /** The request's headers, read once: every read of an Express request's own fields is slow. */
  readonly #headers: IncomingMessage['headers'];
  readonly #config: ContextConfig;
  readonly #onTrack: TrackHandler;
  #track: TrackFunction | undefined;
  /** The socket's peer, read at once: it is gone when the connection closes before req.track. */
  readonly #peer: string | undefined;
  readonly #encrypted: boolean;
  #origin: Lazy<string | undefined> = UNSET;
  #trust: TrustFunction | undefined;
  #ip: Lazy<string | undefined> = UNSET;
  #url: Lazy<string | undefined> = UNSET;
  #referrer: Lazy<string | undefined> = UNSET;
  #isBot: Lazy<boolean> = UNSET;
  /** The middleware's handler, while it waits for the response to finish (finish.ts). */
  #finish: FinishHandler | undefined = undefined;

  constructor(
    req: IncomingMessage,
    /** `req.headers`, read by the caller. */
    headers: IncomingMessage['headers'],
    /** `req.socket`, read by the caller. */
    socket: TLSSocket | undefined,
    /** The request target (path and query) as the visitor sent it. */
    readonly target: string,
    config: ContextConfig,
    onTrack: TrackHandler,
  ) {
    this.#prototype = Object.getPrototypeOf(req) as object | null;
    this.#method = req.method;
    this.#headers = headers;
    this.#config = config;
    this.#onTrack = onTrack;
    this.#peer = socket?.remoteAddress;
    this.#encrypted = socket?.encrypted === true;
  }

  /** `req.track` for this request: made when first read, the same function after that. */
  get trackFunction(): TrackFunction {
    return (this.#track ??= (name, data, options) => this.#onTrack(this, name, data, options));
  }

  /** Leaves the middleware's finish handler here, for Node's server channel to call. */
  setFinish(handler: FinishHandler): void {
    this.#finish = handler;
  }

  /** The waiting finish handler, once: undefined when none waits or it was taken. */
  takeFinish(): FinishHandler | undefined {
    const handler = this.#finish;
    this.#finish = undefined;
    return handler;
  }

  /** The request's method. */
  get method(): string | undefined {
    return this.#method;
  }

  /** The request's headers, for the middleware's rules (not part of `RequestAnalytics`). */
  get headers(): IncomingMessage['headers'] {
    return this.#headers;
  }

  get trust(): TrustFunction {
    return (this.#trust ??= trustFor(this.#prototype, this.#config.trust));
  }

  get ip(): string | undefined {
    if (this.#ip === UNSET) {
      const { ipHeader } = this.#config;
      const headers = this.#headers;
      const fromHeader = ipHeader ? ipFromHeader(headers[ipHeader]) : undefined;
      this.#ip = fromHeader ?? resolveClientIp(this.#peer, headers['x-forwarded-for'], this.trust);
    }
    return this.#ip;
  }

  /** `proto://host` of the request under the trust setting; undefined when the host is invalid. */
  get origin(): string | undefined {
    if (this.#origin === UNSET) {
      this.#origin = originOf(this.#headers, this.#peer, this.#encrypted, this.trust);
    }
    return this.#origin;
  }

  get userAgent(): string | undefined {
    return this.#headers['user-agent'];
  }

  get url(): string | undefined {
    if (this.#url === UNSET) {
      const { siteUrl, queryPolicy } = this.#config;
      this.#url = pageUrl(siteUrl ?? this.origin, this.target, queryPolicy);
    }
    return this.#url;
  }

  get referrer(): string | undefined {
    if (this.#referrer === UNSET) {
      this.#referrer = referrerUrl(this.#headers.referer, this.#config.queryPolicy);
    }
    return this.#referrer;
  }

  /**
   * The page a form post or API call came from: the referrer, when `siteUrl` is set only if it
   * is on `siteUrl`'s host (any scheme or port: a proxy may have ended TLS or served another
   * port). Without `siteUrl` there is nothing to test it against: the request's own origin is
   * not the page's behind a proxy that ends TLS or rewrites `Host`, so the referrer is used as
   * it is.
   */
  get referringPage(): string | undefined {
    const referrer = this.referrer;
    const { siteUrl } = this.#config;
    if (referrer === undefined || siteUrl === undefined) return referrer;
    const host = hostnameOf(referrer);
    return host !== undefined && host === hostnameOf(siteUrl) ? referrer : undefined;
  }

  get isBot(): boolean {
    if (this.#isBot === UNSET) this.#isBot = isBotRequest(this.userAgent, this.#config.isBot);
    return this.#isBot;
  }

  /**
   * The bot verdict for `req.track`: crawlers, not HTTP client libraries; then the app's `isBot`.
   * Not kept: it is read once per `req.track` call, and a field would cost every request.
   */
  get isTrackBot(): boolean {
    return isTrackBotRequest(this.userAgent, this.#config.isBot);
  }

  get device(): DeviceInfo {
    return parseDevice(this.userAgent);
  }

  get clientHints(): ClientHints | undefined {
    return clientHintsOf(this.#headers);
  }

  /** Plain data for `JSON.stringify`: the lazy fields, resolved. */
  toJSON(): Omit<RequestAnalytics, 'device'> {
    return {
      ip: this.ip,
      userAgent: this.userAgent,
      url: this.url,
      referrer: this.referrer,
      isBot: this.isBot,
    };
  }

  /** What `console.log(req.analytics)` shows. */
  [Symbol.for('nodejs.util.inspect.custom')](): object {
    return { ...this.toJSON(), device: this.device };
  }
}

/**
 * The hostname of a URL as `referrerUrl` and the options leave it (the parser's form: lower
 * case, punycode), without a trailing dot; undefined when there is none.
 */
function hostnameOf(url: string): string | undefined {
  const m = /^[a-z][a-z0-9+.-]*:\/\/(?:[^@/?#]*@)?(\[[^\]/?#]*\]|[^:/?#]*)/i.exec(url);
  if (m === null || m[1] === '') return undefined;
  const host = m[1]!.toLowerCase();
  return host.endsWith('.') ? host.slice(0, -1) : host;
}
