/**
 * The request context end to end on each framework: client IP options, what is forwarded,
 * req.analytics, beforeSend, URLs of mounted routers and req.track overrides.
 */
import http from 'node:http';
import express from 'express';
import request from 'supertest';
import { analytics, type AnalyticsMiddleware, type AnalyticsOptions } from '../src/index';
import type { RecordedEvent, TestCollector } from '../src/testing';
import { BROWSER_UA, buildSite, FRAMEWORKS, GOOGLEBOT_UA, type Framework } from './helpers/apps';
import { startCollector } from './helpers/collector';

let collector: TestCollector;
const made: AnalyticsMiddleware[] = [];

beforeAll(async () => {
  collector = await startCollector();
});
beforeEach(() => collector.reset());
afterAll(async () => {
  await Promise.all(made.map((m) => m.tracker.close()));
});

function mw(options: AnalyticsOptions = {}): AnalyticsMiddleware {
  const m = analytics({ trackingCode: 'ctx', host: collector.url, logger: false, ...options });
  made.push(m);
  return m;
}

function site(framework: Framework, options: AnalyticsOptions = {}) {
  const middleware = mw(options);
  return { middleware, server: buildSite(framework, middleware) };
}

/** The headers the endpoint may see: visitor ones, our own Idempotency-Key, connection-level ones. */
const ALLOWED = new Set([
  'content-type',
  'content-length',
  'user-agent',
  'x-forwarded-for',
  'sec-ch-ua',
  'sec-ch-ua-mobile',
  'sec-ch-ua-platform',
  'host',
  'connection',
  'idempotency-key',
]);

function leakedHeaders(event: RecordedEvent): string[] {
  return Object.keys(event.headers).filter((h) => !ALLOWED.has(h));
}

describe.each(FRAMEWORKS)('%s', (framework) => {
  test('forwards only the user agent, the IP and the client hints', async () => {
    const { server } = site(framework);
    await request(server)
      .get('/')
      .set('User-Agent', BROWSER_UA)
      .set('Cookie', 'sid=secret')
      .set('Authorization', 'Bearer secret')
      .set('X-Api-Key', 'secret')
      .set('X-Csrf-Token', 'secret')
      .set('Accept-Language', 'de-DE')
      .set('Sec-CH-UA', '"Chromium";v="126"')
      .set('Sec-CH-UA-Mobile', '?0')
      .set('Sec-CH-UA-Platform', '"Linux"')
      .expect(200);
    const [event] = await collector.waitFor(1);
    expect(leakedHeaders(event!)).toEqual([]);
    expect(JSON.stringify(event)).not.toContain('secret');
    expect(event!.headers).toMatchObject({
      'sec-ch-ua': '"Chromium";v="126"',
      'sec-ch-ua-mobile': '?0',
      'sec-ch-ua-platform': '"Linux"',
    });
  });

  test('ipHeader is honoured only when configured', async () => {
    const plain = site(framework);
    await request(plain.server)
      .get('/')
      .set('User-Agent', BROWSER_UA)
      .set('CF-Connecting-IP', '203.0.113.7')
      .expect(200);
    const configured = site(framework, { ipHeader: 'CF-Connecting-IP' });
    await request(configured.server)
      .get('/')
      .set('User-Agent', BROWSER_UA)
      .set('CF-Connecting-IP', '203.0.113.7')
      .expect(200);
    const events = await collector.waitFor(2);
    expect(events.map((e) => e.headers['x-forwarded-for']).sort()).toEqual([
      '127.0.0.1',
      '203.0.113.7',
    ]);
  });

  test('an invalid ipHeader value falls back to the socket address', async () => {
    const { server } = site(framework, { ipHeader: 'x-real-ip' });
    await request(server)
      .get('/')
      .set('User-Agent', BROWSER_UA)
      .set('X-Real-IP', 'nonsense')
      .expect(200);
    const [event] = await collector.waitFor(1);
    expect(event!.headers['x-forwarded-for']).toBe('127.0.0.1');
  });

  test('anonymizeIp shortens the forwarded IP', async () => {
    const { server } = site(framework, { ipHeader: 'x-real-ip', anonymizeIp: true });
    await request(server)
      .get('/')
      .set('User-Agent', BROWSER_UA)
      .set('X-Real-IP', '203.0.113.77')
      .expect(200);
    await request(server)
      .get('/')
      .set('User-Agent', BROWSER_UA)
      .set('X-Real-IP', '2001:db8:85a3:8d3:1319:8a2e:370:7348')
      .expect(200);
    const events = await collector.waitFor(2);
    expect(events.map((e) => e.headers['x-forwarded-for']).sort()).toEqual([
      '2001:db8:85a3::',
      '203.0.113.0',
    ]);
  });

  test('privacy signals also stop req.track', async () => {
    const { middleware, server } = site(framework);
    await request(server)
      .post('/checkout')
      .set('User-Agent', BROWSER_UA)
      .set('Sec-GPC', '1')
      .expect(303);
    await request(server).post('/checkout').set('User-Agent', BROWSER_UA).expect(303);
    await collector.waitFor(1);
    await middleware.tracker.flush();
    expect(middleware.tracker.stats().enqueued).toBe(1);
  });
});

