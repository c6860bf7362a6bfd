/**
 * Delivery to an endpoint far away: the test collector on 127.0.0.1 answers late (`latency`), and
 * the adaptive in-flight limit must keep up with the arrival rate at default options, back off on
 * 429s and follow latency both ways, keep up when every answer closes its connection, and stay
 * bounded against a black hole. Rates and durations are scaled down from the benchmark's
 * (`npm run bench`, distance section) to keep the suite short.
 */
import { createTracker, type Tracker, type TrackerOptions } from '../../src/index';
import { LIMIT_FLOOR } from '../../src/delivery/adaptive-limit';
import type { TestCollector } from '../../src/testing';
import { startCollector } from '../helpers/collector';

jest.setTimeout(60_000);

const open: Tracker[] = [];
afterAll(async () => {
  await Promise.all(open.map((t) => t.close({ timeout: 100 })));
});

function tracker(collector: TestCollector, options: TrackerOptions = {}): Tracker {
  const t = createTracker({
    trackingCode: 'distance',
    host: collector.url,
    logger: false,
    // Every event from one test IP would pass the per-visitor guard's 60 per 10 s.
    visitorRateLimit: false,
    ...options,
  });
  open.push(t);
  return t;
}

/**
 * Hands `rate` events a second to the tracker for `seconds`, paced in 10 ms slots (as requests
 * would arrive), and resolves with their promises and the time of the last one.
 */
