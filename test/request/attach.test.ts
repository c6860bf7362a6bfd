/**
 * Where req.analytics and req.track live: accessors on Express's base request prototype (no
 * property added to an Express request), own properties elsewhere; what apps can still do
 * with them either way.
 */
import http, { IncomingMessage, type ServerResponse } from 'node:http';
import v8 from 'node:v8';
import vm from 'node:vm';
import connect from 'connect';
import express5 from 'express';
import request from 'supertest';
import type { AnalyticsMiddleware } from '../../src/index';
import { BROWSER_UA } from '../helpers/apps';
import { useCollector } from '../helpers/collector';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const express4 = require('express4') as typeof express5;

const file = useCollector('attach');
const { mw } = file;

/** What a route sees of req.track and req.analytics. */
function describeRequest(req: IncomingMessage) {
  return {
    ownTrack: Object.hasOwn(req, 'track'),
    ownAnalytics: Object.hasOwn(req, 'analytics'),
    track: typeof req.track,
    sameTrack: req.track === req.track,
    url: req.analytics?.url,
  };
}

describe.each([
  ['Express 5', express5],
  ['Express 4', express4],
])('%s', (_name, express) => {
  test('adds no property to the request; both work in the app and in a mounted app', async () => {
    const app = express();
    app.use(mw());
    const shop = express();
    shop.get('/cart', (req, res) => {
      void req.track('cart_viewed');
      res.json(describeRequest(req));
    });
    app.use('/shop', shop);
    app.get('/', (req, res) => res.json(describeRequest(req)));
    for (const [path, url] of [
      ['/', '/'],
      ['/shop/cart', '/shop/cart'],
    ]) {
      const res = await request(app).get(path!).set('User-Agent', BROWSER_UA).expect(200);
      expect(res.body).toEqual({
        ownTrack: false,
        ownAnalytics: false,
        track: 'function',
        sameTrack: true,
        url: expect.stringMatching(new RegExp(`^http://127\\.0\\.0\\.1:\\d+${url}$`)),
      });
    }
    const [event] = await file.collector.waitFor(1, { filter: (e) => e.type === 'event' });
    expect(event!.name).toBe('cart_viewed');
  });

  test("an app's own req.track, set before or after the middleware, is the app's to keep", async () => {
    const app = express();
    // Before: replaced, as the middleware always did.
    app.use((req, _res, next) => {
      (req as { track: unknown }).track = 'mine';
      next();
    });
    app.use(mw());
    app.get('/first', (req, res) => {
      const ours = typeof req.track;
      // After: the app's assignment stands (on this request only).
      (req as { track: unknown }).track = 'mine again';
      res.json({ ours, then: req.track });
    });
    const plain = express();
    plain.use(mw());
    plain.get('/', (req, res) => res.json({ track: typeof req.track }));

    const res = await request(app).get('/first').set('User-Agent', BROWSER_UA).expect(200);
    expect(res.body).toEqual({ ours: 'function', then: 'mine again' });
    // The next request, in another app of the same Express, still gets ours.
    const next = await request(plain).get('/').set('User-Agent', BROWSER_UA).expect(200);
    expect(next.body).toEqual({ track: 'function' });
  });

  test('req.analytics, made when first read, is one object under the trust setting of the app the middleware saw the request in', async () => {
    const app = express();
    app.set('trust proxy', true);
    app.use(mw());
    // A mounted app that trusts no proxy: the request's context is still the outer app's.
    const inner = express();
    inner.set('trust proxy', false);
    inner.get('/page', (req, res) => {
      const first = req.analytics;
      res.json({ ip: first.ip, same: req.analytics === first, track: req.track === req.track });
    });
    app.use('/inner', inner);
    const res = await request(app)
      .get('/inner/page')
      .set('User-Agent', BROWSER_UA)
      .set('X-Forwarded-For', '203.0.113.77')
      .expect(200);
    expect(res.body).toEqual({ ip: '203.0.113.77', same: true, track: true });
  });

  test('req.track judges the request by the method it came with, not one a later middleware set (method-override)', async () => {
    const app = express();
    app.use(mw());
    app.use((req, _res, next) => {
      // What method-override does with `_method=GET`, after the analytics middleware.
      req.method = 'GET';
      next();
    });
    app.get('/form', (req, res) => {
      void req.track('submitted');
      res.json({ method: req.method });
    });
    await request(app)
      .post('/form')
      .set('User-Agent', BROWSER_UA)
      .set('Referer', 'https://shop.example/cart')
      .expect(200, { method: 'GET' });
    const [event] = await file.collector.waitFor(1, { filter: (e) => e.type === 'event' });
    // A form post happened on the page that made it, not on its own URL.
    expect(event!.url).toBe('https://shop.example/cart');
  });

  test('a request the middleware did not see has neither', async () => {
    const app = express();
    app.get('/early', (req, res) => res.json({ track: typeof req.track, a: typeof req.analytics }));
    app.use(mw());
    const res = await request(app).get('/early').set('User-Agent', BROWSER_UA).expect(200);
    expect(res.body).toEqual({ track: 'undefined', a: 'undefined' });
  });
});

