/**
 * A response handed to the channel before it has shown that it works, whose tracker closes
 * before the response finishes: the channel is let go of meanwhile, so the check's listener
 * finds the handler still there without the channel being at fault, and must not turn it off.
 * Its own file: the check runs only until this copy of the package has seen the channel work.
 */
import { channel } from 'node:diagnostics_channel';
import express from 'express';
import { analytics } from '../../src/index';
import type { TestCollector } from '../../src/testing';
import { finishAsPage, handMadeRequest, serveEach } from '../helpers/apps';
import { startCollector } from '../helpers/collector';

let collector: TestCollector;
beforeAll(async () => {
  collector = await startCollector();
});

test('a tracker closed while its response was waiting for the channel leaves the channel in use', async () => {
  const first = analytics({ trackingCode: 'close', host: collector.url, logger: false });
  const { req, res } = handMadeRequest('/waiting');
  channel('http.server.request.start').publish({ request: req, response: res });
  first(req, res, () => undefined);
  expect(res.listenerCount('finish')).toBe(1); // the check's
  await first.tracker.close();
  finishAsPage(res);
  // Sent to a closed tracker: dropped, as it would have been with a listener.
  expect(first.tracker.stats().reasons.dropped.closed).toBe(1);

  const second = analytics({ trackingCode: 'close', host: collector.url, logger: false });
  const app = express();
  app.use(second);
  const listeners: number[] = [];
  app.use((_req, response) => {
    listeners.push(response.listenerCount('finish'));
    response.type('html').send('<p>page</p>');
  });
  await serveEach(app, ['/a', '/b']);
  // Still the channel: the check again on the first, then nothing of ours.
  expect(listeners).toEqual([2, 1]);
  await collector.waitFor(2);
  await second.tracker.close();
  expect(collector.events.map((e) => new URL(e.url!).pathname)).toEqual(['/a', '/b']);
});
