/**
 * The directory outbox end to end, through createTracker (the delivery worker, and in-thread
 * delivery), against a real test collector on 127.0.0.1 and the real file system (temporary
 * directories): an outage longer than the memory bound, close() with the endpoint down and the
 * next start, SIGKILL of an app process mid-stream, a directory that cannot be used, the size
 * bound, the option's checks, and a large recovery that must not block the event loop.
 *
 * The collector's `respond` sees every attempt (whatever it is answered), so each event's
 * Idempotency-Keys are known: "exactly once, or repeated under the same key" is checked per event.
 *
 * Set ZX_TEST_FIGURES=1 to print what was measured (timings, counts) to the console.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import readline from 'node:readline';
import { analytics, createTracker, type Logger, type Tracker, type TrackerStats } from '../../src';
import { LOCK_FILE } from '../../src/outbox/dir-lock';
import { createDirectoryOutbox } from '../../src/outbox/dir-store';
import { startCollector } from '../helpers/collector';

const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'zx-outbox-tracker-'));
// Traversable by the unprivileged user that the read-only check runs as (under root).
fs.chmodSync(scratch, 0o755);
const trackers: Tracker[] = [];
const children: ChildProcess[] = [];

afterEach(async () => {
  // A test that failed half-way leaves nothing running behind it.
  for (const child of children.splice(0)) if (child.exitCode === null) child.kill('SIGKILL');
  await Promise.all(trackers.splice(0).map((t) => t.close({ timeout: 0 })));
});

afterAll(() => {
  fs.rmSync(scratch, { recursive: true, force: true });
});

const figures: Record<string, unknown> = {};
afterAll(() => {
  if (process.env.ZX_TEST_FIGURES) console.info(JSON.stringify(figures, null, 2));
});

let dirs = 0;
function tmpDir(): string {
  const dir = path.join(scratch, `d${++dirs}`);
  fs.mkdirSync(dir, { mode: 0o755 });
  return dir;
}

function keep<T extends Tracker>(tracker: T): T {
  trackers.push(tracker);
  return tracker;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

async function until(what: string, check: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(20);
  }
}

/** Waits until the outbox is no longer opening; its state then. */
async function opened(tracker: Tracker): Promise<string> {
  await until('the outbox to open', () => tracker.stats().outbox?.state !== 'opening');
  return tracker.stats().outbox!.state;
}

interface Line {
  level: string;
  code: string;
  message: string;
}
function capture(): { logger: Logger; lines: Line[] } {
  const lines: Line[] = [];
  const at = (level: string) => (line: string) => {
    const match = /^\[zenovay\] ([A-Z0-9_]+): ([\s\S]*)$/.exec(line);
    lines.push({ level, code: match?.[1] ?? '', message: match?.[2] ?? line });
  };
  return { lines, logger: { info: at('info'), warn: at('warn'), error: at('error') } };
}

/** The error lines. */
const errorsBut = (lines: Line[]) => lines.filter((l) => l.level === 'error');

/** Where the accounts do not add up, in words (an empty list when they do). */
function invariantBroken(s: TrackerStats): string | undefined {
  const sum = s.delivered + s.failed + s.dropped + s.queued + s.inFlight;
  return sum === s.enqueued ? undefined : `enqueued ${s.enqueued} != ${sum}: ${JSON.stringify(s)}`;
}

/**
 * A collector that records every attempt by event name and Idempotency-Key, answering `status`
 * (changeable at any moment) after `latency()` ms.
 */
interface Endpoint {
  url: string;
  status: number;
  latency: number;
  /** Every key an event name was sent with, whatever the answer. */
  keys: Map<string, Set<string>>;
  /** Keys of the 2xx answers, per name (one per arrival). */
  arrivals: Map<string, string[]>;
  /** Attempts answered 2xx / otherwise. */
  accepted: number;
  refused: number;
  /** Set by the test: counts 2xx answers per phase. */
  phase: number;
  acceptedIn: number[];
}

async function endpoint(): Promise<Endpoint> {
  const ep: Endpoint = {
    url: '',
    status: 202,
    latency: 0,
    keys: new Map(),
    arrivals: new Map(),
    accepted: 0,
    refused: 0,
    phase: 0,
    acceptedIn: [0, 0, 0],
  };
  const collector = await startCollector({
    // This log is ours: the collector keeps only a few.
    maxEvents: 10,
    latency: () => ep.latency,
    respond: (event) => {
      const name = String(event.name ?? event.type);
      const key = String(event.headers['idempotency-key']);
      let keys = ep.keys.get(name);
      if (keys === undefined) ep.keys.set(name, (keys = new Set()));
      keys.add(key);
      const status = ep.status;
      if (status >= 200 && status < 300) {
        ep.accepted++;
        ep.acceptedIn[ep.phase]!++;
        const arrived = ep.arrivals.get(name);
        if (arrived === undefined) ep.arrivals.set(name, [key]);
        else arrived.push(key);
      } else {
        ep.refused++;
      }
      return status;
    },
  });
  ep.url = collector.url;
  return ep;
}

/**
 * Each of `names` arrived, and each name only ever went under one Idempotency-Key (so a repeat
 * carries a key already sent); no other name arrived. Returns how many arrivals were repeats.
 */
