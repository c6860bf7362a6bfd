/**
 * createTracker(): the delivery engine without a request, against a real collector.
 */
import net from 'node:net';
import { createTracker, type Tracker, type TrackerOptions, type TrackerStats } from '../src/index';
import type { TestCollector } from '../src/testing';
import { startCollector } from './helpers/collector';

let collector: TestCollector;
const open: Tracker[] = [];

beforeAll(async () => {
  collector = await startCollector();
});
beforeEach(() => collector.reset());
afterAll(async () => {
  await Promise.all(open.map((t) => t.close()));
});

/** Which delivery mode the current block tests. */
let onWorker = true;

function tracker(options: TrackerOptions = {}): Tracker {
  const t = createTracker({
    trackingCode: 'jobs',
    host: collector.url,
    logger: false,
    ...(options.transport ? {} : { worker: onWorker }),
    ...options,
  });
  open.push(t);
  return t;
}

function expectBalanced(s: TrackerStats): void {
  expect(s.enqueued).toBe(s.delivered + s.failed + s.dropped + s.queued + s.inFlight);
  expect(s.failed).toBe(Object.values(s.reasons.failed).reduce((a, b) => a + b, 0));
  expect(s.dropped).toBe(Object.values(s.reasons.dropped).reduce((a, b) => a + b, 0));
}

/** A server that accepts connections and never answers. */
async function blackHole(): Promise<{ url: string; close: () => Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((s) => sockets.add(s));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as net.AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    close: async () => {
      sockets.forEach((s) => s.destroy());
      await new Promise((r) => server.close(r));
    },
  };
}

