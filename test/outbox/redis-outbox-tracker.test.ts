/**
 * The Redis outbox end to end, through createTracker, against real redis-server processes (their
 * own ports, see test/helpers/redis-server.ts) and the public test collector:
 * - two app processes (the built package, dist/index.js) share one stream while the endpoint is
 *   mostly down; one is killed with SIGKILL and the other delivers what it left;
 * - Redis restarted mid-stream (AOF), and restarted empty (no persistence);
 * - Redis unreachable at start;
 * - the user's own node-redis client (delivery on the main thread, the client left open);
 * - the worker's outbox stats on an idle tracker.
 * The delivery worker runs from dist/: `npm run build` first.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { pathToFileURL } from 'node:url';
import { createClient } from '@redis/client';
import { createTracker, type Tracker } from '../../src/tracker';
import type { TrackerOptions } from '../../src/options';
import type { TrackerStats } from '../../src/delivery/delivery';
import { DeliveryEngine } from '../../src/delivery/engine';
import type { RecordedEvent } from '../../src/testing';
import { startCollector } from '../helpers/collector';
import {
  freePort,
  requireRedisServer,
  startRedis,
  stopAllRedis,
  stopRedis,
  type RedisProcess,
} from '../helpers/redis-server';
import { workerScript } from '../helpers/worker-location';

jest.setTimeout(40_000);

let redis: RedisProcess;
const trackers: Tracker[] = [];
const children = new Set<ChildProcess>();
const tmpDirs: string[] = [];

beforeAll(async () => {
  requireRedisServer();
  workerScript(); // throws a clear message when dist/ is missing
  redis = await startRedis();
});

afterEach(async () => {
  for (const child of children) child.kill('SIGKILL');
  children.clear();
  await Promise.all(trackers.splice(0).map((t) => t.close({ timeout: 500 })));
});

afterAll(async () => {
  await stopAllRedis();
  for (const dir of tmpDirs) rmSync(dir, { recursive: true, force: true });
});

/** A stream of the test's own (with a hash tag, as the default name has). */
function streamName(): string {
  return `test:tracker-outbox:{${randomUUID()}}`;
}

/** Every log line, with its level. */
interface Logged {
  level: string;
  line: string;
}