function expectEachOnceOrSameKey(ep: Endpoint, names: Iterable<string>): number {
  const expected = new Set(names);
  const missing: string[] = [];
  const severalKeys: string[] = [];
  let repeats = 0;
  for (const name of expected) {
    const arrived = ep.arrivals.get(name);
    if (arrived === undefined) missing.push(name);
    else repeats += arrived.length - 1;
    if ((ep.keys.get(name)?.size ?? 0) > 1) severalKeys.push(name);
  }
  const strangers = [...ep.arrivals.keys()].filter((name) => !expected.has(name));
  const keyOwners = new Map<string, string>();
  const sharedKeys: string[] = [];
  for (const [name, keys] of ep.keys) {
    for (const key of keys) {
      const owner = keyOwners.get(key);
      if (owner !== undefined && owner !== name) sharedKeys.push(key);
      keyOwners.set(key, name);
    }
  }
  expect({ missing: missing.slice(0, 20), missingCount: missing.length }).toEqual({
    missing: [],
    missingCount: 0,
  });
  expect(severalKeys.slice(0, 20)).toEqual([]);
  expect(strangers.slice(0, 20)).toEqual([]);
  expect(sharedKeys.slice(0, 20)).toEqual([]);
  return repeats;
}

const names = (prefix: string, count: number) =>
  Array.from({ length: count }, (_, i) => `${prefix}-${i + 1}`);

// ---- 1. an outage longer than the memory bound --------------------------------------------------

test.each([
  ['the delivery worker', true],
  ['in-thread delivery', false],
])(
  'an outage longer than maxQueueSize (%s): events wait on disk, all arrive once back, the accounts hold throughout',
  async (label, worker) => {
    const ep = await endpoint();
    const dir = tmpDir();
    const { logger, lines } = capture();
    const tracker = keep(
      createTracker({
        trackingCode: 'outage',
        host: ep.url,
        worker,
        maxQueueSize: 50,
        retryDelay: 50,
        maxRetryDelay: 400,
        logger,
        outbox: { dir },
      }),
    );
    expect(await opened(tracker)).toBe('open');

    const broken: string[] = [];
    let looks = 0;
    let maxSpilled = 0;
    const look = (): TrackerStats => {
      const s = tracker.stats();
      looks++;
      const problem = invariantBroken(s);
      if (problem) broken.push(problem);
      // In memory (waiting, not spilled): never past maxQueueSize.
      if (s.queued - s.outbox!.spilled > 50)
        broken.push(`memory past the bound: ${JSON.stringify(s)}`);
      maxSpilled = Math.max(maxSpilled, s.outbox!.spilled);
      return s;
    };

    ep.status = 503;
    const outageStarted = Date.now();
    const count = 1200;
    const all = names('o', count);
    const promises: Promise<boolean>[] = [];
    for (let batch = 0; batch < 12; batch++) {
      for (const name of all.slice(batch * 100, batch * 100 + 100)) {
        promises.push(tracker.trackEvent(name));
      }
      look();
      await sleep(100);
      look();
    }
    while (Date.now() - outageStarted < 3000) {
      look();
      await sleep(50);
    }
    // Let the latest report in, then look at the outage at its height.
    await until('every event written to the outbox', () => look().outbox!.written === count);
    const during = look();
    expect(ep.refused).toBeGreaterThan(0);
    expect(during).toMatchObject({ enqueued: count, delivered: 0, failed: 0, dropped: 0 });
    // Every accepted event is in the outbox; most wait there only.
    expect(during.outbox!.persisted).toBe(count);
    expect(maxSpilled).toBeGreaterThan(count / 2);

    ep.status = 202;
    const backAt = Date.now();
    await until(
      'every event to arrive',
      () => {
        look();
        return ep.arrivals.size >= count;
      },
      30_000,
    );
    const drainMs = Date.now() - backAt;
    expect((await Promise.all(promises)).every(Boolean)).toBe(true);
    await until('the accounts to settle', () => {
      const s = look();
      return s.delivered === count && s.outbox!.persisted === 0 && s.outbox!.spilled === 0;
    });
    const end = look();
    expect(end).toMatchObject({
      enqueued: count,
      delivered: count,
      failed: 0,
      dropped: 0,
      queued: 0,
      inFlight: 0,
    });
    expect(end.outbox).toMatchObject({ state: 'open', taken: 0, full: 0, corrupt: 0, lost: 0 });
    expect(end.outbox!.read).toBeGreaterThan(0);
    const repeats = expectEachOnceOrSameKey(ep, all);
    expect(broken.slice(0, 5)).toEqual([]);
    expect(looks).toBeGreaterThan(50);

    await tracker.close({ timeout: 2000 });
    expect(tracker.stats().outbox!.state).toBe('closed');
    expect(fs.existsSync(path.join(dir, LOCK_FILE))).toBe(false);
    expect(errorsBut(lines)).toEqual([]);
    figures[`outage (${label})`] = {
      events: count,
      maxSpilled,
      refusedAttempts: ep.refused,
      repeats,
      drainMsAfterBack: drainMs,
      statsLooks: looks,
    };
  },
  40_000,
);

test.each([
  ['the delivery worker', true],
  ['in-thread delivery', false],
])(
  '`maxQueueSize: 0` with an outbox (%s): events wait on disk and are read back as room frees up, all arrive',
  async (_, worker) => {
    const ep = await endpoint();
    const tracker = keep(
      createTracker({
        trackingCode: 'zero',
        host: ep.url,
        maxQueueSize: 0,
        worker,
        logger: false,
        outbox: { dir: tmpDir() },
      }),
    );
    expect(await opened(tracker)).toBe('open');
    const sent = names('zero', 50);
    // Reading back once spun without end here (it asked the store for 0 entries at a time).
    const results = await Promise.all(sent.map((name) => tracker.trackEvent(name)));
    expect(results).toEqual(sent.map(() => true));
    expectEachOnceOrSameKey(ep, sent);
    expect(tracker.stats()).toMatchObject({ enqueued: 50, delivered: 50, queued: 0, dropped: 0 });
  },
);

// ---- 2. close() with the endpoint down, and the next start -------------------------------------

