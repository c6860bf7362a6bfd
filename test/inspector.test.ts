/**
 * The inspector (a collector with a live page): its routes, its event stream, its counts and the
 * stats it polls, what it refuses, and that close() lets everything go. Real servers on
 * 127.0.0.1, read with Node's fetch and http.
 */
import http from 'node:http';
import { createTracker, type Tracker } from '../src/index';
import { createInspector, type Inspector, type InspectorOptions } from '../src/testing/inspector';

const open: Inspector[] = [];
const trackers: Tracker[] = [];
afterEach(async () => {
  await Promise.all(trackers.splice(0).map((t) => t.close({ timeout: 500 })));
  await Promise.all(open.splice(0).map((i) => i.close()));
});

async function inspector(options?: InspectorOptions): Promise<Inspector> {
  const i = await createInspector(options);
  open.push(i);
  return i;
}

function tracker(host: string): Tracker {
  const t = createTracker({ trackingCode: 'kit', host, logger: false, maxRetries: 0 });
  trackers.push(t);
  return t;
}

interface Message {
  event: string;
  data: unknown;
}

/** Reads `GET /events` as a browser's EventSource would, message by message. */
async function stream(url: string) {
  const controller = new AbortController();
  const res = await fetch(`${url}/events`, { signal: controller.signal });
  const messages: Message[] = [];
  const wake = new Set<() => void>();
  let ended = false;
  const done = (async () => {
    const reader = res.body!.getReader();
    const decoder = new TextDecoder();
    let buffer = '';
    try {
      for (;;) {
        const { value, done: finished } = await reader.read();
        if (finished) break;
        buffer += decoder.decode(value, { stream: true });
        let end: number;
        while ((end = buffer.indexOf('\n\n')) !== -1) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const lines = block.split('\n');
          const event = lines.find((l) => l.startsWith('event: '))?.slice(7);
          const data = lines.find((l) => l.startsWith('data: '))?.slice(6);
          if (event && data !== undefined) messages.push({ event, data: JSON.parse(data) });
        }
        for (const w of wake) w();
      }
    } catch {
      // aborted by the test
    }
    ended = true;
    for (const w of wake) w();
  })();
  let cursor = 0;
  return {
    status: res.status,
    headers: res.headers,
    messages,
    /** The next message named `event` (and matching `test`) after the last one returned. */
    async next<T = Record<string, unknown>>(
      event: string,
      test: (data: T) => boolean = () => true,
      timeout = 3000,
    ): Promise<T> {
      const deadline = Date.now() + timeout;
      for (;;) {
        while (cursor < messages.length) {
          const m = messages[cursor++]!;
          if (m.event === event && test(m.data as T)) return m.data as T;
        }
        if (ended) throw new Error(`stream ended before a '${event}' message`);
        const left = deadline - Date.now();
        if (left <= 0) {
          throw new Error(
            `no '${event}' message within ${timeout} ms; got ${messages.map((m) => m.event).join(', ')}`,
          );
        }
        await new Promise<void>((resolve) => {
          const w = () => {
            wake.delete(w);
            clearTimeout(timer);
            resolve();
          };
          const timer = setTimeout(w, left);
          wake.add(w);
        });
      }
    },
    /** Resolves when the server ended the stream. */
    ended: () => done.then(() => ended),
    close: () => controller.abort(),
  };
}

function request(
  url: string,
  options: http.RequestOptions & { body?: string } = {},
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, options, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(options.body);
  });
}

function post(url: string, body: string) {
  return request(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body,
  });
}

test('serves the page: a script that renders text only, allowed by a nonce-based CSP', async () => {
  const i = await inspector();
  expect(i.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
  expect(i.pageUrl).toBe(`${i.url}/`);
  const res = await fetch(i.pageUrl);
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toBe('text/html; charset=utf-8');
  expect(res.headers.get('x-content-type-options')).toBe('nosniff');
  const csp = res.headers.get('content-security-policy') ?? '';
  const nonce = /script-src 'nonce-([^']+)'/.exec(csp)?.[1];
  expect(nonce).toBeDefined();
  expect(csp).toContain("default-src 'none'");
  expect(csp).toContain("connect-src 'self'");
  const html = await res.text();
  expect(html).toContain('<title>Zenovay inspector</title>');
  const scripts = [...html.matchAll(/<script([^>]*)>([\s\S]*?)<\/script>/g)];
  expect(scripts).toHaveLength(1);
  expect(scripts[0]![1]).toBe(` nonce="${nonce}"`);
  const script = scripts[0]![2]!;
  // Visitor-controlled strings only ever reach the DOM as text.
  expect(script).toContain('.textContent = ');
  expect(script).toContain("new EventSource('events')");
  for (const sink of [
    'innerHTML',
    'outerHTML',
    'insertAdjacentHTML',
    'document.write',
    'eval(',
    'Function(',
    'DOMParser',
    'createContextualFragment',
    'srcdoc',
  ]) {
    expect(script).not.toContain(sink);
  }
  // A new nonce for every page.
  const again = await fetch(i.pageUrl);
  expect(again.headers.get('content-security-policy')).not.toContain(nonce);
});

