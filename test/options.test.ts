/**
 * Options: defaults, validation at construction, messages that say how to fix the problem.
 */
import { analytics, createTracker } from '../src/index';
import { closest, resolveAnalyticsOptions, resolveTrackerOptions } from '../src/options';

const ENV = 'ZENOVAY_TRACKING_CODE';
const saved = process.env[ENV];
afterEach(() => {
  if (saved === undefined) delete process.env[ENV];
  else process.env[ENV] = saved;
});

test('defaults', () => {
  const config = resolveTrackerOptions({ trackingCode: 'abc' });
  expect(config).toMatchObject({
    trackingCode: 'abc',
    endpoint: 'https://api.zenovay.com/e/abc',
    siteUrl: undefined,
    concurrency: 'auto',
    maxConcurrency: 256,
    maxQueueSize: 10_000,
    timeoutMs: 5000,
    transport: undefined,
    worker: true,
  });
  expect(
    resolveTrackerOptions({
      trackingCode: 'abc',
      transport: { send: () => Promise.resolve({ status: 202 }) },
    }).worker,
  ).toBe(false);
  const a = resolveAnalyticsOptions({ trackingCode: 'abc' });
  expect(a).toMatchObject({
    tracker: undefined,
    trust: undefined,
    skipPaths: [],
    skip: undefined,
    skipAssets: true,
    skipApi: true,
    skipWellKnown: true,
    skipPrefetch: true,
    skipBots: true,
    respectPrivacySignals: true,
  });
  expect(a.queryPolicy).toEqual({ kind: 'list', names: new Set(), prefixes: ['utm_'] });
});

test('the tracking code comes from ZENOVAY_TRACKING_CODE when not given', () => {
  process.env[ENV] = 'from-env_1';
  expect(resolveTrackerOptions({}).trackingCode).toBe('from-env_1');
  expect(resolveTrackerOptions({ trackingCode: 'explicit' }).trackingCode).toBe('explicit');
});

test('no tracking code at all says how to give one', () => {
  delete process.env[ENV];
  expect(() => createTracker()).toThrow(
    /needs a tracking code.*trackingCode.*ZENOVAY_TRACKING_CODE/,
  );
  expect(() => analytics()).toThrow(/analytics\(\) needs a tracking code/);
});

test.each([
  ['', /1-64 characters/],
  ['has space', /"has space" \(string\)/],
  ['x'.repeat(65), /1-64 characters/],
  ['../../admin', /1-64 characters/],
])('a malformed tracking code %j is refused', (code, message) => {
  expect(() => createTracker({ trackingCode: code })).toThrow(message);
});

test('a malformed code in the environment names the variable', () => {
  process.env[ENV] = 'bad code!';
  expect(() => createTracker()).toThrow(/ZENOVAY_TRACKING_CODE must be 1-64 characters/);
});