test.each([
  ['worker, then in-thread', true, false],
  ['in-thread, then worker', false, true],
])(
  'close({ timeout }) with the endpoint down keeps the rest in the outbox (`outbox.stored`, still `queued`); the next tracker on the dir sends them under the same keys (%s)',
  async (_label, firstWorker, secondWorker) => {
    const ep = await endpoint();
    const dir = tmpDir();
    ep.status = 503;
    const first = keep(
      createTracker({
        trackingCode: 'restart',
        host: ep.url,
        worker: firstWorker,
        maxQueueSize: 50,
        retryDelay: 50,
        maxRetryDelay: 400,
        logger: false,
        outbox: { dir },
      }),
    );
    expect(await opened(first)).toBe('open');
    const left = names('c', 300);
    const promises = left.map((name) => first.trackEvent(name, { n: name }));
    // Some are tried (and refused) under their keys before the close.
    await until('attempts', () => ep.keys.size >= 20);
    await first.close({ timeout: 300 });
    expect(await Promise.all(promises)).toEqual(left.map(() => false));
    const closed = first.stats();
    expect(invariantBroken(closed)).toBeUndefined();
    expect(closed).toMatchObject({
      enqueued: 300,
      delivered: 0,
      failed: 0,
      dropped: 0,
      queued: 300,
      inFlight: 0,
    });
    expect(closed.outbox).toMatchObject({ state: 'closed', stored: 300 });
    expect(fs.existsSync(path.join(dir, LOCK_FILE))).toBe(false);
    const firstKeys = new Map([...ep.keys].map(([name, keys]) => [name, [...keys][0]!]));

    ep.status = 202;
    const { logger, lines } = capture();
    const second = keep(
      createTracker({
        trackingCode: 'restart',
        host: ep.url,
        worker: secondWorker,
        logger,
        outbox: { dir },
      }),
    );
    expect(await opened(second)).toBe('open');
    const own = names('own', 5);
    const ownResults = own.map((name) => second.trackEvent(name));
    await until('the events left and the new ones to arrive', () => ep.arrivals.size >= 305);
    expect(await Promise.all(ownResults)).toEqual(own.map(() => true));
    await until('the accounts to settle', () => {
      const s = second.stats();
      return s.delivered === 305 && s.outbox!.taken === 300 && s.outbox!.persisted === 0;
    });
    const s = second.stats();
    expect(invariantBroken(s)).toBeUndefined();
    expect(s).toMatchObject({
      enqueued: 305,
      delivered: 305,
      failed: 0,
      dropped: 0,
      queued: 0,
      inFlight: 0,
    });
    expect(s.outbox).toMatchObject({ taken: 300, recovered: 0, corrupt: 0 });
    expectEachOnceOrSameKey(ep, [...left, ...own]);
    // The same key as the first attempts, before the restart.
    const changed = [...firstKeys].filter(([name, key]) => ep.arrivals.get(name)?.[0] !== key);
    expect(changed).toEqual([]);
    expect(lines.filter((l) => l.level !== 'info')).toEqual([]);
    await second.close();
    // Nothing is left for a third start.
    const store = createDirectoryOutbox({ dir });
    await store.open();
    expect(store.stats()).toMatchObject({ persisted: 0, recovered: 0 });
    await store.close();
  },
  30_000,
);

/** A dir holding `count` events (`prefix-1`, ...) that a tracker could not send before its close. */
async function leftBehind(prefix: string, count: number): Promise<string> {
  const gone = await startCollector();
  const host = gone.url;
  await gone.close();
  const dir = tmpDir();
  const writer = keep(
    createTracker({ trackingCode: 'left', host, maxQueueSize: 50, logger: false, outbox: { dir } }),
  );
  expect(await opened(writer)).toBe('open');
  const promises = names(prefix, count).map((name) => writer.trackEvent(name));
  await until('all written', () => writer.stats().outbox!.written === count);
  await writer.close({ timeout: 50 });
  expect(writer.stats()).toMatchObject({ enqueued: count, queued: count });
  expect(writer.stats().outbox!.stored).toBe(count);
  await Promise.all(promises);
  return dir;
}

// close() while the outbox is still opening, with events an earlier run left: the engine must not
// take them into delivery once closing (it once did, after close() resolved, and sent them on the
// closed transport: ZENOVAY_NETWORK "The transport is closed", then ZENOVAY_CIRCUIT_OPEN, with the
// stats still changing after close()). They stay in the directory for the next run.
test.each([
  ['the delivery worker', true],
  ['in-thread delivery', false],
])(
  'close() while the outbox is still opening, with events left by an earlier run: when it resolves the accounts are final and nothing is sent after it (%s)',
  async (_label, worker) => {
    const dir = await leftBehind('early', 300);
    const ep = await endpoint();
    const { logger, lines } = capture();
    const tracker = keep(
      createTracker({ trackingCode: 'left', host: ep.url, worker, logger, outbox: { dir } }),
    );
    // At once: the store has not opened yet.
    expect(tracker.stats().outbox!.state).toBe('opening');
    await tracker.close({ timeout: 1000 });
    const atClose = tracker.stats();
    const attemptsAtClose = ep.accepted + ep.refused;
    await sleep(500);
    const later = tracker.stats();
    expect(invariantBroken(atClose)).toBeUndefined();
    // What it had taken in and could not send is counted as waiting, in the outbox.
    expect({ queued: atClose.queued, inFlight: atClose.inFlight }).toEqual({
      queued: atClose.outbox!.stored,
      inFlight: 0,
    });
    // Whatever it took in is delivered or stored; nothing changes after close() resolved.
    expect(atClose.delivered + atClose.outbox!.stored).toBe(atClose.outbox!.taken);
    const counts = (x: TrackerStats) => ({
      ...x,
      reasons: undefined,
      concurrency: undefined,
      circuit: undefined,
      outbox: { taken: x.outbox!.taken, state: x.outbox!.state },
    });
    expect(counts(later)).toEqual(counts(atClose));
    expect(ep.accepted + ep.refused).toBe(attemptsAtClose);
    expect(lines).toEqual([]);
    // What was not delivered is still in the dir.
    const store = createDirectoryOutbox({ dir });
    await store.open();
    expect(store.stats().recovered).toBe(300 - atClose.delivered);
    await store.close();
  },
);

