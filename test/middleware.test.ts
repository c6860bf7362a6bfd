/**
 * analytics() end to end on Express 5, Express 4 and Connect, against a real collector.
 */
import type http from 'node:http';
import request from 'supertest';
import { analytics, type AnalyticsMiddleware, type AnalyticsOptions } from '../src/index';
import type { TestCollector } from '../src/testing';
import { BROWSER_UA, buildSite, FRAMEWORKS, GOOGLEBOT_UA, type SiteOptions } from './helpers/apps';
import { startCollector } from './helpers/collector';

let collector: TestCollector;
const trackers: AnalyticsMiddleware[] = [];

beforeAll(async () => {
  collector = await startCollector();
});
beforeEach(() => collector.reset());
afterAll(async () => {
  await Promise.all(trackers.map((m) => m.tracker.close()));
});

function setup(
  framework: (typeof FRAMEWORKS)[number],
  options: AnalyticsOptions = {},
  site: SiteOptions = {},
) {
  const middleware = analytics({
    trackingCode: 'test-site',
    host: collector.url,
    logger: false,
    ...options,
  });
  trackers.push(middleware);
  const server = buildSite(framework, middleware, site);
  return { middleware, server };
}

function browserGet(server: http.Server, path: string) {
  return request(server).get(path).set('User-Agent', BROWSER_UA);
}

/**
 * Proves a request made no pageview: a page request after it is the only one the collector
 * gets, and the tracker accepted exactly one event.
 */
async function expectOnlySentinel(server: http.Server, middleware: AnalyticsMiddleware) {
  await browserGet(server, '/?sentinel=1').expect(200);
  const [event] = await collector.waitFor(1);
  await middleware.tracker.flush();
  expect(event!.url).toMatch(/\/$/);
  expect(collector.events).toHaveLength(1);
  expect(middleware.tracker.stats().enqueued).toBe(1);
}

