/**
 * The visitor's IP address: the socket's peer, or what a trusted proxy says it saw.
 */
import { isIP } from 'node:net';
import proxyaddr from 'proxy-addr';
import type { TrustFunction } from './trust.js';

/**
 * The client address under `trust`, as one normalised IP, or undefined when there is none.
 * `peer` is the socket's remote address, read when the request arrived (it is gone once the
 * connection closes). A visitor-sent `X-Forwarded-For` only counts through trusted hops: the
 * walk is proxy-addr's, with its compiled trust functions.
 */
export function resolveClientIp(
  peer: string | undefined,
  forwardedFor: string | string[] | undefined,
  trust: TrustFunction,
): string | undefined {
  if (peer === undefined) return undefined;
  if (forwardedFor === undefined || !trust(peer, 0)) return normalizeIp(peer);
  const hops = (Array.isArray(forwardedFor) ? forwardedFor.join(',') : forwardedFor)
    .split(',')
    .map((hop) => hop.trim())
    .filter((hop) => hop !== '')
    .reverse();
  let address = peer;
  for (let i = 0; i < hops.length; i++) {
    address = hops[i]!;
    if (!trust(address, i + 1)) break;
  }
  return normalizeIp(address);
}

/**
 * The last value {@link normalizeIp} was given and its answer: a keep-alive connection brings
 * the same peer request after request, and a dual-stack server's `::ffff:` form costs about
 * 0.4 µs to check and convert.
 */
let lastValue: string | undefined;
let lastIp: string | undefined;

/** One valid IP, with IPv4-mapped IPv6 (`::ffff:203.0.113.5`) turned into plain IPv4. */
export function normalizeIp(value: string | undefined): string | undefined {
  if (typeof value !== 'string') return undefined;
  if (value === lastValue) return lastIp;
  const ip = checkedIp(value);
  lastValue = value;
  lastIp = ip;
  return ip;
}

function checkedIp(value: string): string | undefined {
  let ip = value.trim();
  if (ip.length > 2 && ip.startsWith('[') && ip.endsWith(']')) ip = ip.slice(1, -1);
  const kind = isIP(ip);
  if (kind === 0) return undefined;
  if (kind === 6 && /^::ffff:/i.test(ip)) {
    const tail = ip.slice(7);
    if (isIP(tail) === 4) return tail;
  }
  return ip;
}

/**
 * The client IP from a platform's single-value header (`cf-connecting-ip`, `x-real-ip`, ...),
 * used only when the app configured `ipHeader`. The first entry when there are several.
 */
export function ipFromHeader(value: string | string[] | undefined): string | undefined {
  const raw = Array.isArray(value) ? value[0] : value;
  if (raw === undefined) return undefined;
  const comma = raw.indexOf(',');
  return normalizeIp(comma === -1 ? raw : raw.slice(0, comma));
}

/** IPv4 to its /24 (`203.0.113.0`), IPv6 to its /48 (`2001:db8:85a3::`). */
export function anonymizeIp(ip: string): string {
  if (isIP(ip) === 4) return ip.slice(0, ip.lastIndexOf('.')) + '.0';
  const groups = expandIpv6(ip);
  if (!groups) return ip;
  return `${groups
    .slice(0, 3)
    .map((g) => g.replace(/^0+(?=.)/, ''))
    .join(':')}::`;
}

/** The eight hextets of an IPv6 address (an embedded IPv4 tail converted), or undefined. */
function expandIpv6(ip: string): string[] | undefined {
  if (isIP(ip) !== 6) return undefined;
  let text = ip.toLowerCase();
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (v4) {
    const [a, b, c, d] = v4[1]!.split('.').map(Number) as [number, number, number, number];
    text =
      text.slice(0, v4.index) + ((a << 8) | b).toString(16) + ':' + ((c << 8) | d).toString(16);
  }
  const [head, tail] = text.split('::') as [string, string | undefined];
  const left = head ? head.split(':') : [];
  const right = tail ? tail.split(':') : [];
  const fill = tail === undefined ? [] : Array(8 - left.length - right.length).fill('0');
  return [...left, ...fill, ...right];
}

const isInternal = proxyaddr.compile(['loopback', 'linklocal', 'uniquelocal']);

/** Loopback, link-local or private (RFC 1918, fc00::/7): addresses the endpoint cannot locate. */
export function isPrivateIp(ip: string): boolean {
  return isInternal(ip, 0);
}