// ---- 3. SIGKILL mid-stream -----------------------------------------------------------------------

interface ChildRun {
  child: ChildProcess;
  lines: { text: string; at: number }[];
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Resolves the first line (already read or to come) that `match` accepts. */
  line(match: (text: string) => boolean, timeoutMs?: number): Promise<string>;
}

/** Starts a fixture script that speaks in lines; every line is kept with the time it was read. */
function spawnLines(script: string, args: string[], env: Record<string, string> = {}): ChildRun {
  // root writes through mode bits: AS_NOBODY runs the child as an unprivileged user there.
  const asNobody = env.AS_NOBODY === '1' && process.getuid?.() === 0;
  const child = spawn(process.execPath, [path.join(__dirname, 'fixtures', script), ...args], {
    stdio: ['pipe', 'pipe', 'inherit'],
    env: { ...process.env, ...env },
    cwd: os.tmpdir(),
    ...(asNobody ? { uid: 65534, gid: 65534 } : {}),
  });
  children.push(child);
  const waiters = new Set<(text: string) => void>();
  const run: ChildRun = {
    child,
    lines: [],
    exited: new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal }))),
    line: (match, timeoutMs = 10_000) =>
      new Promise((resolve, reject) => {
        const found = run.lines.find((l) => match(l.text));
        if (found) return resolve(found.text);
        const timer = setTimeout(() => {
          waiters.delete(check);
          const last = run.lines.slice(-3).map((l) => l.text.slice(0, 300));
          reject(
            new Error(
              `${script} did not print the line awaited within ${timeoutMs} ms; last: ${JSON.stringify(last)}`,
            ),
          );
        }, timeoutMs);
        const check = (text: string) => {
          if (!match(text)) return;
          clearTimeout(timer);
          waiters.delete(check);
          resolve(text);
        };
        waiters.add(check);
      }),
  };
  readline.createInterface({ input: child.stdout! }).on('line', (text) => {
    run.lines.push({ text, at: Date.now() });
    for (const waiter of [...waiters]) waiter(text);
  });
  return run;
}

/** The app process (fixtures/outbox-tracker-child.mjs). */
const runChild = (host: string, dir: string, mode: string, env: Record<string, string> = {}) =>
  spawnLines('outbox-tracker-child.mjs', [host, dir, mode], env);

const statsOf = (line: string) => JSON.parse(line.slice(line.indexOf(' ') + 1)) as TrackerStats;

test.each([
  ['the delivery worker', 'true'],
  ['in-thread delivery', 'false'],
])(
  'SIGKILL mid-stream (%s): the next process on the dir delivers every event accepted a sync interval before the kill; repeats carry a key already sent',
  async (label, worker) => {
    const ep = await endpoint();
    const dir = tmpDir();
    // Far and narrow: most events are still waiting (in memory, and past 200 on disk only).
    ep.latency = 400;
    ep.phase = 1;
    const env = { WORKER: worker };
    const first = runChild(ep.url, dir, 'stream', { ...env, MAX_QUEUE: '200', CONCURRENCY: '8' });
    const openLine = await first.line((t) => t.startsWith('open '));
    expect(statsOf(openLine).outbox!.state).toBe('open');
    const openAt = Date.now();
    const accepted = () => {
      const last = first.lines.filter((l) => l.text.startsWith('a ')).pop();
      return last ? Number(last.text.slice(2)) : 0;
    };
    await until(
      'the stream to run',
      () => accepted() >= 1500 && Date.now() - openAt > 2500,
      20_000,
    );
    const killedAt = Date.now();
    first.child.kill('SIGKILL');
    expect((await first.exited).signal).toBe('SIGKILL');
    expect(fs.existsSync(path.join(dir, LOCK_FILE))).toBe(true);

    // The default sync interval (1 s): what was accepted before it must come back.
    const syncInterval = 1000;
    const stream = first.lines
      .filter((l) => l.text.startsWith('a '))
      .map((l) => ({ n: Number(l.text.slice(2)), at: l.at }));
    const safe = Math.max(
      0,
      ...stream.filter((a) => a.at <= killedAt - syncInterval).map((a) => a.n),
    );
    // The child prints after each batch of 10: at most one batch may be unprinted.
    const mostAccepted = accepted() + 10;
    const arrivedBefore = new Set(ep.arrivals.keys());
    expect(safe).toBeGreaterThan(500);
    expect(arrivedBefore.size).toBeLessThan(safe / 2);

    ep.latency = 0;
    ep.phase = 2;
    const second = runChild(ep.url, dir, 'recover', env);
    const reopened = statsOf(await second.line((t) => t.startsWith('open ')));
    expect(reopened.outbox!.state).toBe('open');
    const safeNames = names('e', safe);
    await second.line((t) => {
      if (!t.startsWith('stats ')) return false;
      const s = statsOf(t);
      return (
        safeNames.every((name) => ep.arrivals.has(name)) &&
        s.queued + s.inFlight === 0 &&
        s.outbox!.recovered === 0
      );
    }, 30_000);
    second.child.stdin!.write('close\n');
    const final = statsOf(await second.line((t) => t.startsWith('closed ')));
    expect(await second.exited).toEqual({ code: 0, signal: null });

    // Every event accepted a sync interval before the kill arrived; every name under one key.
    const arrivedNames = [...ep.arrivals.keys()];
    const numbers = arrivedNames.map((name) => Number(name.slice(2)));
    expect(numbers.filter((n) => !(n >= 1 && n <= mostAccepted))).toEqual([]);
    const repeats = expectEachOnceOrSameKey(ep, arrivedNames);
    expect(safeNames.filter((name) => !ep.arrivals.has(name))).toEqual([]);
    // The new process says it took over the dead one's lock.
    const staleLock = second.lines.find((l) => l.text.includes('ZENOVAY_OUTBOX_STALE_LOCK'));
    expect(staleLock?.text).toContain(`process ${first.child.pid}`);
    expect(second.lines.filter((l) => l.text.startsWith('log error'))).toEqual([]);
    // Its accounts: what it took in is what it delivered, and it is all it was given.
    expect(invariantBroken(final)).toBeUndefined();
    expect(final).toMatchObject({ failed: 0, dropped: 0, queued: 0, inFlight: 0 });
    expect(final.outbox!.stored).toBe(0);
    expect(final.delivered).toBe(final.outbox!.taken);
    expect(final.enqueued).toBe(final.outbox!.taken);
    expect(final.outbox!.taken).toBe(ep.acceptedIn[2]);
    expect(final.outbox!.taken).toBeGreaterThanOrEqual(safe - arrivedBefore.size);

    // What did not come back was accepted this long before the kill at most.
    const arrivedSet = new Set(numbers);
    const lost = names('e', accepted())
      .map((_, i) => i + 1)
      .filter((n) => !arrivedSet.has(n));
    const printedAt = (n: number) => stream.find((a) => a.n >= n)!.at;
    figures[`sigkill (${label})`] = {
      acceptedPrinted: accepted(),
      safe,
      arrivedBeforeKill: arrivedBefore.size,
      takenByNext: final.outbox!.taken,
      repeats,
      lostAcceptedInLastSecond: lost.length,
      oldestLostMsBeforeKill: lost.length ? killedAt - printedAt(lost[0]!) : null,
      recoveredAtOpen: reopened.outbox!.recovered,
    };
  },
  45_000,
);