function capture(): { lines: Logged[]; logger: NonNullable<TrackerOptions['logger']> } {
  const lines: Logged[] = [];
  const at = (level: string) => (line: string) => lines.push({ level, line });
  return {
    lines,
    logger: { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') },
  };
}

function tracker(options: TrackerOptions): Tracker {
  const t = createTracker({ trackingCode: 'redisoutbox', ...options });
  trackers.push(t);
  return t;
}

/** Polls `check` every 25 ms until it is true; rejects with `what` after `timeoutMs`. */
async function until(check: () => boolean, what: string, timeoutMs = 15_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

/** The stats invariant with an outbox. */
function balanced(s: TrackerStats): boolean {
  // What close() left in the outbox (`outbox.stored`) still counts as queued.
  return s.enqueued === s.delivered + s.failed + s.dropped + s.queued + s.inFlight;
}

/** `key` of the recorded copies of each event (by `data[field]`), and the copies' keys. */
function copiesBy(
  events: RecordedEvent[],
  id: (e: RecordedEvent) => string,
): Map<string, string[]> {
  const copies = new Map<string, string[]>();
  for (const e of events) {
    const key = String(e.headers['idempotency-key']);
    const list = copies.get(id(e)) ?? [];
    list.push(key);
    copies.set(id(e), list);
  }
  return copies;
}

/**
 * Duplicates only with the key already sent: every copy of an event carries one key, and no two
 * events share a key.
 */
function expectDuplicatesShareKey(copies: Map<string, string[]>): void {
  const owner = new Map<string, string>();
  for (const [event, keys] of copies) {
    expect(new Set(keys).size).toBe(1);
    const key = keys[0] as string;
    expect(key).toMatch(/\S/);
    expect(owner.get(key) ?? event).toBe(event);
    owner.set(key, event);
  }
}

// --- the app process ------------------------------------------------------------------------------

interface AppReport {
  /** When the test read the line. */
  at: number;
  accepted: number;
  stats: TrackerStats;
}

interface App {
  name: string;
  child: ChildProcess;
  reports: AppReport[];
  logs: Logged[];
  closed: Promise<AppReport>;
  send(command: 'stop' | 'close'): void;
}

/**
 * A process that runs the built package: a tracker with the Redis outbox, once it is open 5 events every 20 ms
 * (`{ app, n }`, n counting from 0) until told `stop`, a report of what it accepted and its
 * stats every 100 ms, and on `close` a tracker.close() and a last report.
 */
const APP = `
  import readline from 'node:readline';
  const { createTracker } = await import(process.env.ZX_DIST);
  const write = (o) => process.stdout.write(JSON.stringify(o) + '\\n');
  const log = (level) => (line) => write({ log: level, line });
  const tracker = createTracker({
    trackingCode: 'fleet',
    host: process.env.ZX_HOST,
    maxQueueSize: 100,
    retryDelay: 50,
    maxRetryDelay: 1000,
    outbox: {
      redis: process.env.ZX_REDIS,
      stream: process.env.ZX_STREAM,
      claimAfter: Number(process.env.ZX_CLAIM_AFTER),
    },
    logger: { info: log('info'), warn: log('warn'), error: log('error') },
  });
  let n = 0;
  const report = () => write({ accepted: n, stats: tracker.stats() });
  // Events start once the outbox is open (before, only 2 x maxQueueSize could wait for it).
  while (tracker.stats().outbox.state !== 'open') await new Promise((r) => setTimeout(r, 10));
  const produce = setInterval(() => {
    for (let i = 0; i < 5; i++) void tracker.trackEvent('fleet', { app: process.env.ZX_NAME, n: n++ });
  }, 20);
  const reports = setInterval(report, 100);
  const input = readline.createInterface({ input: process.stdin });
  input.on('line', async (command) => {
    if (command === 'stop') {
      clearInterval(produce);
      report();
    } else if (command === 'close') {
      clearInterval(reports);
      input.close();
      process.stdin.destroy(); // nothing but the tracker may keep the process up now
      await tracker.close({ timeout: 5000 });
      write({ closed: true, accepted: n, stats: tracker.stats() });
    }
  });
`;

const DIST = pathToFileURL(path.resolve(__dirname, '../../dist/index.js')).href;

/**
 * The app's script, in a file: with `--input-type=module -e` the delivery worker would inherit
 * that flag, which a worker refuses (it then falls back to the main thread).
 */
let appFile: string | undefined;
function appScript(): string {
  if (appFile === undefined) {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'zenovay-redis-app-'));
    tmpDirs.push(dir);
    appFile = path.join(dir, 'app.mjs');
    writeFileSync(appFile, APP);
  }
  return appFile;
}

function startApp(name: string, env: Record<string, string>): App {
  const child = spawn(process.execPath, [appScript()], {
    env: { ...process.env, ZX_DIST: DIST, ZX_NAME: name, ...env },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  children.add(child);
  const reports: AppReport[] = [];
  const logs: Logged[] = [];
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const closed = new Promise<AppReport>((resolve, reject) => {
    readline.createInterface({ input: child.stdout! }).on('line', (text) => {
      const message = JSON.parse(text) as {
        log?: string;
        line?: string;
        closed?: boolean;
        accepted?: number;
        stats?: TrackerStats;
      };
      if (message.log !== undefined) {
        logs.push({ level: message.log, line: message.line ?? '' });
        return;
      }
      const report = { at: Date.now(), accepted: message.accepted!, stats: message.stats! };
      if (message.closed) resolve(report);
      else reports.push(report);
    });
    child.once('exit', (code, signal) =>
      reject(new Error(`app ${name} exited (${code ?? signal}) before its close: ${stderr}`)),
    );
  });
  closed.catch(() => undefined); // the killed one never closes
  return {
    name,
    child,
    reports,
    logs,
    closed,
    send: (command) => child.stdin?.write(`${command}\n`),
  };
}

function last(app: App): AppReport | undefined {
  return app.reports[app.reports.length - 1];
}

function exited(child: ChildProcess, timeoutMs: number): Promise<number | string | null> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) {
      resolve(child.exitCode ?? child.signalCode);
      return;
    }
    const timer = setTimeout(() => resolve('still running'), timeoutMs);
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      resolve(code ?? signal);
    });
  });
}

