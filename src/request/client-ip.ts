/**
 * The visitor's IP address: the socket's peer, or what a trusted proxy says it saw.
 */
import type { IncomingMessage } from 'node:http';
import { isIP } from 'node:net';
import proxyaddr from 'proxy-addr';
import type { TrustFunction } from './trust.js';

/**
 * The client address under `trust`, as one normalised IP, or undefined when there is none
 * (a socket already gone). A visitor-sent `X-Forwarded-For` only counts through trusted hops.
 */
export function resolveClientIp(req: IncomingMessage, trust: TrustFunction): string | undefined {
  const peer = req.socket?.remoteAddress;
  if (peer === undefined) return undefined;
  // Without the header there is nothing a proxy could have said: skip proxy-addr's parsing.
  const raw = req.headers['x-forwarded-for'] === undefined ? peer : proxyaddr(req, trust);
  return normalizeIp(raw);
}

/** One valid IP, with IPv4-mapped IPv6 (`::ffff:203.0.113.5`) turned into plain IPv4. */
export function normalizeIp(value: string | undefined): string | undefined {
  if (typeof value !== 'string') return undefined;
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
