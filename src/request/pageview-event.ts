/**
 * A middleware pageview's wire form, its JSON body and the visitor headers it forwards, built
 * from strings the request thread has already read. Pure and free of any request object, so
 * that the delivery worker can build it: the request thread only hands the strings over.
 */
import type { QueryPolicy } from '../options.js';
import { forwardedHeaders } from './forwarded-headers.js';
import { applyQueryPolicy, referrerUrl } from './page-url.js';

/** Largest event accepted, as JSON. */
export const MAX_EVENT_BYTES = 32 * 1024;

/**
 * What a pageview is made of, each `''` when absent: the origin (`siteUrl`, or the request's
 * checked one), the request target, the visitor's IP (normalised), and the raw `Referer`,
 * `User-Agent` and client hints. This order is also the order they cross to the worker in.
 */
export interface PageviewParts {
  origin: string;
  target: string;
  ip: string;
  referer: string;
  userAgent: string;
  secChUa: string;
  secChUaMobile: string;
  secChUaPlatform: string;
}

/** The request headers a pageview reads: only these five, whatever else the object holds. */
export type PageviewHeaders = Readonly<
  Partial<
    Record<
      'referer' | 'user-agent' | 'sec-ch-ua' | 'sec-ch-ua-mobile' | 'sec-ch-ua-platform',
      string | string[]
    >
  >
>;

/** The parts of a pageview from what the middleware read; a header that is not a string is absent. */
export function pageviewParts(
  origin: string,
  target: string,
  ip: string | undefined,
  headers: PageviewHeaders,
): PageviewParts {
  return {
    origin,
    target,
    ip: ip ?? '',
    referer: text(headers.referer),
    userAgent: text(headers['user-agent']),
    secChUa: text(headers['sec-ch-ua']),
    secChUaMobile: text(headers['sec-ch-ua-mobile']),
    secChUaPlatform: text(headers['sec-ch-ua-platform']),
  };
}

/** A header's value when it is one string; `''` otherwise. */
export function text(value: string | string[] | undefined): string {
  return typeof value === 'string' ? value : '';
}

/** A pageview ready to send, or how many bytes too large it was. */
export type BuiltPageview =
  { body: string; headers: Record<string, string> } | { tooLarge: number };

/**
 * The body and headers of a pageview: the URL and the referrer with the query policy applied,
 * the user agent and client hints cleaned, the IP anonymised when asked.
 */
export function buildPageview(
  parts: PageviewParts,
  policy: QueryPolicy,
  anonymize: boolean,
): BuiltPageview {
  const url = parts.origin + applyQueryPolicy(parts.target, policy);
  const body = pageviewJson(url, referrerUrl(parts.referer, policy));
  const bytes = jsonBytesOver(body);
  if (bytes !== undefined) return { tooLarge: bytes };
  const hints =
    parts.secChUa === '' && parts.secChUaMobile === '' && parts.secChUaPlatform === ''
      ? undefined
      : {
          'sec-ch-ua': parts.secChUa,
          'sec-ch-ua-mobile': parts.secChUaMobile,
          'sec-ch-ua-platform': parts.secChUaPlatform,
        };
  const headers = forwardedHeaders(
    parts.userAgent,
    parts.ip === '' ? undefined : parts.ip,
    hints,
    anonymize,
    true,
  );
  return { body, headers };
}

/** The size of a JSON body past {@link MAX_EVENT_BYTES}, in bytes; undefined when it fits. */
export function jsonBytesOver(body: string): number | undefined {
  // UTF-8 takes at most 3 bytes per UTF-16 unit: most bodies need no count.
  if (body.length <= MAX_EVENT_BYTES / 3) return undefined;
  const bytes = Buffer.byteLength(body);
  return bytes <= MAX_EVENT_BYTES ? undefined : bytes;
}

/** The warning for a body past {@link MAX_EVENT_BYTES}. */
export function tooLargeMessage(what: string, bytes: number): string {
  return `${what} is ${bytes} bytes of JSON, more than the ${MAX_EVENT_BYTES} allowed: send less data.`;
}

/** What a JSON string must escape, and surrogates (escaped when lone): JSON.stringify handles those. */
// eslint-disable-next-line no-control-regex
const JSON_ESCAPES = /["\\\u0000-\u001f\ud800-\udfff]/;

/**
 * A pageview's body: the very text `JSON.stringify({ type, url, referrer })` makes, written
 * directly when neither string needs escaping (nearly always): no object, no serialiser.
 */
export function pageviewJson(url: string, referrer: string | undefined): string {
  if (JSON_ESCAPES.test(url) || (referrer !== undefined && JSON_ESCAPES.test(referrer))) {
    return JSON.stringify(
      referrer === undefined ? { type: 'pageview', url } : { type: 'pageview', url, referrer },
    );
  }
  return referrer === undefined
    ? `{"type":"pageview","url":"${url}"}`
    : `{"type":"pageview","url":"${url}","referrer":"${referrer}"}`;
}
