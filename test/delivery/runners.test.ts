/**
 * The engine's runners (see `pump` in src/delivery/engine.ts) with the built-in client against a
 * real server on 127.0.0.1: p-queue tasks that each send waiting events one after another, wait
 * idle between bursts, and end when the limit falls below them.
 */
import http from 'node:http';
import type net from 'node:net';
import { DeliveryEngine, CIRCUIT_THRESHOLD } from '../../src/delivery/engine';
import { createLeanTransport } from '../../src/delivery/lean-transport';
import { Reporter } from '../../src/logger';
import { watchTimers } from '../helpers/timers';

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Listens on a free port of 127.0.0.1, closed (connections too) after the test; the port. */
async function listening(server: http.Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanups.push(
    () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  );
  return (server.address() as net.AddressInfo).port;
}

interface Arrival {
  body: string;
  /** Requests open at the server (arrived, not answered or given up) when this one arrived, itself included. */
  held: number;
}

/**
 * An endpoint whose `answer` decides each request's fate by its number (0, 1, ...): a status
 * after a delay, or `'hang'` (never answered: the client gives up on it).
 */
async function endpoint(answer: (i: number) => [number, number] | 'hang') {
  const arrivals: Arrival[] = [];
  let held = 0;
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (chunk: Buffer) => (body += chunk.toString()));
    req.on('end', () => {
      held++;
      res.on('close', () => held--);
      arrivals.push({ body, held });
      const fate = answer(arrivals.length - 1);
      if (fate === 'hang') return;
      setTimeout(() => {
        res.statusCode = fate[0];
        res.end();
      }, fate[1]);
    });
  });
  server.keepAliveTimeout = 60_000;
  const port = await listening(server);
  return { url: `http://127.0.0.1:${port}/e/x`, arrivals };
}

function engine(url: string, overrides: Partial<ConstructorParameters<typeof DeliveryEngine>[0]>) {
  const e = new DeliveryEngine({
    endpoint: url,
    concurrency: 3,
    maxConcurrency: 256,
    maxQueueSize: 1000,
    timeoutMs: 5000,
    maxRetries: 3,
    retryDelayMs: 0,
    maxRetryDelayMs: 0,
    visitorRateLimit: false,
    globalRateLimit: undefined,
    transport: createLeanTransport({ maxSockets: 16 }),
    reporter: new Reporter({}),
    random: () => 0.5,
    ...overrides,
  });
  cleanups.push(() => e.close(100));
  return e;
}

/** Submits `body`: resolves with the outcome's kind. */
function submit(e: DeliveryEngine, body: string): Promise<string> {
  return new Promise((resolve) => e.submit(body, {}, (outcome) => resolve(outcome.kind)));
}

test('never more in flight than a fixed limit, and runners left idle take the next burst', async () => {
  const server = await endpoint(() => [202, 15]);
  const e = engine(server.url, { concurrency: 3 });
  const first = Array.from({ length: 20 }, (_, i) => submit(e, `"a${i}"`));
  expect(e.stats().inFlight).toBe(3);
  expect(await Promise.all(first)).toEqual(Array(20).fill('delivered'));
  await sleep(30);
  const second = Array.from({ length: 10 }, (_, i) => submit(e, `"b${i}"`));
  expect(await Promise.all(second)).toEqual(Array(10).fill('delivered'));
  expect(Math.max(...server.arrivals.map((a) => a.held))).toBe(3);
  // Each event once, in the order they came (one connection answers in order, three overlap).
  expect(server.arrivals.map((a) => a.body).sort()).toEqual(
    [...first.keys()]
      .map((i) => `"a${i}"`)
      .concat([...second.keys()].map((i) => `"b${i}"`))
      .sort(),
  );
  expect(e.stats()).toMatchObject({ delivered: 30, queued: 0, inFlight: 0 });
});

test('a retry goes before the events that waited', async () => {
  const server = await endpoint((i) => (i === 0 ? [503, 5] : [202, 5]));
  const e = engine(server.url, { concurrency: 1 });
  const outcomes = Promise.all(['"A"', '"B"', '"C"'].map((body) => submit(e, body)));
  expect(await outcomes).toEqual(['delivered', 'delivered', 'delivered']);
  expect(server.arrivals.map((a) => a.body)).toEqual(['"A"', '"A"', '"B"', '"C"']);
});

