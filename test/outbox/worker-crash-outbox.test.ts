/**
 * The outbox and the delivery worker: a worker that crashes while events wait in the outbox (in
 * memory and spilled past maxQueueSize) is restarted, takes the directory's lock over from its
 * dead predecessor, reads those events back from the store, and the main thread settles them by
 * number: every promise resolves true, every event reaches the endpoint under one key. After
 * repeated crashes the main thread opens the outbox itself, and still loses nothing.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Worker } from 'node:worker_threads';
import { createTracker } from '../../src/index';
import { ZenovayTracker } from '../../src/tracker';
import { MAX_CRASHES, WorkerDelivery } from '../../src/delivery/worker-delivery';
import { startCollector } from '../helpers/collector';
import type { TrackerStats } from '../../src/delivery/delivery';

const dirs: string[] = [];
const trackers: ZenovayTracker[] = [];
afterAll(async () => {
  await Promise.all(trackers.map((t) => t.close({ timeout: 200 })));
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

function tempDir(): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'zenovay-crash-'));
  dirs.push(dir);
  return dir;
}

function tracker(host: string, dir: string, lines: string[]): ZenovayTracker {
  const t = createTracker({
    trackingCode: 'crash',
    host,
    maxQueueSize: 20,
    retryDelay: 5,
    maxRetryDelay: 50,
    outbox: { dir },
    logger: { info: (l) => lines.push(l), warn: (l) => lines.push(l), error: (l) => lines.push(l) },
  }) as ZenovayTracker;
  trackers.push(t);
  return t;
}

function workerOf(t: ZenovayTracker): Worker | undefined {
  return (t.delivery as unknown as { worker?: Worker }).worker;
}

async function waitUntil(check: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 10));
  }
}

function balanced(s: TrackerStats): boolean {
  return s.enqueued === s.delivered + s.failed + s.dropped + s.queued + s.inFlight;
}

/** Every event (numbered by data.i) arrived, each under a single Idempotency-Key. */
function checkArrivals(
  events: { data?: Record<string, unknown>; headers: Record<string, unknown> }[],
  count: number,
) {
  const keys = new Map<number, Set<string>>();
  for (const e of events) {
    const i = e.data?.i as number;
    if (!keys.has(i)) keys.set(i, new Set());
    keys.get(i)!.add(String(e.headers['idempotency-key']));
  }
  expect([...keys.keys()].sort((a, b) => a - b)).toEqual(
    Array.from({ length: count }, (_, i) => i),
  );
  for (const set of keys.values()) expect(set.size).toBe(1);
}

test('a crashed worker is restarted, takes the lock over and reads its events back from the outbox', async () => {
  let up = false;
  const accepted = new Map<string, number>();
  const collector = await startCollector({
    respond: (event) => {
      if (!up) return { status: 503 };
      const key = String(event.headers['idempotency-key']);
      accepted.set(key, (accepted.get(key) ?? 0) + 1);
      return { status: 202 };
    },
  });
  const lines: string[] = [];
  const t = tracker(collector.url, tempDir(), lines);
  await waitUntil(() => t.stats().outbox?.state === 'open');
  const results = Array.from({ length: 200 }, (_, i) => t.trackEvent('e', { i }));
  // Past maxQueueSize (20) the worker spills them to the outbox, and says up to where it has them.
  await waitUntil(() => (t.stats().outbox?.spilled ?? 0) > 100);
  expect(balanced(t.stats())).toBe(true);
  // What the main thread gives the new worker: only events the outbox does not have (none here).
  const given: string[] = [];
  const delivery = t.delivery as unknown as { post(message: { t: string; data?: string }): void };
  const post = delivery.post.bind(delivery);
  delivery.post = (message) => {
    if (message.t === 'events') given.push(message.data ?? '');
    post(message);
  };
  const crashed = workerOf(t)!;
  await crashed.terminate();
  await waitUntil(() => workerOf(t) !== undefined && workerOf(t) !== crashed);
  expect(given).toEqual([]);
  up = true;
  expect(await Promise.all(results)).toEqual(Array(200).fill(true));
  const s = t.stats();
  expect(s).toMatchObject({ enqueued: 200, delivered: 200, failed: 0, dropped: 0, queued: 0 });
  expect(s.queued + s.inFlight).toBe(0);
  expect((t.delivery as WorkerDelivery).thread).toBe('worker');
  checkArrivals(collector.events, 200);
  expect(accepted.size).toBe(200);
  expect(lines.some((l) => l.includes('ZENOVAY_WORKER_RESTARTED'))).toBe(true);
  // The new worker took the lock over (its predecessor's), it did not find it held.
  expect(lines.some((l) => l.includes('ZENOVAY_OUTBOX_UNAVAILABLE'))).toBe(false);
  expect(lines.some((l) => l.includes('ZENOVAY_OUTBOX_STALE_LOCK'))).toBe(true);
});

test('after repeated crashes the main thread opens the outbox and loses nothing', async () => {
  let up = false;
  const collector = await startCollector({
    respond: () => (up ? { status: 202 } : { status: 503 }),
  });
  const lines: string[] = [];
  const t = tracker(collector.url, tempDir(), lines);
  await waitUntil(() => t.stats().outbox?.state === 'open');
  const results = Array.from({ length: 100 }, (_, i) => t.trackEvent('e', { i }));
  await waitUntil(() => (t.stats().outbox?.spilled ?? 0) > 50);
  for (let crash = 0; crash <= MAX_CRASHES; crash++) {
    const crashed = workerOf(t);
    if (crashed === undefined) break;
    await crashed.terminate();
    await waitUntil(() => {
      const now = workerOf(t);
      return now === undefined
        ? (t.delivery as WorkerDelivery).thread === 'main'
        : now !== crashed && t.stats().outbox?.state === 'open';
    });
  }
  expect((t.delivery as WorkerDelivery).thread).toBe('main');
  up = true;
  expect(await Promise.all(results)).toEqual(Array(100).fill(true));
  expect(t.stats()).toMatchObject({ enqueued: 100, delivered: 100, dropped: 0, queued: 0 });
  expect(t.stats().outbox?.state).toBe('open');
  checkArrivals(collector.events, 100);
  expect(lines.some((l) => l.includes('ZENOVAY_WORKER_FAILED'))).toBe(true);
  expect(lines.some((l) => l.includes('ZENOVAY_OUTBOX_UNAVAILABLE'))).toBe(false);
});
