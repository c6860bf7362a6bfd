/**
 * Node calls its server channels experimental: if `http.server.response.finish` ever stops
 * coming before the app's own 'finish' listeners, the check on the first responses handed to it
 * sends their pageviews from a listener, and the channel is not relied on again. Its own file:
 * the check runs only until the first response of this copy of the package shows the channel
 * works, and here the first one must be a response whose finish the channel never announces.
 */
import { channel } from 'node:diagnostics_channel';
import http, { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import { analytics, type AnalyticsMiddleware } from '../../src/index';
import type { TestCollector } from '../../src/testing';
import { BROWSER_UA } from '../helpers/apps';
import { startCollector } from '../helpers/collector';

let collector: TestCollector;
let middleware: AnalyticsMiddleware;
beforeAll(async () => {
  collector = await startCollector();
  middleware = analytics({ trackingCode: 'check', host: collector.url, logger: false });
});
afterAll(async () => {
  await middleware.tracker.close();
});

test('a channel that misses a finish: the pageview is sent all the same, and listeners take over', async () => {
  // Announced as Node's server announces a request, but its finish is never announced.
  const socket = { remoteAddress: '203.0.113.7', remotePort: 40000, encrypted: false };
  const req = new IncomingMessage(socket as never);
  req.method = 'GET';
  req.url = '/announced';
  req.headers = { host: 'shop.example', 'user-agent': BROWSER_UA, accept: 'text/html' };
  const res = new ServerResponse(req);
  channel('http.server.request.start').publish({ request: req, response: res });
  middleware(req, res, () => undefined);
  // The check's listener: the channel has not shown yet that it works.
  expect(res.listenerCount('finish')).toBe(1);
  res.statusCode = 200;
  res.setHeader('content-type', 'text/html');
  res.emit('finish');
  const [first] = await collector.waitFor(1);
  expect(first).toMatchObject({ type: 'pageview', url: 'http://shop.example/announced' });

  // From now on every response gets a listener, also those Node's server announced.
  const app = express();
  app.use(middleware);
  const listeners: number[] = [];
  app.use((_req, response) => {
    listeners.push(response.listenerCount('finish'));
    response.type('html').send('<p>page</p>');
  });
  const server = http.createServer(app);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  try {
    for (const path of ['/a', '/b']) {
      const answer = await fetch(base + path, { headers: { 'user-agent': BROWSER_UA } });
      expect(await answer.text()).toBe('<p>page</p>');
    }
  } finally {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
  expect(listeners).toEqual([2, 2]);
  const events = await collector.waitFor(3);
  expect(events.map((e) => e.url)).toEqual([
    'http://shop.example/announced',
    `${base}/a`,
    `${base}/b`,
  ]);
  // Each pageview once: the channel, which still announces these, does not send them again.
  await middleware.tracker.flush();
  expect(collector.events).toHaveLength(3);
});
