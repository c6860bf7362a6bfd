/**
 * Delivery on the worker thread: what only this mode has. The worker restarts after a crash with
 * its unsettled events (same Idempotency-Keys), falls back to the main thread when it keeps
 * crashing or cannot start, never keeps the process alive when idle or after close(), and the
 * batch encoding carries every forwarded header. The shared semantics (stats, flush, close,
 * retries, bounds) run in both modes in tracker.test.ts and faults.test.ts.
 */
import { execFile } from 'node:child_process';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import type { Worker } from 'node:worker_threads';
import { createTracker, type Tracker } from '../../src/index';
import { ZenovayTracker } from '../../src/tracker';
import { Reporter } from '../../src/logger';
import { forwardedHeaders } from '../../src/request/forwarded-headers';
import {
  MAX_BATCH,
  MAX_CRASHES,
  WorkerDelivery,
  workerExecArgv,
} from '../../src/delivery/worker-delivery';
import {
  decodeEvents,
  encodeEvent,
  encodePageview,
  idempotencyKey,
  OUTCOMES,
  outcomeCode,
} from '../../src/delivery/worker-protocol';
import { settle, startCollector } from '../helpers/collector';
import { resolveAnalyticsOptions } from '../../src/options';
import type { RecordedEvent } from '../../src/testing';

const run = promisify(execFile);
const open: Tracker[] = [];
afterAll(async () => {
  await Promise.all(open.map((t) => t.close({ timeout: 200 })));
});

function tracker(host: string, lines: string[] = [], options = {}): ZenovayTracker {
  const t = createTracker({
    trackingCode: 'worker',
    host,
    retryDelay: 5,
    maxRetryDelay: 20,
    logger: { info: (l) => lines.push(l), warn: (l) => lines.push(l), error: (l) => lines.push(l) },
    ...options,
  }) as ZenovayTracker;
  open.push(t);
  return t;
}

function delivery(t: ZenovayTracker): WorkerDelivery {
  expect(t.delivery).toBeInstanceOf(WorkerDelivery);
  return t.delivery as WorkerDelivery;
}

/** The live worker thread (a test reaches in to crash it). */
function workerOf(t: ZenovayTracker): Worker {
  const worker = (delivery(t) as unknown as { worker?: Worker }).worker;
  if (!worker) throw new Error('no worker thread is running');
  return worker;
}

