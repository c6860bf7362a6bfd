/**
 * Delivery under faults, against the fault-injecting collector on 127.0.0.1: retries, 429 pauses,
 * outages and the circuit, the per-visitor guard, bounded memory, events for listeners.
 */
import {
  createTracker,
  type Tracker,
  type TrackerOptions,
  type TrackerStats,
} from '../../src/index';
import type { CollectorAnswer, TestCollector } from '../../src/testing';
import { startCollector } from '../helpers/collector';

const open: Tracker[] = [];
afterAll(async () => {
  await Promise.all(open.map((t) => t.close({ timeout: 100 })));
});

/** Fast retries: the arithmetic is tested with fake timers elsewhere. */
/** Which delivery mode the current block tests. */
let onWorker = true;

function tracker(collector: { url: string }, options: TrackerOptions = {}): Tracker {
  const t = createTracker({
    trackingCode: 'faults',
    host: collector.url,
    logger: false,
    worker: onWorker,
    retryDelay: 5,
    maxRetryDelay: 20,
    ...options,
  });
  open.push(t);
  return t;
}

function expectBalanced(s: TrackerStats): void {
  expect(s.enqueued).toBe(s.delivered + s.failed + s.dropped + s.queued + s.inFlight);
}

/** A collector that also notes the Idempotency-Key of every attempt, answered or not. */
async function scripted(sequence: CollectorAnswer[]) {
  const attempts: string[] = [];
  const collector = await startCollector({
    respond: (event, i) => {
      attempts.push(String(event.headers['idempotency-key']));
      return sequence[i] ?? 202;
    },
  });
  return { collector, attempts };
}