test("a real tracker's events reach the stream with their fields, and the counts follow", async () => {
  const i = await inspector();
  const s = await stream(i.url);
  expect(s.status).toBe(200);
  expect(s.headers.get('content-type')).toBe('text/event-stream; charset=utf-8');
  const snapshot = await s.next('snapshot');
  expect(snapshot).toMatchObject({ collectorUrl: i.url, events: [], pageviewsByPath: [] });

  const t = tracker(i.url);
  const visitor = {
    ip: '203.0.113.9',
    userAgent: 'Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0',
    referrer: 'https://search.example/?q=widgets',
  };
  expect(await t.trackPageview('https://shop.example/products/widget', visitor)).toBe(true);
  expect(await t.trackPageview('https://shop.example/products/widget?utm_source=x', visitor)).toBe(
    true,
  );
  expect(
    await t.trackEvent(
      'purchase',
      { order_id: 'ord_1', value: 19.99 },
      { ...visitor, url: 'https://shop.example/checkout' },
    ),
  ).toBe(true);

  const first = await s.next<{ event: Record<string, unknown> }>('collected');
  expect(first.event).toMatchObject({
    seq: 1,
    type: 'pageview',
    url: 'https://shop.example/products/widget',
    referrer: 'https://search.example/?q=widgets',
    ip: '203.0.113.9',
    userAgent: 'Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0',
    trackingCode: 'kit',
  });
  expect(first).toMatchObject({ pageviewsByPath: ['/products/widget', 1] });
  expect(await s.next('collected')).toMatchObject({ pageviewsByPath: ['/products/widget', 2] });
  const purchase = await s.next('collected');
  expect(purchase).toMatchObject({
    event: {
      seq: 3,
      type: 'event',
      name: 'purchase',
      url: 'https://shop.example/checkout',
      data: { order_id: 'ord_1', value: 19.99 },
      ip: '203.0.113.9',
    },
    eventsByName: ['purchase', 1],
    totals: { recorded: 3, pageviews: 2, events: 1 },
  });
  expect(
    await s.next('collector', (c: { totals: { requests: number } }) => c.totals.requests === 3),
  ).toMatchObject({ answers: [['202', 3]], refused: [] });

  const state = (await (await fetch(`${i.url}/api/state`)).json()) as Record<string, unknown>;
  expect(state).toMatchObject({
    totals: { requests: 3, recorded: 3, pageviews: 2, events: 1 },
    pageviewsByPath: [['/products/widget', 2]],
    eventsByName: [['purchase', 1]],
    answers: [['202', 3]],
  });
  expect((state.events as unknown[]).length).toBe(3);
  // Still a test collector: events, waitFor, requestCount.
  expect(i.events).toHaveLength(3);
  await expect(i.waitFor(1, { filter: (e) => e.name === 'purchase' })).resolves.toHaveLength(1);
  expect(i.requestCount).toBe(3);
  s.close();
});