describe.each(FRAMEWORKS)('%s', (framework) => {
  test('an HTML GET answered 200 sends one pageview with the visitor headers', async () => {
    const { server } = setup(framework);
    await browserGet(server, '/products/widget')
      .set('Referer', 'https://www.google.com/search?q=widget')
      .set('Cookie', 'session=secret')
      .set('Authorization', 'Bearer token')
      .expect(200);

    const [event] = await collector.waitFor(1);
    expect(event).toMatchObject({
      type: 'pageview',
      trackingCode: 'test-site',
      referrer: 'https://www.google.com/search',
    });
    expect(event!.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/products\/widget$/);
    expect(event!.headers['user-agent']).toBe(BROWSER_UA);
    expect(event!.headers['x-forwarded-for']).toBe('127.0.0.1');
    expect(event!.headers['content-type']).toBe('application/json');
    expect(event!.headers.cookie).toBeUndefined();
    expect(event!.headers.authorization).toBeUndefined();
    expect(event!.name).toBeUndefined();
  });

  test('a 304 without content type counts as a page', async () => {
    const { server } = setup(framework);
    await browserGet(server, '/cached').expect(304);
    const [event] = await collector.waitFor(1);
    expect(event!.url).toMatch(/\/cached$/);
  });

  test.each([
    ['a static asset', '/style.css', 200],
    ['an API path', '/api/html', 200],
    ['a well-known file', '/robots.txt', 200],
    ['a 404', '/not-found', 404],
    ['a 500', '/broken', 500],
    ['a redirect', '/moved', 302],
    ['a non-HTML response', '/plain', 200],
  ])('%s is not a pageview', async (_what, path, status) => {
    const { middleware, server } = setup(framework);
    await browserGet(server, path).expect(status);
    await expectOnlySentinel(server, middleware);
  });

  test.each([
    ['a known bot', GOOGLEBOT_UA],
    ['an empty user agent', ''],
  ])('%s is not counted', async (_what, ua) => {
    const { middleware, server } = setup(framework);
    await request(server).get('/').set('User-Agent', ua).expect(200);
    await expectOnlySentinel(server, middleware);
  });

  test('a request without any User-Agent header is a bot', async () => {
    const { middleware, server } = setup(framework);
    // supertest sets no User-Agent unless asked.
    await request(server).get('/').expect(200);
    await expectOnlySentinel(server, middleware);
  });

  test('a POST is not a pageview, and req.track reports the purchase on the page it came from', async () => {
    const { middleware, server } = setup(framework, { siteUrl: 'http://shop.test' });
    await request(server)
      .post('/checkout')
      .set('User-Agent', BROWSER_UA)
      .set('Referer', 'http://shop.test/cart?coupon=SECRET&utm_source=mail')
      .expect(303);
    const [event] = await collector.waitFor(1);
    expect(event).toMatchObject({
      type: 'event',
      name: 'purchase',
      url: 'http://shop.test/cart?utm_source=mail',
      data: { order_id: 'ORD-1', value: 99.99, currency: 'USD' },
    });
    expect(event!.referrer).toBeUndefined();
    expect(event!.headers['x-forwarded-for']).toBe('127.0.0.1');
    await middleware.tracker.flush();
    expect(middleware.tracker.stats()).toMatchObject({ enqueued: 1, delivered: 1 });
  });

  test('req.track works on API routes, which are not pageviews', async () => {
    const { middleware, server } = setup(framework, { siteUrl: 'http://shop.test' });
    await browserGet(server, '/api/items').set('Referer', 'http://shop.test/list').expect(200);
    const [event] = await collector.waitFor(1);
    expect(event).toMatchObject({
      type: 'event',
      name: 'items_listed',
      url: 'http://shop.test/list',
    });
    await middleware.tracker.flush();
    expect(collector.events).toHaveLength(1);
  });

  test('req.track on a page GET uses the page URL, next to its pageview', async () => {
    const { server } = setup(framework);
    await browserGet(server, '/thanks').expect(200);
    const events = await collector.waitFor(2);
    const custom = events.find((e) => e.type === 'event');
    const page = events.find((e) => e.type === 'pageview');
    expect(custom!.name).toBe('thanks_seen');
    expect(custom!.url).toBe(page!.url);
    expect(page!.url).toMatch(/\/thanks$/);
  });

  test('req.track from a bot resolves false and sends nothing', async () => {
    const { middleware, server } = setup(framework);
    await request(server).post('/checkout').set('User-Agent', GOOGLEBOT_UA).expect(303);
    await expectOnlySentinel(server, middleware);
  });

  test('mounted twice, a page is counted once', async () => {
    const { middleware, server } = setup(framework, {}, { mountTwice: true });
    await browserGet(server, '/').expect(200);
    await collector.waitFor(1);
    await middleware.tracker.flush();
    expect(collector.events).toHaveLength(1);
  });

  test('query strings keep utm_* only; siteUrl sets the origin', async () => {
    const { server } = setup(framework, { siteUrl: 'https://shop.example' });
    await browserGet(server, '/products/widget?utm_source=news&token=abc&email=a%40b.c').expect(
      200,
    );
    const [event] = await collector.waitFor(1);
    expect(event!.url).toBe('https://shop.example/products/widget?utm_source=news');
  });

  test('a spoofed X-Forwarded-For is not believed when no proxy is trusted', async () => {
    const { server } = setup(framework);
    await browserGet(server, '/')
      .set('X-Forwarded-For', '203.0.113.9')
      .set('X-Forwarded-Host', 'evil.example')
      .expect(200);
    const [event] = await collector.waitFor(1);
    expect(event!.headers['x-forwarded-for']).toBe('127.0.0.1');
    expect(event!.url).not.toContain('evil.example');
  });

  test('a trusted proxy gives the visitor IP, protocol and host', async () => {
    const opts: AnalyticsOptions = framework === 'connect' ? { trustProxy: 'loopback' } : {};
    const { server } = setup(framework, opts, { trustProxy: 'loopback' });
    await browserGet(server, '/')
      .set('X-Forwarded-For', '203.0.113.9')
      .set('X-Forwarded-Proto', 'https')
      .set('X-Forwarded-Host', 'shop.example')
      .expect(200);
    const [event] = await collector.waitFor(1);
    expect(event!.headers['x-forwarded-for']).toBe('203.0.113.9');
    expect(event!.url).toBe('https://shop.example/');
  });

  test('prefetches and privacy signals are not counted', async () => {
    const { middleware, server } = setup(framework);
    await browserGet(server, '/').set('Sec-Purpose', 'prefetch').expect(200);
    await browserGet(server, '/').set('Sec-GPC', '1').expect(200);
    await browserGet(server, '/').set('DNT', '1').expect(200);
    await expectOnlySentinel(server, middleware);
  });
});