/** Both delivery modes must behave the same: every test runs on the worker and in-thread. */
describe.each(['worker', 'main'] as const)('delivery on the %s thread', (thread) => {
  beforeAll(() => {
    onWorker = thread === 'worker';
  });

  test.each<[string, CollectorAnswer[], number]>([
    ['500, 503 then 202', [500, 503], 2],
    ['408 then 202', [408], 1],
    ['502, 504 then 202', [502, 504], 2],
    ['a hang (timeout) then 202', ['hang'], 1],
    ['an answer slower than the timeout then 202', [{ status: 202, delayMs: 400 }], 1],
  ])('%s: retried and delivered, with one Idempotency-Key', async (_what, sequence, retries) => {
    const { collector, attempts } = await scripted(sequence);
    const t = tracker(collector, { timeout: 150 });
    await expect(t.trackEvent('order', { n: 1 })).resolves.toBe(true);
    expect(t.stats()).toMatchObject({ delivered: 1, retries, failed: 0 });
    expect(attempts).toHaveLength(retries + 1);
    expect(new Set(attempts).size).toBe(1);
    expect(attempts[0]).toMatch(/^[0-9a-f-]{36}$/);
  });

  test('a reset mid-response is retried; the collector really has it twice', async () => {
    const { collector, attempts } = await scripted(['reset']);
    const t = tracker(collector);
    await expect(t.trackEvent('order')).resolves.toBe(true);
    expect(attempts).toHaveLength(2);
    expect(collector.events).toHaveLength(2);
    expect(collector.events[0]!.headers['idempotency-key']).toBe(
      collector.events[1]!.headers['idempotency-key'],
    );
  });

  test('retries exhausted: failed with the last reason, retry events on the way', async () => {
    const { collector, attempts } = await scripted([503, 503, 503, 503, 503]);
    const t = tracker(collector, { maxRetries: 2 });
    const retries: unknown[] = [];
    const errors: unknown[] = [];
    t.on('retry', (e) => retries.push(e)).on('error', (e) => errors.push(e));
    await expect(t.trackEvent('order')).resolves.toBe(false);
    expect(attempts).toHaveLength(3);
    expect(t.stats()).toMatchObject({ failed: 1, retries: 2 });
    expect(t.stats().reasons.failed.server_error).toBe(1);
    expect(retries).toEqual([
      expect.objectContaining({ reason: 'server_error', attempt: 2 }),
      expect.objectContaining({ reason: 'server_error', attempt: 3 }),
    ]);
    expect(errors).toEqual([expect.objectContaining({ reason: 'server_error', status: 503 })]);
  });

  test.each([400, 401, 404, 413, 501])(
    '%d is permanent: no retry, one error log with the body',
    async (status) => {
      const { collector, attempts } = await scripted([
        { status, body: 'nope: bad thing' },
        { status, body: 'nope: bad thing' },
      ]);
      const logged: string[] = [];
      const t = tracker(collector, { logger: { error: (m) => logged.push(m) } });
      await expect(t.trackEvent('a')).resolves.toBe(false);
      await expect(t.trackEvent('b')).resolves.toBe(false);
      expect(attempts).toHaveLength(2);
      expect(t.stats().reasons.failed.rejected).toBe(2);
      expect(logged).toHaveLength(1);
      expect(logged[0]).toContain(`ZENOVAY_HTTP_${status}`);
      expect(logged[0]).toContain('nope: bad thing');
    },
  );

  describe('429', () => {
    test.each([
      ['seconds', () => '1'],
      ['an HTTP date', () => new Date(Date.now() + 2000).toUTCString()],
    ])(
      'Retry-After in %s pauses the whole queue, without using up retries',
      async (_form, retryAfter) => {
        const times: number[] = [];
        const collector = await startCollector({
          respond: (_e, i) => {
            times.push(Date.now());
            return i === 0 ? { status: 429, headers: { 'retry-after': retryAfter() } } : 202;
          },
        });
        const t = tracker(collector, { maxRetries: 0, concurrency: 1 });
        const first = t.trackEvent('first');
        await new Promise((r) => setTimeout(r, 50)); // the 429 has arrived
        const second = t.trackEvent('second');
        expect(await Promise.all([first, second])).toEqual([true, true]);
        // Neither the retry nor the new event went out before the pause ended.
        expect(times).toHaveLength(3);
        expect(times[1]! - times[0]!).toBeGreaterThanOrEqual(900);
        expect(times[2]! - times[0]!).toBeGreaterThanOrEqual(900);
        expect(t.stats()).toMatchObject({ delivered: 2, retries: 1, failed: 0 });
      },
    );

    test('an event that keeps meeting 429 fails as rate_limited in the end', async () => {
      const collector = await startCollector({
        respond: () => ({ status: 429, headers: { 'retry-after': '0' } }),
      });
      const t = tracker(collector);
      await expect(t.trackEvent('x')).resolves.toBe(false);
      expect(t.stats().reasons.failed.rate_limited).toBe(1);
      expect(collector.requestCount).toBe(10);
    });
  });

  describe('outages', () => {
    test('connection refused: retried, then failed as network', async () => {
      const gone = await startCollector();
      await gone.close();
      const t = tracker(gone, { maxRetries: 2 });
      await expect(t.trackEvent('x')).resolves.toBe(false);
      expect(t.stats()).toMatchObject({ failed: 1, retries: 2 });
      expect(t.stats().reasons.failed.network).toBe(1);
    });

    test('the circuit opens after repeated failures, keeps events queued, and closes on recovery', async () => {
      const first = await startCollector();
      const port = Number(new URL(first.url).port);
      await first.close();
      const warnings: string[] = [];
      const infos: string[] = [];
      const t = tracker(first, {
        maxRetries: 100,
        logger: { warn: (m) => warnings.push(m), info: (m) => infos.push(m) },
      });
      const circuit: string[] = [];
      t.on('circuit', (e) => circuit.push(e.state));
      const results = Array.from({ length: 20 }, (_, i) => t.trackEvent('during_outage', { i }));
      await waitUntil(() => t.stats().circuit === 'open');
      expect(t.stats()).toMatchObject({ delivered: 0, failed: 0 });
      expect(t.stats().queued + t.stats().inFlight).toBe(20);
      expectBalanced(t.stats());

      const back: TestCollector = await startCollector({ port });
      expect(await Promise.all(results)).toEqual(Array(20).fill(true));
      expect(back.events).toHaveLength(20);
      expect(t.stats()).toMatchObject({ delivered: 20, circuit: 'closed' });
      expect(circuit).toEqual(['open', 'closed']);
      expect(warnings.filter((w) => w.includes('ZENOVAY_CIRCUIT_OPEN'))).toHaveLength(1);
      expect(infos.filter((w) => w.includes('ZENOVAY_CIRCUIT_CLOSED'))).toHaveLength(1);
    });

    test('the wait, retries included, never exceeds maxQueueSize', async () => {
      const collector = await startCollector({ respond: () => 'hang' });
      const t = tracker(collector, { concurrency: 2, maxQueueSize: 5, timeout: 50, maxRetries: 5 });
      const drops: string[] = [];
      t.on('drop', (e) => drops.push(e.reason));
      const results = Array.from({ length: 30 }, () => t.trackEvent('x'));
      let maxQueued = 0;
      const timer = setInterval(() => {
        maxQueued = Math.max(maxQueued, t.stats().queued);
        expectBalanced(t.stats());
      }, 2);
      // Timeouts, retries and the circuit opening all happen in this time.
      await waitUntil(() => t.stats().circuit === 'open');
      await new Promise((r) => setTimeout(r, 300));
      await t.close({ timeout: 100 });
      await Promise.all(results);
      clearInterval(timer);
      expect(maxQueued).toBeLessThanOrEqual(5);
      const s = t.stats();
      expect(s).toMatchObject({ enqueued: 30, delivered: 0, queued: 0, inFlight: 0 });
      expect(s.reasons.dropped.queue_full).toBeGreaterThanOrEqual(23);
      expect(drops.length).toBe(s.dropped);
      expectBalanced(s);
    });
  });

  describe('the per-visitor rate guard', () => {
    test('drops what the endpoint would refuse for one IP; other IPs go on', async () => {
      const collector = await startCollector();
      const t = tracker(collector);
      const one = Array.from({ length: 65 }, () => t.trackEvent('e', {}, { ip: '203.0.113.1' }));
      const other = t.trackEvent('e', {}, { ip: '203.0.113.2' });
      const server = t.trackEvent('e'); // no visitor IP: not the guard's business
      const results = await Promise.all(one);
      expect(results.filter(Boolean)).toHaveLength(60);
      await expect(other).resolves.toBe(true);
      await expect(server).resolves.toBe(true);
      expect(t.stats().reasons.dropped.rate_limited).toBe(5);
    });

    test('visitorRateLimit: false turns it off', async () => {
      const collector = await startCollector();
      const t = tracker(collector, { visitorRateLimit: false });
      const results = await Promise.all(
        Array.from({ length: 65 }, () => t.trackEvent('e', {}, { ip: '203.0.113.1' })),
      );
      expect(results.every(Boolean)).toBe(true);
    });

    test('globalRateLimit spaces all requests out instead of dropping', async () => {
      const collector = await startCollector();
      const t = tracker(collector, { globalRateLimit: { limit: 5, interval: 200 } });
      const started = Date.now();
      const results = await Promise.all(Array.from({ length: 12 }, () => t.trackEvent('e')));
      expect(results.every(Boolean)).toBe(true);
      expect(Date.now() - started).toBeGreaterThanOrEqual(350);
    });
  });

  test('listeners that throw change nothing', async () => {
    const collector = await startCollector({ sequence: [500] });
    const t = tracker(collector);
    t.on('retry', () => {
      throw new Error('listener bug');
    });
    await expect(t.trackEvent('x')).resolves.toBe(true);
  });

  test('close() sends waiting retries at once instead of waiting out their backoff', async () => {
    const collector = await startCollector({ sequence: [503] });
    const t = tracker(collector, { retryDelay: 60_000, maxRetryDelay: 60_000 });
    const random = t.trackEvent('x');
    await waitUntil(() => t.stats().retries === 1);
    const started = Date.now();
    await t.close({ timeout: 2000 });
    expect(Date.now() - started).toBeLessThan(1000);
    await expect(random).resolves.toBe(true);
  });

  async function waitUntil(check: () => boolean, timeout = 5000): Promise<void> {
    const started = Date.now();
    while (!check()) {
      if (Date.now() - started > timeout) throw new Error('waitUntil: condition not met in time');
      await new Promise((r) => setTimeout(r, 5));
    }
  }
});
