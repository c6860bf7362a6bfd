/**
 * Options of `analytics()` and `createTracker()`: mistakes are compile errors, not only the
 * runtime TypeErrors the factories throw.
 *
 * Type-checked only (`npm run test:types`), never run.
 */
import { expectTypeOf } from 'expect-type';
import {
  analytics,
  createTracker,
  type AnalyticsOptions,
  type OutboxOption,
  type OutboxTrackerStats,
  type Tracker,
  type TrackerOptions,
  type TrackerStats,
} from 'zenovay-express';

// Every option is optional (the tracking code may come from ZENOVAY_TRACKING_CODE).
expectTypeOf(analytics).toBeCallableWith();
expectTypeOf(analytics).toBeCallableWith({});
expectTypeOf(createTracker).toBeCallableWith();
expectTypeOf<AnalyticsOptions>().toExtend<TrackerOptions>();

// A typical configuration compiles.
analytics({
  trackingCode: 'x',
  siteUrl: 'https://shop.example',
  concurrency: 5,
  maxConcurrency: 100,
  trustProxy: 'loopback',
  queryParams: ['utm_*', 'ref'],
  skipPaths: ['/admin', /^\/preview\//],
  skip: (req, res) => req.url === '/health' || res.statusCode >= 500,
  isBot: (userAgent, verdict) => verdict || /Monitor/.test(userAgent ?? ''),
  beforeSend: (event, context) => (context.isBot ? null : event),
  logger: false,
});
analytics({ tracker: createTracker({ trackingCode: 'x' }), trustProxy: 1 });
createTracker({ trackingCode: 'x', worker: false });
expectTypeOf<TrackerOptions['worker']>().toEqualTypeOf<boolean | undefined>();
// @ts-expect-error -- `worker` is a boolean
createTracker({ trackingCode: 'x', worker: 'thread' });

// The outbox: a directory or Redis (a URL or a client with sendCommand / call), never both.
createTracker({ outbox: { dir: '/var/lib/app/zenovay', sync: 'always', syncInterval: 500 } });
createTracker({ outbox: { redis: 'redis://127.0.0.1:6379', claimAfter: 30_000 } });
createTracker({ outbox: { redis: { sendCommand: async (args: string[]) => args } } });
analytics({ outbox: { dir: '/tmp/z', maxBytes: 64 * 1024 * 1024 } });
expectTypeOf<TrackerOptions['outbox']>().toEqualTypeOf<OutboxOption | undefined>();
// @ts-expect-error -- `sync` is 'interval' or 'always'
createTracker({ outbox: { dir: '/tmp/z', sync: 'sometimes' } });
// @ts-expect-error -- `dir` is a path
createTracker({ outbox: { dir: 42 } });
// @ts-expect-error -- a Redis outbox needs `redis`
createTracker({ outbox: { stream: 'events' } });
expectTypeOf<TrackerStats['outbox']>().toEqualTypeOf<OutboxTrackerStats | undefined>();

// A typo in an option name.
// @ts-expect-error -- `trackingCode`, with a capital C
analytics({ trackingcode: 'x' });
// @ts-expect-error -- the same typo reaches createTracker too
createTracker({ trackingcode: 'x' });

// A wrong option type.
// @ts-expect-error -- concurrency is a number or 'auto'
analytics({ concurrency: '5' });
analytics({ concurrency: 'auto' });
expectTypeOf<TrackerOptions['concurrency']>().toEqualTypeOf<number | 'auto' | undefined>();
// @ts-expect-error -- a boolean, not a string
analytics({ skipBots: 'false' });
// @ts-expect-error -- 'all', 'none' or a list of names
analytics({ queryParams: 'some' });
// @ts-expect-error -- { limit, interval }, both required
createTracker({ globalRateLimit: { limit: 60 } });

// Middleware-only options are not tracker options.
// @ts-expect-error -- trustProxy belongs to analytics()
createTracker({ trackingCode: 'x', trustProxy: true });

// The tracker behind the middleware.
expectTypeOf(analytics().tracker).toEqualTypeOf<Tracker>();
