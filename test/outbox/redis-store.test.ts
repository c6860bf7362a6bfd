/**
 * The Redis outbox against real redis-server processes (Debian's `redis-server`; `.ci/run`
 * installs it): each test file starts its own servers on free ports, without persistence unless a
 * test asks for it, every test uses streams of its own, and everything is stopped in afterAll.
 * A second "instance" is a second store in this process, or a child process running the store
 * (transpiled from src/ into .tmp/) that is killed with SIGKILL.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Redis } from 'ioredis';
import { createClient } from '@redis/client';
import ts from 'typescript';
import { Reporter } from '../../src/logger';
import {
  createRedisOutbox,
  streamEntries,
  type RedisOutbox,
  type RedisOutboxOptions,
} from '../../src/outbox/redis-store';
import type { OutboxEntry } from '../../src/outbox/types';
import {
  freePort,
  requireRedisServer,
  startRedis,
  stopAllRedis,
  stopRedis,
  type RedisProcess,
} from '../helpers/redis-server';

jest.setTimeout(20_000);

// --- redis-server processes (test/helpers/redis-server.ts) -----------------------------------

/** Directories this file made besides the servers' (removed at the end). */
const tmpDirs: string[] = [];

// --- stores and plain clients, closed after each test ------------------------------------------

let redis: RedisProcess;
/** A plain client for looking into Redis. */
let admin: Redis;
const stores = new Set<RedisOutbox>();
const children = new Set<ChildProcess>();
const quiet = new Reporter({});

beforeAll(async () => {
  requireRedisServer();
  redis = await startRedis();
  admin = new Redis(redis.port, '127.0.0.1');
});

afterEach(async () => {
  for (const child of children) child.kill('SIGKILL');
  children.clear();
  await Promise.all([...stores].map((store) => store.close()));
  stores.clear();
});

afterAll(async () => {
  admin?.disconnect();
  await stopAllRedis();
  for (const dir of tmpDirs) rmSync(dir, { recursive: true, force: true });
});

/** A stream name of the test's own (with a hash tag, as the default has). */
function streamName(): string {
  return `test:outbox:{${randomUUID()}}`;
}

function store(options: Partial<RedisOutboxOptions> & { stream: string }): RedisOutbox {
  const s = createRedisOutbox({ redis: redis.url, reporter: quiet, ...options });
  stores.add(s);
  return s;
}

let counter = 0;
function entry(n = counter++): OutboxEntry {
  return {
    key: `key-${n}-${randomUUID()}`,
    body: JSON.stringify({ type: 'event', name: 'signup', url: `https://shop.example/${n}` }),
    headers: {
      'content-type': 'application/json',
      'user-agent': 'test',
      'x-forwarded-for': '203.0.113.9',
    },
    acceptedAt: 1_700_000_000_000 + n,
  };
}

async function fieldsOf(stream: string): Promise<Record<string, string>[]> {
  const rows = (await admin.call('XRANGE', stream, '-', '+')) as [string, string[]][];
  return rows.map(([, fields]) => {
    const out: Record<string, string> = {};
    for (let i = 0; i < fields.length; i += 2) out[fields[i] as string] = fields[i + 1] as string;
    return out;
  });
}

async function pendingCount(stream: string, group = 'zenovay'): Promise<number> {
  const summary = (await admin.call('XPENDING', stream, group)) as [number, ...unknown[]];
  return Number(summary[0]);
}

// --- the tests ----------------------------------------------------------------------------------