// --- the tests ----------------------------------------------------------------------------------

test('two app processes share a stream; the one killed with SIGKILL leaves its events to the other', async () => {
  // The endpoint is mostly down while both pile events up: 3 of 4 answers are 503s, the others
  // 202s that take 300 ms (the one killed may have its event recorded and never hear the answer,
  // so that the other sends it again). Events wait in memory (100 each) and in the stream.
  let healthy = false;
  const collector = await startCollector({
    maxEvents: 100_000,
    respond: (_event, index) =>
      healthy ? 202 : index % 4 === 0 ? { status: 202, delayMs: 300 } : 503,
  });
  const stream = streamName();
  const env = {
    ZX_HOST: collector.url,
    ZX_REDIS: redis.url,
    ZX_STREAM: stream,
    ZX_CLAIM_AFTER: '1500',
  };
  const a = startApp('a', env);
  const b = startApp('b', env);
  await until(
    () => [a, b].every((app) => last(app)?.stats.outbox?.state === 'open'),
    'both outboxes to open',
  );
  const started = Date.now();
  // A few seconds of events, and at least 600 of A's written to Redis.
  await until(
    () => Date.now() - started >= 3000 && (last(a)?.stats.outbox?.written ?? 0) >= 600,
    "A's events to reach Redis",
    20_000,
  );
  const killedAt = Date.now();
  const final = last(a)!;
  // What A had accepted 1.5 s before the kill (its report then), and what its worker had written
  // by its last report: events are written in the order they are accepted.
  const earlier = [...a.reports].reverse().find((r) => r.at <= killedAt - 1500)!;
  a.child.kill('SIGKILL');
  expect(await exited(a.child, 5000)).toBe('SIGKILL');
  expect(final.stats.dropped).toBe(0);
  expect(final.stats.outbox?.spilled).toBeGreaterThan(0); // more than its memory holds
  const mustArrive = Math.max(final.stats.outbox!.written, earlier.accepted);
  expect(earlier.accepted).toBeGreaterThan(200);

  // B goes on through A's claim timeout, then stops; the endpoint comes back.
  await new Promise((resolve) => setTimeout(resolve, 1500));
  const stopAt = Date.now();
  b.send('stop');
  // Its count after the stop (reports go on every 100 ms; the count no longer moves).
  await until(() => (last(b)?.at ?? 0) > stopAt + 250, "B's count after the stop");
  const bAccepted = last(b)!.accepted;
  healthy = true;

  const idOf = (e: RecordedEvent) => `${String(e.data?.app)}:${String(e.data?.n)}`;
  const arrived = (): Set<string> => new Set(collector.events.map(idOf));
  const expected = [
    ...Array.from({ length: mustArrive }, (_, n) => `a:${n}`),
    ...Array.from({ length: bAccepted }, (_, n) => `b:${n}`),
  ];
  try {
    await until(
      () => {
        const seen = arrived();
        return expected.every((id) => seen.has(id));
      },
      'every event of A accepted before the kill and every event of B',
      30_000,
    );
  } catch (error) {
    const seen = arrived();
    const missing = expected.filter((id) => !seen.has(id));
    throw new Error(
      `${(error as Error).message}: ${missing.length} missing (${missing.slice(0, 10).join(', ')}...), B: ${JSON.stringify(last(b)?.stats)}`,
      { cause: error },
    );
  }
  b.send('close');
  const closed = await b.closed;
  expect(await exited(b.child, 5000)).toBe(0);

  const copies = copiesBy(collector.events, idOf);
  expectDuplicatesShareKey(copies);
  const fromA = [...copies.keys()].filter((id) => id.startsWith('a:')).length;
  expect(fromA).toBeGreaterThanOrEqual(mustArrive);
  // What arrived well after the kill (any answer A waited for was sent by then) came from B.
  const late = new Set(
    collector.events.filter((e) => e.data?.app === 'a' && e.receivedAt > killedAt + 1000).map(idOf),
  );
  expect(late.size).toBeGreaterThan(0);
  expect(closed.stats.outbox?.taken).toBeGreaterThanOrEqual(late.size);
  expect(closed.stats).toMatchObject({ dropped: 0, failed: 0, queued: 0, inFlight: 0 });
  expect(closed.stats.delivered).toBe(closed.stats.enqueued);
  expect(balanced(closed.stats)).toBe(true);
  expect(closed.stats.outbox?.lost).toBe(0);
  // B delivered everything before its close: nothing was left in the stream for a next run.
  expect(closed.stats.outbox?.stored).toBe(0);
  console.info(
    `fleet: A accepted ${final.accepted} (written ${final.stats.outbox!.written}), ` +
      `${fromA} of A's arrived (${mustArrive} had to, ${late.size} through B); ` +
      `B accepted ${bAccepted}, took ${closed.stats.outbox!.taken}; ` +
      `${collector.events.length - copies.size} duplicate copies`,
  );
});