// ---- 4. a directory that cannot be used -----------------------------------------------------------

test.each([
  ['the delivery worker', true],
  ['in-thread delivery', false],
])(
  'a second tracker on a dir already open in this process (%s): unavailable, one error naming the holder, delivers from memory',
  async (_label, worker) => {
    const ep = await endpoint();
    const dir = tmpDir();
    const first = keep(
      createTracker({ trackingCode: 'lock', host: ep.url, logger: false, outbox: { dir } }),
    );
    expect(await opened(first)).toBe('open');
    const { logger, lines } = capture();
    const second = keep(
      createTracker({ trackingCode: 'lock', host: ep.url, worker, logger, outbox: { dir } }),
    );
    expect(await opened(second)).toBe('unavailable');
    expect(await second.trackEvent('second-1')).toBe(true);
    expect(await second.trackEvent('second-2')).toBe(true);
    expect(await first.trackEvent('first-1')).toBe(true);
    expectEachOnceOrSameKey(ep, ['second-1', 'second-2', 'first-1']);
    const errors = lines.filter((l) => l.level === 'error');
    expect(errors).toHaveLength(1);
    expect(errors[0]!.code).toBe('ZENOVAY_OUTBOX_UNAVAILABLE');
    expect(errors[0]!.message).toContain(`${dir} is in use by process ${process.pid}`);
    expect(errors[0]!.message).toContain('already open in this process');
    expect(lines.filter((l) => l.level === 'warn')).toEqual([]);
    const s = second.stats();
    expect(s.outbox).toMatchObject({ state: 'unavailable', persisted: 0, written: 0 });
    expect(s).toMatchObject({ enqueued: 2, delivered: 2, queued: 0 });
    // Closing the second leaves the first's lock alone.
    await second.close();
    const lock = JSON.parse(fs.readFileSync(path.join(dir, LOCK_FILE), 'utf8')) as { pid: number };
    expect(lock.pid).toBe(process.pid);
    expect(await first.trackEvent('first-2')).toBe(true);
    await first.close();
    expect(fs.existsSync(path.join(dir, LOCK_FILE))).toBe(false);
    expect(errorsBut(lines)).toHaveLength(1);
  },
);

test.each([
  ['the delivery worker', true],
  ['in-thread delivery', false],
])(
  'a dir held by another tracker (%s): tried again; once the holder lets go, what waited in memory is kept in it, with what the holder left, and the next tracker sends them all',
  async (_label, worker) => {
    const ep = await endpoint();
    ep.status = 503; // nothing is accepted: the second tracker's events wait
    const dir = tmpDir();
    const first = keep(
      createTracker({ trackingCode: 'reopen', host: ep.url, logger: false, outbox: { dir } }),
    );
    expect(await opened(first)).toBe('open');
    const left = first.trackEvent('left-by-first');
    const { logger, lines } = capture();
    // Retried until the test ends: an outbox is no help to an event that gave up meanwhile.
    const second = keep(
      createTracker({
        trackingCode: 'reopen',
        host: ep.url,
        worker,
        logger,
        maxRetries: 100,
        outbox: { dir },
      }),
    );
    expect(await opened(second)).toBe('unavailable');
    const waited = ['waited-1', 'waited-2', 'waited-3'];
    const results = waited.map((name) => second.trackEvent(name));
    await until('the four to be tried', () => ep.refused >= 4);
    expect(second.stats().outbox).toMatchObject({ state: 'unavailable', written: 0 });
    // The holder lets go (a deploy's old process ending), leaving its unsent event in the
    // directory: the next try opens it, and reads that event back.
    await first.close({ timeout: 200 });
    expect(await left).toBe(false);
    expect(first.stats().outbox).toMatchObject({ stored: 1 });
    await until('the outbox to open', () => second.stats().outbox?.state === 'open', 8000);
    await until('what waited to be written', () => second.stats().outbox!.written >= 3);
    await until('what the holder left to be read back', () => second.stats().outbox!.taken === 1);
    await second.close({ timeout: 200 });
    expect(await Promise.all(results)).toEqual([false, false, false]);
    // Its three and the one it took in, all left in the directory.
    expect(second.stats()).toMatchObject({ enqueued: 4, queued: 4, delivered: 0 });
    expect(second.stats().outbox).toMatchObject({ state: 'closed', stored: 4, taken: 1 });
    expect(errorsBut(lines).map((l) => l.code)).toEqual(['ZENOVAY_OUTBOX_UNAVAILABLE']);
    expect(errorsBut(lines)[0]!.message).toContain('tried again after 1 s');
    expect(lines.filter((l) => l.code === 'ZENOVAY_OUTBOX_OPEN')).toHaveLength(1);
    // The next tracker on the directory sends them, each under the key it was tried with.
    ep.status = 202;
    const third = keep(
      createTracker({ trackingCode: 'reopen', host: ep.url, logger: false, outbox: { dir } }),
    );
    const names = [...waited, 'left-by-first'];
    await until('the four to arrive', () => names.every((name) => ep.arrivals.has(name)));
    expectEachOnceOrSameKey(ep, names);
    await third.close();
  },
  20_000,
);

