import type { IncomingMessage, ServerResponse } from 'node:http';
import { resolveAnalyticsOptions } from '../../src/options';
import { botCacheSize, isBotRequest, isBotUserAgent } from '../../src/request/bots';
import {
  extensionOf,
  isHtmlResponse,
  requestSkipReason,
  responseSkipReason,
} from '../../src/request/pageview-rules';

const config = resolveAnalyticsOptions({ trackingCode: 'x', logger: false });
const UA = { 'user-agent': 'Mozilla/5.0 (Windows NT 10.0; Win64; x64) Firefox/128.0' };
const facts = (headers: Record<string, string>) => ({
  isBot: isBotRequest(headers['user-agent'], undefined),
});

test.each([
  ['/app.js', 'js'],
  ['/a.b/c', ''],
  ['/IMG.PNG', 'png'],
  ['/no-ext', ''],
  ['/dir.v2/', ''],
])('extensionOf(%j) is %j', (path, ext) => {
  expect(extensionOf(path)).toBe(ext);
});

test.each([
  ['POST', '/', {}, 'method'],
  ['HEAD', '/', {}, 'method'],
  ['GET', '/static/app.min.js', {}, 'asset'],
  ['GET', '/fonts/a.woff2', {}, 'asset'],
  ['GET', '/bundle.js.map', {}, 'asset'],
  ['GET', '/feed.rss', {}, 'asset'],
  ['GET', '/video.mp4', {}, 'asset'],
  ['GET', '/api', {}, 'api'],
  ['GET', '/api/v1/items', {}, 'api'],
  ['GET', '/robots', {}, null],
  ['GET', '/favicon.ico', {}, 'asset'],
  ['GET', '/.well-known/security', {}, 'well_known'],
  ['GET', '/', { 'sec-purpose': 'prefetch;prerender' }, 'prefetch'],
  ['GET', '/', { purpose: 'prefetch' }, 'prefetch'],
  ['GET', '/', { 'x-moz': 'prefetch' }, 'prefetch'],
  ['GET', '/', { 'user-agent': 'curl/8.5.0' }, 'bot'],
  ['GET', '/', { 'user-agent': '   ' }, 'bot'],
  ['GET', '/', { 'sec-gpc': '1' }, 'privacy_signal'],
  ['GET', '/', { dnt: '1' }, 'privacy_signal'],
  ['GET', '/', { dnt: '0' }, null],
  ['GET', '/apis-are-pages-too', {}, null],
  ['GET', '/products/widget', {}, null],
])('%s %s %j: %s', (method, path, headers, expected) => {
  const all = { ...UA, ...headers };
  expect(requestSkipReason(method, path, all, facts(all), config)).toBe(expected);
});

test('each default rule can be turned off', () => {
  const off = resolveAnalyticsOptions({
    trackingCode: 'x',
    logger: false,
    skipAssets: false,
    skipApi: false,
    skipWellKnown: false,
    skipPrefetch: false,
    skipBots: false,
    respectPrivacySignals: false,
  });
  for (const [path, headers] of [
    ['/a.css', {}],
    ['/api/x', {}],
    ['/.well-known/x', {}],
    ['/', { 'sec-purpose': 'prefetch' }],
    ['/', { 'user-agent': 'Googlebot/2.1' }],
    ['/', { dnt: '1', 'sec-gpc': '1' }],
  ] as const) {
    const all = { ...UA, ...headers };
    expect(requestSkipReason('GET', path, all, facts(all), off)).toBeNull();
  }
});

test.each([
  [200, 'text/html; charset=utf-8', true],
  [200, 'TEXT/HTML', true],
  [200, '  Text/Html;charset=utf-8', true],
  [200, ['text/html'], true],
  [200, 'text/plain; x=text/html', false],
  [200, 'application/xhtml+xml', true],
  [200, 'application/json', false],
  [200, undefined, false],
  [304, undefined, true],
  [304, 'text/css', false],
])('isHtmlResponse(%d, %j) is %s', (status, type, expected) => {
  expect(isHtmlResponse(status, type)).toBe(expected);
});

test.each([
  [200, 'text/html', null],
  [204, 'text/html', null],
  [301, 'text/html', 'status'],
  [404, 'text/html', 'status'],
  [503, 'text/html', 'status'],
  [200, 'image/png', 'not_html'],
])('responseSkipReason: %d %s is %s', (status, type, expected) => {
  const res = { statusCode: status, getHeader: () => type } as unknown as ServerResponse;
  expect(responseSkipReason({} as IncomingMessage, res, config)).toBe(expected);
});

test('countStatus decides which statuses are pages', () => {
  const redirectsToo = resolveAnalyticsOptions({
    trackingCode: 'x',
    logger: false,
    countStatus: (s) => s < 400,
  });
  const res = { statusCode: 302, getHeader: () => 'text/html' } as unknown as ServerResponse;
  expect(responseSkipReason({} as IncomingMessage, res, config)).toBe('status');
  expect(responseSkipReason({} as IncomingMessage, res, redirectsToo)).toBeNull();
});

test('isBot extends or replaces the verdict', () => {
  const extend = (ua: string | undefined, bot: boolean) => bot || /Monitor/.test(ua ?? '');
  expect(isBotRequest('Mozilla/5.0 UptimeMonitor', extend)).toBe(true);
  expect(isBotRequest('Googlebot/2.1', extend)).toBe(true);
  expect(isBotRequest('Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0', extend)).toBe(false);
  expect(isBotRequest('Googlebot/2.1', () => false)).toBe(false);
});

test('bot verdicts are cached in a bounded cache', () => {
  for (let i = 0; i < 1500; i++) isBotUserAgent(`Mozilla/5.0 Variant/${i}`);
  expect(botCacheSize()).toBeLessThanOrEqual(1000);
  expect(isBotUserAgent('Mozilla/5.0 (compatible; bingbot/2.0)')).toBe(true);
  expect(isBotUserAgent(undefined)).toBe(true);
});