test('Redis restarted mid-stream (AOF, fsync always): every event is delivered once it is back', async () => {
  const server = await startRedis({ appendonly: true });
  const collector = await startCollector({ maxEvents: 100_000 });
  const down = collector.brownout({ status: 503 });
  const { lines, logger } = capture();
  const t = tracker({
    host: collector.url,
    maxQueueSize: 100,
    retryDelay: 50,
    maxRetryDelay: 500,
    logger,
    outbox: { redis: server.url, stream: streamName(), claimAfter: 5000 },
  });
  await until(() => t.stats().outbox?.state === 'open', 'the outbox to open');
  const sent: Promise<boolean>[] = [];
  for (let n = 0; n < 300; n++) sent.push(t.trackEvent('restart', { n }));
  await until(() => (t.stats().outbox?.written ?? 0) >= 300, 'the first 300 to be written');
  expect(t.stats().outbox?.spilled).toBeGreaterThan(100); // they wait in Redis only

  await stopRedis(server);
  for (let n = 300; n < 500; n++) sent.push(t.trackEvent('restart', { n }));
  await until(
    () => lines.some((l) => l.line.includes('ZENOVAY_OUTBOX_REDIS:')),
    'the store to report the lost connection',
  );
  await new Promise((resolve) => setTimeout(resolve, 500));
  await startRedis({ port: server.port, dir: server.dir, appendonly: true });
  await until(() => (t.stats().outbox?.written ?? 0) >= 500, 'the events of the gap to be written');
  down.end();

  const results = await Promise.all(sent);
  expect(results.every((r) => r)).toBe(true);
  const copies = copiesBy(collector.events, (e) => String(e.data?.n));
  expect(copies.size).toBe(500);
  expectDuplicatesShareKey(copies);
  const s = t.stats();
  expect(s).toMatchObject({ enqueued: 500, delivered: 500, dropped: 0, queued: 0 });
  expect(s.outbox).toMatchObject({ state: 'open', lost: 0, spilled: 0, persisted: 0 });
  expect(lines.filter((l) => l.level === 'error')).toEqual([]);
  await t.close();
});