async function waitUntil(check: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** A WorkerDelivery to `host` without a tracker (tests that give it their own script). */
function bareDelivery(
  host: string,
  lines: string[],
  extra: { script?: URL; stallMs?: number; calmDelayMs?: number; maxQueueSize?: number } = {},
): WorkerDelivery {
  const { maxQueueSize = 100, ...options } = extra;
  return new WorkerDelivery({
    config: {
      endpoint: `${host}/e/bare`,
      anonymizeIp: false,
      concurrency: 2,
      maxConcurrency: 256,
      maxQueueSize,
      timeoutMs: 10_000,
      maxRetries: 0,
      retryDelayMs: 0,
      maxRetryDelayMs: 0,
      visitorRateLimit: true,
      globalRateLimit: undefined,
      workerNice: 0,
    },
    reporter: new Reporter({
      info: (l) => lines.push(l),
      warn: (l) => lines.push(l),
      error: (l) => lines.push(l),
    }),
    ...options,
  });
}

test('by default events go out from the worker thread, with the visitor headers and a UUID key', async () => {
  const collector = await startCollector();
  const t = tracker(collector.url);
  expect(delivery(t).thread).toBe('worker');
  const ok = await t.trackEvent(
    'signup',
    { plan: 'pro' },
    {
      userAgent: 'Mozilla/5.0 test',
      ip: '203.0.113.7',
      clientHints: { 'sec-ch-ua-platform': '"Linux"' },
    },
  );
  expect(ok).toBe(true);
  const [event] = collector.events;
  expect(event).toMatchObject({ type: 'event', name: 'signup', data: { plan: 'pro' } });
  expect(event!.headers).toMatchObject({
    'user-agent': 'Mozilla/5.0 test',
    'x-forwarded-for': '203.0.113.7',
    'sec-ch-ua-platform': '"Linux"',
    'content-type': 'application/json',
  });
  expect(String(event!.headers['idempotency-key'])).toMatch(
    /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/,
  );
});

test('the worker starts with the first event: a tracker that never sends costs no thread', async () => {
  const collector = await startCollector();
  const t = tracker(collector.url);
  expect(currentWorker(t)).toBeUndefined();
  await t.flush();
  await expect(t.trackEvent('first')).resolves.toBe(true);
  expect(currentWorker(t)).toBeDefined();
  const idle = tracker(collector.url);
  await idle.close();
  expect(currentWorker(idle)).toBeUndefined();
  expect(idle.stats()).toMatchObject({ enqueued: 0, queued: 0, inFlight: 0 });
});

test('worker: false and a custom transport send from the main thread', async () => {
  const collector = await startCollector();
  const inline = tracker(collector.url, [], { worker: false });
  expect(inline.delivery).not.toBeInstanceOf(WorkerDelivery);
  await expect(inline.trackEvent('x')).resolves.toBe(true);
  const sent: string[] = [];
  const custom = createTracker({
    trackingCode: 'worker',
    logger: false,
    transport: {
      send: (request) => {
        sent.push(request.body);
        return Promise.resolve({ status: 202 });
      },
    },
  }) as ZenovayTracker;
  open.push(custom);
  expect(custom.delivery).not.toBeInstanceOf(WorkerDelivery);
  await expect(custom.trackEvent('y')).resolves.toBe(true);
  expect(sent).toEqual([JSON.stringify({ type: 'event', name: 'y' })]);
});

test('a crashed worker is restarted and given back its unsettled events, under the same keys', async () => {
  const collector = await startCollector({ respond: () => ({ status: 202, delayMs: 150 }) });
  const lines: string[] = [];
  const t = tracker(collector.url, lines, { concurrency: 2 });
  const results = Array.from({ length: 20 }, (_, i) => t.trackEvent('e', { i }));
  await waitUntil(() => collector.events.length >= 1);
  await workerOf(t).terminate();
  expect(await Promise.all(results)).toEqual(Array(20).fill(true));
  const s = t.stats();
  expect(s).toMatchObject({ enqueued: 20, delivered: 20, failed: 0, dropped: 0 });
  expect(s.queued + s.inFlight).toBe(0);
  expect(delivery(t).thread).toBe('worker');
  // Every event arrived; those in flight at the crash may have come twice, with the same key.
  const byKey = new Map<string, number[]>();
  for (const e of collector.events) {
    const key = String(e.headers['idempotency-key']);
    byKey.set(key, [...(byKey.get(key) ?? []), e.data!.i as number]);
  }
  expect(byKey.size).toBe(20);
  for (const values of byKey.values()) expect(new Set(values).size).toBe(1);
  expect(lines.some((l) => l.includes('ZENOVAY_WORKER_RESTARTED'))).toBe(true);
});

test('after repeated crashes delivery moves to the main thread, losing nothing', async () => {
  const collector = await startCollector({ respond: () => ({ status: 202, delayMs: 50 }) });
  const lines: string[] = [];
  const t = tracker(collector.url, lines);
  const results: Promise<boolean>[] = [];
  for (let crash = 0; crash <= MAX_CRASHES; crash++) {
    results.push(t.trackEvent('e', { crash }));
    await waitUntil(() => collector.events.some((e) => e.data?.crash === crash));
    const crashed = workerOf(t);
    await crashed.terminate();
    // Restarted (a new worker), or moved to the main thread after the last crash.
    await waitUntil(() => {
      const now = currentWorker(t);
      return now === undefined ? delivery(t).thread === 'main' : now !== crashed;
    });
  }
  expect(delivery(t).thread).toBe('main');
  results.push(t.trackEvent('after'));
  expect(await Promise.all(results)).toEqual(Array(MAX_CRASHES + 2).fill(true));
  expect(t.stats()).toMatchObject({ enqueued: MAX_CRASHES + 2, delivered: MAX_CRASHES + 2 });
  expect(lines.filter((l) => l.includes('ZENOVAY_WORKER_FAILED'))).toHaveLength(1);
});

function currentWorker(t: ZenovayTracker): Worker | undefined {
  return (delivery(t) as unknown as { worker?: Worker }).worker;
}

test('a worker lost while closing leaves its events to the main thread for the time left', async () => {
  const collector = await startCollector({ respond: () => ({ status: 202, delayMs: 100 }) });
  const lines: string[] = [];
  const t = tracker(collector.url, lines, { concurrency: 2 });
  const drops: string[] = [];
  t.on('drop', (e) => drops.push(e.reason));
  const results = Array.from({ length: 10 }, (_, i) => t.trackEvent('e', { i }));
  await waitUntil(() => collector.events.length >= 1);
  const closed = t.close({ timeout: 3000 });
  await workerOf(t).terminate();
  await closed;
  expect(await Promise.all(results)).toEqual(Array(10).fill(true));
  expect(t.stats()).toMatchObject({ enqueued: 10, delivered: 10, dropped: 0, queued: 0 });
  expect(drops).toEqual([]);
  expect(
    lines.some((l) => /ZENOVAY_WORKER_FAILED: the delivery worker .* while closing/.test(l)),
  ).toBe(true);
});

test('a circuit open in a crashed worker is reported closed, and logs are throttled across threads', async () => {
  const refused = await startCollector();
  const url = refused.url;
  await refused.close();
  const lines: string[] = [];
  const t = tracker(url, lines, { maxRetries: 20, retryDelay: 1, maxRetryDelay: 1 });
  const circuit: string[] = [];
  t.on('circuit', (e) => circuit.push(e.state));
  void t.trackEvent('e');
  await waitUntil(() => circuit.includes('open'));
  await workerOf(t).terminate();
  await waitUntil(() => circuit.length === 2);
  expect(circuit).toEqual(['open', 'closed']);
  // The restarted worker meets the same refusals: the main thread still reports each code once.
  await waitUntil(() => t.stats().circuit === 'open');
  expect(lines.filter((l) => l.includes('ZENOVAY_CIRCUIT_OPEN'))).toHaveLength(1);
  expect(lines.filter((l) => l.includes('ZENOVAY_NETWORK'))).toHaveLength(1);
});

test('a worker that cannot start hands its events to the main thread at once', async () => {
  const collector = await startCollector();
  const lines: string[] = [];
  const d = bareDelivery(collector.url, lines, {
    script: pathToFileURL(path.join(__dirname, 'no-such-worker.js')),
  });
  const outcomes: string[] = [];
  for (let i = 0; i < 3; i++) {
    d.submit(
      `{"type":"event","name":"e${i}"}`,
      forwardedHeaders('ua', '203.0.113.9', undefined),
      (o) => outcomes.push(o.kind),
    );
  }
  await d.flush();
  expect(outcomes).toEqual(['delivered', 'delivered', 'delivered']);
  expect(d.thread).toBe('main');
  expect(collector.events.map((e) => e.headers['x-forwarded-for'])).toEqual(
    Array(3).fill('203.0.113.9'),
  );
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatch(/ZENOVAY_WORKER_FAILED: the delivery worker could not start/);
  await d.close(500);
  expect(d.stats()).toMatchObject({ enqueued: 3, delivered: 3, queued: 0, inFlight: 0 });
});

test('a worker stuck with events is replaced; one stuck every time hands them to the main thread', async () => {
  const collector = await startCollector();
  const lines: string[] = [];
  const d = bareDelivery(collector.url, lines, {
    script: pathToFileURL(path.join(__dirname, '../fixtures/stuck-worker.mjs')),
    stallMs: 200,
  });
  const outcomes: string[] = [];
  for (let i = 0; i < 3; i++) {
    d.submit(`{"type":"event","name":"e${i}"}`, forwardedHeaders('ua', undefined, undefined), (o) =>
      outcomes.push(o.kind),
    );
  }
  await d.flush();
  expect(outcomes).toEqual(['delivered', 'delivered', 'delivered']);
  expect(d.thread).toBe('main');
  expect(collector.events.map((e) => e.name)).toEqual(['e0', 'e1', 'e2']);
  // Restarted MAX_CRASHES times (logged once a minute), then moved to the main thread.
  expect(lines.filter((l) => l.includes('ZENOVAY_WORKER_RESTARTED'))).toHaveLength(1);
  expect(lines.find((l) => l.includes('ZENOVAY_WORKER_FAILED'))).toMatch(
    /stopped answering for 200 ms and was terminated, 4 times within a minute/,
  );
  await d.close(500);
  expect(d.stats()).toMatchObject({ enqueued: 3, delivered: 3, queued: 0, inFlight: 0 });
});

test('a worker waiting on a slow endpoint says it is alive, and is left alone', async () => {
  const collector = await startCollector({ respond: () => ({ status: 202, delayMs: 3500 }) });
  const lines: string[] = [];
  // Silence longer than 2.5 s would be a stall; the answer takes 3.5 s; heartbeats come every 1 s.
  const d = bareDelivery(collector.url, lines, { stallMs: 2500 });
  const outcome = new Promise<string>((resolve) =>
    d.submit('{"type":"event","name":"slow"}', forwardedHeaders('ua', undefined, undefined), (o) =>
      resolve(o.kind),
    ),
  );
  const watchdog = () => (d as unknown as { watchdog?: unknown }).watchdog;
  expect(watchdog()).toBeDefined();
  expect(await outcome).toBe('delivered');
  expect(d.thread).toBe('worker');
  expect(lines).toEqual([]);
  // Nothing held, nothing watched: an idle tracker wakes no one.
  expect(watchdog()).toBeUndefined();
  await d.close(500);
});

test('the worker never keeps the process alive: idle without close(), and after close()', async () => {
  const collector = await startCollector();
  const fixture = path.join(__dirname, '../fixtures/worker-exit.cjs');
  for (const mode of ['no-close', 'close']) {
    const started = Date.now();
    const { stdout } = await run(process.execPath, [fixture, collector.url, mode], {
      timeout: 10_000,
    });
    const result = JSON.parse(stdout) as { delivered: number; thread: string };
    expect(result).toEqual({ delivered: 5, thread: 'worker' });
    expect(Date.now() - started).toBeLessThan(5000);
  }
  expect(collector.events).toHaveLength(10);
});

test('a process started with `node --input-type=module -e` still delivers from the worker', async () => {
  const collector = await startCollector();
  const dist = pathToFileURL(path.join(__dirname, '../../dist/index.js')).href;
  const code =
    `import { createTracker } from '${dist}';` +
    `const t = createTracker({ trackingCode: 'eval', host: '${collector.url}', logger: false });` +
    `const ok = await t.trackEvent('from-eval');` +
    `console.log(JSON.stringify({ ok, thread: t.delivery.thread }));` +
    `await t.close();`;
  const { stdout } = await run(process.execPath, ['--input-type=module', '-e', code], {
    timeout: 10_000,
  });
  expect(JSON.parse(stdout)).toEqual({ ok: true, thread: 'worker' });
  expect(workerExecArgv(['--input-type', 'module', '--max-old-space-size=64', '-e', 'x'])).toEqual([
    '--max-old-space-size=64',
    '-e',
    'x',
  ]);
  // Without --input-type the worker inherits the flags as Node does by default.
  expect(workerExecArgv(['--max-old-space-size=64', '--enable-source-maps'])).toBeUndefined();
});

// V8 and per-process flags (a heap size is common in production): a worker refuses them when
// they are passed to it explicitly, and delivery fell back to the main thread.
test.each([
  [['--max-old-space-size=512', '--stack-size=900', '--title=shop-app']],
  [['--input-type=module', '--max-old-space-size=512', '--trace-gc-ignore-scavenger']],
])('a process started with %j still delivers from the worker', async (flags) => {
  const collector = await startCollector();
  const dist = pathToFileURL(path.join(__dirname, '../../dist/index.js')).href;
  const code =
    `const { createTracker } = await import('${dist}');` +
    `const errors = [];` +
    `const logger = { error: (m) => errors.push(m), warn() {}, info() {}, debug() {} };` +
    `const t = createTracker({ trackingCode: 'flags', host: '${collector.url}', logger });` +
    `const ok = await t.trackEvent('with-flags');` +
    `console.log(JSON.stringify({ ok, thread: t.delivery.thread, errors }));` +
    `await t.close();`;
  const moduleFlag = flags.some((f) => f.startsWith('--input-type'));
  const args = moduleFlag ? [...flags, '-e', code] : [...flags, '-e', `(async () => {${code}})()`];
  const { stdout } = await run(process.execPath, args, { timeout: 10_000 });
  expect(JSON.parse(stdout)).toEqual({ ok: true, thread: 'worker', errors: [] });
});

test('the batch encoding carries every header forwardedHeaders can make, unbuilt pageviews between events, and outcome codes round-trip', () => {
  const cases = [
    forwardedHeaders(undefined, undefined, undefined),
    forwardedHeaders('Mozilla/5.0 (X11) é', '2001:db8::1', {
      'sec-ch-ua': '"Chromium";v="126"',
      'sec-ch-ua-mobile': '?0',
      'sec-ch-ua-platform': '"Linux"',
    }),
  ];
  const bodies = ['{"type":"pageview","url":"https://a.example/"}', '{"name":"x\\n\\u2028ü"}'];
  const requestHeaders = {
    referer: 'https://b.example/from?q=1',
    'user-agent': 'Mozilla/5.0 é',
    'sec-ch-ua': '"Chromium";v="126"',
    'sec-ch-ua-mobile': '?1',
    'sec-ch-ua-platform': '"Android"',
    cookie: 'sid=secret',
  };
  let data = encodeEvent(7, bodies[0]!, cases[0]!);
  data += encodePageview(8, 3, 'https://a.example', '/p?x=1', '203.0.113.9', requestHeaders)!;
  data += encodePageview(9, 0, 'https://a.example', '/', undefined, { referer: ['a', 'b'] })!;
  data += encodeEvent(10, bodies[1]!, cases[1]!);
  const decoded: unknown[] = [];
  decodeEvents(
    data,
    (seq, body, headers) => decoded.push([seq, body, headers]),
    (seq, parts, policy) => decoded.push([seq, parts, policy]),
  );
  expect(decoded).toEqual([
    [7, bodies[0], cases[0]],
    [
      8,
      {
        origin: 'https://a.example',
        target: '/p?x=1',
        ip: '203.0.113.9',
        referer: 'https://b.example/from?q=1',
        userAgent: 'Mozilla/5.0 é',
        secChUa: '"Chromium";v="126"',
        secChUaMobile: '?1',
        secChUaPlatform: '"Android"',
      },
      3,
    ],
    [
      9,
      {
        origin: 'https://a.example',
        target: '/',
        ip: '',
        referer: '',
        userAgent: '',
        secChUa: '',
        secChUaMobile: '',
        secChUaPlatform: '',
      },
      0,
    ],
    [10, bodies[1], cases[1]],
  ]);
  // A line break in any part would split the batch wrongly: such a pageview is not encoded.
  for (const part of ['target', 'referer', 'user-agent', 'sec-ch-ua-platform']) {
    const target = part === 'target' ? '/a\nb' : '/';
    const headers = part === 'target' ? {} : { [part]: 'x\ny' };
    expect(encodePageview(1, 0, 'https://a.example', target, undefined, headers)).toBeUndefined();
  }
  OUTCOMES.forEach((outcome, code) => expect(outcomeCode(outcome)).toBe(code));
  expect(idempotencyKey('123e4567-e89b-42d3-a456-', 255)).toBe(
    '123e4567-e89b-42d3-a456-0000000000ff',
  );
});

describe("the middleware's pageviews, built by the worker", () => {
  const policy = (queryParams: 'all' | 'none' | string[]) =>
    resolveAnalyticsOptions({ trackingCode: 'x', logger: false, queryParams }).queryPolicy;
  const keepRef = policy(['ref']);
  const keepAll = policy('all');
  const headers = {
    referer: 'https://search.example/results?q=shoes&token=secret#top',
    'user-agent': '  Mozilla/5.0 (X11) test  ',
    'sec-ch-ua': '"Chromium";v="126"',
    'sec-ch-ua-platform': '"Linux"',
    cookie: 'sid=never-forwarded',
    authorization: 'Bearer never-forwarded',
  };
  const wire = (e: RecordedEvent) => ({
    body: { type: e.type, url: e.url, referrer: e.referrer },
    headers: Object.fromEntries(
      Object.entries(e.headers).filter(([name]) =>
        /^(user-agent|x-forwarded-for|sec-ch-ua.*|content-type|cookie|authorization)$/.test(name),
      ),
    ),
  });

  test('are what the main thread builds: query policy per middleware, referrer, cleaned headers, anonymised IP', async () => {
    const collector = await startCollector();
    const onWorker = tracker(collector.url, [], { anonymizeIp: true });
    const inThread = tracker(collector.url, [], { anonymizeIp: true, worker: false });
    for (const t of [onWorker, inThread]) {
      t.sendPageview(keepRef, 'https://shop.example', '/p?ref=a&token=b', '203.0.113.9', headers);
      t.sendPageview(keepAll, 'https://shop.example', '/p?ref=a&token=b', undefined, {});
      await t.flush();
    }
    expect(delivery(onWorker).thread).toBe('worker');
    const [w1, w2, m1, m2] = collector.events.map(wire);
    expect(w1).toEqual({
      body: {
        type: 'pageview',
        url: 'https://shop.example/p?ref=a',
        referrer: 'https://search.example/results',
      },
      headers: {
        'content-type': 'application/json',
        'user-agent': 'Mozilla/5.0 (X11) test',
        'x-forwarded-for': '203.0.113.0',
        'sec-ch-ua': '"Chromium";v="126"',
        'sec-ch-ua-platform': '"Linux"',
      },
    });
    expect(w2!.body).toEqual({
      type: 'pageview',
      url: 'https://shop.example/p?ref=a&token=b',
      referrer: undefined,
    });
    expect(w2!.headers).toEqual({ 'content-type': 'application/json' });
    expect([m1, m2]).toEqual([w1, w2]);
  });

  test('survive a crash (the new worker is told the policies) and a move to the main thread', async () => {
    const collector = await startCollector({ respond: () => ({ status: 202, delayMs: 100 }) });
    const lines: string[] = [];
    const t = tracker(collector.url, lines, { concurrency: 2 });
    for (let i = 0; i < 10; i++) {
      t.sendPageview(keepRef, 'https://shop.example', `/p${i}?ref=r&token=t`, undefined, headers);
    }
    await waitUntil(() => collector.events.length >= 1);
    await workerOf(t).terminate();
    await t.flush();
    expect(t.stats()).toMatchObject({ enqueued: 10, delivered: 10, dropped: 0, failed: 0 });
    const urls = new Set(collector.events.map((e) => e.url));
    expect([...urls].sort()).toEqual(
      Array.from({ length: 10 }, (_, i) => `https://shop.example/p${i}?ref=r`).sort(),
    );
    expect(lines.some((l) => l.includes('ZENOVAY_WORKER_RESTARTED'))).toBe(true);

    collector.reset();
    const fallback = bareDelivery(collector.url, lines, {
      script: pathToFileURL(path.join(__dirname, 'no-such-worker.js')),
    });
    fallback.submitPageview(keepRef, 'https://shop.example', '/a?ref=1&x=2', undefined, headers);
    await waitUntil(() => fallback.thread === 'main');
    fallback.submitPageview(keepRef, 'https://shop.example', '/b?x=2', undefined, headers);
    await fallback.flush();
    expect(collector.events.map((e) => [e.url, e.referrer])).toEqual([
      ['https://shop.example/a?ref=1', 'https://search.example/results'],
      ['https://shop.example/b', 'https://search.example/results'],
    ]);
    await fallback.close(500);
  });

  test('one too large is counted as dropped (invalid) and reported, on the worker and in-thread', async () => {
    const collector = await startCollector();
    for (const worker of [true, false]) {
      const lines: string[] = [];
      const t = tracker(collector.url, lines, { worker });
      const drops: string[] = [];
      t.on('drop', (e) => drops.push(e.reason));
      const huge = `/p?ref=${'a'.repeat(40_000)}`;
      t.sendPageview(keepAll, 'https://shop.example', huge, undefined, {});
      t.sendPageview(keepAll, 'https://shop.example', '/fine', undefined, {});
      await t.flush();
      expect(t.stats()).toMatchObject({ enqueued: 2, delivered: 1, dropped: 1 });
      expect(t.stats().reasons.dropped.invalid).toBe(1);
      expect(drops).toEqual(['invalid']);
      expect(lines.join('\n')).toMatch(
        /ZENOVAY_INVALID_EVENT: a pageview is \d+ bytes of JSON, more than the 32768 allowed/,
      );
    }
    expect(collector.events.map((e) => e.url)).toEqual([
      'https://shop.example/fine',
      'https://shop.example/fine',
    ]);
  });

  test('gather while nobody waits; an awaited event or flush() hurries them and their outcomes across', async () => {
    const collector = await startCollector();
    const d = bareDelivery(collector.url, [], { calmDelayMs: 5000, maxQueueSize: 1000 });
    const json = { 'content-type': 'application/json' };
    d.submitPageview(keepAll, 'https://shop.example', '/a', undefined, {});
    d.submit('{"type":"event","name":"quiet"}', json);
    await settle(300);
    expect(collector.events).toHaveLength(0);
    // Someone awaits this one: the batch crosses, and the worker reports, without the calm wait.
    let started = Date.now();
    const outcome = await new Promise<string>((resolve) =>
      d.submit('{"type":"event","name":"awaited"}', json, (o) => resolve(o.kind)),
    );
    expect(outcome).toBe('delivered');
    expect(Date.now() - started).toBeLessThan(2500);
    expect(collector.events.map((e) => e.name ?? e.url).sort()).toEqual([
      'awaited',
      'https://shop.example/a',
      'quiet',
    ]);
    // flush() waits for a pageview nobody awaits: both threads hurry for it too.
    d.submitPageview(keepAll, 'https://shop.example', '/b', undefined, {});
    started = Date.now();
    await d.flush();
    expect(Date.now() - started).toBeLessThan(2500);
    expect(d.stats()).toMatchObject({ enqueued: 4, delivered: 4, queued: 0, inFlight: 0 });
    // A full batch crosses at once, calm; flush() then finds nothing to send but still waits
    // for the worker's report of it, which it hurries.
    for (let i = 0; i < MAX_BATCH; i++) {
      d.submitPageview(keepAll, 'https://shop.example', `/full/${i}`, undefined, {});
    }
    await collector.waitFor(4 + MAX_BATCH, { timeout: 4000 });
    started = Date.now();
    await d.flush();
    expect(Date.now() - started).toBeLessThan(2500);
    expect(d.stats()).toMatchObject({ delivered: 4 + MAX_BATCH, queued: 0, inFlight: 0 });
    await d.close(500);
  });

  test('an awaited event is hurried after a flush() that found its batch empty, and as the event that fills a batch', async () => {
    const collector = await startCollector({
      respond: (e) => (e.name === 'first' ? { status: 202, delayMs: 300 } : 202),
    });
    const d = bareDelivery(collector.url, [], { calmDelayMs: 5000, maxQueueSize: 1000 });
    const json = { 'content-type': 'application/json' };
    const awaited = (name: string) => {
      const started = Date.now();
      return new Promise<number>((resolve) =>
        d.submit(`{"type":"event","name":"${name}"}`, json, () => resolve(Date.now() - started)),
      );
    };
    // In the worker, unanswered: flush() finds nothing to send and only tells the worker to hurry.
    const first = awaited('first');
    await waitUntil(() => collector.requestCount >= 1);
    const flushed = d.flush();
    expect(await awaited('after flush')).toBeLessThan(2500);
    await Promise.all([first, flushed]);
    // The 512th event of a batch is the awaited one: the full batch crosses at once, hurried.
    for (let i = 0; i < MAX_BATCH - 1; i++) {
      d.submitPageview(keepAll, 'https://shop.example', `/p/${i}`, undefined, {});
    }
    expect(await awaited('fills the batch')).toBeLessThan(2500);
    await d.close(1000);
    expect(d.stats()).toMatchObject({ enqueued: 3 + MAX_BATCH - 1, delivered: 3 + MAX_BATCH - 1 });
  });

  test('the first one, when no worker thread can even be created, goes from the main thread', async () => {
    const collector = await startCollector();
    const lines: string[] = [];
    // new Worker() throws at once for a script that is not a file URL.
    const d = bareDelivery(collector.url, lines, { script: new URL('http://127.0.0.1/none.js') });
    d.submitPageview(keepAll, 'https://shop.example', '/first', undefined, {});
    expect(d.thread).toBe('main');
    await d.flush();
    expect(collector.events.map((e) => e.url)).toEqual(['https://shop.example/first']);
    expect(d.stats()).toMatchObject({ enqueued: 1, delivered: 1, queued: 0, inFlight: 0 });
    expect(lines.join('\n')).toMatch(/ZENOVAY_WORKER_FAILED: no worker thread could start/);
    await d.close(500);
  });

  test('one with a line break in a part (an app can set any header) is built before it crosses', async () => {
    const collector = await startCollector();
    const t = tracker(collector.url);
    t.sendPageview(keepRef, 'https://shop.example', '/a\nb?ref=1', undefined, {
      'user-agent': 'Mozilla/5.0\nInjected: yes',
      referer: 'https://shop.example/\nfrom',
    });
    t.sendPageview(keepRef, 'https://shop.example', '/next', undefined, headers);
    await t.flush();
    expect(t.stats()).toMatchObject({ enqueued: 2, delivered: 2 });
    const [odd, next] = collector.events;
    expect(odd!.url).toBe('https://shop.example/a\nb?ref=1');
    expect(odd!.headers['user-agent']).toBe('Mozilla/5.0Injected: yes');
    expect(odd!.headers.injected).toBeUndefined();
    expect(next!.url).toBe('https://shop.example/next');
  });
});
