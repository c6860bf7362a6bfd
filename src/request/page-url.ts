/**
 * The absolute URL of the page a request asked for, and the referrer, both with the query policy
 * applied so that tokens and e-mail addresses in query strings stay on the server.
 */
import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';
import type { QueryPolicy } from '../options.js';
import type { TrustFunction } from './trust.js';

/** A plausible `host[:port]`: letters, digits, dots, dashes, an IPv6 literal; nothing else. */
const HOST_PATTERN = /^(?:[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.?|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$/;

/**
 * The request target as the visitor sent it, mounted routers included: path and query, always
 * starting with '/'. An absolute-form target (`GET http://other.example/x`) gives its path only.
 */
export function requestTarget(req: IncomingMessage): string {
  const raw = (req as { originalUrl?: string }).originalUrl ?? req.url ?? '/';
  if (raw.startsWith('/')) return raw;
  try {
    const parsed = new URL(raw);
    return parsed.pathname + parsed.search;
  } catch {
    return '/';
  }
}

/** The path part of a request target (no query string). */
export function pathOf(target: string): string {
  const q = target.indexOf('?');
  return q === -1 ? target : target.slice(0, q);
}

/**
 * `https://shop.example/products/widget?utm_source=x`: the site's origin (`siteUrl`, or the
 * request's origin) and the request target with the query policy applied. Undefined when there
 * is no origin (the request's host was not a valid one).
 */
export function pageUrl(
  origin: string | undefined,
  target: string,
  policy: QueryPolicy,
): string | undefined {
  return origin === undefined ? undefined : origin + applyQueryPolicy(target, policy);
}

/**
 * `proto://host` as Express computes `req.protocol` and `req.host` under `trust proxy`, from the
 * request's headers, its socket's peer and whether the socket is TLS.
 */
export function originOf(
  headers: IncomingHttpHeaders,
  peer: string | undefined,
  encrypted: boolean,
  trust: TrustFunction,
): string | undefined {
  const trusted = peer !== undefined && trust(peer, 0);
  let proto = encrypted ? 'https' : 'http';
  let host = headers.host;
  if (trusted) {
    const fwdProto = firstValue(headers['x-forwarded-proto'])?.toLowerCase();
    if (fwdProto === 'https' || fwdProto === 'http') proto = fwdProto;
    const fwdHost = firstValue(headers['x-forwarded-host']);
    if (fwdHost) host = fwdHost;
  }
  if (!host) return undefined;
  // The same host and scheme request after request: checked and lowered once.
  if (host === lastHost && proto === lastProto) return lastOrigin;
  const origin = HOST_PATTERN.test(host) ? `${proto}://${host.toLowerCase()}` : undefined;
  lastHost = host;
  lastProto = proto;
  lastOrigin = origin;
  return origin;
}

/** The last origin {@link originOf} made, and what it was made from. */
let lastHost: string | undefined;
let lastProto: string | undefined;
let lastOrigin: string | undefined;

function firstValue(header: string | string[] | undefined): string | undefined {
  const value = Array.isArray(header) ? header[0] : header;
  if (value === undefined) return undefined;
  const comma = value.indexOf(',');
  return (comma === -1 ? value : value.slice(0, comma)).trim();
}

/**
 * A referrer that the URL parser would return unchanged: lower-case http(s) host, a port that is
 * not the default, a path and query of characters it leaves alone, no dot segments, no
 * credentials. Most referrers are like this, and skip the parser.
 */
const PLAIN_REFERRER =
  /^(https?):\/\/([a-z0-9-]+(?:\.[a-z0-9-]+)*)(:[1-9]\d{0,4})?(\/[A-Za-z0-9\-._~!$&()*+,;=:@%/]*)?(\?[A-Za-z0-9\-._~!$&()*+,;=:@%/?]*)?(?:#.*)?$/;

/** Hosts the parser rewrites: an IPv4 number in some form, or punycode it must check. */
const NUMERIC_OR_IDNA_HOST = /(?:^|\.)(?:\d+|0x[0-9a-f]*)$|xn--/;
/** Paths the parser rewrites: `.` and `..` segments, plain or percent-encoded. */
const DOT_SEGMENT = /\/\.|%2e/i;

/**
 * The referrer with the query policy applied; undefined when absent, empty, not http(s) or not a
 * URL at all.
 */
export function referrerUrl(header: string | undefined, policy: QueryPolicy): string | undefined {
  if (!header) return undefined;
  const plain = PLAIN_REFERRER.exec(header);
  if (
    plain !== null &&
    !NUMERIC_OR_IDNA_HOST.test(plain[2]!) &&
    !DOT_SEGMENT.test(plain[4] ?? '')
  ) {
    const [, scheme, host, port, path, query] = plain;
    const defaultPort = scheme === 'https' ? ':443' : ':80';
    if (port === undefined || (port !== defaultPort && Number(port.slice(1)) <= 65535)) {
      const origin = port === undefined ? `${scheme}://${host}` : `${scheme}://${host}${port}`;
      // A bare '?' is no query to the parser.
      const search = query === undefined || query === '?' ? '' : query;
      return origin + applyQueryPolicy((path ?? '/') + search, policy);
    }
  }
  return parsedReferrer(header, policy);
}

/** {@link referrerUrl} through the URL parser: every case. */
export function parsedReferrer(header: string, policy: QueryPolicy): string | undefined {
  let url: URL;
  try {
    url = new URL(header);
  } catch {
    return undefined;
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') return undefined;
  // Credentials in a referrer would be a leak; browsers never send them, forgers might.
  url.username = '';
  url.password = '';
  url.hash = '';
  return url.origin + applyQueryPolicy(url.pathname + url.search, policy);
}

/**
 * An absolute URL (or a path) with the query policy applied; anything else is returned as it
 * is, for the tracker to refuse.
 */
export function withQueryPolicy(url: string, policy: QueryPolicy): string {
  if (typeof url !== 'string') return url;
  if (url.startsWith('/')) return applyQueryPolicy(url, policy);
  const match = /^(https?:\/\/[^/?#]*)(.*)$/i.exec(url);
  return match ? match[1]! + applyQueryPolicy(match[2] || '/', policy) : url;
}

/** `path?query` with only the query parameters the policy keeps (and no fragment). */
export function applyQueryPolicy(target: string, policy: QueryPolicy): string {
  const hash = target.indexOf('#');
  const clean = hash === -1 ? target : target.slice(0, hash);
  const q = clean.indexOf('?');
  if (q === -1) return clean;
  const path = clean.slice(0, q);
  if (policy.kind === 'none') return path;
  if (policy.kind === 'all') return clean;

  // Each parameter is kept as it was written (no re-encoding); its name is decoded to match.
  let kept = '';
  let start = q + 1;
  while (start <= clean.length) {
    let end = clean.indexOf('&', start);
    if (end === -1) end = clean.length;
    if (end > start) {
      const eq = clean.indexOf('=', start);
      const name = decodeName(clean.slice(start, eq === -1 || eq > end ? end : eq));
      if (policy.names.has(name) || policy.prefixes.some((p) => name.startsWith(p))) {
        kept += (kept === '' ? '' : '&') + clean.slice(start, end);
      }
    }
    start = end + 1;
  }
  return kept === '' ? path : `${path}?${kept}`;
}

/** A query parameter's name as a form decoder reads it (`+` is a space, `%XX` a byte). */
function decodeName(raw: string): string {
  if (!raw.includes('%') && !raw.includes('+')) return raw;
  return new URLSearchParams(`${raw}=`).keys().next().value ?? raw;
}