/** Both delivery modes must behave the same: every test runs on the worker and in-thread. */
describe.each(['worker', 'main'] as const)('delivery on the %s thread', (thread) => {
  beforeAll(() => {
    onWorker = thread === 'worker';
  });

  test('trackEvent sends the documented body and visitor headers, and resolves true', async () => {
    const t = tracker();
    const ok = await t.trackEvent(
      'purchase',
      { order_id: 'ORD-12345', value: 99.99, currency: 'USD' },
      {
        url: 'https://example.com/checkout/success',
        referrer: 'https://example.com/cart',
        userAgent: 'Mozilla/5.0 test',
        ip: '203.0.113.50',
        clientHints: { 'sec-ch-ua-mobile': '?0' },
      },
    );
    expect(ok).toBe(true);
    const [event] = collector.events;
    expect(event).toMatchObject({
      type: 'event',
      name: 'purchase',
      url: 'https://example.com/checkout/success',
      referrer: 'https://example.com/cart',
      data: { order_id: 'ORD-12345', value: 99.99, currency: 'USD' },
      trackingCode: 'jobs',
    });
    expect(event!.headers['user-agent']).toBe('Mozilla/5.0 test');
    expect(event!.headers['x-forwarded-for']).toBe('203.0.113.50');
    expect(event!.headers['sec-ch-ua-mobile']).toBe('?0');
    expect(event!.headers.connection).toBe('keep-alive');
    expect(t.stats()).toMatchObject({ enqueued: 1, delivered: 1, failed: 0, dropped: 0 });
  });

  test('trackPageview sends a pageview; a path is resolved on siteUrl', async () => {
    const t = tracker({ siteUrl: 'https://shop.example' });
    await expect(t.trackPageview('/pricing', { referrer: 'https://ref.example/' })).resolves.toBe(
      true,
    );
    await expect(t.trackPageview('https://other.example/x')).resolves.toBe(true);
    expect(collector.events.map((e) => [e.type, e.url, e.referrer])).toEqual([
      ['pageview', 'https://shop.example/pricing', 'https://ref.example/'],
      ['pageview', 'https://other.example/x', undefined],
    ]);
  });

  test('an event without a url gets siteUrl, or no url at all', async () => {
    await tracker({ siteUrl: 'https://shop.example' }).trackEvent('signup');
    await tracker().trackEvent('job_done', { n: 1 });
    expect(collector.events[0]!.url).toBe('https://shop.example');
    expect(collector.events[1]!.url).toBeUndefined();
    expect(collector.events[1]!.headers['user-agent']).toBeUndefined();
    expect(collector.events[1]!.headers['x-forwarded-for']).toBeUndefined();
  });

  describe('bad input resolves false, is reported, and is counted as dropped (invalid)', () => {
    const circular: Record<string, unknown> = {};
    circular.self = circular;
    test.each<[string, (t: Tracker) => Promise<boolean>, RegExp]>([
      ['an empty name', (t) => t.trackEvent(''), /non-empty string/],
      [
        'a name that is not a string',
        (t) => t.trackEvent(42 as unknown as string),
        /42 \(number\)/,
      ],
      [
        'data that is an array',
        (t) => t.trackEvent('x', [1] as unknown as Record<string, unknown>),
        /plain object/,
      ],
      ['circular data', (t) => t.trackEvent('x', circular), /cannot be serialised.*circular/i],
      ['BigInt data', (t) => t.trackEvent('x', { n: BigInt(1) }), /cannot be serialised.*BigInt/i],
      [
        'data over 32 KB',
        (t) => t.trackEvent('x', { blob: 'x'.repeat(40_000) }),
        /more than the 32768/,
      ],
      [
        'a relative pageview URL without siteUrl',
        (t) => t.trackPageview('/x'),
        /absolute http\(s\) URL/,
      ],
      [
        'a pageview URL that is not http',
        (t) => t.trackPageview('ftp://x.example/'),
        /absolute http\(s\) URL/,
      ],
      [
        'a pageview URL with a line break',
        (t) => t.trackPageview('https://x.example/a\nb'),
        /absolute http\(s\) URL/,
      ],
      [
        'a name with control characters',
        (t) => t.trackEvent('signup\u001b[31mRED'),
        /without control characters/,
      ],
    ])('%s', async (_what, call, message) => {
      const warnings: string[] = [];
      const t = tracker({ logger: { warn: (m) => warnings.push(m) } });
      await expect(call(t)).resolves.toBe(false);
      expect(warnings).toHaveLength(1);
      expect(warnings[0]).toContain('ZENOVAY_INVALID_EVENT');
      expect(warnings[0]).toMatch(message);
      expect(t.stats()).toMatchObject({ enqueued: 1, dropped: 1 });
      expect(t.stats().reasons.dropped.invalid).toBe(1);
      await t.flush();
      expect(collector.events).toHaveLength(0);
    });
  });

  test('a visitor IP that is not an IP is not forwarded', async () => {
    const warnings: string[] = [];
    const t = tracker({ logger: { warn: (m) => warnings.push(m) } });
    await expect(t.trackEvent('x', {}, { ip: 'not-an-ip, 10.0.0.1' })).resolves.toBe(true);
    expect(collector.events[0]!.headers['x-forwarded-for']).toBeUndefined();
    expect(warnings[0]).toContain('ZENOVAY_BAD_IP');
  });

  test('header values Node would refuse are cleaned, not thrown', async () => {
    const t = tracker();
    await expect(t.trackEvent('x', {}, { userAgent: 'Evil\r\nX-Injected: 1\u0000' })).resolves.toBe(
      true,
    );
    const [event] = collector.events;
    expect(event!.headers['user-agent']).toBe('EvilX-Injected: 1');
    expect(event!.headers['x-injected']).toBeUndefined();
  });

  test('a 404 fails the event and says the tracking code is probably wrong', async () => {
    const refusing = await startCollector({
      respond: () => ({ status: 404, body: 'unknown site' }),
    });
    const errors: string[] = [];
    const t = tracker({ host: refusing.url, logger: { error: (m) => errors.push(m) } });
    await expect(t.trackEvent('x')).resolves.toBe(false);
    expect(t.stats()).toMatchObject({ enqueued: 1, failed: 1, delivered: 0 });
    expect(t.stats().reasons.failed.rejected).toBe(1);
    expect(errors[0]).toMatch(/ZENOVAY_HTTP_404.*unknown site.*tracking code is wrong/);
  });

  test('without retries, a 503 fails the event as a server error, reported once a minute', async () => {
    const down = await startCollector({ respond: () => 503 });
    const warnings: string[] = [];
    const t = tracker({ host: down.url, maxRetries: 0, logger: { warn: (m) => warnings.push(m) } });
    const results = await Promise.all([t.trackEvent('a'), t.trackEvent('b'), t.trackEvent('c')]);
    expect(results).toEqual([false, false, false]);
    expect(t.stats().reasons.failed.server_error).toBe(3);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toContain('ZENOVAY_HTTP_503');
  });

  test('connection refused fails as a network error', async () => {
    const closed = await startCollector();
    const url = closed.url;
    await closed.close();
    const t = tracker({ host: url, maxRetries: 0 });
    await expect(t.trackEvent('x')).resolves.toBe(false);
    expect(t.stats().reasons.failed.network).toBe(1);
  });

  test('concurrency limits requests in flight; the wait is bounded and overflow is dropped', async () => {
    const hole = await blackHole();
    const t = tracker({
      host: hole.url,
      concurrency: 2,
      maxQueueSize: 3,
      timeout: 300,
      maxRetries: 0,
    });
    const results = Array.from({ length: 8 }, (_, i) => t.trackEvent(`e${i}`));
    const during = t.stats();
    expect(during).toMatchObject({ enqueued: 8, inFlight: 2, queued: 3, dropped: 3 });
    expect(during.reasons.dropped.queue_full).toBe(3);
    expectBalanced(during);
    expect(await Promise.all(results)).toEqual(Array(8).fill(false));
    const after = t.stats();
    expect(after).toMatchObject({ enqueued: 8, failed: 5, dropped: 3, queued: 0, inFlight: 0 });
    expect(after.reasons.failed.timeout).toBe(5);
    await hole.close();
  });

  test('flush resolves once everything accepted so far is settled', async () => {
    const t = tracker();
    for (let i = 0; i < 50; i++) void t.trackEvent('bulk', { i });
    await t.flush();
    expect(t.stats()).toMatchObject({ enqueued: 50, delivered: 50, queued: 0, inFlight: 0 });
    expect(collector.events).toHaveLength(50);
  });

  test('the stats invariant holds at every moment of a busy run', async () => {
    const flaky = await startCollector({ respond: (_e, i) => (i % 3 === 0 ? 500 : 202) });
    const t = tracker({
      host: flaky.url,
      concurrency: 3,
      maxQueueSize: 20,
      retryDelay: 1,
      maxRetries: 1,
    });
    const results: Promise<boolean>[] = [];
    for (let i = 0; i < 60; i++) {
      results.push(t.trackEvent('e', { i }));
      if (i % 7 === 0) results.push(t.trackEvent(''));
      expectBalanced(t.stats());
      if (i % 10 === 0) await new Promise((r) => setImmediate(r));
    }
    const check = setInterval(() => expectBalanced(t.stats()), 1);
    await Promise.all(results);
    clearInterval(check);
    const s = t.stats();
    expectBalanced(s);
    expect(s.enqueued).toBe(results.length);
    expect(s.delivered).toBe(flaky.events.length);
  });

  describe('close()', () => {
    test('delivers what is queued, then refuses new events as dropped (closed)', async () => {
      const t = tracker();
      const pending = [t.trackEvent('a'), t.trackEvent('b')];
      await t.close();
      expect(await Promise.all(pending)).toEqual([true, true]);
      await expect(t.trackEvent('late')).resolves.toBe(false);
      await expect(t.trackPageview('https://x.example/')).resolves.toBe(false);
      expect(t.stats()).toMatchObject({ enqueued: 4, delivered: 2, dropped: 2 });
      expect(t.stats().reasons.dropped.closed).toBe(2);
      await expect(t.close()).resolves.toBeUndefined();
    });

    test('at its timeout, drops what is still waiting or in flight (closed)', async () => {
      const hole = await blackHole();
      const t = tracker({ host: hole.url, concurrency: 1, timeout: 60_000 });
      const pending = [t.trackEvent('a'), t.trackEvent('b'), t.trackEvent('c')];
      const started = Date.now();
      await t.close({ timeout: 100 });
      expect(Date.now() - started).toBeLessThan(2000);
      expect(await Promise.all(pending)).toEqual([false, false, false]);
      expect(t.stats()).toMatchObject({ enqueued: 3, dropped: 3, queued: 0, inFlight: 0 });
      expect(t.stats().reasons.dropped.closed).toBe(3);
      await hole.close();
    });

    test('a timeout past what timers can wait (2^31 - 1 ms) waits that long, not zero', async () => {
      const slow = await startCollector({ respond: () => ({ status: 202, delayMs: 100 }) });
      const t = tracker({ host: slow.url });
      const sent = t.trackEvent('slow');
      await t.close({ timeout: Number.MAX_SAFE_INTEGER });
      await expect(sent).resolves.toBe(true);
    });

    test('rejects a bad timeout with a clear message', async () => {
      const t = tracker();
      await expect(t.close({ timeout: -1 })).rejects.toThrow(
        /close\(\{ timeout \}\) must be a number/,
      );
    });

    test('leaves no socket or timer that keeps the process alive, even with a request hanging', async () => {
      const hole = await blackHole();
      const { spawn } = await import('node:child_process');
      // A child process whose only request hangs: after close() it must exit by itself.
      const script = `
        const { createTracker } = require(${JSON.stringify(require.resolve('../dist/index.cjs'))});
        const t = createTracker({ trackingCode: 'exit', host: process.argv[1], logger: false, worker: ${onWorker} });
        void t.trackEvent('hangs');
        setTimeout(async () => {
          await t.close({ timeout: 100 });
          console.log(JSON.stringify(t.stats().reasons.dropped));
        }, 50);
      `;
      const child = spawn(process.execPath, ['-e', script, hole.url], {
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      let out = '';
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      const started = Date.now();
      const code = await new Promise<number | null>((resolve) => {
        const killer = setTimeout(() => child.kill('SIGKILL'), 8000);
        child.on('exit', (c) => {
          clearTimeout(killer);
          resolve(c);
        });
      });
      expect(code).toBe(0);
      expect(Date.now() - started).toBeLessThan(4000);
      expect(JSON.parse(out)).toMatchObject({ closed: 1 });
      await hole.close();
    });
  });

  test('a custom transport replaces HTTP', async () => {
    const seen: string[] = [];
    const t = tracker({
      transport: {
        send: async (req) => {
          seen.push(`${req.url} ${req.body}`);
          return { status: 204 };
        },
      },
    });
    await expect(t.trackEvent('via_transport', { a: 1 })).resolves.toBe(true);
    expect(seen).toEqual([
      `${collector.url}/e/jobs {"type":"event","name":"via_transport","data":{"a":1}}`,
    ]);
  });

  test('a transport that throws synchronously fails the event, never the caller', async () => {
    const t = tracker({
      maxRetries: 0,
      transport: {
        send: () => {
          throw new Error('sync boom');
        },
      },
    });
    await expect(t.trackEvent('x')).resolves.toBe(false);
    expect(t.stats().reasons.failed.network).toBe(1);
  });
});