test.each<[string, Record<string, unknown>, RegExp]>([
  [
    'unknown option with a close name',
    { trackingcode: 'x' },
    /unknown option `trackingcode`\. Did you mean `trackingCode`\?/,
  ],
  [
    'unknown option far from any',
    { zzzzzzzzzz: 1 },
    /unknown option `zzzzzzzzzz`\. Known options:/,
  ],
  ['host that is not a URL', { host: 'api.zenovay.com' }, /`host` must be an http\(s\) URL/],
  ['host with a query', { host: 'https://a.example/?x=1' }, /must not have a query/],
  ['siteUrl that is not http', { siteUrl: 'ftp://x' }, /`siteUrl` must be an http\(s\) URL/],
  [
    'concurrency 0',
    { concurrency: 0 },
    /`concurrency` must be 'auto' \(the default: the limit adapts to the endpoint\) or a whole number from 1 to 512 \(a fixed limit\), got 0 \(number\)/,
  ],
  ['concurrency as string', { concurrency: '5' }, /got "5" \(string\)/],
  ['concurrency above 512', { concurrency: 513 }, /from 1 to 512.*got 513/],
  [
    'maxConcurrency 0',
    { maxConcurrency: 0 },
    /`maxConcurrency` must be a whole number from 1 to 512/,
  ],
  [
    'maxConcurrency above 512',
    { maxConcurrency: 600 },
    /`maxConcurrency` must be a whole number from 1 to 512, got 600/,
  ],
  ['negative maxQueueSize', { maxQueueSize: -1 }, /`maxQueueSize` must be a whole number/],
  ['fractional timeout', { timeout: 1.5 }, /`timeout` must be a whole number/],
  ['logger that is a string', { logger: 'console' }, /`logger` must be an object/],
  [
    'logger method that is not a function',
    { logger: { warn: 1 } },
    /`logger.warn` must be a function/,
  ],
  ['transport without send', { transport: {} }, /`transport` must be an object with a send/],
  ['worker not boolean', { worker: 'yes' }, /`worker` must be true or false/],
  [
    'worker: true with a custom transport',
    { worker: true, transport: { send: () => Promise.resolve({ status: 202 }) } },
    /`worker: true` and a custom `transport`/,
  ],
  ['proxy without a scheme', { proxy: 'proxy.corp:3128' }, /`proxy` has no scheme \(http:\/\//],
  ['proxy that is not http', { proxy: 'socks5://p:1080' }, /`proxy` has the scheme socks5:/],
  ['proxy with a path', { proxy: 'http://p:3128/x' }, /`proxy` has a path, query or fragment/],
  ['proxy: true', { proxy: true }, /`proxy` must be the proxy's URL.*or false.*got true/],
  [
    'proxy beside a custom transport',
    { proxy: 'http://p:3128', transport: { send: () => Promise.resolve({ status: 202 }) } },
    /both `proxy` and a custom `transport`/,
  ],
])('createTracker: %s', (_what, options, message) => {
  expect(() => createTracker({ trackingCode: 'abc', ...options })).toThrow(message);
});

test.each<[string, Record<string, unknown>, RegExp]>([
  ['skipApi not boolean', { skipApi: 'no' }, /`skipApi` must be true or false/],
  ['skipPaths not an array', { skipPaths: '/admin' }, /`skipPaths` must be an array/],
  ['skipPaths entry without slash', { skipPaths: ['admin'] }, /starting with '\/'/],
  ['skip not a function', { skip: true }, /`skip` must be a function/],
  ['queryParams bad', { queryParams: 'utm' }, /`queryParams` must be 'all', 'none' or an array/],
  ['trustProxy bad', { trustProxy: 'not-an-ip' }, /`trustProxy` must be/],
  ['tracker that is not one', { tracker: {} }, /`tracker` must be a tracker from createTracker/],
  ['a typo of a rule', { skipBot: false }, /Did you mean `skipBots`\?/],
])('analytics: %s', (_what, options, message) => {
  expect(() => analytics({ trackingCode: 'abc', logger: false, ...options })).toThrow(message);
});

test('proxy: a URL is kept (credentials too) for the transport; a bad one is quoted without them', () => {
  const config = resolveTrackerOptions({
    trackingCode: 'abc',
    proxy: 'http://me:pw@p.example:3128',
  });
  expect(config.proxy).toBe('http://me:pw@p.example:3128/');
  expect(resolveTrackerOptions({ trackingCode: 'abc', proxy: false }).proxy).toBeUndefined();
  expect(() => createTracker({ trackingCode: 'abc', proxy: 'ftp://me:hunter2@p:21' })).toThrow(
    /got "ftp:\/\/\*\*\*@p:21"/,
  );
  expect(() => createTracker({ trackingCode: 'abc', proxy: 'ftp://me:hunter2@p:21' })).not.toThrow(
    /hunter2/,
  );
});

test('app.use(analytics) without calling it is caught with the fix', () => {
  const fakeReq = { headers: {}, method: 'GET', socket: {} };
  expect(() => (analytics as unknown as (r: unknown) => void)(fakeReq)).toThrow(
    /app\.use\(analytics\(\)\) rather than app\.use\(analytics\)/,
  );
});

test('the options object is never mutated', () => {
  const options = Object.freeze({
    trackingCode: 'abc',
    skipPaths: Object.freeze(['/admin', /x/g]) as unknown as string[],
    queryParams: Object.freeze(['utm_*', 'ref']) as unknown as string[],
    logger: Object.freeze({ warn: () => undefined }),
  });
  const middleware = analytics(options);
  expect(options.skipPaths).toHaveLength(2);
  return middleware.tracker.close();
});

test('host keeps a base path and the endpoint appends /e/{code}', () => {
  expect(
    resolveTrackerOptions({ trackingCode: 'c', host: 'http://127.0.0.1:9/proxy/' }).endpoint,
  ).toBe('http://127.0.0.1:9/proxy/e/c');
});

test('closest() suggests only near names', () => {
  expect(closest('timout', ['timeout', 'host'])).toBe('timeout');
  expect(closest('qwerty', ['timeout', 'host'])).toBeUndefined();
});
