/**
 * The few visitor headers that may leave the process, and nothing else: the user agent, the
 * resolved IP, and the user-agent client hints. Never cookies, authorization or anything else.
 */
import type { IncomingMessage } from 'node:http';
import { anonymizeIp, normalizeIp } from './client-ip.js';

/** User-agent client hints a browser sent (`Sec-CH-UA`, `-Mobile`, `-Platform`). */
export interface ClientHints {
  'sec-ch-ua'?: string;
  'sec-ch-ua-mobile'?: string;
  'sec-ch-ua-platform'?: string;
}

const HINT_NAMES = ['sec-ch-ua', 'sec-ch-ua-mobile', 'sec-ch-ua-platform'] as const;
const MAX_USER_AGENT = 1024;
const MAX_HINT = 256;

/** The client hints among the request's headers, or undefined when it sent none. */
export function clientHintsOf(headers: IncomingMessage['headers']): ClientHints | undefined {
  let hints: ClientHints | undefined;
  for (const name of HINT_NAMES) {
    const value = headers[name];
    if (typeof value === 'string') (hints ??= {})[name] = value;
  }
  return hints;
}

/** What Node would refuse in a header value (it throws on send), and line breaks. */
const INVALID_HEADER_CHARS = /[^\t\x20-\x7e\x80-\xff]/g;
/** A value that needs no cleaning: valid characters only, nothing trim() removes at either end. */
const CLEAN_VALUE =
  /^[\x21-\x7e\x80-\x9f\xa1-\xff](?:[\t\x20-\x7e\x80-\xff]*[\x21-\x7e\x80-\x9f\xa1-\xff])?$/;

/** A value Node will send: invalid characters removed, trimmed, capped; undefined when empty. */
export function headerValue(value: unknown, max: number): string | undefined {
  if (typeof value !== 'string') return undefined;
  // The common case, a clean value, is returned as it is: no copy.
  if (value.length <= max && CLEAN_VALUE.test(value)) return value;
  const clean = value.replace(INVALID_HEADER_CHARS, '').trim().slice(0, max);
  return clean === '' ? undefined : clean;
}

/**
 * The headers of one request to the endpoint, `Content-Type` included. `ipNormalized`: the IP
 * comes from {@link normalizeIp} already (the middleware's), so it is not checked again.
 */
export function forwardedHeaders(
  userAgent: string | undefined,
  ip: string | undefined,
  hints: ClientHints | undefined,
  anonymize = false,
  ipNormalized = false,
): Record<string, string> {
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  const agent = headerValue(userAgent, MAX_USER_AGENT);
  if (agent) headers['user-agent'] = agent;
  const normal = ipNormalized ? ip : normalizeIp(ip);
  if (normal) headers['x-forwarded-for'] = anonymize ? anonymizeIp(normal) : normal;
  if (hints) {
    for (const name of HINT_NAMES) {
      const value = headerValue(hints[name], MAX_HINT);
      if (value) headers[name] = value;
    }
  }
  return headers;
}
