/**
 * The middleware listens to Node's server channels only while its own tracker is open: the last
 * one of this copy of the package to close lets go of them (a test runner that loads the package
 * again for each file would otherwise keep every copy, and the requests it remembers, alive).
 * Its own file: every middleware of this copy must be closed for the channels to be let go.
 */
import express from 'express';
import { countFinishListeners, serveEach } from '../helpers/apps';
import { useCollector } from '../helpers/collector';

const file = useCollector('release');

test('closing the last tracker lets go of the channels; a new middleware listens again', async () => {
  const first = file.mw();
  const second = file.mw();
  const appA = express();
  const listenersA = countFinishListeners(appA, first);
  await serveEach(appA, ['/one', '/two']);
  // The first response also had the check's listener; then the channel alone.
  expect(listenersA).toEqual([2, 1]);
  await file.collector.waitFor(2);

  // One of two closed: the other still uses the channel.
  await second.tracker.close();
  await serveEach(appA, ['/three']);
  expect(listenersA).toEqual([2, 1, 1]);
  await file.collector.waitFor(3);

  // The last one closed: a listener again, and the pageview counted as dropped, as before.
  await first.tracker.close();
  const dropped = first.tracker.stats().reasons.dropped.closed;
  await serveEach(appA, ['/after-close']);
  expect(listenersA).toEqual([2, 1, 1, 2]);
  expect(first.tracker.stats().reasons.dropped.closed).toBe(dropped + 1);

  // A new middleware listens again; the channel is known to work by now.
  const third = file.mw();
  const appB = express();
  const listenersB = countFinishListeners(appB, third);
  await serveEach(appB, ['/four']);
  expect(listenersB).toEqual([1]);
  const events = await file.collector.waitFor(4);
  expect(events.map((e) => new URL(e.url!).pathname)).toEqual(['/one', '/two', '/three', '/four']);
  await third.tracker.close();
});