test('a 429 stops every runner until Retry-After has passed', async () => {
  const server = await endpointWithRetryAfter();
  const e = engine(server.url, { concurrency: 4 });
  const first = submit(e, '"first"');
  await until(() => server.answeredAt.length === 1);
  // Paused: these wait, with four slots free.
  const rest = Array.from({ length: 6 }, (_, i) => submit(e, `"r${i}"`));
  expect(await Promise.all([first, ...rest])).toEqual(Array(7).fill('delivered'));
  const after = server.arrivedAt.slice(1);
  expect(after).toHaveLength(7);
  expect(Math.min(...after) - server.answeredAt[0]!).toBeGreaterThanOrEqual(950);
});

test('half open, the circuit sends one probe at a time though more runners were running', async () => {
  let outage = true;
  let outageEnded = 0;
  const server = await endpoint((i) => {
    if (outage) return 'hang';
    outageEnded ||= i;
    return [202, 30];
  });
  const e = engine(server.url, { concurrency: 5, timeoutMs: 50, maxRetries: 50 });
  const outcomes = Array.from({ length: 8 }, (_, i) => submit(e, `"${i}"`));
  // Open, and the attempts that were in flight when it opened have failed too.
  await until(() => e.stats().circuit === 'open' && e.stats().inFlight === 0);
  expect(server.arrivals.length).toBeGreaterThanOrEqual(CIRCUIT_THRESHOLD);
  outage = false;
  expect(await Promise.all(outcomes)).toEqual(Array(8).fill('delivered'));
  const afterOutage = server.arrivals.slice(outageEnded);
  // The probe arrived alone, and was answered before anything else was sent.
  expect(afterOutage[0]!.held).toBe(1);
  expect(afterOutage[1]!.held).toBe(1);
  // Then the limit is back: several at once again, up to five.
  const most = Math.max(...afterOutage.map((a) => a.held));
  expect(most).toBeGreaterThan(1);
  expect(most).toBeLessThanOrEqual(5);
});

test('close() ends the runners: nothing left that keeps the process alive', async () => {
  const server = await endpoint(() => [202, 1]);
  const e = engine(server.url, { concurrency: 4 });
  const timers = watchTimers();
  cleanups.push(timers.stop);
  await Promise.all(Array.from({ length: 12 }, (_, i) => submit(e, `"${i}"`)));
  await e.close(1000);
  expect(e.stats()).toMatchObject({ delivered: 12, queued: 0, inFlight: 0 });
  // Every timer set since the engine was made is gone or unref'd (the server's sockets' timeouts
  // are unref'd; the engine's and the transport's must be cleared).
  expect(await timers.holding()).toBe(0);
  // Closed: a new event is dropped, no runner takes it.
  expect(await submit(e, '"late"')).toBe('dropped');
});

async function until(condition: () => boolean, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await sleep(5);
  }
}

/** Answers the first request 429 with `Retry-After: 1`, then 202; notes when (Date.now()). */
async function endpointWithRetryAfter() {
  const arrivedAt: number[] = [];
  const answeredAt: number[] = [];
  const server = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      arrivedAt.push(Date.now());
      if (arrivedAt.length === 1) {
        res.writeHead(429, { 'retry-after': '1' });
        res.end();
        answeredAt.push(Date.now());
        return;
      }
      res.statusCode = 202;
      res.end();
    });
  });
  const port = await listening(server);
  return { url: `http://127.0.0.1:${port}/e/x`, arrivedAt, answeredAt };
}

test('a runner sends its next event on the connection its last one came back on: one per runner', async () => {
  const { url } = await endpoint(() => [202, 2]);
  let connections = 0;
  const counted = await endpointConnections(url, () => connections++);
  const e = engine(counted, { concurrency: 3 });
  const outcomes = await Promise.all(
    Array.from(
      { length: 60 },
      (_, i) => new Promise<string>((resolve) => e.submit(`"${i}"`, {}, (o) => resolve(o.kind))),
    ),
  );
  expect(new Set(outcomes)).toEqual(new Set(['delivered']));
  // The answer sends the runner's next event: answered before the connection was free again, it
  // went out on a fourth one.
  expect(connections).toBe(3);
});

/** A TCP relay in front of `url` that counts the connections made to it; its own URL. */
async function endpointConnections(url: string, onConnection: () => void): Promise<string> {
  const target = new URL(url);
  const { createServer, connect } = await import('node:net');
  const relay = createServer((client) => {
    onConnection();
    const upstream = connect(Number(target.port), target.hostname);
    client.pipe(upstream).pipe(client);
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.destroy());
    client.on('close', () => upstream.destroy());
  });
  await new Promise<void>((resolve) => relay.listen(0, '127.0.0.1', resolve));
  cleanups.push(() => new Promise<void>((resolve) => relay.close(() => resolve())));
  const { port } = relay.address() as net.AddressInfo;
  return `http://127.0.0.1:${port}${target.pathname}`;
}
