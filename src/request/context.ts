/**
 * `req.analytics`: what the middleware knows about the visitor of one request. Each field is
 * worked out the first time something reads it (the middleware itself, or app code) and then
 * kept, so a request that is never tracked pays for none of it.
 */
import type { IncomingMessage } from 'node:http';
import type { AnalyticsConfig } from '../options.js';
import { isBotRequest } from './bots.js';
import { ipFromHeader, resolveClientIp } from './client-ip.js';
import { parseDevice, type DeviceInfo } from './device.js';
import { clientHintsOf, type ClientHints } from './forwarded-headers.js';
import { pageUrl, referrerUrl, requestOrigin } from './page-url.js';
import { trustFor, type TrustFunction } from './trust.js';

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
  /** Whether the visitor is a bot by the middleware's test (isbot and your `isBot`). */
  readonly isBot: boolean;
  /** Browser, OS and device type (ua-parser-js), parsed when first read. */
  readonly device: DeviceInfo;
}

type ContextConfig = Pick<
  AnalyticsConfig,
  'trust' | 'ipHeader' | 'siteUrl' | 'queryPolicy' | 'isBot'
>;

const UNSET = Symbol('unset');
/** Marks a RequestContext, whichever copy of the package made it. */
const CONTEXT_BRAND = Symbol.for('zenovay-express.context');

/** Whether `value` is a request context made by this package (any copy of it). */
export function isRequestContext(value: unknown): value is RequestContext {
  return (
    typeof value === 'object' &&
    value !== null &&
    (value as { [CONTEXT_BRAND]?: unknown })[CONTEXT_BRAND] === true
  );
}
type Lazy<T> = T | typeof UNSET;

/**
 * One request's context. The request and the configuration are private fields, so that logging
 * `req.analytics` shows what it knows and never the request's cookies or authorization.
 */
export class RequestContext implements RequestAnalytics {
  readonly #req: IncomingMessage;
  readonly #config: ContextConfig;
  /** The socket's peer, read at once: it is gone when the connection closes before req.track. */
  readonly #peer: string | undefined;
  #trust: TrustFunction | undefined;
  #ip: Lazy<string | undefined> = UNSET;
  #url: Lazy<string | undefined> = UNSET;
  #referrer: Lazy<string | undefined> = UNSET;
  #isBot: Lazy<boolean> = UNSET;

  constructor(
    req: IncomingMessage,
    /** The request target (path and query) as the visitor sent it. */
    readonly target: string,
    config: ContextConfig,
  ) {
    this.#req = req;
    this.#config = config;
    this.#peer = req.socket?.remoteAddress;
  }

  get trust(): TrustFunction {
    return (this.#trust ??= trustFor(this.#req, this.#config.trust));
  }

  get ip(): string | undefined {
    if (this.#ip === UNSET) {
      const { ipHeader } = this.#config;
      const headers = this.#req.headers;
      const fromHeader = ipHeader ? ipFromHeader(headers[ipHeader]) : undefined;
      this.#ip = fromHeader ?? resolveClientIp(this.#peer, headers['x-forwarded-for'], this.trust);
    }
    return this.#ip;
  }

  get userAgent(): string | undefined {
    return this.#req.headers['user-agent'];
  }

  get url(): string | undefined {
    if (this.#url === UNSET) {
      const { siteUrl, queryPolicy } = this.#config;
      this.#url = pageUrl(this.#req, this.target, this.trust, siteUrl, queryPolicy);
    }
    return this.#url;
  }

  get referrer(): string | undefined {
    if (this.#referrer === UNSET) {
      this.#referrer = referrerUrl(this.#req.headers.referer, this.#config.queryPolicy);
    }
    return this.#referrer;
  }

  /**
   * The referrer when it is a page of this site (same origin as `siteUrl`, or as the request):
   * the page a form post or API call came from. Undefined for another site's page.
   */
  get sitePageReferrer(): string | undefined {
    const referrer = this.referrer;
    if (referrer === undefined) return undefined;
    const site = this.#config.siteUrl ?? requestOrigin(this.#req, this.trust);
    if (site === undefined) return undefined;
    return referrer === site || referrer.startsWith(`${site}/`) || referrer.startsWith(`${site}?`)
      ? referrer
      : undefined;
  }

  get isBot(): boolean {
    if (this.#isBot === UNSET) this.#isBot = isBotRequest(this.userAgent, this.#config.isBot);
    return this.#isBot;
  }

  get device(): DeviceInfo {
    return parseDevice(this.userAgent);
  }

  get clientHints(): ClientHints | undefined {
    return clientHintsOf(this.#req.headers);
  }

  /** See {@link isRequestContext}. */
  get [CONTEXT_BRAND](): true {
    return true;
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