test('an outbox that stays unavailable is tried again without another error, and close() ends the tries', async () => {
  const ep = await endpoint();
  const dir = tmpDir();
  const first = keep(
    createTracker({ trackingCode: 'held', host: ep.url, logger: false, outbox: { dir } }),
  );
  expect(await opened(first)).toBe('open');
  const { logger, lines } = capture();
  const debug: string[] = [];
  const second = keep(
    createTracker({
      trackingCode: 'held',
      host: ep.url,
      worker: false,
      logger: { ...logger, debug: (line: string) => debug.push(line) },
      outbox: { dir },
    }),
  );
  expect(await opened(second)).toBe('unavailable');
  // Tries after 1 s and 2 s more: both refused, said at debug level only.
  await until(
    'two more tries',
    () => debug.filter((l) => l.includes('could not be opened again')).length >= 2,
    6000,
  );
  expect(errorsBut(lines)).toHaveLength(1);
  await second.close();
  const tries = debug.filter((l) => l.includes('could not be opened again')).length;
  await first.close();
  // No try after close(), though the directory is free now.
  await sleep(4500);
  expect(debug.filter((l) => l.includes('could not be opened again')).length).toBe(tries);
  expect(second.stats().outbox?.state).toBe('unavailable');
  expect(fs.existsSync(path.join(dir, LOCK_FILE))).toBe(false);
}, 20_000);

test.each([
  ['the delivery worker', true],
  ['in-thread delivery', false],
])(
  'a path under a regular file (ENOTDIR) (%s): unavailable, the error says why, events still delivered',
  async (_label, worker) => {
    const ep = await endpoint();
    const file = path.join(tmpDir(), 'a-file');
    fs.writeFileSync(file, 'not a directory');
    const dir = path.join(file, 'outbox');
    const { logger, lines } = capture();
    const tracker = keep(
      createTracker({ trackingCode: 'notdir', host: ep.url, worker, logger, outbox: { dir } }),
    );
    expect(await opened(tracker)).toBe('unavailable');
    expect(await tracker.trackEvent('notdir-1')).toBe(true);
    expectEachOnceOrSameKey(ep, ['notdir-1']);
    expect(lines).toEqual([
      {
        level: 'error',
        code: 'ZENOVAY_OUTBOX_UNAVAILABLE',
        message: expect.stringContaining(
          `cannot create the outbox directory in ${dir} (ENOTDIR): the path (or a parent) is not a directory`,
        ),
      },
    ]);
    expect(lines[0]!.message).toContain('kept in memory only');
    await tracker.close();
    expect(tracker.stats()).toMatchObject({ enqueued: 1, delivered: 1, queued: 0 });
    expect(errorsBut(lines)).toHaveLength(1);
  },
);

// A worker tracker's close() once logged ZENOVAY_WORKER_FAILED "the delivery worker exited with code
// 0 while closing" now and then, and moved delivery to the main thread, which opened the outbox
// again after the worker had closed it: Node may emit the worker's 'exit' in the same turn as its
// last messages, before shutDown() had let go of it (src/delivery/worker-delivery.ts). A race: this
// test caught it in most runs (1 to 5 of 20 closes), not every run.
test('closing worker trackers with an outbox never reports a worker failure (20 closes)', async () => {
  const ep = await endpoint();
  const failures: string[] = [];
  for (let round = 0; round < 20; round++) {
    const dir = tmpDir();
    const { logger, lines } = capture();
    const tracker = createTracker({
      trackingCode: 'closes',
      host: ep.url,
      logger,
      outbox: { dir },
    });
    expect(await tracker.trackEvent(`round-${round}`)).toBe(true);
    await tracker.close();
    for (const line of lines) {
      if (line.code === 'ZENOVAY_WORKER_FAILED') failures.push(`round ${round}: ${line.message}`);
    }
  }
  expect(failures).toEqual([]);
}, 20_000);