test('an app of another copy of Express, called as a handler, gets both from its own mount', async () => {
  const outer = express5();
  const middleware = mw();
  outer.use(middleware);
  // A copy of Express of its own (as another version installed beside ours would be). Called
  // as a plain handler (as vhost does), not mounted with app.use: Express then does not chain
  // its request prototype to the outer app's, so the outer accessors are not there.
  let fresh: typeof express5 | undefined;
  jest.isolateModules(() => {
    fresh = jest.requireActual('express') as typeof express5;
  });
  expect(fresh).not.toBe(express5);
  const inner = fresh!();
  // Mounted in both apps: counted once (by the outer one), and usable in the inner one.
  inner.use(middleware);
  inner.get('/inner/buy', (req, res) => {
    void req.track('bought');
    res.json(describeRequest(req));
  });
  outer.use((req, res, next) => inner(req, res, next));
  const res = await request(outer).get('/inner/buy').set('User-Agent', BROWSER_UA).expect(200);
  expect(res.body).toMatchObject({ track: 'function', sameTrack: true });
  expect(res.body.url).toMatch(/\/inner\/buy$/);
  const [event] = await file.collector.waitFor(1, { filter: (e) => e.type === 'event' });
  expect(event!.name).toBe('bought');
  await middleware.tracker.flush();
  expect(middleware.tracker.stats().enqueued).toBe(1);
});

test('Connect and plain http requests get own properties, as any middleware adds them', async () => {
  const app = connect();
  app.use(mw());
  app.use((req: IncomingMessage, res: ServerResponse) => {
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify(describeRequest(req)));
  });
  const res = await request(http.createServer(app)).get('/').set('User-Agent', BROWSER_UA);
  expect(res.body).toMatchObject({ ownTrack: true, ownAnalytics: true, track: 'function' });
});

describe('a framework prototype the accessors cannot go on', () => {
  /** A server whose requests get `prototype`, as Express does with its own. */
  function server(prototype: object, middleware: AnalyticsMiddleware) {
    return http.createServer((req, res) => {
      Object.setPrototypeOf(req, prototype);
      middleware(req, res, () => {
        void req.track('seen');
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify(describeRequest(req)));
      });
    });
  }

  test.each([
    ['frozen', () => Object.freeze(Object.create(IncomingMessage.prototype) as object)],
    [
      'with its own `analytics`',
      () => Object.create(IncomingMessage.prototype, { analytics: { value: 'theirs' } }) as object,
    ],
  ])('%s: own properties instead, and everything works', async (_what, makeBase) => {
    const base = makeBase();
    const res = await request(server(Object.create(base) as object, mw()))
      .get('/')
      .set('User-Agent', BROWSER_UA)
      .expect(200);
    expect(res.body).toMatchObject({ ownTrack: true, ownAnalytics: true, track: 'function' });
    expect(res.body.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/$/);
    const [event] = await file.collector.waitFor(1, { filter: (e) => e.type === 'event' });
    expect(event!.name).toBe('seen');
  });
});

test('a request is not kept alive by its context: the WeakMap holds the context as the value of the request', async () => {
  // A value that points back to its key keeps the key alive through V8's minor GCs: every
  // request, its response and their buffers would be promoted to the old generation.
  v8.setFlagsFromString('--expose-gc');
  const gc = vm.runInNewContext('gc') as () => void;
  const kept: { context?: unknown; track?: unknown; request?: WeakRef<object> } = {};
  for (const make of [express5, express4] as const) {
    const app = make();
    app.use(mw());
    app.get('/', (req, res) => {
      kept.request = new WeakRef(req);
      kept.context = req.analytics;
      kept.track = req.track;
      res.type('html').send('<p>page</p>');
    });
    await request(app).get('/').set('user-agent', BROWSER_UA).expect(200);
    let collected = false;
    for (let i = 0; i < 20 && !collected; i++) {
      await new Promise((resolve) => setTimeout(resolve, 5));
      gc();
      collected = kept.request!.deref() === undefined;
    }
    expect(kept.context).toBeDefined();
    expect(collected).toBe(true);
  }
});
