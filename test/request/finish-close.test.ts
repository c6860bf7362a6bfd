/**
 * A response handed to the channel before it has shown that it works, whose tracker closes
 * before the response finishes: the channel is let go of meanwhile, so the check's listener
 * finds the handler still there without the channel being at fault, and must not turn it off.
 * Its own file: the check runs only until this copy of the package has seen the channel work.
 */
import express from 'express';
import { announcedRequest, countFinishListeners, finishAsPage, serveEach } from '../helpers/apps';
import { useCollector } from '../helpers/collector';

const file = useCollector('close');

test('a tracker closed while its response was waiting for the channel leaves the channel in use', async () => {
  const first = file.mw();
  const { req, res } = announcedRequest('/waiting');
  first(req, res, () => undefined);
  expect(res.listenerCount('finish')).toBe(1); // the check's
  await first.tracker.close();
  finishAsPage(res);
  // Sent to a closed tracker: dropped, as it would have been with a listener.
  expect(first.tracker.stats().reasons.dropped.closed).toBe(1);

  const second = file.mw();
  const app = express();
  const listeners = countFinishListeners(app, second);
  await serveEach(app, ['/a', '/b']);
  // Still the channel: the check again on the first, then nothing of ours.
  expect(listeners).toEqual([2, 1]);
  await file.collector.waitFor(2);
  await second.tracker.close();
  expect(file.collector.events.map((e) => new URL(e.url!).pathname)).toEqual(['/a', '/b']);
});
