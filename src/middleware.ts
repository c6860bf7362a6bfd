/**
 * `analytics()`: the Express/Connect middleware. Attaches `req.track`, decides at response
 * finish whether the request was a pageview, and hands plain visitor data to the tracker.
 * Nothing here throws into the app or waits on the network.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { TLSSocket } from 'node:tls';
import { describe, resolveAnalyticsOptions, type AnalyticsOptions } from './options.js';
import {
  ZenovayTracker,
  type EventData,
  type Tracker,
  type Visitor,
  type WireEvent,
} from './tracker.js';
import { isPrivateIp } from './request/client-ip.js';
import { attach, findContext, reattach } from './request/attach.js';
import { onResponseFinished, watchServerResponses } from './request/finish.js';
import { RequestContext, type RequestAnalytics } from './request/context.js';
import { pathOf, requestTarget, withQueryPolicy } from './request/page-url.js';
import {
  isApiPath,
  isAssetPath,
  requestSkipReason,
  responseSkipReason,
  visitorSkipReason,
} from './request/pageview-rules.js';

/** Per-call options of `req.track`. */
export interface TrackOptions {
  /**
   * The page the event happened on (absolute, or a path resolved on `siteUrl` or the request's
   * origin). Default: the request's own URL for a page `GET`; otherwise the `Referer` (query
   * policy applied), the page a form post or API call came from. With `siteUrl` set, a
   * `Referer` on another host is not used (its scheme and port do not matter) and `siteUrl`
   * fills the `url` when no `Referer` is used. Without `siteUrl`, the `Referer` is used as it
   * is (the request's own origin is no test of it behind a proxy), and an event without one has
   * no `url`.
   */
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
    /**
     * What zenovay-express knows of this request's visitor (added by `analytics()`): IP, user
     * agent, page URL, referrer, bot verdict, device. Fields are worked out when first read.
     */
    analytics: RequestAnalytics;
  }
}