describe.each(FRAMEWORKS)('options that change the rules on %s', (framework) => {
  test('skipPaths, skip() and turning a default rule off', async () => {
    const { middleware, server } = setup(framework, {
      skipPaths: ['/products/', /^\/thanks$/],
      skip: (req) => req.url === '/cached',
      skipApi: false,
    });
    await browserGet(server, '/products/widget').expect(200);
    await browserGet(server, '/cached').expect(304);
    await browserGet(server, '/api/html').expect(200);
    const [event] = await collector.waitFor(1);
    expect(event!.url).toMatch(/\/api\/html$/);
    await middleware.tracker.flush();
    expect(collector.events).toHaveLength(1);
  });

  test('respectPrivacySignals: false counts visitors who sent DNT', async () => {
    const { server } = setup(framework, { respectPrivacySignals: false });
    await browserGet(server, '/').set('DNT', '1').expect(200);
    await collector.waitFor(1);
  });

  test('countStatus can count a 404 page; isBot can count a known bot', async () => {
    const { middleware, server } = setup(framework, {
      countStatus: (status) => status < 500,
      isBot: (ua) => ua === undefined,
    });
    await request(server).get('/not-found').set('User-Agent', GOOGLEBOT_UA).expect(404);
    await browserGet(server, '/').expect(200);
    const events = await collector.waitFor(2);
    await middleware.tracker.flush();
    expect(events.map((e) => new URL(e.url!).pathname).sort()).toEqual(['/', '/not-found']);
  });
});

/** The default user agents of HTTP client libraries that apps and backends post events with. */
const HTTP_CLIENT_UAS = [
  'okhttp/4.9.3',
  'axios/1.6.8',
  'node-fetch/1.0 (+https://github.com/bitinn/node-fetch)',
  'undici',
  'curl/7.88.1',
  'python-requests/2.34.2',
  'Go-http-client/2.0',
];
const CRAWLER_UAS = [
  GOOGLEBOT_UA,
  'Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)',
  'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/126.0.0.0 Safari/537.36',
];

describe.each(FRAMEWORKS)('the bot rule of req.track on %s', (framework) => {
  test('HTTP client libraries: their events are sent, their page GETs are no pageviews', async () => {
    const { middleware, server } = setup(framework, { siteUrl: 'https://shop.example' });
    for (const ua of HTTP_CLIENT_UAS) {
      await request(server).get('/').set('User-Agent', ua).expect(200);
      await request(server).post('/checkout').set('User-Agent', ua).expect(303);
    }
    const events = await collector.waitFor(HTTP_CLIENT_UAS.length);
    await middleware.tracker.flush();
    expect(collector.events).toHaveLength(HTTP_CLIENT_UAS.length);
    expect(events.map((e) => [e.type, e.name])).toEqual(
      HTTP_CLIENT_UAS.map(() => ['event', 'purchase']),
    );
    expect(events.map((e) => e.headers['user-agent']).sort()).toEqual([...HTTP_CLIENT_UAS].sort());
    expect(middleware.tracker.stats()).toMatchObject({
      enqueued: HTTP_CLIENT_UAS.length,
      delivered: HTTP_CLIENT_UAS.length,
    });
  });

  test('crawlers and headless browsers: no event, on a form post or on a page', async () => {
    const { middleware, server } = setup(framework);
    for (const ua of CRAWLER_UAS) {
      await request(server).post('/checkout').set('User-Agent', ua).expect(303);
      // A page GET whose handler calls req.track('thanks_seen').
      await request(server).get('/thanks').set('User-Agent', ua).expect(200);
    }
    await expectOnlySentinel(server, middleware);
  });
});