test('watch() polls a tracker and pushes its stats, dropped and failed by reason', async () => {
  const i = await inspector({ statsIntervalMs: 20, sequence: [400] });
  const s = await stream(i.url);
  await s.next('snapshot');
  const t = tracker(i.url);
  const unwatch = i.watch(t, 'shop');
  type Stats = { name: string; stats: { delivered: number; failed: number; dropped: number } }[];
  expect(await s.next<Stats>('stats')).toMatchObject([{ name: 'shop', stats: { delivered: 0 } }]);

  expect(await t.trackEvent('refused')).toBe(false); // the collector answers 400 once
  expect(await t.trackEvent('signup')).toBe(true);
  expect(await t.trackEvent('')).toBe(false); // invalid: dropped before sending
  const stats = await s.next<Stats>(
    'stats',
    ([w]) => w!.stats.delivered === 1 && w!.stats.dropped === 1 && w!.stats.failed === 1,
  );
  expect(stats[0]!.stats).toMatchObject({
    enqueued: 3,
    queued: 0,
    inFlight: 0,
    reasons: { failed: { rejected: 1 }, dropped: { invalid: 1 } },
  });
  expect(i.state().trackers).toMatchObject([{ name: 'shop', stats: { delivered: 1 } }]);
  expect(i.state().refused).toMatchObject([{ method: 'POST', path: '/e/kit', status: 400 }]);

  // A second tracker gets a default name; unwatching removes it from the page.
  const stop = i.watch(createTracker({ trackingCode: 'kit', host: i.url, logger: false }));
  expect(i.state().trackers.map((w) => w.name)).toEqual(['shop', 'tracker 1']);
  stop();
  expect(await s.next<Stats>('stats', (list) => list.length === 1)).toMatchObject([
    { name: 'shop' },
  ]);
  unwatch();
  expect(i.state().trackers).toEqual([]);
  expect(() => i.watch({} as Tracker)).toThrow(TypeError);
  s.close();
});

test('a tracker whose stats() throws shows the error instead', async () => {
  const i = await inspector();
  i.watch(
    {
      stats() {
        throw new Error('boom');
      },
    },
    'broken',
  );
  expect(i.state().trackers).toMatchObject([{ name: 'broken', error: 'boom' }]);
});

test('visitor-controlled strings travel as data, never into the page', async () => {
  const i = await inspector();
  const s = await stream(i.url);
  await s.next('snapshot');
  const nasty = '<img src=x onerror="alert(1)"></script><script>alert(2)</script>';
  const t = tracker(i.url);
  await t.trackEvent(
    nasty,
    { note: nasty },
    { userAgent: nasty, url: 'https://x.example/"><svg/onload=alert(1)>' },
  );
  const { event } = await s.next<{ event: Record<string, unknown> }>('collected');
  expect(event).toMatchObject({ name: nasty, data: { note: nasty }, userAgent: nasty });
  // The page is static: nothing of the events is in its HTML.
  const html = await (await fetch(i.pageUrl)).text();
  expect(html).not.toContain('onerror');
  expect(html).not.toContain('alert(');
  // /api/state is JSON, not something a browser would sniff as HTML.
  const res = await fetch(`${i.url}/api/state`);
  expect(res.headers.get('content-type')).toBe('application/json; charset=utf-8');
  expect(res.headers.get('x-content-type-options')).toBe('nosniff');
  s.close();
});

test('refuses to start when NODE_ENV is production', async () => {
  const before = process.env.NODE_ENV;
  process.env.NODE_ENV = 'production';
  try {
    await expect(createInspector()).rejects.toThrow(
      /inspector is a development tool and does not start when NODE_ENV is 'production'/,
    );
  } finally {
    process.env.NODE_ENV = before;
  }
});

test('answers its own routes only as 127.0.0.1 or localhost (DNS rebinding)', async () => {
  const i = await inspector();
  const { port } = new URL(i.url);
  for (const path of ['/', '/events', '/api/state']) {
    const res = await request(`${i.url}${path}`, { headers: { host: `evil.example:${port}` } });
    expect(res.status).toBe(403);
    expect(res.body).toContain(`open http://127.0.0.1:${port}/`);
  }
  expect(
    (await request(`${i.url}/api/state`, { headers: { host: `localhost:${port}` } })).status,
  ).toBe(200);
});

test('caps the pages open at once', async () => {
  const i = await inspector({ maxClients: 2 });
  const a = await stream(i.url);
  const b = await stream(i.url);
  const c = await fetch(`${i.url}/events`);
  expect(c.status).toBe(503);
  expect(await c.text()).toContain('Too many inspector pages are open (2)');
  a.close();
  await a.ended();
  // A page that left frees its place.
  for (let tries = 0; tries < 50; tries++) {
    const d = await fetch(`${i.url}/events`);
    if (d.status === 200) {
      await d.body?.cancel();
      break;
    }
    await d.text();
    await new Promise((r) => setTimeout(r, 20));
    if (tries === 49) throw new Error('the closed page never freed its place');
  }
  b.close();
  await expect(createInspector({ maxClients: 0 })).rejects.toThrow(TypeError);
  await expect(createInspector({ statsIntervalMs: 0 })).rejects.toThrow(TypeError);
});