/** Creates the analytics middleware. Throws on bad options. */
export function analytics(options?: AnalyticsOptions): AnalyticsMiddleware {
  const config = resolveAnalyticsOptions(options);
  const tracker: Tracker = config.tracker ?? new ZenovayTracker(config.trackerConfig!);
  const ownTracker = tracker instanceof ZenovayTracker;
  const { reporter } = config;
  let checkPrivateIp = config.production;
  const fastPageviews = ownTracker && config.beforeSend === undefined;

  function onFinish(req: IncomingMessage, res: ServerResponse, context: RequestContext): void {
    try {
      const reason = responseSkipReason(req, res, config);
      if (reason !== null) {
        if (reporter.debugEnabled) explain(context, `${reason} (${res.statusCode})`);
        return;
      }
      // The page's URL is this origin and the request target, so it is known exactly when this is.
      const origin = config.siteUrl ?? context.origin;
      if (origin === undefined) {
        reporter.warn(
          'ZENOVAY_NO_HOST',
          'a page request had no valid Host header, so its URL is unknown and no pageview was sent. ' +
            'Set the `siteUrl` option to your public origin.',
        );
        return;
      }
      if (fastPageviews) {
        // Our own tracker and no beforeSend: hand over the parts, for delivery to build.
        const ip = context.ip;
        if (checkPrivateIp && ip !== undefined) warnIfPrivate(ip);
        (tracker as ZenovayTracker).sendPageview(
          config.queryPolicy,
          origin,
          context.target,
          ip,
          context.headers,
        );
        return;
      }
      const event: WireEvent = { type: 'pageview', url: context.url };
      if (context.referrer !== undefined) event.referrer = context.referrer;
      void send(event, context);
    } catch (error) {
      internalError(error);
    }
  }

  function track(
    context: RequestContext,
    name: string,
    data: EventData | undefined,
    callOptions: TrackOptions | undefined,
  ): Promise<boolean> {
    try {
      // The bot rule for events: crawlers, not HTTP client libraries (an app's purchase counts).
      const visitor = { isBot: config.skipBots && context.isTrackBot };
      const reason = visitorSkipReason(context.headers, visitor, config);
      if (reason !== null) {
        if (reporter.debugEnabled) explain(context, reason, `event '${String(name)}' not sent`);
        return Promise.resolve(false);
      }
      const path = pathOf(context.target);
      // A page GET happened on its own URL; a form post or API call on the page that made it.
      const isPage = context.method === 'GET' && !isApiPath(path) && !isAssetPath(path);
      // No page of this site: `siteUrl` stands in, also when a shared tracker has none of its own.
      let url = (isPage ? context.url : context.referringPage) ?? config.siteUrl;
      let referrer = isPage ? context.referrer : undefined;
      if (callOptions !== undefined && callOptions !== null) {
        // Given URLs get the same query policy as everything the middleware sends.
        if (callOptions.url !== undefined) {
          url = withQueryPolicy(absolutize(callOptions.url, context), config.queryPolicy);
        }
        if (callOptions.referrer !== undefined) {
          referrer = withQueryPolicy(callOptions.referrer, config.queryPolicy);
        }
      }
      // Built in the order of the endpoint's documented example; the tracker checks it.
      const event: WireEvent = { type: 'event' };
      if (url !== undefined) event.url = url;
      if (referrer !== undefined) event.referrer = referrer;
      event.name = name;
      if (data !== undefined) event.data = data;
      return send(event, context);
    } catch (error) {
      internalError(error);
      return Promise.resolve(false);
    }
  }

  /** beforeSend, the production private-IP check, then the tracker. */
  function send(original: WireEvent, context: RequestContext): Promise<boolean> {
    let event: WireEvent | null = original;
    if (config.beforeSend) {
      event = config.beforeSend(original, context);
      if (event === null) return Promise.resolve(false);
      if (typeof event !== 'object' || (event.type !== 'pageview' && event.type !== 'event')) {
        reporter.warn(
          'ZENOVAY_BEFORE_SEND',
          `beforeSend must return the event (changed or not) or null, got ${describe(event)}; the event was not sent.`,
        );
        return Promise.resolve(false);
      }
    }
    const visitor: Visitor = {
      url: event.url,
      referrer: event.referrer,
      userAgent: context.userAgent,
      ip: context.ip,
      clientHints: context.clientHints,
    };
    if (checkPrivateIp && visitor.ip !== undefined) warnIfPrivate(visitor.ip);
    const sent =
      event.type === 'pageview'
        ? tracker.trackPageview(event.url as string, visitor)
        : tracker.trackEvent(event.name as string, event.data, visitor);
    // Our tracker never rejects; one the app brought might.
    return ownTracker ? sent : Promise.resolve(sent).catch(() => false);
  }

  /** Once, in production: a private visitor IP means an untrusted proxy in front. */
  function warnIfPrivate(ip: string): void {
    if (!isPrivateIp(ip)) return;
    checkPrivateIp = false;
    reporter.warn(
      'ZENOVAY_PRIVATE_IP',
      `the visitor IP is ${ip}, a private or loopback address, so Zenovay cannot locate ` +
        "visitors. The app is most likely behind a proxy that is not trusted: set Express's " +
        "app.set('trust proxy', ...) or the `trustProxy` option (or `ipHeader` for platforms " +
        'such as Cloudflare) to match your setup.',
    );
  }

  function absolutize(url: string, context: RequestContext): string {
    if (typeof url !== 'string' || !url.startsWith('/') || url.startsWith('//')) return url;
    const origin = config.siteUrl ?? context.origin;
    return origin === undefined ? url : origin + url;
  }

  function explain(context: RequestContext, why: string, what = 'not a pageview'): void {
    reporter.debug(`${what}: ${why}: ${context.method ?? '?'} ${pathOf(context.target)}`);
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
    try {
      // Each read of an Express request's own fields is slow (about 0.3 µs): once each.
      const raw = req.rawHeaders;
      const socket = req.socket as TLSSocket | undefined;
      // Seen already (mounted twice, or another copy of the package): leave it to the first.
      const seen = findContext(req, raw, socket);
      if (seen !== undefined) {
        reattach(req, seen);
      } else {
        const headers = req.headers;
        const context = new RequestContext(req, headers, socket, requestTarget(req), config, track);
        attach(req, raw, socket, context);
        const reason = requestSkipReason(
          context.method,
          pathOf(context.target),
          headers,
          context,
          config,
        );
        if (reason === null) onResponseFinished(req, res, context, onFinish);
        else if (reporter.debugEnabled) explain(context, reason);
      }
    } catch (error) {
      internalError(error);
    }
    next();
  } as AnalyticsMiddleware;
  // Node's server channels, while this middleware's own tracker is open (finish.ts).
  const unwatch = watchServerResponses();
  if (ownTracker) (tracker as ZenovayTracker).onClose(unwatch);
  Object.defineProperty(middleware, 'tracker', { value: tracker, enumerable: true });
  return middleware;
}