test('a read-only directory: unavailable, the error says so, events still delivered (a child process, as an unprivileged user under root)', async () => {
  const ep = await endpoint();
  const dir = tmpDir();
  fs.chmodSync(dir, 0o555);
  try {
    // root writes through mode bits: the child runs as nobody there.
    const run = runChild(ep.url, dir, 'once', { AS_NOBODY: '1' });
    const open = statsOf(await run.line((t) => t.startsWith('open ')));
    expect(open.outbox!.state).toBe('unavailable');
    expect(await run.line((t) => t.startsWith('result '))).toBe('result true');
    const final = statsOf(await run.line((t) => t.startsWith('closed ')));
    expect(await run.exited).toEqual({ code: 0, signal: null });
    expect(final).toMatchObject({ enqueued: 1, delivered: 1, queued: 0 });
    const logs = run.lines.filter((l) => l.text.startsWith('log ')).map((l) => l.text);
    expect(logs).toHaveLength(1);
    expect(logs[0]).toContain('log error [zenovay] ZENOVAY_OUTBOX_UNAVAILABLE:');
    expect(logs[0]).toContain(`cannot create the lock file in ${dir} (EACCES)`);
    expect(logs[0]).toContain('must be writable by this process');
    expectEachOnceOrSameKey(ep, ['once-1']);
  } finally {
    fs.chmodSync(dir, 0o755);
  }
}, 20_000);

// ---- 5. the size bound ----------------------------------------------------------------------------

test.each([
  ['the delivery worker', true],
  ['in-thread delivery', false],
])(
  'maxBytes at its smallest (1024) with the endpoint down: past it new events are dropped as outbox_full, counted, warned once (%s)',
  async (_label, worker) => {
    const ep = await endpoint();
    ep.status = 503;
    const dir = tmpDir();
    const { logger, lines } = capture();
    const tracker = keep(
      createTracker({
        trackingCode: 'full',
        host: ep.url,
        worker,
        retryDelay: 50,
        maxRetryDelay: 400,
        logger,
        outbox: { dir, maxBytes: 1024 },
      }),
    );
    expect(await opened(tracker)).toBe('open');
    const all = names('full', 40);
    const promises = all.map((name) => tracker.trackEvent(name));
    // The dropped ones are answered at once, the others wait for the endpoint.
    await until('the drops to be counted', () => {
      const s = tracker.stats();
      return s.dropped > 0 && s.dropped + s.queued + s.inFlight === 40;
    });
    await sleep(300);
    const s = tracker.stats();
    expect(invariantBroken(s)).toBeUndefined();
    const full = s.outbox!.full;
    expect(full).toBeGreaterThan(20);
    expect(full).toBeLessThan(40);
    expect(s.reasons.dropped).toMatchObject({ outbox_full: full, queue_full: 0 });
    expect(s).toMatchObject({ enqueued: 40, dropped: full, delivered: 0, failed: 0 });
    expect(s.outbox!.persisted).toBe(40 - full);
    expect(s.outbox!.bytes).toBeLessThanOrEqual(1024);
    expect(lines.filter((l) => l.code === 'ZENOVAY_OUTBOX_FULL')).toEqual([
      expect.objectContaining({ level: 'warn', message: expect.stringContaining('outbox_full') }),
    ]);

    ep.status = 202;
    const results = await Promise.all(promises);
    const kept = all.filter((_, i) => results[i]);
    expect(kept).toHaveLength(40 - full);
    // The first ones were kept, the rest refused.
    expect(kept).toEqual(all.slice(0, 40 - full));
    expectEachOnceOrSameKey(ep, kept);
    // Once they are delivered, there is room again.
    await until('the outbox to empty', () => tracker.stats().outbox!.persisted === 0);
    expect(await tracker.trackEvent('after')).toBe(true);
    const end = tracker.stats();
    expect(invariantBroken(end)).toBeUndefined();
    expect(end).toMatchObject({ enqueued: 41, delivered: 41 - full, dropped: full });
    expect(errorsBut(lines)).toEqual([]);
  },
);

// ---- 6. the option's checks -------------------------------------------------------------------------

