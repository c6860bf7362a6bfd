import type { IncomingMessage } from 'node:http';
import { resolveAnalyticsOptions } from '../../src/options';
import {
  applyQueryPolicy,
  pageUrl,
  referrerUrl,
  originOf,
  requestTarget,
} from '../../src/request/page-url';
import { compileTrust } from '../../src/request/trust';

const policy = (queryParams?: 'all' | 'none' | string[]) =>
  resolveAnalyticsOptions({ trackingCode: 'x', logger: false, queryParams }).queryPolicy;

function fakeReq(
  headers: Record<string, string>,
  extra: Record<string, unknown> = {},
): IncomingMessage {
  return {
    headers,
    url: '/',
    socket: { remoteAddress: '127.0.0.1', encrypted: false },
    ...extra,
  } as unknown as IncomingMessage;
}

test.each([
  [
    'default keeps utm_* only',
    undefined,
    '/p?utm_source=a&token=t&utm_medium=b&email=x%40y',
    '/p?utm_source=a&utm_medium=b',
  ],
  ['default drops a query of secrets entirely', undefined, '/p?token=t', '/p'],
  ["'all' keeps everything", 'all', '/p?token=t&a=1', '/p?token=t&a=1'],
  ["'none' drops everything", 'none', '/p?utm_source=a', '/p'],
  [
    'a list keeps names and prefixes',
    ['ref', 'utm_*'],
    '/p?ref=x&utm_id=1&other=2',
    '/p?ref=x&utm_id=1',
  ],
  ['a fragment is never sent', 'all', '/p?a=1#secret', '/p?a=1'],
  ['no query stays as it is', undefined, '/p', '/p'],
] as const)('applyQueryPolicy: %s', (_what, params, input, expected) => {
  expect(applyQueryPolicy(input, policy(params as never))).toBe(expected);
});

test.each([
  ['an absent header', undefined, undefined],
  ['an empty header', '', undefined],
  ['garbage', 'not a url', undefined],
  ['a non-http scheme', 'android-app://com.google/', undefined],
  [
    'credentials are removed',
    'https://user:pw@site.example/a?utm_source=x&q=secret',
    'https://site.example/a?utm_source=x',
  ],
  ['a plain referrer', 'https://www.google.com/', 'https://www.google.com/'],
])('referrerUrl: %s', (_what, header, expected) => {
  expect(referrerUrl(header, policy())).toBe(expected);
});

test('requestTarget prefers originalUrl and reduces an absolute-form target to its path', () => {
  expect(requestTarget(fakeReq({}, { url: '/inner', originalUrl: '/shop/inner?x=1' }))).toBe(
    '/shop/inner?x=1',
  );
  expect(requestTarget(fakeReq({}, { url: 'http://evil.example/x?y=1' }))).toBe('/x?y=1');
  expect(requestTarget(fakeReq({}, { url: 'garbage' }))).toBe('/');
});

describe('originOf', () => {
  const none = compileTrust(false);
  const all = compileTrust(true);
  const peer = '1.2.3.4';
  test('uses the Host header and the socket protocol', () => {
    expect(originOf({ host: 'Shop.Example:8080' }, peer, false, none)).toBe(
      'http://shop.example:8080',
    );
    expect(originOf({ host: 'shop.example' }, peer, true, none)).toBe('https://shop.example');
  });
  test('ignores X-Forwarded-* from an untrusted peer, believes a trusted one', () => {
    const headers = {
      host: 'internal:3000',
      'x-forwarded-proto': 'https',
      'x-forwarded-host': 'shop.example, other',
    };
    expect(originOf(headers, peer, false, none)).toBe('http://internal:3000');
    expect(originOf(headers, peer, false, all)).toBe('https://shop.example');
    // No peer (the connection is gone): nothing to trust.
    expect(originOf(headers, undefined, false, all)).toBe('http://internal:3000');
  });
  test.each(['evil.example/path', 'a b', 'x@y', '', 'host:port'])('refuses the host %j', (host) => {
    expect(originOf({ host }, peer, false, none)).toBeUndefined();
  });
  test('accepts an IPv6 literal', () => {
    expect(originOf({ host: '[::1]:3000' }, peer, false, none)).toBe('http://[::1]:3000');
  });
});

test('pageUrl: the origin and the target with the query policy; none without an origin', () => {
  expect(pageUrl('https://shop.example', '/a?utm_source=x&t=1', policy())).toBe(
    'https://shop.example/a?utm_source=x',
  );
  expect(pageUrl(undefined, '/a', policy())).toBeUndefined();
});