// Without persistence a restarted Redis is empty: the events that waited in it only (past
// maxQueueSize) are gone. They are dropped (reason `outbox_lost`) when the store finds them
// missing, so that flush() resolves and the stats say where they went (before 741a12c they
// waited for good and close() counted them as stored).
test('Redis restarted empty (no persistence): the events it lost are accounted for, flush() resolves', async () => {
  const server = await startRedis();
  const collector = await startCollector({ maxEvents: 100_000 });
  const down = collector.brownout({ status: 503 });
  const t = tracker({
    host: collector.url,
    maxQueueSize: 50,
    retryDelay: 50,
    maxRetryDelay: 500,
    logger: false,
    outbox: { redis: server.url, stream: streamName() },
  });
  await until(() => t.stats().outbox?.state === 'open', 'the outbox to open');
  const sent: Promise<boolean>[] = [];
  for (let n = 0; n < 200; n++) sent.push(t.trackEvent('volatile', { n }));
  await until(() => (t.stats().outbox?.written ?? 0) >= 200, 'the events to be written');
  const spilled = t.stats().outbox!.spilled;
  expect(spilled).toBeGreaterThan(100);

  await stopRedis(server);
  await startRedis({ port: server.port, dir: server.dir }); // empty
  down.end();
  // Those in memory are delivered; those only Redis had are gone: they must be settled (and
  // counted) so, not wait for good.
  let timer: NodeJS.Timeout | undefined;
  const flushed = await Promise.race([
    t.flush().then(() => 'flushed'),
    new Promise((resolve) => (timer = setTimeout(() => resolve('flush() hangs'), 10_000))),
  ]);
  clearTimeout(timer);
  expect(flushed).toBe('flushed');
  const s = t.stats();
  // At least those spilled before the restart (retries that found memory full may join them).
  expect(s.outbox!.lost).toBeGreaterThanOrEqual(spilled);
  expect(s).toMatchObject({ queued: 0, inFlight: 0 });
  expect(s.reasons.dropped.outbox_lost).toBe(s.outbox!.lost);
  expect(s.dropped).toBe(s.outbox!.lost);
  expect(s.delivered + s.dropped).toBe(200);
  expect(balanced(s)).toBe(true);
  // Their trackEvent() promises resolved false; the others true.
  const results = await Promise.all(sent);
  expect(results.filter((r) => !r)).toHaveLength(s.dropped);
  await t.close({ timeout: 500 });
  expect(t.stats().outbox?.stored).toBe(0);
});

test('Redis unreachable at start: one clear error without the password, state unavailable, events delivered from memory', async () => {
  const port = await freePort(); // nothing listens there
  const collector = await startCollector();
  const { lines, logger } = capture();
  const t = tracker({
    host: collector.url,
    logger,
    outbox: { redis: `redis://user:secret@127.0.0.1:${port}`, stream: streamName() },
  });
  expect(t.stats().outbox?.state).toBe('opening');
  // Delivered while the store still tries to connect...
  const early = await Promise.all(Array.from({ length: 10 }, (_, n) => t.trackEvent('e', { n })));
  expect(early.every((r) => r)).toBe(true);
  await until(() => t.stats().outbox?.state === 'unavailable', 'the outbox to give up', 15_000);
  // ...and after it gave up.
  const late = await Promise.all(
    Array.from({ length: 10 }, (_, n) => t.trackEvent('e', { n: 10 + n })),
  );
  expect(late.every((r) => r)).toBe(true);
  expect(collector.events).toHaveLength(20);

  const errors = lines.filter((l) => l.line.includes('ZENOVAY_OUTBOX_UNAVAILABLE'));
  expect(errors).toHaveLength(1);
  expect(errors[0]!.level).toBe('error');
  expect(errors[0]!.line).toMatch(
    new RegExp(`redis://127\\.0\\.0\\.1:${port}.*ECONNREFUSED.*in memory only`),
  );
  for (const l of lines) expect(l.line).not.toContain('secret');
  expect(lines.filter((l) => l.level === 'error')).toHaveLength(1);
  await t.close();
  expect(t.stats()).toMatchObject({ enqueued: 20, delivered: 20, queued: 0 });
  for (const l of lines) expect(l.line).not.toContain('secret');
});

test('Redis that starts after the app: the outbox is tried again and opens, and what waited in memory is written to the stream', async () => {
  const port = await freePort(); // nothing listens there yet
  const collector = await startCollector({ respond: () => 503 }); // events wait
  const { lines, logger } = capture();
  const stream = streamName();
  const t = tracker({
    host: collector.url,
    logger,
    // Retried until the test ends: an outbox is no help to an event that gave up meanwhile.
    maxRetries: 100,
    outbox: { redis: `redis://127.0.0.1:${port}`, stream },
  });
  await until(() => t.stats().outbox?.state === 'unavailable', 'the outbox to give up');
  const results = ['a', 'b', 'c'].map((name) => t.trackEvent(name));
  await until(() => collector.requestCount >= 3, 'the three to be tried');
  await startRedis({ port });
  await until(() => t.stats().outbox?.state === 'open', 'the outbox to open', 20_000);
  await until(() => (t.stats().outbox?.written ?? 0) >= 3, 'the three to be written');
  const client = createClient({ socket: { host: '127.0.0.1', port } });
  client.on('error', () => undefined);
  await client.connect();
  try {
    expect(await client.xLen(stream)).toBe(3);
  } finally {
    await client.quit();
  }
  await t.close({ timeout: 200 });
  expect(await Promise.all(results)).toEqual([false, false, false]);
  expect(t.stats().outbox).toMatchObject({ stored: 3 });
  expect(lines.filter((l) => l.line.includes('ZENOVAY_OUTBOX_UNAVAILABLE'))).toHaveLength(1);
  expect(lines.filter((l) => l.line.includes('ZENOVAY_OUTBOX_OPEN'))).toHaveLength(1);
  expect(lines.filter((l) => l.level === 'error')).toHaveLength(1);
}, 40_000);

