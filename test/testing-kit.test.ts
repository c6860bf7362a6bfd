/**
 * zenovay-express/testing: the collector users test their apps with.
 */
import http from 'node:http';
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
