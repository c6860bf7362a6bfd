/**
 * The middleware listens to Node's server channels only while its own tracker is open: the last
 * one of this copy of the package to close lets go of them (a test runner that loads the package
 * again for each file would otherwise keep every copy, and the requests it remembers, alive).
 * Its own file: every middleware of this copy must be closed for the channels to be let go.
 */
import express from 'express';
import { analytics, type AnalyticsMiddleware } from '../../src/index';
import type { TestCollector } from '../../src/testing';
import { serveEach } from '../helpers/apps';
import { startCollector } from '../helpers/collector';

let collector: TestCollector;
beforeAll(async () => {
  collector = await startCollector();
});

function pageApp(middleware: AnalyticsMiddleware) {
  const app = express();
  app.use(middleware);
  const listeners: number[] = [];
  app.use((_req, res) => {
    listeners.push(res.listenerCount('finish'));
    res.type('html').send('<p>page</p>');
  });
  return { app, listeners };
}

test('closing the last tracker lets go of the channels; a new middleware listens again', async () => {
  const first = analytics({ trackingCode: 'release', host: collector.url, logger: false });
  const second = analytics({ trackingCode: 'release', host: collector.url, logger: false });
  const a = pageApp(first);
  await serveEach(a.app, ['/one', '/two']);
  // The first response also had the check's listener; then the channel alone.
  expect(a.listeners).toEqual([2, 1]);
  await collector.waitFor(2);

  // One of two closed: the other still uses the channel.
  await second.tracker.close();
  await serveEach(a.app, ['/three']);
  expect(a.listeners).toEqual([2, 1, 1]);
  await collector.waitFor(3);

  // The last one closed: a listener again, and the pageview counted as dropped, as before.
  await first.tracker.close();
  const dropped = first.tracker.stats().reasons.dropped.closed;
  await serveEach(a.app, ['/after-close']);
  expect(a.listeners).toEqual([2, 1, 1, 2]);
  expect(first.tracker.stats().reasons.dropped.closed).toBe(dropped + 1);

  // A new middleware listens again; the channel is known to work by now.
  const third = analytics({ trackingCode: 'release', host: collector.url, logger: false });
  const b = pageApp(third);
  await serveEach(b.app, ['/four']);
  expect(b.listeners).toEqual([1]);
  const events = await collector.waitFor(4);
  expect(events.map((e) => new URL(e.url!).pathname)).toEqual(['/one', '/two', '/three', '/four']);
  await third.tracker.close();
});