test('bad outbox options throw TypeErrors that say what is wrong', () => {
  const dir = path.join(scratch, 'never-created');
  const bad =
    (outbox: unknown, extra: object = {}) =>
    () =>
      createTracker({ trackingCode: 'opts', logger: false, outbox: outbox as never, ...extra });
  expect(bad('/var/lib/app')).toThrow(TypeError);
  expect(bad('/var/lib/app')).toThrow(/createTracker\(\) option `outbox` must be \{ dir:/);
  expect(bad({})).toThrow(/needs `dir` .* or `redis`/);
  expect(bad({ dir: '' })).toThrow(/`dir` must be a directory path/);
  expect(bad({ dir, maxSize: 5 })).toThrow(
    /got `maxSize`, which a directory outbox does not take \(it takes `dir`, `sync`, `syncInterval`, `maxBytes`\)/,
  );
  expect(bad({ dir, stream: 's' })).toThrow(/got `stream`, which a directory outbox does not take/);
  expect(bad({ dir, redis: 'redis://127.0.0.1:6379' })).toThrow(/takes `dir` or `redis`, not both/);
  expect(bad({ dir, sync: 'sometimes' })).toThrow(
    /`sync` must be 'interval' or 'always', got "sometimes"/,
  );
  for (const syncInterval of [0, -1, 2.5, '1000', 2 ** 31]) {
    expect(bad({ dir, syncInterval })).toThrow(/`syncInterval` must be a whole number from 1 to/);
  }
  expect(bad({ dir, maxBytes: 1023 })).toThrow(
    /`outbox` is not usable: .*maxBytes must be an integer of at least 1024/,
  );
  expect(bad({ redis: { sendCommand() {} } }, { worker: true })).toThrow(
    /`worker: true` and a Redis client object as `outbox.redis`/,
  );
  expect(() =>
    analytics({ trackingCode: 'opts', logger: false, outbox: { dir, x: 1 } as never }),
  ).toThrow(/analytics\(\) option `outbox` got `x`/);
  for (const attempt of [bad({ dir, sync: 1 }), bad({ dir, maxBytes: 'big' })]) {
    expect(attempt).toThrow(TypeError);
  }
  // Nothing was created along the way.
  expect(fs.existsSync(dir)).toBe(false);
});

// ---- 7. a large recovery does not block ---------------------------------------------------------------

describe('recovering 100,000 events', () => {
  const count = 100_000;
  const keyPrefix = '3f1c9a52-7d4e-4b21-9e0a-';
  let written = '';

  beforeAll(async () => {
    // As a tracker leaves them when it could not send: straight through the store, to be quick.
    written = tmpDir();
    const store = createDirectoryOutbox({ dir: written });
    await store.open();
    for (let i = 1; i <= count; i++) {
      store.append({
        key: `${keyPrefix}${i}`,
        body: JSON.stringify({ type: 'event', name: `r-${i}`, data: { i, page: `/p/${i % 97}` } }),
        headers: { 'content-type': 'application/json', 'user-agent': 'zenovay-express (test)' },
        acceptedAt: Date.now(),
      });
      if (i % 5000 === 0) await sleep(0);
    }
    await store.close();
  }, 30_000);

  test.each([
    ['the delivery worker', true, 150],
    ['in-thread delivery', false, 500],
  ])(
    'the event loop stays responsive while a tracker recovers them and sends (%s); close() keeps the rest, under their keys',
    async (label, worker, sendingBound) => {
      const dir = tmpDir();
      fs.cpSync(written, dir, { recursive: true });
      // The collector runs in a process of its own: only the tracker's work is measured here.
      const collector = spawnLines('collector-child.mjs', [
        'r',
        String(count),
        'first-request',
        keyPrefix,
      ]);
      const url = (await collector.line((t) => t.startsWith('url '))).slice(4);
      const delay = monitorEventLoopDelay({ resolution: 10 });
      // A second, plain gauge: how late a 10 ms interval fires at worst.
      let lastTick = performance.now();
      let worstTick = 0;
      const ticker = setInterval(() => {
        const now = performance.now();
        worstTick = Math.max(worstTick, now - lastTick - 10);
        lastTick = now;
      }, 10);
      delay.enable();
      const started = performance.now();
      const tracker = keep(
        createTracker({
          trackingCode: 'recovery',
          host: url,
          worker,
          logger: false,
          outbox: { dir },
        }),
      );
      // The app's first request, while the outbox opens.
      let firstMs = 0;
      const first = tracker.trackEvent('first-request').then((ok) => {
        firstMs = performance.now() - started;
        return ok;
      });
      let openMs = 0;
      let recoveredAtOpen = 0;
      await until('the outbox to open', () => {
        const s = tracker.stats().outbox!;
        if (s.state === 'opening') return false;
        openMs = performance.now() - started;
        recoveredAtOpen = s.recovered;
        return true;
      });
      const opening = { max: delay.max / 1e6, worstTick };
      delay.reset();
      worstTick = 0;
      // Sending what it recovered, as fast as it goes.
      await sleep(2500);
      const sending = {
        max: delay.max / 1e6,
        p99: delay.percentile(99) / 1e6,
        mean: delay.mean / 1e6,
        worstTick,
      };
      delay.disable();
      clearInterval(ticker);
      const beforeClose = tracker.stats();
      await tracker.close({ timeout: 0 });
      expect(await first).toBe(true);
      const s = tracker.stats();
      expect(invariantBroken(s)).toBeUndefined();
      expect(s).toMatchObject({ dropped: 0, failed: 0, inFlight: 0 });
      // What it took in and did not send waits in the outbox again.
      expect(s.queued).toBe(s.outbox!.stored);
      expect(s.enqueued).toBe(s.outbox!.taken + 1);
      expect(s.delivered).toBeGreaterThan(1000);
      // What was not delivered is still in the dir, and nothing else.
      const store = createDirectoryOutbox({ dir });
      await store.open();
      const left = store.stats().recovered;
      await store.close();
      expect(left).toBe(count + 1 - s.delivered);

      collector.child.stdin!.write('report\n');
      const report = JSON.parse(
        (await collector.line((t) => t.startsWith('report '))).slice(7),
      ) as Record<string, { count: number }> & { attempts: number; names: number };
      expect(report).toMatchObject({
        severalKeys: { count: 0 },
        strangers: { count: 0 },
        wrongKeys: { count: 0 },
      });
      // Arrived at least once: what was delivered (a few more went out as the close cut them off).
      expect(report.names).toBeGreaterThanOrEqual(s.delivered);
      expect(report.names).toBeLessThanOrEqual(s.delivered + 512);
      collector.child.stdin!.write('close\n');
      expect(await collector.exited).toEqual({ code: 0, signal: null });

      figures[`recovery of ${count} (${label})`] = {
        openMs: Math.round(openMs),
        recoveredAtOpen,
        maxDelayUntilOpenMs: Math.round(opening.max),
        worstTickUntilOpenMs: Math.round(opening.worstTick),
        firstOwnEventMs: Math.round(firstMs),
        deliveredIn2500MsAfterOpen: s.delivered,
        takenBeforeClose: beforeClose.outbox!.taken,
        sendingMaxDelayMs: Math.round(sending.max),
        sendingP99DelayMs: Math.round(sending.p99),
        sendingMeanDelayMs: Math.round(sending.mean),
        sendingWorstTickMs: Math.round(sending.worstTick),
        leftInDir: left,
      };
      // Opening (reading 100,000 records back, 0.2 to 0.9 s here) never holds the event loop for
      // long: 16 to 45 ms at most on a quiet run, 170 ms once with the machine loaded by other
      // test runs; reading it in one go would hold it for the whole open.
      expect(opening.max).toBeLessThan(300);
      expect(opening.worstTick).toBeLessThan(300);
      // Sending them: from the worker, the main thread barely works; in-thread it does the HTTP
      // work, on a shared 2-core machine (a loose bound, to catch a long block).
      expect(sending.max).toBeLessThan(sendingBound);
    },
    45_000,
  );
});
