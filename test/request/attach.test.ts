/**
 * Where req.analytics and req.track live: accessors on Express's base request prototype (no
 * property added to an Express request), own properties elsewhere; what apps can still do
 * with them either way.
 */
import http, { IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { inspect } from 'node:util';
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

test('a request is not kept alive by its context, nor by its socket once its response finished', async () => {
  // For requests without a rawHeaders array the WeakMap holds the context as the value of the
  // request: a value that points back to its key keeps the key alive through V8's minor GCs.
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

describe("where the context is found (attach.ts): stamps on the request's rawHeaders and socket", () => {
  /** GET `paths` one after another on one keep-alive connection; the answers' bodies. */
  async function onOneConnection(server: http.Server, paths: string[]): Promise<string[]> {
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const sockets = new Set<Socket>();
    const bodies: string[] = [];
    try {
      for (const path of paths) {
        bodies.push(
          await new Promise<string>((resolve, reject) => {
            const { port } = server.address() as AddressInfo;
            const req = http.get(
              { port, host: '127.0.0.1', path, agent, headers: { 'user-agent': BROWSER_UA } },
              (res) => {
                let body = '';
                res.setEncoding('utf8');
                res.on('data', (chunk: string) => (body += chunk));
                res.on('end', () => resolve(body));
              },
            );
            req.on('socket', (socket) => sockets.add(socket));
            req.on('error', reject);
          }),
        );
      }
    } finally {
      agent.destroy();
      await new Promise((resolve) => server.close(resolve));
    }
    // The agent kept one connection: the requests followed each other on one server socket.
    expect(sockets.size).toBe(1);
    return bodies;
  }

  test.each([
    ['Express 5', express5],
    ['Express 4', express4],
  ])(
    '%s: a middleware after ours gives the request a new rawHeaders array; both still work, the pageview is sent',
    async (_name, express) => {
      const app = express();
      app.use(mw());
      app.use((req, _res, next) => {
        req.rawHeaders = [...req.rawHeaders, 'X-Normalised', '1'];
        next();
      });
      app.get('/replaced', (req, res) => {
        void req.track('replaced_raw');
        res.type('html').send(JSON.stringify(describeRequest(req)));
      });
      const res = await request(app).get('/replaced').set('User-Agent', BROWSER_UA).expect(200);
      expect(JSON.parse(res.text)).toMatchObject({ track: 'function', sameTrack: true });
      const events = await file.collector.waitFor(2, {
        filter: (e) => new URL(e.url!).pathname === '/replaced',
      });
      expect(events.map((e) => [e.type, e.name, new URL(e.url!).pathname]).sort()).toEqual([
        ['event', 'replaced_raw', '/replaced'],
        ['pageview', undefined, '/replaced'],
      ]);
    },
  );

  test("req.track after the response finished and the next request on the connection began: found by the request's rawHeaders", async () => {
    const app = express5();
    app.use(mw());
    let first: IncomingMessage | undefined;
    app.get('/first', (req, res) => {
      first = req;
      res.json({ ok: true });
    });
    // The second request stamps the socket: the first is no longer the one in flight there.
    app.get('/second', (req, res) => {
      res.json({ late: typeof first!.track });
      void first!.track('late_event');
    });
    const bodies = await onOneConnection(http.createServer(app), ['/first', '/second']);
    expect(JSON.parse(bodies[1]!)).toEqual({ late: 'function' });
    const [event] = await file.collector.waitFor(1, { filter: (e) => e.name === 'late_event' });
    expect(new URL(event!.url!).pathname).toBe('/first');
  });

  test('the stamps are invisible: the rawHeaders array and the socket show no new key, to inspect or to Reflect.ownKeys', async () => {
    const app = express5();
    const before: { raw?: string; rawKeys?: number; socketKeys?: string[] } = {};
    app.use((req, _res, next) => {
      // Node keeps the peer's address on the socket when first read (the middleware reads it).
      void req.socket.remoteAddress;
      before.raw = inspect(req.rawHeaders, { showHidden: true });
      before.rawKeys = Reflect.ownKeys(req.rawHeaders).length;
      before.socketKeys = Reflect.ownKeys(req.socket).map(String);
      next();
    });
    app.use(mw());
    app.get('/', (req, res) => {
      res.json({
        attached: typeof req.analytics?.url,
        raw: inspect(req.rawHeaders, { showHidden: true }),
        rawKeys: Reflect.ownKeys(req.rawHeaders).length,
        socketKeys: Reflect.ownKeys(req.socket).map(String),
      });
    });
    const res = await request(app).get('/').set('User-Agent', BROWSER_UA).expect(200);
    expect(res.body).toEqual({
      attached: 'string',
      raw: before.raw,
      rawKeys: before.rawKeys,
      socketKeys: before.socketKeys,
    });
  });

  test('a request whose rawHeaders is no array (made by hand) is found all the same, also after its response', async () => {
    const app = express5();
    app.use((req, _res, next) => {
      Object.defineProperty(req, 'rawHeaders', { value: 'not an array' });
      next();
    });
    app.use(mw());
    app.get('/hand', (req, res) => {
      // Once the response has finished, the socket no longer leads to the request.
      res.on('finish', () => setImmediate(() => void req.track('by_hand')));
      res.type('html').send(JSON.stringify(describeRequest(req)));
    });
    const res = await request(app).get('/hand').set('User-Agent', BROWSER_UA).expect(200);
    expect(JSON.parse(res.text)).toMatchObject({ track: 'function', sameTrack: true });
    const [event] = await file.collector.waitFor(1, { filter: (e) => e.name === 'by_hand' });
    expect(new URL(event!.url!).pathname).toBe('/hand');
  });

  test('requests that share one rawHeaders array (made so by hand) each keep their own context', async () => {
    const shared = ['Host', 'shop.example', 'User-Agent', BROWSER_UA];
    const app = express5();
    app.use((req, _res, next) => {
      req.rawHeaders = shared;
      next();
    });
    app.use(mw());
    let first: IncomingMessage | undefined;
    app.get(['/a', '/b'], (req, res) => {
      if (req.path === '/a') first = req;
      // The first request's response has finished: only its rawHeaders can lead to it.
      else void first!.track('shared_first');
      void req.track(req.path === '/a' ? 'own_first' : 'shared_second');
      res.type('text').send('ok');
    });
    await request(app).get('/a').set('User-Agent', BROWSER_UA).expect(200);
    await request(app).get('/b').set('User-Agent', BROWSER_UA).expect(200);
    const events = await file.collector.waitFor(3, { filter: (e) => e.type === 'event' });
    expect(events.map((e) => [e.name, new URL(e.url!).pathname]).sort()).toEqual([
      ['own_first', '/a'],
      ['shared_first', '/a'],
      ['shared_second', '/b'],
    ]);
  });

  test('the socket lets go of the request when its response finishes', async () => {
    // What every copy of the package shares (attach.ts), read here to see the socket's stamp.
    const registry = (globalThis as Record<symbol, unknown>)[
      Symbol.for('zenovay-express.requests.v2')
    ] as { stampOf(holder: object): { request: object } | undefined };
    const app = express5();
    app.use(mw());
    const seen: { during?: boolean; after?: boolean }[] = [];
    app.get(['/page', '/api/x'], (req, res) => {
      const socket = req.socket;
      const entry = { during: registry.stampOf(socket)?.request === req } as {
        during: boolean;
        after?: boolean;
      };
      seen.push(entry);
      res.on('finish', () => {
        entry.after = registry.stampOf(socket) !== undefined;
      });
      if (req.path === '/page') res.type('html').send('<p>page</p>');
      else res.json({ api: true });
    });
    await onOneConnection(http.createServer(app), ['/page', '/api/x']);
    // A page (tracked) and an API call (not tracked): both let go.
    expect(seen).toEqual([
      { during: true, after: false },
      { during: true, after: false },
    ]);
  });
});