async function stream(
  t: Tracker,
  rate: number,
  seconds: number,
): Promise<{ results: Promise<boolean>[]; lastAt: number }> {
  const results: Promise<boolean>[] = [];
  const total = Math.round(rate * seconds);
  const start = Date.now();
  while (results.length < total) {
    const due = Math.min(total, Math.floor(((Date.now() - start) * rate) / 1000) + 1);
    while (results.length < due) results.push(t.trackEvent('e', { i: results.length }));
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  return { results, lastAt: Date.now() };
}

/** Samples `stats().concurrency.limit` every 50 ms until stopped. */
function watchLimit(t: Tracker): { values: number[]; stop: () => void } {
  const values: number[] = [];
  const timer = setInterval(() => values.push(t.stats().concurrency.limit), 50);
  return { values, stop: () => clearInterval(timer) };
}

test('endpoint 100 ms away, 500 events/s at defaults (on the worker): all delivered within 5 s of the last', async () => {
  const collector = await startCollector({ latency: 100, maxEvents: 100_000 });
  const t = tracker(collector);
  expect(t.stats().concurrency).toMatchObject({ adaptive: true, limit: 10 });
  const { results, lastAt } = await stream(t, 500, 3);
  await collector.waitFor(results.length, { timeout: 5000 });
  expect(Date.now() - lastAt).toBeLessThan(5000);
  expect(await Promise.all(results)).toEqual(results.map(() => true));
  const stats = t.stats();
  expect(stats).toMatchObject({ delivered: results.length, dropped: 0, failed: 0 });
  // 500/s at 100 ms needs about 50 in flight: more than the old fixed 10.
  expect(collector.maxOpenRequests).toBeGreaterThan(10);
  expect(collector.maxConnections).toBeLessThanOrEqual(256);
  expect(stats.concurrency.latencyMs).toBeGreaterThanOrEqual(100);
  expect(stats.concurrency.baselineMs).toBeGreaterThanOrEqual(100);
});

test('a 2 s brownout at 30 events/s: nothing dropped, all delivered within 10 s of the last', async () => {
  const collector = await startCollector({ latency: 2000 });
  const t = tracker(collector);
  const { results, lastAt } = await stream(t, 30, 4);
  await collector.waitFor(results.length, { timeout: 10_000 });
  expect(Date.now() - lastAt).toBeLessThan(10_000);
  expect(await Promise.all(results)).toEqual(results.map(() => true));
  expect(t.stats()).toMatchObject({ delivered: results.length, dropped: 0, failed: 0 });
  // 30/s at 2 s needs 60 in flight.
  expect(collector.maxOpenRequests).toBeGreaterThanOrEqual(30);
});

describe('in-thread delivery', () => {
  const inThread = { worker: false } as const;

  test('a 429 storm takes the limit to its floor and pauses as Retry-After says; then all arrive', async () => {
    let storm = true;
    const collector = await startCollector({
      latency: 20,
      respond: () => (storm ? { status: 429, headers: { 'retry-after': '1' } } : 202),
    });
    const t = tracker(collector, inThread);
    const watch = watchLimit(t);
    const { results } = await stream(t, 200, 1);
    const duringStorm = collector.requestCount;
    // Paused for a second after each 429: few attempts reach the endpoint meanwhile.
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(collector.requestCount - duringStorm).toBeLessThanOrEqual(LIMIT_FLOOR * 2);
    expect(Math.min(...watch.values)).toBe(LIMIT_FLOOR);
    storm = false;
    await collector.waitFor(results.length, { timeout: 15_000 });
    watch.stop();
    expect(await Promise.all(results)).toEqual(results.map(() => true));
    expect(t.stats().retries).toBeGreaterThan(0);
  });

  test('a failing brownout (503s at 200 ms) is not amplified: attempts fall to the pace of the floor, then the events arrive', async () => {
    const collector = await startCollector({ latency: 20 });
    const t = tracker(collector, { ...inThread, retryDelay: 200, maxRetryDelay: 2000 });
    const warm = await stream(t, 100, 1);
    await Promise.all(warm.results);
    const attemptsBefore = collector.requestCount;
    const failing = collector.brownout({ latency: 200, status: 503 });
    const { results } = await stream(t, 100, 3);
    const attempts = collector.requestCount - attemptsBefore;
    failing.end();
    // 300 events in 3 s. The old fixed limit of 10 kept 10 attempts in flight, 50 a second
    // (150 here); the limit halves each round of 503s down to its floor (4: 20 a second).
    expect(attempts).toBeLessThan(100);
    expect(t.stats().concurrency.limit).toBeLessThanOrEqual(LIMIT_FLOOR * 2);
    const outcomes = await Promise.all(results);
    const stats = t.stats();
    expect(stats.enqueued).toBe(stats.delivered + stats.failed + stats.dropped);
    expect(outcomes.filter(Boolean).length).toBe(stats.delivered - warm.results.length);
    // Events that met the brownout on each of their attempts fail; the rest arrive.
    expect(stats.delivered - warm.results.length).toBeGreaterThan(results.length * 0.8);
  });

  test('every answer closes its connection: still keeps up, each attempt on a new connection', async () => {
    const collector = await startCollector({
      latency: 50,
      respond: () => ({ status: 202, headers: { connection: 'close' } }),
    });
    const t = tracker(collector, inThread);
    const { results, lastAt } = await stream(t, 300, 2);
    await collector.waitFor(results.length, { timeout: 5000 });
    expect(Date.now() - lastAt).toBeLessThan(5000);
    expect(await Promise.all(results)).toEqual(results.map(() => true));
    expect(t.stats()).toMatchObject({ delivered: results.length, dropped: 0, failed: 0 });
    // One connection set-up per request, and never more than the ceiling (256) open at once.
    expect(collector.connectionCount).toBeGreaterThanOrEqual(results.length);
    expect(collector.maxConnections).toBeLessThanOrEqual(256);
  });

  test('latency that jumps from 50 ms to 3 s and back: the limit follows both ways, nothing dropped', async () => {
    const collector = await startCollector({ latency: 50 });
    const t = tracker(collector, { ...inThread, timeout: 10_000 });
    const watch = watchLimit(t);
    const before = stream(t, 40, 21);
    await new Promise((resolve) => setTimeout(resolve, 2000));
    const calm = t.stats().concurrency.limit;
    const slow = collector.brownout({ latency: 3000, durationMs: 15_000 });
    await new Promise((resolve) => setTimeout(resolve, 15_000));
    expect(slow.active).toBe(false);
    const { results } = await before;
    await collector.waitFor(results.length, { timeout: 15_000 });
    expect(await Promise.all(results)).toEqual(results.map(() => true));
    watch.stop();
    expect(t.stats()).toMatchObject({ delivered: results.length, dropped: 0, failed: 0 });
    // 40/s at 50 ms needs 2 in flight; at 3 s, 120. The first slow answers (3 s after the jump,
    // few in flight) move the baseline; from there the limit at most doubles a round trip
    // (4 -> 8 -> 16 by about 8 s after the jump). A round that mixes 50 ms and 3 s answers can
    // leave the baseline halfway, and the next round then reads as queueing and cuts once, after
    // which growth is a quarter a round: so the test asks for 16, not for the need, within 15 s.
    // It comes back down after.
    // (10 on a quiet machine; 11 once with the machine loaded by other test runs.)
    expect(calm).toBeLessThanOrEqual(12);
    const peak = Math.max(...watch.values);
    expect(peak).toBeGreaterThanOrEqual(16);
    expect(watch.values.at(-1)).toBeLessThan(peak / 2);
  });

  test('a black-holed endpoint at the ceiling: bounded, counted, the limit falls, and close() on time', async () => {
    const collector = await startCollector({ latency: 100, maxEvents: 100_000 });
    const t = tracker(collector, {
      ...inThread,
      maxConcurrency: 32,
      maxQueueSize: 500,
      timeout: 1000,
    });
    // 600/s at 100 ms needs 60 in flight: the limit climbs to its ceiling of 32 (3 s: on a
    // loaded machine 1.5 s once left it at 20).
    const warm = await stream(t, 600, 3);
    expect(t.stats().concurrency.limit).toBe(32);
    // Then nothing answers any more.
    collector.brownout({ latency: 600_000 });
    const results: Promise<boolean>[] = [];
    for (let i = 0; i < 2000; i++) results.push(t.trackEvent('e', { i }));
    await new Promise((resolve) => setTimeout(resolve, 2500));
    const stats = t.stats();
    expect(stats.inFlight).toBeLessThanOrEqual(32);
    expect(collector.maxOpenRequests).toBeLessThanOrEqual(32);
    expect(collector.maxConnections).toBeLessThanOrEqual(32);
    expect(stats.queued).toBeLessThanOrEqual(500);
    expect(stats.reasons.dropped.queue_full).toBeGreaterThan(0);
    expect(stats.enqueued).toBe(
      stats.delivered + stats.failed + stats.dropped + stats.queued + stats.inFlight,
    );
    // Timeouts halve it, once per window of them.
    expect(stats.concurrency.limit).toBeLessThan(32);
    const closing = Date.now();
    await t.close({ timeout: 200 });
    expect(Date.now() - closing).toBeLessThan(2000);
    await Promise.all(warm.results);
    expect(await Promise.all(results)).toEqual(results.map(() => false));
    const end = t.stats();
    expect(end.queued + end.inFlight).toBe(0);
    expect(end.reasons.dropped.closed).toBeGreaterThan(0);
  });
});
