/** Starts the public test collector and closes it after each test file. */
import { analytics, type AnalyticsMiddleware } from '../../src/index';
import {
  createTestCollector,
  type TestCollector,
  type TestCollectorOptions,
} from '../../src/testing';

const open = new Set<TestCollector>();

export async function startCollector(options?: TestCollectorOptions): Promise<TestCollector> {
  const collector = await createTestCollector(options);
  open.add(collector);
  return collector;
}

afterAll(async () => {
  await Promise.all([...open].map((c) => c.close()));
  open.clear();
});

/** Waits a little to prove that nothing (more) arrives. */
export function settle(ms = 150): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** What {@link useCollector} gives a test file. */
export interface FileCollector {
  /** The file's collector, started before its first test and reset before each. */
  readonly collector: TestCollector;
  /** A middleware that sends to the collector (no logger); closed after the file's tests. */
  mw(): AnalyticsMiddleware;
  /** Waits until every middleware `mw()` has made so far has settled what it was given. */
  flush(): Promise<void>;
}

/** For a test file's tests: a collector, and middlewares with this tracking code that send to it. */
export function useCollector(trackingCode: string): FileCollector {
  let collector: TestCollector | undefined;
  const made: AnalyticsMiddleware[] = [];
  beforeAll(async () => {
    collector = await startCollector();
  });
  beforeEach(() => collector!.reset());
  afterAll(async () => {
    await Promise.all(made.map((m) => m.tracker.close()));
  });
  return {
    get collector() {
      return collector!;
    },
    mw() {
      const m = analytics({ trackingCode, host: collector!.url, logger: false });
      made.push(m);
      return m;
    },
    async flush() {
      for (const m of made) await m.tracker.flush();
    },
  };
}
