/**
 * Node calls its server channels experimental: if `http.server.response.finish` ever stops
 * coming before the app's own 'finish' listeners, the check on the first responses handed to it
 * sends their pageviews from a listener, and the channel is not relied on again. Its own file:
 * the check runs only until the first response of this copy of the package shows the channel
 * works, and here the first one must be a response whose finish the channel never announces.
 */
import express from 'express';
import { announcedRequest, countFinishListeners, finishAsPage, serveEach } from '../helpers/apps';
import { useCollector } from '../helpers/collector';

const file = useCollector('check');

test('a channel that misses a finish: the pageview is sent all the same, and listeners take over', async () => {
  const middleware = file.mw();
  // Announced as Node's server announces a request, but its finish is never announced.
  const { req, res } = announcedRequest('/announced');
  middleware(req, res, () => undefined);
  // The check's listener: the channel has not shown yet that it works.
  expect(res.listenerCount('finish')).toBe(1);
  finishAsPage(res);
  const [first] = await file.collector.waitFor(1);
  expect(first).toMatchObject({ type: 'pageview', url: 'http://shop.example/announced' });

  // From now on every response gets a listener, also those Node's server announced.
  const app = express();
  const listeners = countFinishListeners(app, middleware);
  const base = await serveEach(app, ['/a', '/b']);
  expect(listeners).toEqual([2, 2]);
  const events = await file.collector.waitFor(3);
  expect(events.map((e) => e.url)).toEqual([
    'http://shop.example/announced',
    `${base}/a`,
    `${base}/b`,
  ]);
  // Each pageview once: the channel, which still announces these, does not send them again.
  await middleware.tracker.flush();
  expect(file.collector.events).toHaveLength(3);
});