describe('req.analytics', () => {
  test('exposes the resolved context, parsing the device only when read', async () => {
    const app = express();
    app.set('trust proxy', 'loopback');
    app.use(mw({ siteUrl: 'https://shop.example' }));
    app.get('/p', (req, res) => {
      const a = req.analytics;
      res.json({
        ip: a.ip,
        userAgent: a.userAgent,
        url: a.url,
        referrer: a.referrer,
        isBot: a.isBot,
        device: a.device,
        json: JSON.parse(JSON.stringify(a)),
      });
    });
    const iphone =
      'Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1';
    const res = await request(app)
      .get('/p?utm_campaign=x&session=y')
      .set('User-Agent', iphone)
      .set('X-Forwarded-For', '198.51.100.4')
      .set('Referer', 'https://news.example/a?id=1')
      .expect(200);
    expect(res.body).toEqual({
      ip: '198.51.100.4',
      userAgent: iphone,
      url: 'https://shop.example/p?utm_campaign=x',
      referrer: 'https://news.example/a',
      isBot: false,
      device: {
        browser: { name: 'Mobile Safari', version: '17.0' },
        os: { name: 'iOS', version: '17.0' },
        device: { type: 'mobile', vendor: 'Apple', model: 'iPhone' },
      },
      json: {
        ip: '198.51.100.4',
        userAgent: iphone,
        url: 'https://shop.example/p?utm_campaign=x',
        referrer: 'https://news.example/a',
        isBot: false,
      },
    });
  });

  test('a second instance, or another copy of the package, leaves a request it has seen alone', async () => {
    const first = mw({ siteUrl: 'https://first.example' });
    const second = mw({ siteUrl: 'https://second.example' });
    const app = express();
    // An app's own req.analytics (not ours) does not count as seen: it is replaced.
    app.use((req, _res, next) => {
      (req as { analytics?: unknown }).analytics = { mine: true };
      next();
    });
    app.use(first);
    app.use(second);
    app.get('/', (req, res) => {
      res.type('html').send(`<p>${req.analytics.url}</p>`);
    });
    await request(app)
      .get('/')
      .set('User-Agent', BROWSER_UA)
      .expect(200, '<p>https://first.example/</p>');
    await first.tracker.flush();
    await second.tracker.flush();
    expect(collector.events.map((e) => e.url)).toEqual(['https://first.example/']);
    expect(second.tracker.stats().enqueued).toBe(0);

    // Another copy of the package (its own modules, as a second install or the CJS build beside
    // the ESM one would be) sees what this copy saw, and the other way round.
    let copy: typeof analytics | undefined;
    jest.isolateModules(() => {
      copy = (jest.requireActual('../src/index') as { analytics: typeof analytics }).analytics;
    });
    expect(copy).not.toBe(analytics);
    const other = copy!({ trackingCode: 'ctx', host: collector.url, logger: false });
    made.push(other);
    for (const [outer, inner] of [
      [other, second],
      [second, other],
    ] as const) {
      collector.reset();
      const app2 = express();
      app2.use(outer);
      app2.use(inner);
      app2.get('/', (req, res) => {
        res.type('html').send(`<p>${req.analytics.url === undefined ? '?' : 'ok'}</p>`);
      });
      const before = inner.tracker.stats().enqueued;
      await request(app2).get('/').set('User-Agent', BROWSER_UA).expect(200, '<p>ok</p>');
      await collector.waitFor(1);
      await other.tracker.flush();
      await second.tracker.flush();
      expect(collector.events).toHaveLength(1);
      expect(inner.tracker.stats().enqueued).toBe(before);
    }
  });

  test('isBot is the pageview verdict: an HTTP client is a bot there, its event is sent', async () => {
    const app = express();
    app.use(mw());
    app.post('/buy', (req, res) => {
      void req.track('purchase');
      res.json({ isBot: req.analytics.isBot });
    });
    const res = await request(app).post('/buy').set('User-Agent', 'okhttp/4.12.0').expect(200);
    expect(res.body).toEqual({ isBot: true });
    const [event] = await collector.waitFor(1);
    expect(event!.name).toBe('purchase');
  });

  test('isBot reflects the verdict even when bots are not skipped', async () => {
    const app = express();
    app.use(mw({ skipBots: false }));
    app.get('/', (req, res) => res.json({ isBot: req.analytics.isBot }));
    const res = await request(app).get('/').set('User-Agent', GOOGLEBOT_UA).expect(200);
    expect(res.body).toEqual({ isBot: true });
  });
});