test("the user's node-redis client: delivery on the main thread, events delivered, the client left open", async () => {
  const collector = await startCollector();
  const client = createClient({ socket: { host: '127.0.0.1', port: redis.port } });
  client.on('error', () => undefined);
  await client.connect();
  try {
    const stream = streamName();
    expect(() =>
      createTracker({
        trackingCode: 'redisoutbox',
        host: collector.url,
        worker: true,
        outbox: { redis: client, stream },
      }),
    ).toThrow(/worker: true.*client object/);

    const t = tracker({ host: collector.url, logger: false, outbox: { redis: client, stream } });
    expect((t as unknown as { delivery: unknown }).delivery).toBeInstanceOf(DeliveryEngine);
    await until(() => t.stats().outbox?.state === 'open', 'the outbox to open');
    const results = await Promise.all(
      Array.from({ length: 20 }, (_, n) => t.trackEvent('own-client', { n })),
    );
    expect(results.every((r) => r)).toBe(true);
    await t.flush();
    expect(collector.events).toHaveLength(20);
    const s = t.stats();
    expect(s.outbox).toMatchObject({ store: 'redis', state: 'open', persisted: 0 });
    // Written before it was sent (an event answered before its write is not written at all).
    expect(s.outbox!.written).toBeGreaterThan(0);
    expect(s.outbox!.written).toBeLessThanOrEqual(20);
    await t.close();
    expect(t.stats().outbox?.state).toBe('closed');
    // Settled events are gone from the stream, and the client is still the user's to use.
    expect(client.isOpen).toBe(true);
    expect(await client.sendCommand(['PING'])).toBe('PONG');
    expect(Number(await client.sendCommand(['XLEN', stream]))).toBe(0);
  } finally {
    client.destroy();
  }
});

// The worker reports the outbox's state when it changes, not only along with events: an idle
// tracker's stats (a health check) show it open.
test('worker: stats().outbox.state turns open without any event', async () => {
  const t = tracker({
    host: 'http://127.0.0.1:9',
    logger: false,
    outbox: { redis: redis.url, stream: streamName() },
  });
  expect(t.stats().outbox?.state).toBe('opening');
  await until(() => t.stats().outbox?.state === 'open', 'the outbox to open', 5000);
  expect(t.stats()).toMatchObject({ enqueued: 0, queued: 0 });
});

// In worker mode stats().outbox is the worker's last report. Reports once went out only with
// events, settles and logs: after a burst an idle tracker showed the burst's `writtenPerSecond` for
// good. The worker now reports outbox figures that changed about once a second, idle or not.
test('worker: an idle tracker shows writtenPerSecond 0 a few seconds after a burst', async () => {
  const collector = await startCollector();
  const t = tracker({
    host: collector.url,
    logger: false,
    outbox: { redis: redis.url, stream: streamName() },
  });
  await until(() => t.stats().outbox?.state === 'open', 'the outbox to open');
  for (let round = 0; round < 8; round++) {
    for (let n = 0; n < 50; n++) void t.trackEvent('burst', { round, n });
    await new Promise((resolve) => setTimeout(resolve, 150));
  }
  await t.flush();
  expect(t.stats().outbox!.written).toBeGreaterThan(0);
  await until(() => t.stats().outbox!.writtenPerSecond === 0, 'the rate to fall to 0', 4000);
});