describe('the bot rule of req.track', () => {
  test("real clients: Node's fetch and undici's", async () => {
    const { middleware, server } = setup('express5');
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${(server.address() as import('node:net').AddressInfo).port}`;
    const { fetch: undiciFetch } = await import('undici');
    try {
      for (const send of [fetch, undiciFetch] as const) {
        const res = await send(`${url}/checkout`, { method: 'POST', redirect: 'manual' });
        expect(res.status).toBe(303);
        await res.arrayBuffer();
      }
    } finally {
      await new Promise((r) => server.close(r));
    }
    const events = await collector.waitFor(2);
    await middleware.tracker.flush();
    expect(events.map((e) => e.headers['user-agent']).sort()).toEqual(['node', 'undici']);
    expect(events.every((e) => e.name === 'purchase')).toBe(true);
  });

  test("the app's isBot gets the events' verdict for req.track and still decides", async () => {
    const seen: Array<[string | undefined, boolean]> = [];
    const { middleware, server } = setup('express5', {
      isBot: (ua, verdict) => {
        seen.push([ua, verdict]);
        return verdict || ua === 'axios/1.6.8';
      },
    });
    await request(server).get('/').set('User-Agent', 'okhttp/4.9.3').expect(200);
    await request(server).post('/checkout').set('User-Agent', 'okhttp/4.9.3').expect(303);
    await request(server).post('/checkout').set('User-Agent', 'axios/1.6.8').expect(303);
    const [event] = await collector.waitFor(1);
    await middleware.tracker.flush();
    expect(collector.events).toHaveLength(1);
    expect(event!.headers['user-agent']).toBe('okhttp/4.9.3');
    expect(seen).toEqual([
      ['okhttp/4.9.3', true],
      ['okhttp/4.9.3', false],
      ['axios/1.6.8', false],
    ]);
  });

  test('skipBots: false sends the events of crawlers too', async () => {
    const { server } = setup('express5', { skipBots: false });
    await request(server).post('/checkout').set('User-Agent', GOOGLEBOT_UA).expect(303);
    const [event] = await collector.waitFor(1);
    expect(event!.name).toBe('purchase');
  });
});

describe('options that change the rules', () => {
  test('the debug log says why a request was not a pageview', async () => {
    const lines: string[] = [];
    const { server } = setup('express5', { logger: { debug: (m) => lines.push(m) } });
    await browserGet(server, '/style.css').expect(200);
    await request(server).get('/').set('User-Agent', GOOGLEBOT_UA).expect(200);
    await browserGet(server, '/not-found').expect(404);
    expect(lines).toEqual([
      '[zenovay] not a pageview: asset: GET /style.css',
      '[zenovay] not a pageview: bot: GET /',
      '[zenovay] not a pageview: status (404): GET /not-found',
    ]);
  });

  test('a throwing skip() is reported and never reaches the app', async () => {
    const errors: string[] = [];
    const { middleware, server } = setup('express5', {
      skip: () => {
        throw new Error('boom');
      },
      logger: { error: (m) => errors.push(m) },
    });
    await browserGet(server, '/').expect(200);
    await middleware.tracker.flush();
    expect(errors[0]).toContain('ZENOVAY_INTERNAL');
    expect(errors[0]).toContain('boom');
  });

  test('an existing tracker can be shared with analytics({ tracker })', async () => {
    const first = setup('express5');
    const shared = analytics({ tracker: first.middleware.tracker, logger: false });
    expect(shared.tracker).toBe(first.middleware.tracker);
    expect(() => analytics({ tracker: first.middleware.tracker, host: collector.url })).toThrow(
      /got both `tracker` and `host`/,
    );
    await browserGet(buildSite('connect', shared), '/').expect(200);
    await collector.waitFor(1);
    await first.middleware.tracker.flush();
    expect(first.middleware.tracker.stats().delivered).toBe(1);
  });

  test('the response is never held up by a slow endpoint', async () => {
    const slow = await startCollector({
      respond: () => ({ status: 202 }),
    });
    // A host that accepts connections but never answers: the page must not wait for it.
    const net = await import('node:net');
    const sockets: import('node:net').Socket[] = [];
    const blackHole = net.createServer((s) => sockets.push(s));
    await new Promise<void>((r) => blackHole.listen(0, '127.0.0.1', r));
    const port = (blackHole.address() as import('node:net').AddressInfo).port;
    const middleware = analytics({
      trackingCode: 'slow',
      host: `http://127.0.0.1:${port}`,
      logger: false,
      timeout: 200,
      maxRetries: 0,
    });
    const server = buildSite('express5', middleware);
    const started = Date.now();
    await browserGet(server, '/').expect(200);
    expect(Date.now() - started).toBeLessThan(1000);
    await middleware.tracker.flush();
    expect(middleware.tracker.stats()).toMatchObject({ enqueued: 1, failed: 1 });
    expect(middleware.tracker.stats().reasons.failed.timeout).toBe(1);
    await middleware.tracker.close();
    sockets.forEach((s) => s.destroy());
    await new Promise((r) => blackHole.close(r));
    expect(slow.events).toHaveLength(0);
  });
});