describe('beforeSend', () => {
  test('can change an event, with the context at hand', async () => {
    const { server } = site('express5', {
      beforeSend: (event, context) =>
        event.type === 'event'
          ? { ...event, data: { ...event.data, mobile: context.device.device.type === 'mobile' } }
          : event,
    });
    await request(server).post('/checkout').set('User-Agent', BROWSER_UA).expect(303);
    const [event] = await collector.waitFor(1);
    expect(event!.data).toEqual({
      order_id: 'ORD-1',
      value: 99.99,
      currency: 'USD',
      mobile: false,
    });
  });

  test('can veto an event with null', async () => {
    const { middleware, server } = site('connect', {
      beforeSend: (event) => (event.url?.includes('/products/') ? null : event),
    });
    await request(server).get('/products/widget').set('User-Agent', BROWSER_UA).expect(200);
    await request(server).get('/').set('User-Agent', BROWSER_UA).expect(200);
    const [event] = await collector.waitFor(1);
    await middleware.tracker.flush();
    expect(event!.url).toMatch(/\/$/);
    expect(collector.events).toHaveLength(1);
  });

  test('a wrong return value is reported and nothing is sent', async () => {
    const warnings: string[] = [];
    const { middleware, server } = site('express4', {
      beforeSend: () => undefined as never,
      logger: { warn: (m) => warnings.push(m) },
    });
    await request(server).get('/').set('User-Agent', BROWSER_UA).expect(200);
    await middleware.tracker.flush();
    expect(middleware.tracker.stats().enqueued).toBe(0);
    expect(warnings[0]).toContain('ZENOVAY_BEFORE_SEND');
  });
});

describe('URLs', () => {
  test('a mounted router reports the full path', async () => {
    const app = express();
    app.use(mw());
    const shop = express.Router();
    shop.get('/item', (_req, res) => res.type('html').send('<p>item</p>'));
    app.use('/shop', shop);
    await request(app).get('/shop/item').set('User-Agent', BROWSER_UA).expect(200);
    const [event] = await collector.waitFor(1);
    expect(event!.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/shop\/item$/);
  });

  test('req.track takes a url and referrer per call; a path is resolved on the origin', async () => {
    const app = express();
    app.use(mw({ siteUrl: 'https://shop.example' }));
    app.post('/buy', async (req, res) => {
      const ok = await req.track(
        'purchase',
        { v: 1 },
        { url: '/checkout/success', referrer: 'https://shop.example/cart' },
      );
      res.json({ ok });
    });
    const res = await request(app).post('/buy').set('User-Agent', BROWSER_UA).expect(200);
    expect(res.body).toEqual({ ok: true });
    expect(collector.events[0]).toMatchObject({
      url: 'https://shop.example/checkout/success',
      referrer: 'https://shop.example/cart',
    });
  });

  test('a request without a valid Host is reported and sends no pageview', async () => {
    const warnings: string[] = [];
    const middleware = mw({ logger: { warn: (m) => warnings.push(m) } });
    const server = buildSite('connect', middleware);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const { port } = server.address() as import('node:net').AddressInfo;
    await new Promise<void>((resolve, reject) => {
      const req = http.request(
        {
          port,
          host: '127.0.0.1',
          path: '/',
          headers: { host: 'bad host!', 'user-agent': BROWSER_UA },
        },
        (res) => {
          res.resume();
          res.on('end', resolve);
        },
      );
      req.on('error', reject);
      req.end();
    });
    await new Promise((r) => server.close(r));
    await middleware.tracker.flush();
    expect(middleware.tracker.stats().enqueued).toBe(0);
    expect(warnings.join('\n')).toContain('ZENOVAY_NO_HOST');
  });
});

