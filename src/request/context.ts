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
type Lazy<T> = T | typeof UNSET;

export class RequestContext implements RequestAnalytics {
  private _trust: TrustFunction | undefined;
  private _ip: Lazy<string | undefined> = UNSET;
  private _url: Lazy<string | undefined> = UNSET;
  private _referrer: Lazy<string | undefined> = UNSET;
  private _isBot: Lazy<boolean> = UNSET;

  constructor(
    private readonly req: IncomingMessage,
    /** The request target (path and query) as the visitor sent it. */
    readonly target: string,
    private readonly config: ContextConfig,
  ) {}

  get trust(): TrustFunction {
    return (this._trust ??= trustFor(this.req, this.config.trust));
  }

  get ip(): string | undefined {
    if (this._ip === UNSET) {
      const { ipHeader } = this.config;
      const fromHeader = ipHeader ? ipFromHeader(this.req.headers[ipHeader]) : undefined;
      this._ip = fromHeader ?? resolveClientIp(this.req, this.trust);
    }
    return this._ip;
  }

  get userAgent(): string | undefined {
    return this.req.headers['user-agent'];
  }

  get url(): string | undefined {
    if (this._url === UNSET) {
      const { siteUrl, queryPolicy } = this.config;
      this._url = pageUrl(this.req, this.target, this.trust, siteUrl, queryPolicy);
    }
    return this._url;
  }

  get referrer(): string | undefined {
    if (this._referrer === UNSET) {
      this._referrer = referrerUrl(this.req.headers.referer, this.config.queryPolicy);
    }
    return this._referrer;
  }

  /**
   * The referrer when it is a page of this site (same origin as `siteUrl`, or as the request):
   * the page a form post or API call came from. Undefined for another site's page.
   */
  get sitePageReferrer(): string | undefined {
    const referrer = this.referrer;
    if (referrer === undefined) return undefined;
    const site = this.config.siteUrl ?? requestOrigin(this.req, this.trust);
    if (site === undefined) return undefined;
    return referrer === site || referrer.startsWith(`${site}/`) || referrer.startsWith(`${site}?`)
      ? referrer
      : undefined;
  }

  get isBot(): boolean {
    if (this._isBot === UNSET) this._isBot = isBotRequest(this.userAgent, this.config.isBot);
    return this._isBot;
  }

  get device(): DeviceInfo {
    return parseDevice(this.userAgent);
  }

  get clientHints(): ClientHints | undefined {
    return clientHintsOf(this.req.headers);
  }

  /** Plain data for `console.log` and `JSON.stringify`: the lazy fields, resolved. */
  toJSON(): Omit<RequestAnalytics, 'device'> {
    return {
      ip: this.ip,
      userAgent: this.userAgent,
      url: this.url,
      referrer: this.referrer,
      isBot: this.isBot,
    };
  }
}
