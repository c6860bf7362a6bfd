/**
 * The delivery worker's priority (option `workerNice`): on Linux its thread, and only its
 * thread, runs that many nice steps below the process. Read from /proc, as `top -H` would.
 */
import { execFile } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { analytics, createTracker, type Tracker } from '../../src/index';
import { lowerThreadPriority } from '../../src/delivery/thread-priority';
import { startCollector } from '../helpers/collector';
import type { TestCollector } from '../../src/testing';

const run = promisify(execFile);
const linux = process.platform === 'linux';
const onLinux = linux ? test : test.skip;

/** The nice value of each of this process's threads, by thread id. */
function threadNices(): Map<number, number> {
  const nices = new Map<number, number>();
  for (const tid of readdirSync('/proc/self/task')) {
    let stat: string;
    try {
      stat = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
    } catch {
      continue; // a thread that ended meanwhile
    }
    // Fields after "(comm)": the state is field 3, the nice value field 19.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    nices.set(Number(tid), Number(fields[19 - 3]));
  }
  return nices;
}

const mainNice = (): number => threadNices().get(process.pid)!;

let collector: TestCollector;
const open: Tracker[] = [];
beforeAll(async () => {
  collector = await startCollector();
});
afterEach(async () => {
  await Promise.all(open.splice(0).map((t) => t.close()));
});

/** A tracker on its worker that has delivered one event, so its worker is up. */
async function deliveringTracker(options: { workerNice?: number }): Promise<Tracker> {
  const tracker = createTracker({
    trackingCode: 'nice',
    host: collector.url,
    logger: false,
    ...options,
  });
  open.push(tracker);
  expect(await tracker.trackEvent('up', undefined, { url: 'https://shop.example/' })).toBe(true);
  return tracker;
}

onLinux(
  'by default the worker thread runs 10 steps nicer than the process; no other thread moves',
  async () => {
    const base = mainNice();
    const before = threadNices();
    await deliveringTracker({});
    const after = threadNices();
    const lowered = [...after].filter(([, nice]) => nice !== base);
    // One thread, the worker's, new since the tracker started.
    expect(lowered).toHaveLength(1);
    const [[tid, nice]] = lowered as [[number, number]];
    expect(nice).toBe(Math.min(19, base + 10));
    expect(before.has(tid)).toBe(false);
    expect(after.get(process.pid)).toBe(base);
  },
);

onLinux('workerNice sets the steps; 0 leaves every thread at the process priority', async () => {
  const base = mainNice();
  await deliveringTracker({ workerNice: 3 });
  expect([...threadNices().values()].filter((n) => n !== base)).toEqual([base + 3]);
  await Promise.all(open.splice(0).map((t) => t.close()));
  await deliveringTracker({ workerNice: 0 });
  expect([...threadNices().values()].filter((n) => n !== base)).toEqual([]);
});

onLinux(
  'a process already running nicer: the worker stops at nice 19 (the built package, under `nice -n 15`)',
  async () => {
    const dist = path.join(__dirname, '../../dist/index.js');
    const script = `
    import { readdirSync, readFileSync } from 'node:fs';
    const { createTracker } = await import(${JSON.stringify(dist)});
    const tracker = createTracker({ trackingCode: 'nice', host: process.argv[1], logger: false });
    const ok = await tracker.trackEvent('up', undefined, { url: 'https://shop.example/' });
    const nices = readdirSync('/proc/self/task').map((tid) => {
      const stat = readFileSync('/proc/self/task/' + tid + '/stat', 'utf8');
      return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[16]);
    });
    await tracker.close();
    console.log(JSON.stringify({ ok, nices }));
  `;
    const { stdout } = await run(
      'nice',
      ['-n', '15', process.execPath, '--input-type=module', '-e', script, collector.url],
      { timeout: 20_000 },
    );
    const { ok, nices } = JSON.parse(stdout) as { ok: boolean; nices: number[] };
    expect(ok).toBe(true);
    expect(nices.filter((n) => n !== 15)).toEqual([19]);
  },
);

test('lowerThreadPriority: nothing with 0 steps, nothing off Linux (a priority there is the whole process)', () => {
  expect(lowerThreadPriority(0)).toEqual({ kind: 'unchanged', why: 'workerNice is 0' });
  for (const platform of ['darwin', 'win32', 'freebsd'] as const) {
    expect(lowerThreadPriority(5, platform)).toEqual({
      kind: 'unchanged',
      why: `not on Linux (${platform})`,
    });
  }
});

test.each([-1, 20, 2.5, '5', null])('workerNice %p is refused with the allowed range', (value) => {
  expect(() =>
    createTracker({
      trackingCode: 'nice',
      host: 'http://127.0.0.1:9',
      workerNice: value as number,
    }),
  ).toThrow(/option `workerNice` must be a whole number from 0 to 19, got/);
});

test('workerNice belongs to the tracker: refused next to an existing one', async () => {
  const tracker = createTracker({ trackingCode: 'nice', host: collector.url, logger: false });
  open.push(tracker);
  expect(() => analytics({ tracker, workerNice: 5 })).toThrow(/workerNice/);
});
