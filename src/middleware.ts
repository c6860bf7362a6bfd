/**
 * `analytics()`: the Express/Connect middleware. Attaches `req.track`, decides at response
 * finish whether the request was a pageview, and hands plain visitor data to the tracker.
 * Nothing here throws into the app or waits on the network.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { resolveAnalyticsOptions, type AnalyticsConfig, type AnalyticsOptions } from './options.js';
import { ZenovayTracker, type EventData, type Tracker, type Visitor } from './tracker.js';
import { resolveClientIp } from './request/client-ip.js';
import { clientHintsOf } from './request/forwarded-headers.js';
import { pageUrl, pathOf, referrerUrl, requestOrigin, requestTarget } from './request/page-url.js';
import {
  isApiPath,
  isAssetPath,
  requestSkipReason,
  responseSkipReason,
  visitorSkipReason,
} from './request/pageview-rules.js';
import { trustFor, type TrustFunction } from './request/trust.js';

/** Per-call options of `req.track`. */
export interface TrackOptions {
  /** The page the event happened on (absolute, or a path). Default: the page the visitor was on. */
  url?: string;
  /** The page before it. */
  referrer?: string;
}

/** `req.track(name, data?, options?)`: resolves true once the endpoint accepted the event. */
export type TrackFunction = (
  name: string,
  data?: EventData,
  options?: TrackOptions,
) => Promise<boolean>;

export interface AnalyticsMiddleware {
  (req: IncomingMessage, res: ServerResponse, next: (error?: unknown) => void): void;
  /** The tracker behind the middleware: `flush()`, `close()`, `stats()`. */
  readonly tracker: Tracker;
}

declare module 'http' {
  interface IncomingMessage {
    /**
     * Records a custom event for this visitor (added by zenovay-express's `analytics()`).
     * Never rejects: false when filtered (bot, privacy signal), invalid, dropped or failed.
     */
    track: TrackFunction;
  }
}

/** Marks a request the middleware has seen, shared across instances and copies of the package. */
const SEEN = Symbol.for('zenovay-express.seen');

type SeenRequest = IncomingMessage & { [SEEN]?: true };

/** Creates the analytics middleware. Throws on bad options. */
export function analytics(options?: AnalyticsOptions): AnalyticsMiddleware {
  const config = resolveAnalyticsOptions(options);
  const tracker: Tracker = config.tracker ?? new ZenovayTracker(config.trackerConfig!);
  const { reporter } = config;

  function onFinish(req: IncomingMessage, res: ServerResponse, target: string): void {
    try {
      const reason = responseSkipReason(req, res, config.skip);
      if (reason !== null) {
        if (reporter.debugEnabled) explain(req, target, `${reason} (${res.statusCode})`);
        return;
      }
      const trust = trustFor(req, config.trust);
      const url = pageUrl(req, target, trust, config.siteUrl, config.queryPolicy);
      if (url === undefined) {
        reporter.warn(
          'ZENOVAY_NO_HOST',
          'a page request had no valid Host header, so its URL is unknown and no pageview was sent. ' +
            'Set the `siteUrl` option to your public origin.',
        );
        return;
      }
      void tracker.trackPageview(url, visitorOf(req, trust, config));
    } catch (error) {
      internalError(error);
    }
  }

  function track(
    req: IncomingMessage,
    target: string,
    name: string,
    data: EventData | undefined,
    callOptions: TrackOptions | undefined,
  ): Promise<boolean> {
    try {
      const reason = visitorSkipReason(req.headers, config);
      if (reason !== null) {
        if (reporter.debugEnabled) explain(req, target, reason, `event '${String(name)}'`);
        return Promise.resolve(false);
      }
      const trust = trustFor(req, config.trust);
      const visitor = visitorOf(req, trust, config);
      const path = pathOf(target);
      const isPage = req.method === 'GET' && !isApiPath(path) && !isAssetPath(path);
      // A page GET happened on its own URL; a form post or API call on the page that made it.
      let url = isPage
        ? pageUrl(req, target, trust, config.siteUrl, config.queryPolicy)
        : visitor.referrer;
      if (!isPage) visitor.referrer = undefined;
      if (callOptions !== undefined && callOptions !== null) {
        if (callOptions.url !== undefined) url = absolutize(req, callOptions.url, trust);
        if (callOptions.referrer !== undefined) visitor.referrer = callOptions.referrer;
      }
      visitor.url = url;
      return tracker.trackEvent(name, data, visitor);
    } catch (error) {
      internalError(error);
      return Promise.resolve(false);
    }
  }

  function absolutize(req: IncomingMessage, url: string, trust: TrustFunction): string {
    if (typeof url !== 'string' || !url.startsWith('/') || url.startsWith('//')) return url;
    const origin = config.siteUrl ?? requestOrigin(req, trust);
    return origin === undefined ? url : origin + url;
  }

  function explain(
    req: IncomingMessage,
    target: string,
    why: string,
    what = 'not a pageview',
  ): void {
    reporter.debug(`${what}: ${why}: ${req.method ?? '?'} ${pathOf(target)}`);
  }

  function internalError(error: unknown): void {
    reporter.error(
      'ZENOVAY_INTERNAL',
      `analytics failed on a request and was skipped; the response was not affected: ${(error as Error)?.stack ?? String(error)}`,
    );
  }

  const middleware = function zenovayAnalytics(
    req: IncomingMessage,
    res: ServerResponse,
    next: (error?: unknown) => void,
  ): void {
    const seen = req as SeenRequest;
    if (seen[SEEN] !== true) {
      seen[SEEN] = true;
      try {
        const target = requestTarget(req);
        const reason = requestSkipReason(req.method, pathOf(target), req.headers, config);
        req.track = (name, data, callOptions) => track(req, target, name, data, callOptions);
        if (reason === null) res.once('finish', () => onFinish(req, res, target));
        else if (reporter.debugEnabled) explain(req, target, reason);
      } catch (error) {
        internalError(error);
      }
    }
    next();
  } as AnalyticsMiddleware;
  Object.defineProperty(middleware, 'tracker', { value: tracker, enumerable: true });
  return middleware;
}

/** The visitor's forwardable data for this request. */
function visitorOf(req: IncomingMessage, trust: TrustFunction, config: AnalyticsConfig): Visitor {
  const referer = req.headers.referer;
  return {
    referrer: referrerUrl(referer, config.queryPolicy),
    userAgent: req.headers['user-agent'],
    ip: resolveClientIp(req, trust),
    clientHints: clientHintsOf(req.headers),
  };
}