test("the collector's answers and faults pass through unchanged; refused requests are listed", async () => {
  const i = await inspector({
    sequence: [503, { status: 429, headers: { 'retry-after': '7' }, body: '{"slow":1}' }, 'reset'],
  });
  const body = '{"type":"event","name":"x"}';
  expect(await post(`${i.url}/e/k`, body)).toEqual({ status: 503, body: '{"error":"refused"}' });
  const throttled = await new Promise<http.IncomingMessage>((resolve, reject) => {
    const req = http.request(`${i.url}/e/k`, { method: 'POST' }, resolve);
    req.on('error', reject);
    req.end(body);
  });
  expect(throttled.statusCode).toBe(429);
  expect(throttled.headers['retry-after']).toBe('7');
  throttled.resume();
  // 'reset': the event is recorded, the client never gets a whole answer.
  await expect(post(`${i.url}/e/k`, body)).rejects.toThrow();
  expect(await post(`${i.url}/e/k`, body)).toEqual({ status: 202, body: '{"ok":true}' });
  expect((await post(`${i.url}/e/bad code`, body)).status).toBe(404);
  expect((await request(`${i.url}/other`)).status).toBe(404);
  expect(i.events).toHaveLength(2);
  expect(i.requestCount).toBe(6);
  const state = i.state();
  expect(state.totals).toEqual({ requests: 6, recorded: 2, pageviews: 0, events: 2 });
  expect(state.refused.map((r) => `${r.method} ${r.path} ${r.status}`)).toEqual([
    'POST /e/k 503',
    'POST /e/k 429',
    'POST /e/bad%20code 404',
    'GET /other 404',
  ]);
  expect(new Map(state.answers)).toEqual(
    new Map([
      ['503', 1],
      ['429', 1],
      ['200', 1],
      ['202', 1],
      ['404', 2],
    ]),
  );
});

test('stays bounded: the latest 100 events, 500 paths then (other)', async () => {
  const i = await inspector({ maxEvents: 50 });
  for (let n = 0; n < 520; n++) {
    const { status } = await post(
      `${i.url}/e/k`,
      JSON.stringify({ type: 'pageview', url: `https://a.example/p/${n}` }),
    );
    expect(status).toBe(202);
  }
  const state = i.state();
  expect(state.events).toHaveLength(100);
  expect(state.events[99]!.seq).toBe(520);
  expect(state.pageviewsByPath).toHaveLength(501);
  expect(new Map(state.pageviewsByPath).get('(other)')).toBe(20);
  expect(i.events).toHaveLength(50); // the collector's own cap
  // A path named like an Object property is just a key.
  await post(`${i.url}/e/k`, JSON.stringify({ type: 'event', name: '__proto__' }));
  expect(i.state().eventsByName).toEqual([['__proto__', 1]]);
});

test('reset() forgets events and counts, and tells open pages', async () => {
  const i = await inspector();
  const s = await stream(i.url);
  await s.next('snapshot');
  await post(`${i.url}/e/k`, JSON.stringify({ type: 'pageview', url: 'https://a.example/' }));
  await s.next('collected');
  i.reset();
  expect(await s.next('snapshot')).toMatchObject({ events: [], pageviewsByPath: [] });
  expect(i.events).toEqual([]);
  s.close();
});

test('close() ends open streams, stops polling and closes the port', async () => {
  const i = await createInspector({ statsIntervalMs: 10 });
  const s = await stream(i.url);
  await s.next('snapshot');
  const t = tracker(i.url);
  let reads = 0;
  i.watch({
    stats() {
      reads++;
      return t.stats();
    },
  });
  await new Promise((r) => setTimeout(r, 50));
  expect(reads).toBeGreaterThan(1);
  await i.close();
  await expect(s.ended()).resolves.toBe(true);
  const after = reads;
  await new Promise((r) => setTimeout(r, 50));
  expect(reads).toBe(after);
  await expect(fetch(i.pageUrl)).rejects.toThrow();
  // Idempotent, and watch() after close does nothing.
  await i.close();
  expect(i.watch({ stats: () => ({}) as never })).toEqual(expect.any(Function));
  expect(reads).toBe(after);
});

test('a fixed port, and a clear error when it is taken', async () => {
  const a = await inspector();
  const port = Number(new URL(a.url).port);
  await expect(createInspector({ port })).rejects.toThrow(/EADDRINUSE/);
  await a.close();
  const b = await inspector({ port });
  expect(b.url).toBe(`http://127.0.0.1:${port}`);
});