describe('production warning for a private visitor IP', () => {
  const saved = process.env.NODE_ENV;
  afterEach(() => {
    process.env.NODE_ENV = saved;
  });

  test('warns once, with the fix, when every visitor looks local', async () => {
    process.env.NODE_ENV = 'production';
    const warnings: string[] = [];
    const { middleware, server } = site('express5', { logger: { warn: (m) => warnings.push(m) } });
    await request(server).get('/').set('User-Agent', BROWSER_UA).expect(200);
    await request(server).get('/products/widget').set('User-Agent', BROWSER_UA).expect(200);
    await middleware.tracker.flush();
    const hits = warnings.filter((w) => w.includes('ZENOVAY_PRIVATE_IP'));
    expect(hits).toHaveLength(1);
    expect(hits[0]).toMatch(/trust proxy/);
  });

  test('stays quiet outside production', async () => {
    process.env.NODE_ENV = 'development';
    const warnings: string[] = [];
    const { middleware, server } = site('express5', { logger: { warn: (m) => warnings.push(m) } });
    await request(server).get('/').set('User-Agent', BROWSER_UA).expect(200);
    await middleware.tracker.flush();
    expect(warnings).toEqual([]);
  });
});

describe('the page a form post or API call came from', () => {
  test.each([
    [
      'a page of this site',
      'https://shop.example/cart?utm_source=x&t=1',
      'https://shop.example/cart?utm_source=x',
    ],
    ['another site', 'https://evil.example/phish', 'https://shop.example'],
    ['no Referer', undefined, 'https://shop.example'],
  ])('%s', async (_what, referer, expected) => {
    const app = express();
    app.use(mw({ siteUrl: 'https://shop.example' }));
    app.post('/api/cart', (req, res) => {
      void req.track('add_to_cart');
      res.json({});
    });
    const call = request(app).post('/api/cart').set('User-Agent', BROWSER_UA);
    if (referer) call.set('Referer', referer);
    await call.expect(200);
    const [event] = await collector.waitFor(1);
    expect(event!.url).toBe(expected);
  });

  test('without siteUrl, a Referer on another origin is used as it is', async () => {
    const app = express();
    app.use(mw());
    app.post('/buy', (req, res) => {
      void req.track('purchase');
      res.json({});
    });
    const server = app.listen(0, '127.0.0.1');
    await new Promise((r) => server.once('listening', r));
    const origin = `http://127.0.0.1:${(server.address() as import('node:net').AddressInfo).port}`;
    await request(server)
      .post('/buy')
      .set('User-Agent', BROWSER_UA)
      .set('Referer', `${origin}/checkout`)
      .expect(200);
    await request(server)
      .post('/buy')
      .set('User-Agent', BROWSER_UA)
      .set('Referer', 'https://other.example/')
      .expect(200);
    const events = await collector.waitFor(2);
    server.close();
    expect(events.map((e) => e.url).sort()).toEqual(
      [`${origin}/checkout`, 'https://other.example/'].sort(),
    );
  });
});

/** What a proxy that ends TLS passes on: the page's host, the scheme it was asked on, the visitor. */
const TLS_PROXY = {
  Host: 'shop.example',
  'X-Forwarded-Proto': 'https',
  'X-Forwarded-For': '203.0.113.9',
};
const CART = 'https://shop.example/cart?coupon=SECRET&utm_source=mail';
const CART_SENT = 'https://shop.example/cart?utm_source=mail';

