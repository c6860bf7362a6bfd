/**
 * When the middleware learns that a response finished (src/request/finish.ts): from Node's
 * server channel for requests Node's server announced, without a 'finish' listener of its own
 * once the channel has shown it works; from a listener for any other response.
 */
import { channel } from 'node:diagnostics_channel';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import connect from 'connect';
import express from 'express';
import { BROWSER_UA, finishAsPage, handMadeRequest, serveEach } from '../helpers/apps';
import { useCollector } from '../helpers/collector';

const file = useCollector('finish');
const { mw } = file;

test.each([
  ['Express 5', () => express()],
  ['Connect', () => connect()],
])(
  '%s on Node’s server: pageviews come from the channel, without a listener of ours once it has shown it works',
  async (_name, makeApp) => {
    const app = makeApp();
    app.use(mw());
    const listeners: number[] = [];
    app.use((_req: IncomingMessage, res: ServerResponse) => {
      listeners.push(res.listenerCount('finish'));
      res.setHeader('content-type', 'text/html; charset=utf-8');
      res.end('<p>page</p>');
    });
    const paths = ['/', '/cart', '/about', '/products/widget'];
    const base = await serveEach(app as unknown as http.RequestListener, paths);
    const events = await file.collector.waitFor(paths.length);
    expect(events.map((e) => e.url)).toEqual(paths.map((p) => base + p));
    // Node's own listener on each response; ours only while the channel was not yet shown to work
    // (the first response, in this file's copy of the package).
    expect(listeners.slice(1)).toEqual([1, 1, 1]);
    expect(listeners[0]).toBeLessThanOrEqual(2);
  },
);

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
  const [event] = await file.collector.waitFor(1);
  expect(event).toMatchObject({ type: 'pageview', url: 'http://shop.example/made-by-hand' });
});

test('a request found after 16 newer ones were announced gets a listener: every pageview is sent', async () => {
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
  const events = await file.collector.waitFor(N);
  expect(new Set(events.map((e) => e.url)).size).toBe(N);
  // The first test of this file showed the channel works: only the 4 oldest need a listener.
  expect(listeners).toEqual([...new Array(4).fill(2), ...new Array(N - 4).fill(1)]);
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
