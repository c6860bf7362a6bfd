/**
 * `createTracker()` and the testing kit as documented in the README.
 *
 * Type-checked only (`npm run test:types`), never run.
 */
import { expectTypeOf } from 'expect-type';
import { createTracker, type TrackerStats } from 'zenovay-express';
import { createTestCollector, type Brownout, type RecordedEvent } from 'zenovay-express/testing';

const tracker = createTracker({ trackingCode: 'x' });

// README: stats() returns { enqueued, delivered, failed, dropped, retries, queued, inFlight,
// reasons, circuit, concurrency, outbox? }, with reasons.failed and reasons.dropped broken down by
// reason. Exactly these fields: one more or one fewer fails the equality.
expectTypeOf(tracker.stats()).toEqualTypeOf<{
  enqueued: number;
  delivered: number;
  failed: number;
  dropped: number;
  retries: number;
  queued: number;
  inFlight: number;
  reasons: {
    failed: {
      rejected: number;
      server_error: number;
      timeout: number;
      network: number;
      rate_limited: number;
    };
    dropped: {
      queue_full: number;
      rate_limited: number;
      closed: number;
      invalid: number;
      outbox_full: number;
      outbox_lost: number;
    };
  };
  circuit: 'closed' | 'open' | 'half_open';
  concurrency: {
    adaptive: boolean;
    limit: number;
    latencyMs: number | undefined;
    baselineMs: number | undefined;
  };
  outbox?: {
    store: 'directory' | 'redis';
    state: 'opening' | 'open' | 'unavailable' | 'closed';
    persisted: number;
    spilled: number;
    recovered: number;
    taken: number;
    stored: number;
    written: number;
    read: number;
    writtenPerSecond: number;
    readPerSecond: number;
    bytes: number;
    corrupt: number;
    full: number;
    lost: number;
  };
}>();
expectTypeOf(tracker.stats()).toEqualTypeOf<TrackerStats>();

// Tracking without a request.
expectTypeOf(tracker.trackEvent('signup', { plan: 'pro' })).toEqualTypeOf<Promise<boolean>>();
expectTypeOf(tracker.flush).returns.resolves.toBeVoid();
expectTypeOf(tracker.close).returns.resolves.toBeVoid();

// The testing kit.
expectTypeOf(createTestCollector).toBeCallableWith();
expectTypeOf(createTestCollector).toBeCallableWith({ sequence: [503, 'hang', 'reset'] });
expectTypeOf(createTestCollector).returns.resolves.toHaveProperty('url').toBeString();
async function useCollector(): Promise<void> {
  const collector = await createTestCollector();
  expectTypeOf(collector.events).toEqualTypeOf<RecordedEvent[]>();
  expectTypeOf(collector.waitFor(1, { filter: (e) => e.name === 'x' })).toEqualTypeOf<
    Promise<RecordedEvent[]>
  >();
  expectTypeOf(collector.events[0]!.data).toEqualTypeOf<Record<string, unknown> | undefined>();
  // @ts-expect-error -- 'hang' and 'reset' are the only faults
  await createTestCollector({ sequence: ['drop'] });
  // Distance: a latency in ms or per event, brownouts, connection counters.
  await createTestCollector({ latency: 100 });
  await createTestCollector({ latency: (event, i) => (event.name === 'x' ? 3000 : i) });
  // @ts-expect-error -- a number of milliseconds, not a string
  await createTestCollector({ latency: '100' });
  const brownout = collector.brownout({ latency: 2000, status: 503, durationMs: 5000 });
  expectTypeOf(brownout).toEqualTypeOf<Brownout>();
  expectTypeOf(brownout.active).toBeBoolean();
  expectTypeOf(brownout.end).returns.toBeVoid();
  expectTypeOf(collector.maxConnections).toBeNumber();
  expectTypeOf(collector.maxOpenRequests).toBeNumber();
}
expectTypeOf(useCollector).returns.resolves.toBeVoid();