describe.each(FRAMEWORKS)('the page of a req.track event behind a proxy, on %s', (framework) => {
  test.each<[string, string | undefined, boolean, Record<string, string>, string | undefined]>([
    // The app sees http and, untrusted, the request origin http://shop.example.
    ['TLS ended by an untrusted proxy', undefined, false, TLS_PROXY, CART_SENT],
    ['TLS ended by a trusted proxy', undefined, true, TLS_PROXY, CART_SENT],
    // No Host passed on: the app sees Host: 127.0.0.1:PORT.
    ['Host rewritten by the proxy', undefined, false, {}, CART_SENT],
    [
      'TLS ended by an untrusted proxy, with siteUrl',
      'https://shop.example',
      false,
      TLS_PROXY,
      CART_SENT,
    ],
    [
      'TLS ended by a trusted proxy, with siteUrl',
      'https://shop.example',
      true,
      TLS_PROXY,
      CART_SENT,
    ],
    ['Host rewritten by the proxy, with siteUrl', 'https://shop.example', false, {}, CART_SENT],
  ])('%s: the Referer is the url', async (_what, siteUrl, trusted, headers, expected) => {
    await expectEventUrl(framework, { siteUrl, trusted, headers, referer: CART }, expected);
  });
});

describe('which Referer is the page of a req.track event', () => {
  test.each<[string, string | undefined, string | undefined, string | undefined]>([
    [
      "siteUrl's host on another scheme and port: used",
      'https://shop.example',
      'http://shop.example:8080/cart',
      'http://shop.example:8080/cart',
    ],
    [
      'another host with siteUrl: not used, siteUrl fills the url',
      'https://shop.example',
      'https://evil.example/cart',
      'https://shop.example',
    ],
    [
      'a subdomain of siteUrl is another host',
      'https://shop.example',
      'https://www.shop.example/cart',
      'https://shop.example',
    ],
    [
      'hostnames compare as the URL parser writes them (case, IDNA, a trailing dot)',
      'https://Bücher.example',
      'https://BÜCHER.example./kasse',
      'https://xn--bcher-kva.example./kasse',
    ],
    [
      'an IPv6 host, in any of its spellings',
      'http://[::1]:3000',
      'https://[0:0:0:0:0:0:0:1]/cart',
      'https://[::1]/cart',
    ],
    [
      "siteUrl's base path does not matter, only its host",
      'https://shop.example/store',
      'https://shop.example/blog/post',
      'https://shop.example/blog/post',
    ],
    [
      'another host without siteUrl: used as it is',
      undefined,
      'https://evil.example/cart?utm_source=x&id=1',
      'https://evil.example/cart?utm_source=x',
    ],
    ['no Referer and no siteUrl: no url', undefined, undefined, undefined],
  ])('%s', async (_what, siteUrl, referer, expected) => {
    await expectEventUrl('express5', { siteUrl, trusted: false, headers: {}, referer }, expected);
  });
});

test("a tracker shared without siteUrl: the middleware's siteUrl fills the url of an event from another site's page", async () => {
  const { createTracker } = await import('../src/index');
  const shared = createTracker({ trackingCode: 'ctx', host: collector.url, logger: false });
  const middleware = analytics({ tracker: shared, siteUrl: 'https://shop.example' });
  made.push(middleware);
  const server = buildSite('express5', middleware);
  await request(server)
    .post('/checkout')
    .set('User-Agent', BROWSER_UA)
    .set('Referer', 'https://evil.example/cart')
    .expect(303);
  const [event] = await collector.waitFor(1);
  expect(event).toMatchObject({ type: 'event', name: 'purchase', url: 'https://shop.example' });
});

/** Posts the test site's checkout (which calls req.track('purchase')) and checks the event's url. */
async function expectEventUrl(
  framework: Framework,
  setup: {
    siteUrl: string | undefined;
    trusted: boolean;
    headers: Record<string, string>;
    referer: string | undefined;
  },
  expected: string | undefined,
): Promise<void> {
  const options: AnalyticsOptions = {};
  if (setup.siteUrl !== undefined) options.siteUrl = setup.siteUrl;
  if (setup.trusted && framework === 'connect') options.trustProxy = 'loopback';
  const middleware = mw(options);
  const server = buildSite(framework, middleware, setup.trusted ? { trustProxy: 'loopback' } : {});
  const call = request(server).post('/checkout').set('User-Agent', BROWSER_UA).set(setup.headers);
  if (setup.referer !== undefined) call.set('Referer', setup.referer);
  await call.expect(303);
  const [event] = await collector.waitFor(1);
  expect(event).toMatchObject({ type: 'event', name: 'purchase' });
  expect(event!.url).toBe(expected);
  // The trust setting still decides the visitor's IP.
  expect(event!.headers['x-forwarded-for']).toBe(
    setup.trusted && setup.headers['X-Forwarded-For'] ? '203.0.113.9' : '127.0.0.1',
  );
}
