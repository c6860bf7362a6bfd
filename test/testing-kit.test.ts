/**
 * zenovay-express/testing: the collector users test their apps with.
 */
import { spawnSync } from 'node:child_process';
import http from 'node:http';
import path from 'node:path';
import { createTracker } from '../src/index';
import { createTestCollector, type TestCollector } from '../src/testing';

const open: TestCollector[] = [];
afterAll(() => Promise.all(open.map((c) => c.close())));
async function collector(options?: Parameters<typeof createTestCollector>[0]) {
  const c = await createTestCollector(options);
  open.push(c);
  return c;
}

function post(url: string, path: string, body: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      `${url}${path}`,
      { method: 'POST', headers: { 'content-type': 'application/json' } },
      (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

test('listens on 127.0.0.1 and records events with their headers', async () => {
  const c = await collector();
  expect(c.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
  const t = createTracker({ trackingCode: 'kit', host: c.url, logger: false });
  await t.trackEvent('signup', { plan: 'pro' }, { userAgent: 'UA', ip: '203.0.113.4' });
  const [event] = await c.waitFor(1, { filter: (e) => e.name === 'signup' });
  expect(event).toMatchObject({
    type: 'event',
    name: 'signup',
    data: { plan: 'pro' },
    trackingCode: 'kit',
  });
  expect(event!.headers['x-forwarded-for']).toBe('203.0.113.4');
  expect(typeof event!.receivedAt).toBe('number');
  await t.close();
});

test('waitFor rejects on timeout with what did arrive', async () => {
  const c = await collector();
  await post(c.url, '/e/kit', '{"type":"pageview","url":"https://a.example/"}');
  await expect(c.waitFor(2, { timeout: 100 })).rejects.toThrow(
    /expected 2 event\(s\) within 100 ms, got 1 .*"type":"pageview"/,
  );
  await expect(c.waitFor(1, { timeout: 100, filter: (e) => e.type === 'event' })).rejects.toThrow(
    /matching the filter.*got 0/,
  );
});

test('refuses what is not the contract: wrong path, method, body', async () => {
  const c = await collector();
  expect(await post(c.url, '/e/bad code', '{}')).toBe(404);
  expect(await post(c.url, '/other', '{}')).toBe(404);
  expect(await post(c.url, '/e/kit', 'not json')).toBe(400);
  expect(await post(c.url, '/e/kit', '{"type":"other"}')).toBe(400);
  expect(c.events).toEqual([]);
  expect(c.requestCount).toBe(4);
});

test('sequence scripts the first answers, then 202; only 2xx are recorded', async () => {
  const c = await collector({ sequence: [503, { status: 429, headers: { 'retry-after': '1' } }] });
  const body = '{"type":"event","name":"x"}';
  expect([
    await post(c.url, '/e/k', body),
    await post(c.url, '/e/k', body),
    await post(c.url, '/e/k', body),
  ]).toEqual([503, 429, 202]);
  expect(c.events).toHaveLength(1);
});

test('a fixed port can be reused after close (an outage and its end)', async () => {
  const first = await createTestCollector();
  const port = Number(new URL(first.url).port);
  await first.close();
  const again = await collector({ port });
  expect(again.url).toBe(first.url);
});

test('an onEvent that throws does not take the collector down', async () => {
  const c = await collector({
    onEvent: () => {
      throw new Error('printer jammed');
    },
  });
  expect(await post(c.url, '/e/k', '{"type":"pageview","url":"https://a.example/"}')).toBe(202);
  expect(c.events).toHaveLength(1);
});

// --- Distance: latency, brownouts, and what a test needs to measure ------------------------------

const EVENT = '{"type":"event","name":"x"}';

interface Answered {
  status: number;
  ms: number;
  headers: http.IncomingHttpHeaders;
}

/** One POST on its own connection (or `agent`), timed from sending to the end of the answer. */
function timedPost(
  url: string,
  body = EVENT,
  agent: http.Agent | false = false,
): Promise<Answered> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const req = http.request(
      `${url}/e/kit`,
      { method: 'POST', agent, headers: { 'content-type': 'application/json' } },
      (res) => {
        res.resume();
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            ms: performance.now() - started,
            headers: res.headers,
          }),
        );
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

/** Polls `condition` until it holds; fails with `what` after `ms`. */
async function until(what: string, condition: () => boolean, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

// Timers may fire a millisecond early against performance.now() (the loop's clock is cached).
const EARLY = 2;

describe('latency', () => {
  test('a number: no answer arrives before it, and the event is recorded with its answer', async () => {
    const c = await collector({ latency: 1000 });
    const pending = timedPost(c.url);
    await until('the request to arrive', () => c.requestCount === 1);
    expect(c.openRequests).toBe(1);
    expect(c.events).toEqual([]);
    const answered = await pending;
    expect(answered.status).toBe(202);
    expect(answered.ms).toBeGreaterThanOrEqual(1000 - EARLY);
    expect(c.events).toHaveLength(1);
  });

  test("a response's delayMs adds to it; requests that are not events are answered at once", async () => {
    const c = await collector({ latency: 100, sequence: [{ status: 202, delayMs: 150 }] });
    const [late, bad] = await Promise.all([timedPost(c.url), timedPost(c.url, 'not json')]);
    expect(late.status).toBe(202);
    expect(late.ms).toBeGreaterThanOrEqual(250 - EARLY);
    expect(bad.status).toBe(400);
    // Generous: the 400 does not wait out the 100 ms latency, let alone the 250 ms answer.
    expect(bad.ms).toBeLessThan(late.ms);
  });

  test('a function of the event and its index: a jump from fast to slow and back', async () => {
    const seen: number[] = [];
    const c = await collector({
      latency: (event, index) => {
        seen.push(index);
        return event.name === 'slow' ? 1500 : 20;
      },
    });
    const body = (name: string) => JSON.stringify({ type: 'event', name });
    const fast1 = await timedPost(c.url, body('fast'));
    const slow = timedPost(c.url, body('slow'));
    await until('the slow request to arrive', () => c.requestCount === 2);
    const fast2 = await timedPost(c.url, body('fast2'));
    expect(fast1.ms).toBeGreaterThanOrEqual(20 - EARLY);
    expect(fast2.ms).toBeGreaterThanOrEqual(20 - EARLY);
    // The second fast one overtook the slow one, which is not recorded before its answer...
    expect(c.events.map((e) => e.name)).toEqual(['fast', 'fast2']);
    expect((await slow).ms).toBeGreaterThanOrEqual(1500 - EARLY);
    expect(seen).toEqual([0, 1, 2]);
    // ...and then takes its place in arrival order.
    expect(c.events.map((e) => e.name)).toEqual(['fast', 'slow', 'fast2']);
  });

  test('the tracker sees the distance: its event resolves no earlier than the latency', async () => {
    const c = await collector({ latency: 100 });
    const t = createTracker({ trackingCode: 'kit', host: c.url, logger: false });
    const started = performance.now();
    await expect(t.trackEvent('far')).resolves.toBe(true);
    expect(performance.now() - started).toBeGreaterThanOrEqual(100 - EARLY);
    expect(c.events.map((e) => e.name)).toEqual(['far']);
    await t.close();
  });

  test.each<[string, unknown, RegExp]>([
    ['negative', -1, /got -1\.$/],
    ['NaN', NaN, /got NaN\.$/],
    ['Infinity', Infinity, /To never answer, use sequence: \['hang'\]/],
    ['a numeric string', '100', /got the string "100"\. Pass the number 100, not a string\./],
    ['an object', { ms: 100 }, /got an object\.$/],
    ['too large for a timer', 2 ** 31, /got 2147483648\.$/],
  ])(
    'latency %s is refused with a TypeError saying what it takes',
    async (_what, latency, tail) => {
      const started = createTestCollector({ latency: latency as number });
      await expect(started).rejects.toThrow(TypeError);
      await expect(started).rejects.toThrow(
        /^createTestCollector: latency must be a number of milliseconds from 0 to 2147483647 \(e\.g\. 100\) or a function \(event, index\) => milliseconds, got /,
      );
      await expect(started).rejects.toThrow(tail);
    },
  );

  test('a latency function that throws or returns nonsense: answered without delay, one warning', async () => {
    const warn = jest.spyOn(process, 'emitWarning').mockImplementation(() => undefined);
    try {
      const c = await collector({
        latency: (_event, index) => {
          if (index === 0) throw new Error('no idea');
          // Used as a delay, this would hold the answer for 35 days.
          return index === 1 ? 3e9 : (undefined as unknown as number);
        },
      });
      const answers = [await timedPost(c.url), await timedPost(c.url), await timedPost(c.url)];
      expect(answers.map((a) => a.status)).toEqual([202, 202, 202]);
      expect(c.events).toHaveLength(3);
      expect(warn).toHaveBeenCalledTimes(1);
      expect(warn).toHaveBeenCalledWith(
        expect.stringMatching(
          /^createTestCollector: the latency function threw Error: no idea for event #0; that answer was sent without delay/,
        ),
        { code: 'ZENOVAY_COLLECTOR_LATENCY' },
      );
    } finally {
      warn.mockRestore();
    }
  });
});

describe('brownout', () => {
  test('slow and failing until end(); then answered as before', async () => {
    const c = await collector();
    const b = c.brownout({ latency: 300, status: 503, headers: { 'retry-after': '1' } });
    expect(b.active).toBe(true);
    const during = await timedPost(c.url);
    expect(during).toMatchObject({ status: 503, headers: { 'retry-after': '1' } });
    expect(during.ms).toBeGreaterThanOrEqual(300 - EARLY);
    expect(c.events).toEqual([]);
    b.end();
    b.end();
    expect(b.active).toBe(false);
    expect((await timedPost(c.url)).status).toBe(202);
    expect(c.events).toHaveLength(1);
  });

  test('slow only: 2xx answers during it are recorded; ending it does not hurry them', async () => {
    const c = await collector({ latency: 10 });
    const b = c.brownout({ latency: 1000 });
    const slow = timedPost(c.url);
    await until('the request to arrive', () => c.requestCount === 1);
    b.end();
    const after = await timedPost(c.url);
    expect(after.status).toBe(202);
    expect(after.ms).toBeGreaterThanOrEqual(10 - EARLY);
    const during = await slow;
    expect(during.status).toBe(202);
    expect(during.ms).toBeGreaterThanOrEqual(1000 - EARLY);
    expect(c.events).toHaveLength(2);
  });

  test('durationMs ends it by itself; a newer brownout replaces the one before', async () => {
    const c = await collector({ respond: () => 201 });
    const first = c.brownout({ status: 500 });
    const second = c.brownout({ status: 429, durationMs: 150 });
    expect(first.active).toBe(false);
    expect(second.active).toBe(true);
    expect((await timedPost(c.url)).status).toBe(429);
    await until('the brownout to end', () => !second.active);
    expect((await timedPost(c.url)).status).toBe(201);
  });

  test.each<[string, unknown, RegExp]>([
    ['no options', undefined, /pass the options, e\.g\. \{ latency: 2000/],
    ['neither latency nor status', {}, /give it a latency, a status or both/],
    ['a negative latency', { latency: -5 }, /^collector\.brownout: latency must be .* got -5\.$/],
    ['a status below 200', { status: 99 }, /status must be a whole number from 200 to 599/],
    ['a status above 599', { status: 600 }, /status must be .* got 600\.$/],
    ['a fractional status', { status: 503.5 }, /status must be .* got 503\.5\.$/],
    ['headers that are not an object', { status: 503, headers: 'x' }, /headers must be an object/],
    [
      'a header name HTTP cannot carry',
      { status: 503, headers: { 'retry after': '1' } },
      /headers must be valid HTTP header names and values .* got "retry after": the string "1"/,
    ],
    [
      'a header value with a line break',
      { status: 503, headers: { 'retry-after': '1\r\nx: y' } },
      /headers must be valid HTTP header names and values/,
    ],
    ['durationMs 0', { status: 503, durationMs: 0 }, /durationMs must be .* got 0\. Leave it out/],
  ])('%s is refused with a TypeError naming the option', async (_what, options, message) => {
    const c = await collector();
    const start = () => c.brownout(options as never);
    expect(start).toThrow(TypeError);
    expect(start).toThrow(message);
    // Nothing started.
    expect((await timedPost(c.url)).status).toBe(202);
  });
});

test('close() rejects a pending waitFor at once, rather than keeping the process alive until its timeout', async () => {
  const c = await createTestCollector();
  const waiting = c.waitFor(5, { timeout: 60_000 });
  const started = Date.now();
  await c.close();
  await expect(waiting).rejects.toThrow(/closed while waiting for 5 event\(s\); 0 had arrived/);
  expect(Date.now() - started).toBeLessThan(5000);
});

test('an answer whose header HTTP cannot carry is a 500 saying so, not a crash', async () => {
  const c = await collector({ respond: () => ({ status: 202, headers: { 'bad header': 'x' } }) });
  const answer = await timedPost(c.url);
  expect(answer.status).toBe(500);
});

describe('what a distance test measures', () => {
  test('connections and requests: counted as they open and close', async () => {
    const c = await collector({ latency: 50 });
    // Each on a connection of its own, closed after its answer.
    const fresh = await Promise.all(Array.from({ length: 5 }, () => timedPost(c.url)));
    expect(fresh.map((a) => a.status)).toEqual(Array(5).fill(202));
    await until('the connections to close', () => c.connections === 0);
    expect(c).toMatchObject({ openRequests: 0, connectionCount: 5, requestCount: 5 });
    expect(c.maxOpenRequests).toBeGreaterThanOrEqual(1);
    expect(c.maxConnections).toBeLessThanOrEqual(5);

    // Two kept-alive connections carry twelve requests, never more than two at once.
    const k = await collector({ latency: 50 });
    const agent = new http.Agent({ keepAlive: true, maxSockets: 2 });
    try {
      const kept = await Promise.all(
        Array.from({ length: 12 }, () => timedPost(k.url, EVENT, agent)),
      );
      expect(kept.map((a) => a.status)).toEqual(Array(12).fill(202));
      // The collector announces a keep-alive well above a 4 s client idle timeout.
      expect(kept[0]!.headers['keep-alive']).toBe('timeout=30');
      expect(k).toMatchObject({
        connections: 2,
        maxConnections: 2,
        connectionCount: 2,
        openRequests: 0,
        requestCount: 12,
      });
      expect(k.maxOpenRequests).toBeGreaterThanOrEqual(1);
      expect(k.maxOpenRequests).toBeLessThanOrEqual(2);
    } finally {
      agent.destroy();
    }
    await until('the kept-alive connections to close', () => k.connections === 0);
  });

  test('600 connections at once: all accepted and counted, none refused', async () => {
    // Held for a minute: the counts do not depend on how fast a busy machine connects them.
    const c = await createTestCollector({ latency: 60_000 });
    const outcomes = Array.from({ length: 600 }, () =>
      timedPost(c.url).then(
        (a) => a.status,
        (error: NodeJS.ErrnoException) => error.code,
      ),
    );
    try {
      await until('600 open requests', () => c.openRequests === 600, 25_000);
      expect(c).toMatchObject({
        connections: 600,
        maxConnections: 600,
        maxOpenRequests: 600,
        connectionCount: 600,
        events: [],
      });
    } finally {
      await c.close();
    }
    expect(new Set(await Promise.all(outcomes))).toEqual(new Set(['ECONNRESET']));
    expect(c).toMatchObject({ connections: 0, openRequests: 0, maxConnections: 600 });
  }, 30_000);

  test('close() is prompt with a 10 s latency pending, and the counters read 0 after it', async () => {
    const c = await createTestCollector({ latency: 10_000 });
    const brownout = c.brownout({ latency: 20_000, durationMs: 60_000 });
    const outcomes = Array.from({ length: 3 }, () =>
      timedPost(c.url).then(
        () => 'answered',
        (error: NodeJS.ErrnoException) => error.code,
      ),
    );
    await until('3 open requests', () => c.openRequests === 3);
    const started = performance.now();
    await c.close();
    // Generous: it does not wait for the answers (10 s) or the brownout (60 s).
    expect(performance.now() - started).toBeLessThan(1000);
    expect(c).toMatchObject({ connections: 0, openRequests: 0, events: [] });
    expect(brownout.active).toBe(false);
    expect(await Promise.all(outcomes)).toEqual(['ECONNRESET', 'ECONNRESET', 'ECONNRESET']);
    // A brownout asked for after close() does not start.
    expect(c.brownout({ status: 503, durationMs: 60_000 }).active).toBe(false);
  });

  test('after close() nothing keeps the process alive: a script exits at once', () => {
    // The built kit, as a user's script loads it; the 10 s latency and the 60 s brownouts would
    // each hold the process if close() left a timer behind.
    const script = `
      const http = require('node:http');
      const { createTestCollector } = require('zenovay-express/testing');
      (async () => {
        const c = await createTestCollector({ latency: 10000 });
        c.brownout({ latency: 20000, durationMs: 60000 });
        for (let i = 0; i < 3; i++) {
          const req = http.request(c.url + '/e/k', { method: 'POST' });
          req.on('error', () => {});
          req.end('{"type":"event","name":"x"}');
        }
        while (c.openRequests < 3) await new Promise((resolve) => setTimeout(resolve, 5));
        await c.close();
        c.brownout({ status: 503, durationMs: 60000 });
        console.log(JSON.stringify({ open: c.openRequests, connections: c.connections }));
      })();`;
    const started = Date.now();
    const child = spawnSync(process.execPath, ['-e', script], {
      cwd: path.resolve(__dirname, '..'),
      encoding: 'utf8',
      timeout: 8000,
    });
    expect(child.error).toBeUndefined();
    expect(child.stderr).toBe('');
    expect(child.status).toBe(0);
    expect(JSON.parse(child.stdout)).toEqual({ open: 0, connections: 0 });
    // The process ended by itself, long before any of those timers.
    expect(Date.now() - started).toBeLessThan(8000);
  });
});
