/**
 * When the middleware learns that a response finished (src/request/finish.ts): from Node's
 * server channel for requests Node's server announced, without a 'finish' listener of its own
 * once the channel has shown it works; from a listener for any other response.
 */
import { channel } from 'node:diagnostics_channel';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import connect from 'connect';
import express from 'express';
import {
  BROWSER_UA,
  countFinishListeners,
  finishAsPage,
  handMadeRequest,
  serveEach,
} from '../helpers/apps';
import { useCollector } from '../helpers/collector';

const file = useCollector('finish');
const { mw } = file;

/** A page app on `makeApp()` with a new middleware, and the 'finish' listeners of each response. */
function pageApp(makeApp: () => express.Express | connect.Server) {
  const app = makeApp();
  const listeners = countFinishListeners(app, mw());
  return { handler: app as unknown as http.RequestListener, listeners };
}

/** Exactly these pageview URLs reached the collector, once each. */
async function expectPageviews(urls: string[]): Promise<void> {
  await file.collector.waitFor(urls.length);
  await file.flush();
  expect(file.collector.events.map((e) => e.url)).toEqual(urls);
}

test('the first response handed to the channel also gets the checking listener; once the channel has worked, none does', async () => {
  const { handler, listeners } = pageApp(() => express());
  const paths = ['/', '/cart', '/about'];
  const base = await serveEach(handler, paths);
  await expectPageviews(paths.map((p) => base + p));
  // Node's own listener on each; the first one also the check's.
  expect(listeners).toEqual([2, 1, 1]);
});

test.each([
  ['Express 5', () => express()],
  ['Connect', () => connect()],
])(
  '%s on Node’s server: pageviews come from the channel, no listener of ours',
  async (_name, makeApp) => {
    await channelShownToWork();
    const { handler, listeners } = pageApp(makeApp);
    const paths = ['/', '/cart', '/about', '/products/widget'];
    const base = await serveEach(handler, paths);
    await expectPageviews(paths.map((p) => base + p));
    expect(listeners).toEqual([1, 1, 1, 1]);
  },
);

/** Makes sure this file's copy of the package has seen the channel work (whatever ran before). */
async function channelShownToWork(): Promise<void> {
  const { handler } = pageApp(() => express());
  await serveEach(handler, ['/warm-up']);
  await file.collector.waitFor(1);
  await file.flush();
  file.collector.reset();
}

test('a response no server announced gets a listener, and its pageview is sent', async () => {
  const middleware = mw();
  const { req, res } = handMadeRequest('/made-by-hand');
  let passed = false;
  middleware(req, res, () => {
    passed = true;
  });
  expect(passed).toBe(true);
  expect(res.listenerCount('finish')).toBe(1);
  finishAsPage(res);
  await expectPageviews(['http://shop.example/made-by-hand']);
});

test('a request found after 16 newer ones were announced gets a listener: every pageview is sent once', async () => {
  await channelShownToWork();
  // A middleware before ours holds every request until all have come (as an async step would),
  // so the first ones fall out of the 16 newest announced that the middleware looks among.
  const N = 20;
  const held: (() => void)[] = [];
  const app = express();
  let arrived = 0;
  app.use((req, _res, next) => {
    (req as { order?: number }).order = arrived++;
    held.push(next);
    if (held.length === N) for (const release of held) release();
  });
  app.use(mw());
  const listeners = new Array<number>(N);
  app.use((req, res) => {
    listeners[(req as { order?: number }).order!] = res.listenerCount('finish');
    res.type('html').send('<p>page</p>');
  });
  const server = http.createServer(app);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  try {
    const answers = await Promise.all(
      Array.from({ length: N }, (_, i) =>
        fetch(`${base}/p${i}`, { headers: { 'user-agent': BROWSER_UA } }).then((r) => r.text()),
      ),
    );
    expect(answers).toEqual(new Array(N).fill('<p>page</p>'));
  } finally {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
  await file.collector.waitFor(N);
  await file.flush();
  expect(file.collector.events.map((e) => e.url).sort()).toEqual(
    Array.from({ length: N }, (_, i) => `${base}/p${i}`).sort(),
  );
  // The oldest got a listener, the newest none: at least the 4 oldest (more if anything else in
  // this process, the collector say, was announced while they were held), never the newest.
  const withListener = listeners.filter((n) => n === 2).length;
  expect(listeners).toEqual([
    ...new Array(withListener).fill(2),
    ...new Array(N - withListener).fill(1),
  ]);
  expect(withListener).toBeGreaterThanOrEqual(4);
  expect(withListener).toBeLessThanOrEqual(8);
});

test('odd messages on the finish channel are ignored, never thrown', async () => {
  const finish = channel('http.server.response.finish');
  const start = channel('http.server.request.start');
  const uncaught: unknown[] = [];
  const onUncaught = (error: unknown) => uncaught.push(error);
  process.on('uncaughtException', onUncaught);
  try {
    mw();
    for (const message of [
      undefined,
      null,
      7,
      {},
      { request: null },
      { request: 'x' },
      { request: {} },
    ]) {
      start.publish(message);
      finish.publish(message);
    }
    // A subscriber's error would surface on the next tick.
    await new Promise((resolve) => setImmediate(resolve));
  } finally {
    process.off('uncaughtException', onUncaught);
  }
  expect(uncaught).toEqual([]);
});
