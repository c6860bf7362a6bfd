/**
 * Backoff and pause arithmetic of the engine, with fake timers and a scripted transport: when
 * exactly each attempt happens. (HTTP itself is tested against the real collector elsewhere.)
 */
import {
  DeliveryEngine,
  CIRCUIT_BASE_MS,
  CIRCUIT_THRESHOLD,
  OUTBOX_REOPEN_FIRST_MS,
  OUTBOX_REOPEN_MAX_MS,
} from '../../src/delivery/engine';
import type { OutboxStore } from '../../src/outbox/types';
import type { Transport, TransportResponse } from '../../src/delivery/transport';
import { Reporter } from '../../src/logger';

beforeEach(() => {
  jest.useFakeTimers({ doNotFake: ['queueMicrotask', 'nextTick', 'setImmediate'] });
});
afterEach(() => {
  jest.useRealTimers();
});

/** A transport that answers from a script and notes when (fake time) each attempt came. */
function scripted(answers: Array<TransportResponse | Error>) {
  const times: number[] = [];
  const transport: Transport = {
    send: async () => {
      times.push(Date.now());
      const next = answers.shift() ?? { status: 202 };
      if (next instanceof Error) throw next;
      return next;
    },
  };
  return { transport, times };
}

function engine(
  transport: Transport,
  overrides: Partial<ConstructorParameters<typeof DeliveryEngine>[0]> = {},
) {
  return new DeliveryEngine({
    endpoint: 'http://127.0.0.1:9/e/x',
    concurrency: 4,
    maxConcurrency: 256,
    maxQueueSize: 100,
    timeoutMs: 5000,
    maxRetries: 3,
    retryDelayMs: 500,
    maxRetryDelayMs: 30_000,
    visitorRateLimit: true,
    globalRateLimit: undefined,
    transport,
    reporter: new Reporter({}),
    random: () => 0.5,
    ...overrides,
  });
}

/** Submits an empty event: resolves true once delivered. */
function submit(e: DeliveryEngine): Promise<boolean> {
  return new Promise((resolve) => e.submit('{}', {}, (o) => resolve(o.kind === 'delivered')));
}

/** Lets promises and p-queue's microtasks run without moving the clock. */
async function drain(): Promise<void> {
  for (let i = 0; i < 10; i++) await new Promise((r) => setImmediate(r));
}

test('retries wait 0.5 x 500 ms, then 0.5 x 1000 ms, then 0.5 x 2000 ms', async () => {
  const { transport, times } = scripted([{ status: 503 }, { status: 503 }, { status: 500 }]);
  const e = engine(transport);
  const t0 = Date.now();
  const result = submit(e);
  await drain();
  expect(times.map((t) => t - t0)).toEqual([0]);
  await jest.advanceTimersByTimeAsync(249);
  expect(times).toHaveLength(1);
  await jest.advanceTimersByTimeAsync(1);
  expect(times.map((t) => t - t0)).toEqual([0, 250]);
  await jest.advanceTimersByTimeAsync(500);
  expect(times.map((t) => t - t0)).toEqual([0, 250, 750]);
  await jest.advanceTimersByTimeAsync(1000);
  expect(times.map((t) => t - t0)).toEqual([0, 250, 750, 1750]);
  await expect(result).resolves.toBe(true);
  expect(e.stats()).toMatchObject({ delivered: 1, retries: 3 });
});

test('Retry-After pauses every event for exactly that long', async () => {
  const { transport, times } = scripted([{ status: 429, retryAfter: '3' }]);
  const e = engine(transport, { concurrency: 1 });
  const t0 = Date.now();
  const first = submit(e);
  await drain();
  const second = submit(e);
  await jest.advanceTimersByTimeAsync(2999);
  expect(times.map((t) => t - t0)).toEqual([0]);
  await jest.advanceTimersByTimeAsync(1);
  await drain();
  expect(times.map((t) => t - t0)).toEqual([0, 3000, 3000]);
  await expect(Promise.all([first, second])).resolves.toEqual([true, true]);
});

test('the circuit opens after the threshold and probes after 1 s, then 2 s', async () => {
  const refused = Array.from({ length: CIRCUIT_THRESHOLD + 2 }, () => new Error('ECONNREFUSED'));
  const { transport, times } = scripted(refused);
  const e = engine(transport, {
    concurrency: 1,
    maxRetries: 20,
    retryDelayMs: 0,
    maxRetryDelayMs: 0,
  });
  const t0 = Date.now();
  const result = submit(e);
  await drain();
  await jest.advanceTimersByTimeAsync(0);
  await drain();
  expect(times).toHaveLength(CIRCUIT_THRESHOLD);
  expect(e.stats().circuit).toBe('open');
  await jest.advanceTimersByTimeAsync(CIRCUIT_BASE_MS);
  await drain();
  expect(times).toHaveLength(CIRCUIT_THRESHOLD + 1); // the first probe, failed
  expect(times.at(-1)! - t0).toBe(CIRCUIT_BASE_MS);
  await jest.advanceTimersByTimeAsync(2 * CIRCUIT_BASE_MS);
  await drain();
  expect(times.at(-1)! - t0).toBe(3 * CIRCUIT_BASE_MS); // second probe, failed
  await jest.advanceTimersByTimeAsync(4 * CIRCUIT_BASE_MS);
  await drain();
  await expect(result).resolves.toBe(true);
  expect(e.stats().circuit).toBe('closed');
});

test('an outbox that cannot be opened is tried again after 1 s, then twice as long each time, at most every minute, and not after close()', async () => {
  const tries: number[] = [];
  const refuse = (): never => {
    throw new Error('not open');
  };
  const store = {
    open: () => {
      tries.push(Date.now());
      return Promise.reject(new Error('held by another process'));
    },
    append: refuse,
    settle: refuse,
    take: refuse,
    spill: refuse,
    sync: refuse,
    stats: refuse,
    close: refuse,
  } as unknown as OutboxStore;
  const e = engine(scripted([]).transport, { outbox: { store, kind: 'directory' } });
  await drain();
  expect(tries).toHaveLength(1);
  expect(e.outboxState).toBe('unavailable');
  await jest.advanceTimersByTimeAsync(400_000);
  const waits = tries.slice(1).map((t, i) => t - tries[i]!);
  expect(OUTBOX_REOPEN_FIRST_MS).toBe(1000);
  expect(OUTBOX_REOPEN_MAX_MS).toBe(60_000);
  expect(waits.slice(0, 9)).toEqual([
    1000, 2000, 4000, 8000, 16_000, 32_000, 60_000, 60_000, 60_000,
  ]);
  const before = tries.length;
  await e.close(100);
  await jest.advanceTimersByTimeAsync(300_000);
  expect(tries).toHaveLength(before);
  expect(e.outboxState).toBe('unavailable');
});
