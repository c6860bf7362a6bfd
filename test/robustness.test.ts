/**
 * Found in review: ways the package could have hurt its host app, each now a test.
 */
import http from 'node:http';
import { inspect } from 'node:util';
import express from 'express';
import request from 'supertest';
import { analytics, closeOnShutdown, createTracker, type Tracker } from '../src/index';
import type { TestCollector } from '../src/testing';
import { BROWSER_UA } from './helpers/apps';
import { startCollector } from './helpers/collector';

let collector: TestCollector;
const open: Tracker[] = [];
beforeAll(async () => {
  collector = await startCollector();
});
beforeEach(() => collector.reset());
afterAll(() => Promise.all(open.map((t) => t.close({ timeout: 100 }))));

function keep<T extends Tracker>(t: T): T {
  open.push(t);
  return t;
}

test('a visitor ip that is not a string never throws', async () => {
  const t = keep(createTracker({ trackingCode: 'r', host: collector.url, logger: false }));
  for (const ip of [null, 42, {}, ['1.2.3.4']]) {
    await expect(t.trackEvent('e', {}, { ip: ip as never })).resolves.toBe(true);
  }
  expect(collector.events.every((e) => e.headers['x-forwarded-for'] === undefined)).toBe(true);
});

test('a transport that ignores its abort signal cannot hold close() past its timeout', async () => {
  const t = keep(
    createTracker({
      trackingCode: 'r',
      host: collector.url,
      logger: false,
      timeout: 100,
      maxRetries: 0,
      transport: { send: () => new Promise(() => undefined) },
    }),
  );
  const result = t.trackEvent('never');
  await expect(result).resolves.toBe(false);
  expect(t.stats().reasons.failed.timeout).toBe(1);
  const pending = t.trackEvent('also-never');
  const started = Date.now();
  await t.close({ timeout: 50 });
  expect(Date.now() - started).toBeLessThan(1000);
  await expect(pending).resolves.toBe(false);
});

test("a tracker of the app's own that rejects never reaches the app", async () => {
  const failing = {
    trackEvent: () => Promise.reject(new Error('custom tracker down')),
    trackPageview: () => Promise.reject(new Error('custom tracker down')),
    flush: async () => undefined,
    close: async () => undefined,
    stats: () => createTracker({ trackingCode: 'x', logger: false }).stats(),
    on() {
      return this;
    },
    off() {
      return this;
    },
  } as unknown as Tracker;
  const app = express();
  app.use(analytics({ tracker: failing, logger: false }));
  app.get('/', async (req, res) => {
    const ok = await req.track('e');
    res.type('html').send(`<p>${ok}</p>`);
  });
  const res = await request(app).get('/').set('User-Agent', BROWSER_UA).expect(200);
  expect(res.text).toBe('<p>false</p>');
  await new Promise((r) => setTimeout(r, 20)); // the pageview's rejection, had it escaped
});

test('req.track after the connection closed still forwards the visitor IP', async () => {
  const middleware = analytics({ trackingCode: 'r', host: collector.url, logger: false });
  keep(middleware.tracker);
  let late: Promise<boolean> | undefined;
  const app = express();
  app.use(middleware);
  app.post('/signup', (req, res) => {
    res.status(201).json({ ok: true });
    // Work that goes on after the response (an e-mail sent, say), then the event.
    setTimeout(() => (late = req.track('signup_late')), 150);
  });
  const server = app.listen(0, '127.0.0.1');
  await new Promise((r) => server.once('listening', r));
  const { port } = server.address() as import('node:net').AddressInfo;
  await new Promise<void>((resolve) => {
    const req = http.request(
      {
        port,
        host: '127.0.0.1',
        method: 'POST',
        path: '/signup',
        headers: { connection: 'close', 'user-agent': BROWSER_UA },
      },
      (res) => {
        res.resume();
        res.on('end', resolve);
      },
    );
    req.end();
  });
  await new Promise((r) => setTimeout(r, 250));
  server.close();
  await expect(late).resolves.toBe(true);
  expect(collector.events[0]!.headers['x-forwarded-for']).toBe('127.0.0.1');
});

test('per-call url and referrer of req.track get the query policy too', async () => {
  const middleware = analytics({
    trackingCode: 'r',
    host: collector.url,
    logger: false,
    siteUrl: 'https://shop.example',
  });
  keep(middleware.tracker);
  const app = express();
  app.use(middleware);
  app.post('/reset', async (req, res) => {
    await req.track(
      'password_reset',
      {},
      {
        url: '/reset?token=SECRET1&utm_source=mail',
        referrer: 'https://mail.example/inbox?session=SECRET2',
      },
    );
    res.json({});
  });
  await request(app).post('/reset').set('User-Agent', BROWSER_UA).expect(200);
  expect(collector.events[0]).toMatchObject({
    url: 'https://shop.example/reset?utm_source=mail',
    referrer: 'https://mail.example/inbox',
  });
  expect(JSON.stringify(collector.events[0])).not.toContain('SECRET');
});

test('logging req.analytics never shows the request (cookies, authorization)', async () => {
  const middleware = analytics({ trackingCode: 'r', host: collector.url, logger: false });
  keep(middleware.tracker);
  const app = express();
  app.use(middleware);
  app.get('/', (req, res) => res.type('text').send(inspect(req.analytics, { depth: 5 })));
  const res = await request(app)
    .get('/')
    .set('User-Agent', BROWSER_UA)
    .set('Cookie', 'sid=COOKIE_SECRET')
    .set('Authorization', 'Bearer TOKEN_SECRET')
    .expect(200);
  expect(res.text).not.toContain('SECRET');
  expect(res.text).toContain('ip:');
  expect(res.text).toContain('device:');
});

test('closeOnShutdown checks its options when called, not at the signal', () => {
  const t = keep(createTracker({ trackingCode: 'r', host: collector.url, logger: false }));
  expect(() => closeOnShutdown(t, { timeout: '3000' as never })).toThrow(
    /`timeout` must be a number/,
  );
  expect(() => closeOnShutdown(t, { signals: 'SIGTERM' as never })).toThrow(
    /`signals` must be an array/,
  );
});

test('the collector answers 500 when respond() throws, and close() clears late answers', async () => {
  const c = await startCollector({
    respond: (_e, i) => {
      if (i === 0) throw new Error('bad script');
      return { status: 202, delayMs: 60_000 };
    },
  });
  const status = await new Promise<number>((resolve) => {
    const req = http.request(`${c.url}/e/k`, { method: 'POST' }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.end('{"type":"event","name":"x"}');
  });
  expect(status).toBe(500);
  const late = http.request(`${c.url}/e/k`, { method: 'POST' });
  late.on('error', () => undefined);
  late.end('{"type":"event","name":"y"}');
  await new Promise((r) => setTimeout(r, 50));
  const started = Date.now();
  await c.close();
  expect(Date.now() - started).toBeLessThan(1000);
});