describe('one instance', () => {
  test('appends reach the stream with their fields, settle acknowledges and deletes them', async () => {
    const stream = streamName();
    const s = store({ stream });
    await s.open();
    const entries = [entry(), entry(), entry()];
    for (const e of entries) expect(s.append(e)).toBe(true);
    await s.sync();

    const fields = await fieldsOf(stream);
    expect(fields).toEqual(
      entries.map((e) => ({
        key: e.key,
        body: e.body,
        headers: JSON.stringify(e.headers),
        acceptedAt: String(e.acceptedAt),
      })),
    );
    // In the writer's own pending list from the start: nobody else is served them.
    expect(await pendingCount(stream)).toBe(3);
    expect(s.stats()).toMatchObject({ persisted: 3, written: 3, buffered: 0, streamLength: 3 });

    s.settle(entries[0]!.key);
    s.settle(entries[2]!.key);
    s.settle(entries[2]!.key); // idempotent
    s.settle('unknown-key'); // ignored
    await s.sync();
    expect((await fieldsOf(stream)).map((f) => f.key)).toEqual([entries[1]!.key]);
    expect(await pendingCount(stream)).toBe(1);
    expect(s.stats()).toMatchObject({ persisted: 1, settled: 2 });

    // Its own held entries never come back through take(): no event is sent twice by its writer.
    expect(await s.take(10)).toEqual([]);
    await s.close();
    // What was not settled stays for whoever comes next.
    expect((await fieldsOf(stream)).map((f) => f.key)).toEqual([entries[1]!.key]);
    await s.close(); // idempotent
  });

  test('an event settled before it was written is never written', async () => {
    const stream = streamName();
    const s = store({ stream });
    await s.open();
    const a = entry();
    const b = entry();
    s.append(a);
    s.append(b);
    s.settle(a.key); // same tick: still in the buffer
    await s.sync();
    expect((await fieldsOf(stream)).map((f) => f.key)).toEqual([b.key]);
    // Settled while its write is (most likely) under way: acknowledged and deleted when it returns.
    const c = entry();
    s.append(c);
    await new Promise((resolve) => setImmediate(resolve));
    s.settle(c.key);
    await s.sync();
    expect((await fieldsOf(stream)).map((f) => f.key)).toEqual([b.key]);
    expect(s.stats()).toMatchObject({ persisted: 1, settled: 2 });
  });

  test('spilled entries come back through take(), by id, oldest first; held ones do not', async () => {
    const stream = streamName();
    const s = store({ stream });
    await s.open();
    const entries = Array.from({ length: 6 }, () => entry());
    for (const e of entries) s.append(e);
    s.spill(entries[3]!.key); // spilled before it is written
    await s.sync();
    s.spill(entries[1]!.key);
    s.spill(entries[4]!.key);
    s.settle(entries[4]!.key); // settled after spilling: not handed out

    const back = await s.take(10);
    expect(back.map((e) => e.key)).toEqual([entries[3]!.key, entries[1]!.key]);
    expect(back[0]).toEqual(entries[3]);
    expect(await s.take(10)).toEqual([]);
    expect(s.stats()).toMatchObject({ read: 2, persisted: 5 });
  });

  test('appends are refused (full) once the stream holds maxLength entries', async () => {
    const stream = streamName();
    const s = store({ stream, maxLength: 10 });
    await s.open();
    const entries = Array.from({ length: 10 }, () => entry());
    for (const e of entries) expect(s.append(e)).toBe(true);
    expect(s.append(entry())).toBe(false); // 10 waiting to be written count already
    await s.sync();
    expect(s.append(entry())).toBe(false);
    expect(s.stats()).toMatchObject({ full: 2, streamLength: 10 });
    for (const e of entries.slice(0, 5)) s.settle(e.key);
    await s.sync();
    expect(s.append(entry())).toBe(true);
    await s.sync();
    expect(Number(await admin.call('XLEN', stream))).toBe(6);
  });

  test('misuse throws; a bad option is refused at creation', async () => {
    const s = store({ stream: streamName() });
    expect(() => s.append(entry())).toThrow(/not open yet/);
    await s.open();
    await s.close();
    expect(() => s.append(entry())).toThrow(/closed/);
    expect(() => createRedisOutbox({ redis: 'http://localhost' })).toThrow(/redis:\/\//);
    expect(() => createRedisOutbox({ redis: redis.url })).toThrow(/trackingCode/);
    expect(() => createRedisOutbox({ redis: {} as never, stream: 's' })).toThrow(/client/);
    expect(() => createRedisOutbox({ redis: redis.url, stream: 's', claimAfterMs: 0 })).toThrow(
      /claimAfterMs/,
    );
    expect(createRedisOutbox({ redis: redis.url, trackingCode: 'abc' }).stream).toBe(
      'zenovay:outbox:{abc}',
    );
  });
});

describe('a fleet sharing one stream', () => {
  test("a live instance's entries are never taken over, however long it holds them", async () => {
    const stream = streamName();
    // 1 s, not less: a test process stalled for two heartbeats (a third of it each) on a busy
    // machine would rightly look dead.
    const a = store({ stream, claimAfterMs: 1000 });
    const b = store({ stream, claimAfterMs: 1000 });
    await a.open();
    await b.open();
    const entries = [entry(), entry(), entry()];
    for (const e of entries) a.append(e);
    await a.sync();
    // Several claim timeouts pass: A's heartbeat keeps its deadline ahead.
    for (let i = 0; i < 6; i++) {
      await new Promise((resolve) => setTimeout(resolve, 500));
      expect(await b.take(10)).toEqual([]);
    }
    expect(b.stats().recovered).toBe(0);
  });

  test('what an instance closed without settling is taken over by another at once', async () => {
    const stream = streamName();
    const a = store({ stream });
    const b = store({ stream }); // claimAfterMs 60 s: only the clean close makes it quick
    await a.open();
    await b.open();
    const entries = Array.from({ length: 5 }, () => entry());
    for (const e of entries) a.append(e);
    await a.sync();
    a.settle(entries[0]!.key);
    await a.close();

    const taken = await b.take(10);
    expect(taken.map((e) => e.key).sort()).toEqual(
      entries
        .slice(1)
        .map((e) => e.key)
        .sort(),
    );
    expect(taken.find((e) => e.key === entries[2]!.key)).toEqual(entries[2]);
    expect(b.stats()).toMatchObject({ read: 4, persisted: 4, recovered: 0 });
    for (const e of taken) b.settle(e.key);
    await b.sync();
    expect(Number(await admin.call('XLEN', stream))).toBe(0);
    expect(await pendingCount(stream)).toBe(0);
  });

  test('entries of a dead instance that are gone from the stream are counted as lost and leave the PEL', async () => {
    const stream = streamName();
    const a = store({ stream });
    const b = store({ stream });
    await a.open();
    await b.open();
    const entries = [entry(), entry(), entry()];
    for (const e of entries) a.append(e);
    await a.sync();
    await a.close();
    const ids = ((await admin.call('XRANGE', stream, '-', '+')) as [string, string[]][]).map(
      ([id]) => id,
    );
    await admin.call('XDEL', stream, ids[1]!); // as MAXLEN trimming would
    const taken = await b.take(10);
    expect(taken.map((e) => e.key)).toEqual([entries[0]!.key, entries[2]!.key]);
    expect(b.stats()).toMatchObject({ lost: 1, read: 2 });
    expect(await pendingCount(stream)).toBe(2);
  });

  test('a process killed with SIGKILL mid-stream: another instance gets every synced, unsettled event once, after claimAfterMs', async () => {
    const stream = streamName();
    const child = spawnWriter(stream);
    // The writer appends 20 events at a time, settles half of the previous 20, syncs and says so;
    // it is killed while it goes on, after 10 such rounds.
    const lines = await linesOf(child, 10);
    child.kill('SIGKILL');
    await new Promise((resolve) => child.once('exit', resolve));
    const rounds = lines.map((line) => JSON.parse(line) as WriterRound);
    const consumer = rounds[0]!.consumer;
    const synced = rounds.flatMap((r) => r.synced);
    const settled = new Set(rounds.flatMap((r) => r.settled));
    const open = synced.filter((k) => !settled.has(k));
    expect(open.length).toBeGreaterThanOrEqual(100);

    const b = store({ stream, claimAfterMs: 1000 });
    await b.open();
    // Everything it left: the open synced events, and perhaps some it wrote after its last report.
    const taken: OutboxEntry[] = [];
    const end = Date.now() + 10_000;
    while (!open.every((k) => taken.some((e) => e.key === k)) && Date.now() < end) {
      taken.push(...(await b.take(1000)));
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    const keys = taken.map((e) => e.key);
    expect(keys).toEqual(expect.arrayContaining(open));
    expect(new Set(keys).size).toBe(keys.length); // once each
    expect(keys.filter((k) => settled.has(k))).toEqual([]); // settled ones never again
    for (const e of taken) expect(e.body).toBe(JSON.stringify({ n: Number(e.key.split('-')[1]) }));
    expect(b.stats().read).toBe(keys.length);

    // Settled, they are gone; the dead consumer leaves the group once nothing is pending on it.
    for (const e of taken) b.settle(e.key);
    await b.sync();
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(await b.take(1000)).toEqual([]);
    const consumers = (await admin.call('XINFO', 'CONSUMERS', stream, 'zenovay')) as unknown[][];
    expect(consumers.map((c) => c[1])).not.toContain(consumer);
    expect(Number(await admin.call('XLEN', stream))).toBe(0);
    expect(await pendingCount(stream)).toBe(0);
  });

  test('a fixed consumer name gets its own pending entries back at once after a restart', async () => {
    const stream = streamName();
    const first = store({ stream, consumer: 'web-1' });
    await first.open();
    const entries = [entry(), entry(), entry()];
    for (const e of entries) first.append(e);
    await first.sync();
    await first.close();

    const again = store({ stream, consumer: 'web-1' });
    await again.open();
    expect(again.stats().recovered).toBe(3);
    const back = await again.take(10);
    expect(back).toEqual(entries);
    expect(again.stats().recovered).toBe(0);
    expect(await again.take(10)).toEqual([]);
  });

  test('entries written by something else are handed out once; malformed ones are counted and removed', async () => {
    const stream = streamName();
    const good = entry();
    await admin.call(
      'XADD',
      stream,
      '*',
      'key',
      good.key,
      'body',
      good.body,
      'headers',
      JSON.stringify(good.headers),
      'acceptedAt',
      String(good.acceptedAt),
    );
    await admin.call('XADD', stream, '*', 'something', 'else');
    const s = store({ stream });
    await s.open();
    expect(s.stats().recovered).toBe(2);
    expect(await s.take(10)).toEqual([good]);
    expect(s.stats()).toMatchObject({ corrupt: 1, recovered: 0 });
    await s.sync();
    expect((await fieldsOf(stream)).map((f) => f.key)).toEqual([good.key]);
  });
});

describe('Redis away', () => {
  test('unreachable at start: open() rejects with a clear error and leaves nothing running', async () => {
    const port = await freePort();
    const s = store({
      stream: streamName(),
      redis: `redis://:secret@127.0.0.1:${port}`,
      connectTimeoutMs: 300,
    });
    const error = (await s.open().catch((e: unknown) => e)) as Error;
    expect(error).toBeInstanceOf(Error);
    expect(error.message).toMatch(
      new RegExp(
        `cannot use redis://127\\.0\\.0\\.1:${port}.*ECONNREFUSED.*Check that Redis is running`,
      ),
    );
    expect(error.message).not.toContain('secret');
    // Not open, and nothing kept of the try: open() can be tried again, and fails the same way.
    expect(() => s.append(entry())).toThrow(/not open yet/);
    const again = (await s.open().catch((e: unknown) => e)) as Error;
    expect(again).not.toBe(error);
    expect(again.message).toMatch(/ECONNREFUSED/);
    await s.close();
    expect(() => s.append(entry())).toThrow(/closed/);
    await expect(s.open()).rejects.toThrow(/closed/);
  });

  test('restarted mid-stream (AOF, fsync always): kept entries survive, appends in the gap wait in memory up to maxBuffered', async () => {
    const server = await startRedis({ appendonly: true });
    const stream = streamName();
    const reports: string[] = [];
    const s = createRedisOutbox({
      redis: server.url,
      stream,
      maxBuffered: 5,
      reporter: new Reporter({ warn: (m) => reports.push(m), info: (m) => reports.push(m) }),
    });
    stores.add(s);
    await s.open();
    const before = [entry(), entry(), entry()];
    for (const e of before) s.append(e);
    await s.sync();

    await stopRedis(server);
    const gap = Array.from({ length: 7 }, () => entry());
    const accepted = gap.map((e) => s.append(e));
    expect(accepted).toEqual([true, true, true, true, true, false, false]);
    expect(s.stats()).toMatchObject({ full: 2, buffered: 5 });
    const synced = s.sync();
    await new Promise((resolve) => setTimeout(resolve, 300));

    const again = await startRedis({ port: server.port, dir: server.dir, appendonly: true });
    await synced;
    expect(s.stats()).toMatchObject({ buffered: 0, written: 8 });
    const check = new Redis(again.port, '127.0.0.1');
    try {
      const rows = (await check.call('XRANGE', stream, '-', '+')) as [string, string[]][];
      expect(rows.map(([, f]) => f[1])).toEqual([...before, ...gap.slice(0, 5)].map((e) => e.key));
      // Still in the writer's PEL (the group came back from the AOF).
      expect(Number(((await check.call('XPENDING', stream, 'zenovay')) as unknown[])[0])).toBe(8);
    } finally {
      check.disconnect();
    }
    expect(reports.some((m) => m.includes('ZENOVAY_OUTBOX_REDIS:'))).toBe(true);
    expect(reports.some((m) => m.includes('ZENOVAY_OUTBOX_REDIS_BACK:'))).toBe(true);
  });

  test('restarted empty (no persistence): writes go on in a new stream, spilled entries are reported lost', async () => {
    const server = await startRedis();
    const stream = streamName();
    const lost: string[] = [];
    const s = createRedisOutbox({
      redis: server.url,
      stream,
      reporter: quiet,
      onLost: (keys) => lost.push(...keys),
    });
    stores.add(s);
    await s.open();
    const before = [entry(), entry()];
    for (const e of before) s.append(e);
    await s.sync();
    s.spill(before[0]!.key);

    await stopRedis(server);
    await startRedis({ port: server.port, dir: server.dir });
    const after = entry();
    s.append(after);
    await s.sync();
    // The spilled one was in the old Redis only.
    expect(await s.take(10)).toEqual([]);
    expect(lost).toEqual([before[0]!.key]);
    expect(s.stats()).toMatchObject({ lost: 1, persisted: 2 });
    // The held one is still settled without error; the new entry is in the new stream.
    s.settle(before[1]!.key);
    await s.sync();
    const check = new Redis(server.port, '127.0.0.1');
    try {
      const rows = (await check.call('XRANGE', stream, '-', '+')) as [string, string[]][];
      expect(rows.map(([, f]) => f[1])).toEqual([after.key]);
    } finally {
      check.disconnect();
    }
  });
});

describe("the user's own client", () => {
  test('an ioredis client is used as it is and left open', async () => {
    const client = new Redis(redis.port, '127.0.0.1');
    try {
      const stream = streamName();
      const s = store({ stream, redis: client });
      await s.open();
      const e = entry();
      s.append(e);
      await s.sync();
      s.spill(e.key);
      expect(await s.take(5)).toEqual([e]);
      await s.close();
      expect(await client.call('PING')).toBe('PONG');
    } finally {
      client.disconnect();
    }
  });

  test('a node-redis client (RESP3 replies) is used as it is and left open', async () => {
    const client = createClient({ socket: { port: redis.port, host: '127.0.0.1' }, RESP: 3 });
    client.on('error', () => undefined);
    await client.connect();
    try {
      const stream = streamName();
      const first = store({ stream, redis: client, consumer: 'nr-1' });
      await first.open();
      const entries = [entry(), entry()];
      for (const e of entries) first.append(e);
      await first.sync();
      first.spill(entries[1]!.key);
      expect(await first.take(5)).toEqual([entries[1]]);
      await first.close();
      // The own-PEL read (an XREADGROUP whose reply node-redis turns into an object).
      const again = store({ stream, redis: client, consumer: 'nr-1' });
      await again.open();
      expect((await again.take(5)).map((e) => e.key).sort()).toEqual(
        entries.map((e) => e.key).sort(),
      );
      await again.close();
      expect(await client.sendCommand(['PING'])).toBe('PONG');
    } finally {
      client.destroy();
    }
  });

  test('streamEntries reads every shape an XREADGROUP reply takes', () => {
    const entries = [['1-0', ['key', 'k']]];
    expect(streamEntries([['s', entries]])).toEqual(entries); // RESP2
    expect(streamEntries(['s', entries])).toEqual(entries); // ioredis, RESP3 map
    expect(streamEntries({ s: entries })).toEqual(entries); // node-redis, RESP3 map
    expect(streamEntries(new Map([['s', entries]]))).toEqual(entries);
    expect(streamEntries(null)).toEqual([]);
  });
});

// --- the child process that is killed ----------------------------------------------------------

/** The store's sources as ES modules under .tmp/ (inside the project: ioredis resolves from there). */
let built: string | undefined;
function buildStore(): string {
  if (built) return built;
  const root = path.resolve(__dirname, '../..');
  const out = path.join(root, '.tmp', `outbox-redis-${process.pid}`);
  tmpDirs.push(out);
  for (const file of [
    'logger',
    'delivery/fifo',
    'outbox/types',
    'outbox/redis-scripts',
    'outbox/redis-client',
    'outbox/redis-store',
  ]) {
    const source = readFileSync(path.join(root, 'src', `${file}.ts`), 'utf8');
    const { outputText } = ts.transpileModule(source, {
      compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 },
    });
    mkdirSync(path.dirname(path.join(out, `${file}.js`)), { recursive: true });
    writeFileSync(path.join(out, `${file}.js`), outputText);
  }
  writeFileSync(path.join(out, 'package.json'), '{"type":"module"}');
  built = path.join(out, 'outbox', 'redis-store.js');
  return built;
}

interface WriterRound {
  consumer: string;
  synced: string[];
  settled: string[];
}

/**
 * A process that opens the store and then, round after round: settles every other event of the
 * previous round (as if delivered), appends 20 new ones, syncs, and prints one JSON line saying
 * which keys that sync covered. It goes on until it is killed.
 */
function spawnWriter(stream: string): ChildProcess {
  const code = `
    const { createRedisOutbox } = await import(process.env.STORE);
    const s = createRedisOutbox({ redis: process.env.REDIS_URL, stream: process.env.STREAM, claimAfterMs: 1000 });
    await s.open();
    let n = 0;
    let previous = [];
    for (;;) {
      const settled = previous.filter((_, i) => i % 2 === 0);
      for (const key of settled) s.settle(key);
      const synced = [];
      for (let i = 0; i < 20; i++, n++) {
        const key = 'k-' + n + '-' + process.pid;
        synced.push(key);
        s.append({ key, body: JSON.stringify({ n }), headers: { 'content-type': 'application/json' }, acceptedAt: Date.now() });
      }
      await s.sync();
      process.stdout.write(JSON.stringify({ consumer: s.consumer, synced, settled }) + '\\n');
      previous = synced;
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  `;
  const child = spawn(process.execPath, ['--input-type=module', '-e', code], {
    env: { ...process.env, STORE: buildStore(), REDIS_URL: redis.url, STREAM: stream },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(child);
  return child;
}

/** The first `count` complete lines the child prints. */
function linesOf(child: ChildProcess, count: number): Promise<string[]> {
  return new Promise((resolve, reject) => {
    let out = '';
    let err = '';
    child.stderr?.on('data', (chunk: Buffer) => (err += chunk.toString()));
    child.stdout?.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      const lines = out.split('\n').slice(0, -1);
      if (lines.length >= count) resolve(lines.slice(0, count));
    });
    child.once('exit', (code) => reject(new Error(`the writer exited (${code}): ${err}`)));
  });
}
