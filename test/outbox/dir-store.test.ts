/**
 * The directory outbox against the real file system (temporary directories): round trips,
 * compaction, recovery after a clean close and after SIGKILL, torn and damaged records, the size
 * bound, the lock, a read-only directory, and a seeded model check.
 */
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import fc from 'fast-check';
import {
  createDirectoryOutbox,
  type DirectoryOutboxOptions,
  type OutboxReporter,
} from '../../src/outbox/dir-store';
import { LOCK_FILE, LOCK_STALE_MS, selfHolder } from '../../src/outbox/dir-lock';
import { headerPairs, writeEntryRecord } from '../../src/outbox/record-codec';
import type { OutboxEntry, OutboxStore } from '../../src/outbox/types';

/* eslint-disable @typescript-eslint/no-require-imports */
const { entry } = require('../fixtures/outbox-dir.cjs') as { entry: (n: number) => OutboxEntry };
// Loaded untyped: only transpileModule is needed, not TypeScript's large declarations.
const ts = require('typescript') as {
  transpileModule(source: string, options: object): { outputText: string };
};
/* eslint-enable @typescript-eslint/no-require-imports */

const fixture = path.join(__dirname, '../fixtures/outbox-dir.cjs');
const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'zx-outbox-test-'));
fs.chmodSync(scratch, 0o755);
let moduleDir = '';
const open: OutboxStore[] = [];

beforeAll(() => {
  // The child processes run the store's source, compiled to CommonJS here.
  moduleDir = path.join(scratch, 'module');
  fs.mkdirSync(moduleDir, { mode: 0o755 });
  for (const name of ['dir-store', 'dir-lock', 'record-codec', 'types']) {
    const source = fs.readFileSync(path.join(__dirname, '../../src/outbox', `${name}.ts`), 'utf8');
    const { outputText } = ts.transpileModule(source, {
      compilerOptions: { module: 'commonjs', target: 'es2022', esModuleInterop: true },
    });
    fs.writeFileSync(path.join(moduleDir, `${name}.js`), outputText, { mode: 0o644 });
  }
});

afterEach(async () => {
  await Promise.all(open.splice(0).map((s) => s.close()));
});

afterAll(() => {
  for (const name of fs.readdirSync(scratch)) fs.chmodSync(path.join(scratch, name), 0o755);
  fs.rmSync(scratch, { recursive: true, force: true });
});

let dirs = 0;
function tmpDir(): string {
  const dir = path.join(scratch, `d${++dirs}`);
  fs.mkdirSync(dir);
  return dir;
}

interface Reports {
  reporter: OutboxReporter;
  lines: { level: string; code: string; message: string }[];
}
function reports(): Reports {
  const lines: Reports['lines'] = [];
  const at = (level: string) => (code: string, message: string) => {
    lines.push({ level, code, message });
  };
  return { lines, reporter: { info: at('info'), warn: at('warn'), error: at('error') } };
}

async function openStore(options: DirectoryOutboxOptions): Promise<OutboxStore> {
  const store = createDirectoryOutbox(options);
  await store.open();
  open.push(store);
  return store;
}

async function closeStore(store: OutboxStore): Promise<void> {
  await store.close();
  open.splice(open.indexOf(store), 1);
}

async function drain(store: OutboxStore, batch = 1000): Promise<OutboxEntry[]> {
  const all: OutboxEntry[] = [];
  for (;;) {
    const got = await store.take(batch);
    if (got.length === 0) return all;
    all.push(...got);
  }
}

const segments = (dir: string) => fs.readdirSync(dir).filter((n) => /^seg-\d+\.log$/.test(n));
const seqOf = (e: OutboxEntry) => Number(e.key.slice(2));

test('round trip: spilled entries come back whole, in the order spilled, from memory and disk', async () => {
  const dir = tmpDir();
  const store = await openStore({ dir });
  const odd: OutboxEntry = {
    key: 'k-ünï',
    body: JSON.stringify({ type: 'event', name: 'café ☕', data: { emoji: '🎉', nul: '\u0000' } }),
    headers: { 'content-type': 'application/json', 'user-agent': 'Mozilla/5.0 (ü)' },
    acceptedAt: 1_712_345_678_901,
  };
  expect(store.append(entry(1))).toBe(true);
  expect(store.append(odd)).toBe(true);
  expect(store.append(entry(3))).toBe(true);
  expect(store.append(entry(3))).toBe(true); // the same key again: kept once
  // Headers go as NUL-separated pairs; one holding a NUL goes as JSON instead.
  const nul: OutboxEntry = {
    key: 'k-nul',
    body: '',
    headers: { 'x-a': 'a\u0000b' },
    acceptedAt: 0,
  };
  const bare: OutboxEntry = { key: 'k-bare', body: '{}', headers: {}, acceptedAt: 1 };
  expect(store.append(nul)).toBe(true);
  expect(store.append(bare)).toBe(true);
  store.spill('k-3');
  store.spill(odd.key);
  store.spill('k-nul');
  store.spill('k-bare');
  // Still in the write buffer: read back from memory.
  expect(await store.take(10)).toEqual([entry(3), odd, nul, bare]);
  expect(await store.take(10)).toEqual([]);
  store.spill('k-1');
  await store.sync();
  // Now from the file.
  expect(await store.take(10)).toEqual([entry(1)]);
  expect(store.stats()).toMatchObject({ persisted: 5, recovered: 0, written: 5, read: 5 });
  store.settle('k-1');
  store.settle('k-1'); // idempotent
  store.settle('never-appended');
  expect(store.stats()).toMatchObject({ persisted: 4, settled: 1 });
  await closeStore(store);
  const again = await openStore({ dir });
  expect(await drain(again)).toEqual([odd, entry(3), nul, bare]);
});

test('recovery after a clean close: unsettled entries, oldest first, with their keys; settled ones never', async () => {
  const dir = tmpDir();
  const first = await openStore({ dir });
  for (let n = 1; n <= 50; n++) first.append(entry(n));
  for (let n = 1; n <= 50; n += 3) first.settle(`k-${n}`);
  await closeStore(first);
  expect(fs.existsSync(path.join(dir, LOCK_FILE))).toBe(false);

  const second = await openStore({ dir });
  const expected = Array.from({ length: 50 }, (_, i) => i + 1).filter((n) => (n - 1) % 3 !== 0);
  expect(second.stats()).toMatchObject({ persisted: 33, recovered: 33, corrupt: 0 });
  const firstPage = await second.take(10);
  expect(second.stats().recovered).toBe(23);
  const rest = await drain(second, 7);
  expect([...firstPage, ...rest]).toEqual(expected.map(entry));
  expect(second.stats()).toMatchObject({ recovered: 0, read: 33 });
  // Half of them answered; the rest stay for the next start.
  for (const n of expected.slice(0, 16)) second.settle(`k-${n}`);
  await closeStore(second);

  const third = await openStore({ dir });
  expect((await drain(third)).map(seqOf)).toEqual(expected.slice(16));
});

test('settle and compaction: segments whose entries are all settled are deleted', async () => {
  const dir = tmpDir();
  const store = await openStore({ dir, segmentBytes: 1024 });
  for (let n = 1; n <= 40; n++) store.append(entry(n));
  await store.sync();
  const before = store.stats().bytes;
  expect(segments(dir).length).toBeGreaterThanOrEqual(8);
  for (let n = 1; n <= 40; n++) store.settle(`k-${n}`);
  expect(store.stats()).toMatchObject({ persisted: 0, settled: 40 });
  expect(store.stats().bytes).toBeLessThan(1024 + 40 * 20);
  expect(store.stats().bytes).toBeLessThan(before / 5);
  await closeStore(store);
  expect(segments(dir)).toHaveLength(1);
  const again = await openStore({ dir, segmentBytes: 1024 });
  expect(again.stats()).toMatchObject({ persisted: 0, recovered: 0 });
  // At open, the segment left (its entries all settled) goes too; a new one is made at its first
  // write.
  await closeStore(again);
  expect(segments(dir)).toHaveLength(0);
});

test('a segment holding the settle mark of an older live segment stays until that one goes', async () => {
  const dir = tmpDir();
  // 100-byte records: three fill a 256-byte segment.
  const small = (key: string): OutboxEntry => ({
    key,
    body: 'b'.repeat(70),
    headers: {},
    acceptedAt: 1,
  });
  const store = await openStore({ dir, segmentBytes: 256 });
  for (const k of ['a1', 'a2', 'a3']) store.append(small(k)); // segment 1
  store.append(small('b1')); // segment 2
  store.settle('a1'); // its mark in segment 2
  store.settle('b1');
  store.append(small('c1'));
  store.append(small('c2'));
  store.append(small('c3')); // segment 3
  store.settle('c1');
  store.settle('c2');
  await store.sync();
  // Segment 2: nothing live, not being written, but it holds a1's mark while a1's segment lives.
  expect(segments(dir)).toHaveLength(3);
  await closeStore(store);
  const again = await openStore({ dir, segmentBytes: 256 });
  expect((await drain(again)).map((e) => e.key)).toEqual(['a2', 'a3', 'c3']);
  // Once a2 and a3 are settled, segment 1 goes, and segment 2 with it.
  again.settle('a2');
  again.settle('a3');
  again.settle('c3');
  await closeStore(again);
  expect(segments(dir)).toHaveLength(1);
});

test('SIGKILL in the middle of a stream: every entry appended a sync interval before the kill is recovered, intact, nothing else', async () => {
  const dir = tmpDir();
  const interval = 100;
  const child = spawn(process.execPath, [fixture, moduleDir, dir, 'stream', String(interval)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const exited = new Promise<NodeJS.Signals | null>((resolve) => {
    child.on('exit', (_code, signal) => resolve(signal));
  });
  const appended: { seq: number; at: number }[] = [];
  const settledLines: { seq: number; at: number }[] = [];
  let readyAt = 0;
  let wake: () => void = () => undefined;
  readline.createInterface({ input: child.stdout! }).on('line', (line) => {
    const now = Date.now();
    if (line === 'ready') readyAt = now;
    else if (line.startsWith('a ')) appended.push({ seq: Number(line.slice(2)), at: now });
    else if (line.startsWith('s ')) settledLines.push({ seq: Number(line.slice(2)), at: now });
    else throw new Error(`the child said: ${line}`);
    wake();
  });
  // Let it run several sync intervals, past a few segment rolls.
  await new Promise<void>((resolve) => {
    const timer = setTimeout(() => resolve(), 12_000);
    wake = () => {
      const last = appended[appended.length - 1];
      if (readyAt > 0 && last && last.seq >= 4000 && Date.now() - readyAt > 5 * interval) {
        clearTimeout(timer);
        resolve();
      }
    };
  });
  const killedAt = Date.now();
  child.kill('SIGKILL');
  expect(await exited).toBe('SIGKILL');
  expect(fs.existsSync(path.join(dir, LOCK_FILE))).toBe(true);

  const cutoff = killedAt - interval;
  const safeSeq = Math.max(0, ...appended.filter((a) => a.at <= cutoff).map((a) => a.seq));
  const safeSettled = new Set(settledLines.filter((s) => s.at <= cutoff).map((s) => s.seq));
  expect(safeSeq).toBeGreaterThan(1000);

  const { reporter, lines } = reports();
  const store = await openStore({ dir, reporter, segmentBytes: 16 * 1024 });
  expect(lines.map((l) => l.code)).toContain('ZENOVAY_OUTBOX_STALE_LOCK');
  expect(lines.find((l) => l.code === 'ZENOVAY_OUTBOX_STALE_LOCK')!.message).toContain(
    `process ${child.pid}`,
  );
  const recovered = await drain(store, 500);
  const seqs = recovered.map(seqOf);
  // Intact, each once, oldest first.
  expect(recovered).toEqual(seqs.map(entry));
  expect(new Set(seqs).size).toBe(seqs.length);
  expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
  const got = new Set(seqs);
  const missing: number[] = [];
  const resurrected: number[] = [];
  for (let n = 1; n <= safeSeq; n++) {
    if (safeSettled.has(n) && got.has(n)) resurrected.push(n);
    // Every fourth entry may have been settled after the last line read here: either way is right.
    if (n % 4 !== 0 && !got.has(n)) missing.push(n);
  }
  expect(missing).toEqual([]);
  expect(resurrected).toEqual([]);
  expect(store.stats().corrupt).toBeLessThanOrEqual(1);

  // Delivered now: the next start finds nothing, and the files are gone.
  for (const n of seqs) store.settle(`k-${n}`);
  await closeStore(store);
  const after = await openStore({ dir });
  expect(after.stats()).toMatchObject({ persisted: 0, recovered: 0 });
  await closeStore(after);
  expect(segments(dir).length).toBeLessThanOrEqual(1);
}, 25_000);

/** A single-segment directory with entries 1..count, and where each record starts. */
async function writeEntries(count: number, settleLast?: string) {
  const dir = tmpDir();
  const store = await openStore({ dir });
  const starts: number[] = [];
  for (let n = 1; n <= count; n++) {
    starts.push(store.stats().bytes);
    store.append(entry(n));
  }
  if (settleLast !== undefined) {
    starts.push(store.stats().bytes);
    store.settle(settleLast);
  }
  await closeStore(store);
  const [name] = segments(dir);
  const bytes = fs.readFileSync(path.join(dir, name!));
  return { bytes, starts, name: name! };
}

async function recoverFrom(bytes: Buffer, name: string) {
  const dir = tmpDir();
  fs.writeFileSync(path.join(dir, name), bytes);
  const store = createDirectoryOutbox({ dir });
  await store.open();
  const entries = await drain(store);
  const { corrupt } = store.stats();
  await store.close();
  fs.rmSync(dir, { recursive: true });
  return { seqs: entries.map(seqOf), entries, corrupt };
}

test('a segment cut at every byte of its last record: the earlier records are recovered, the torn one counted', async () => {
  const { bytes, starts, name } = await writeEntries(5);
  const start = starts[4]!;
  expect(bytes.length - start).toBeGreaterThan(100);
  for (let cut = start; cut <= bytes.length; cut++) {
    const { seqs, entries, corrupt } = await recoverFrom(bytes.subarray(0, cut), name);
    if (cut === bytes.length) {
      expect(seqs).toEqual([1, 2, 3, 4, 5]);
      expect(corrupt).toBe(0);
    } else {
      expect(seqs).toEqual([1, 2, 3, 4]);
      expect(entries).toEqual([1, 2, 3, 4].map(entry));
      expect(corrupt).toBe(cut === start ? 0 : 1);
    }
  }
});

test('a torn settle mark: its entry comes back (at least once), nothing else changes', async () => {
  const { bytes, starts, name } = await writeEntries(3, 'k-2');
  const start = starts[3]!;
  for (let cut = start; cut <= bytes.length; cut++) {
    const { seqs, corrupt } = await recoverFrom(bytes.subarray(0, cut), name);
    expect(seqs).toEqual(cut === bytes.length ? [1, 3] : [1, 2, 3]);
    expect(corrupt).toBe(cut === start || cut === bytes.length ? 0 : 1);
  }
});

test('a damaged byte in a record: that record is counted and skipped, the ones after it are recovered', async () => {
  const { bytes, starts, name } = await writeEntries(5);
  // Every byte of the header, every fifth of the payload.
  for (let at = starts[2]!; at < starts[3]!; at += at - starts[2]! < 12 ? 1 : 5) {
    const damaged = Buffer.from(bytes);
    damaged[at] = damaged[at]! ^ 0x5a;
    const { seqs, corrupt } = await recoverFrom(damaged, name);
    expect(seqs).toEqual([1, 2, 4, 5]);
    expect(corrupt).toBe(1);
  }
  // Zeros over two records (a lost block): both counted as one damaged stretch, the rest kept.
  const zeroed = Buffer.from(bytes);
  zeroed.fill(0, starts[1]! + 5, starts[3]! + 5);
  const { seqs, corrupt } = await recoverFrom(zeroed, name);
  expect(seqs).toEqual([1, 5]);
  expect(corrupt).toBe(1);
});

test('maxBytes: past it append() returns false and stats().full counts; settling frees room', async () => {
  const dir = tmpDir();
  const store = await openStore({ dir, maxBytes: 4096 });
  let n = 0;
  while (store.append(entry(++n)));
  const accepted = n - 1;
  expect(accepted).toBeGreaterThan(5);
  expect(store.stats()).toMatchObject({ full: 1, persisted: accepted, written: accepted });
  expect(store.stats().bytes).toBeLessThanOrEqual(4096);
  expect(store.append(entry(10_000))).toBe(false);
  expect(store.stats().full).toBe(2);
  for (let k = 1; k <= accepted; k++) store.settle(`k-${k}`);
  expect(store.append(entry(20_000))).toBe(true);
  await closeStore(store);
  const again = await openStore({ dir, maxBytes: 4096 });
  expect((await drain(again)).map(seqOf)).toEqual([20_000]);
});

test('one process per directory: a second open() in this process is refused, naming the holder', async () => {
  const dir = tmpDir();
  await openStore({ dir });
  const second = createDirectoryOutbox({ dir });
  const error = await second.open().then(
    () => undefined,
    (e: Error & { code?: string }) => e,
  );
  expect(error?.message).toContain(`process ${process.pid} on host ${os.hostname()}`);
  expect(error?.message).toMatch(/already open in this process/);
  expect(error?.code).toBe('ZENOVAY_OUTBOX_LOCKED');
  expect(() => second.append(entry(1))).toThrow(/before open\(\) resolved/);
});

test('a lock held by another live process: a clear error; once it closes, the directory opens', async () => {
  const dir = tmpDir();
  const child = spawn(process.execPath, [fixture, moduleDir, dir, 'hold'], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  try {
    await new Promise<void>((resolve, reject) => {
      readline.createInterface({ input: child.stdout! }).on('line', (line) => {
        if (line === 'ready') resolve();
        else reject(new Error(line));
      });
    });
    const store = createDirectoryOutbox({ dir });
    await expect(store.open()).rejects.toThrow(
      `is in use by process ${child.pid} on host ${os.hostname()}`,
    );
    await expect(store.open()).rejects.toThrow(/Stop that process, or give this one another/);
  } finally {
    child.kill('SIGTERM');
  }
  expect(await exited).toBe(0);
  const { reporter, lines } = reports();
  await openStore({ dir, reporter });
  expect(lines).toEqual([]);
});

test('a stale lock is taken over with a warning: dead pid, reused pid, an old lock of another host', async () => {
  const self = selfHolder();
  const dead = spawnSync(process.execPath, ['-e', '']).pid!;
  const cases = [
    { holder: { ...self, pid: dead, token: 'x' }, why: /no longer running/ },
    // This process's pid, but another process's start: a container restarted with the same pid.
    { holder: { ...self, procStart: '1', startedAt: '2001-01-01T00:00:00.000Z' }, why: /same pid/ },
  ];
  if (self.procStart === undefined) cases.pop();
  for (const { holder, why } of cases) {
    const dir = tmpDir();
    fs.writeFileSync(path.join(dir, LOCK_FILE), JSON.stringify(holder));
    const { reporter, lines } = reports();
    const store = await openStore({ dir, reporter });
    expect(lines).toEqual([
      expect.objectContaining({ level: 'warn', code: 'ZENOVAY_OUTBOX_STALE_LOCK' }),
    ]);
    expect(lines[0]!.message).toMatch(why);
    await closeStore(store);
  }

  // Another host: its pid means nothing here; only the lock's age tells.
  const dir = tmpDir();
  const lock = path.join(dir, LOCK_FILE);
  const foreign = { pid: 4242, hostname: 'elsewhere.example', startedAt: '2024-01-01T00:00:00Z' };
  fs.writeFileSync(lock, JSON.stringify(foreign));
  await expect(createDirectoryOutbox({ dir }).open()).rejects.toThrow(
    /in use by process 4242 on host elsewhere\.example.*cannot be checked from here/,
  );
  const old = new Date(Date.now() - LOCK_STALE_MS - 5000);
  fs.utimesSync(lock, old, old);
  const { reporter, lines } = reports();
  await openStore({ dir, reporter });
  expect(lines[0]?.message).toMatch(/elsewhere\.example.*not refreshed/);
  expect(JSON.parse(fs.readFileSync(lock, 'utf8'))).toMatchObject({ pid: process.pid });
});

test('a read-only directory: open() rejects with a message that says so', () => {
  const dir = tmpDir();
  fs.writeFileSync(path.join(dir, 'seg-000001.log'), '');
  fs.chmodSync(dir, 0o555);
  // root writes through mode bits: run the check as an unprivileged user (nobody) there.
  const asRoot = process.getuid?.() === 0;
  const run = spawnSync(process.execPath, [fixture, moduleDir, dir, 'open'], {
    encoding: 'utf8',
    cwd: os.tmpdir(),
    ...(asRoot ? { uid: 65534, gid: 65534 } : {}),
  });
  expect(run.stderr).toBe('');
  const outcome = JSON.parse(run.stdout) as {
    probeWritable: boolean;
    opened: boolean;
    message?: string;
    code?: string;
  };
  // The precondition: this user really cannot write there.
  expect(outcome.probeWritable).toBe(false);
  expect(outcome.opened).toBe(false);
  expect(outcome.code).toBe('EACCES');
  expect(outcome.message).toContain(`cannot create the lock file in ${dir} (EACCES)`);
  expect(outcome.message).toContain('must be writable by this process');
});

test('a path that is a file: open() rejects clearly', async () => {
  const file = path.join(tmpDir(), 'file');
  fs.writeFileSync(file, 'x');
  await expect(createDirectoryOutbox({ dir: file }).open()).rejects.toThrow(
    /cannot create the outbox directory in .*file \((EEXIST|ENOTDIR)\): the path \(or a parent\) is not a directory/,
  );
});

test('misuse and options: append before open / after close throws; close is idempotent', async () => {
  expect(() => createDirectoryOutbox({ dir: '' })).toThrow(/outbox\.dir/);
  expect(() => createDirectoryOutbox({ dir: 'x', sync: 'never' as 'always' })).toThrow(
    /'interval' or 'always'/,
  );
  expect(() => createDirectoryOutbox({ dir: 'x', maxBytes: 10 })).toThrow(/maxBytes/);
  expect(() => createDirectoryOutbox({ dir: 'x', syncIntervalMs: 0 })).toThrow(/syncIntervalMs/);
  const store = createDirectoryOutbox({ dir: tmpDir(), sync: 'always' });
  expect(() => store.append(entry(1))).toThrow(/before open/);
  await expect(store.take(5)).resolves.toEqual([]);
  await store.open();
  await store.open();
  expect(store.append(entry(1))).toBe(true);
  await store.sync();
  await Promise.all([store.close(), store.close()]);
  await store.close();
  expect(() => store.append(entry(2))).toThrow(/after close/);
  store.settle('k-1');
  store.spill('k-1');
  await expect(store.take(5)).resolves.toEqual([]);
  await expect(store.open()).rejects.toThrow(/after close/);
});

test('open() of 100,000 entries yields to the event loop while it reads', async () => {
  const dir = tmpDir();
  // One segment of ~50 MB, written with the store's codec (quicker than through a store, which
  // would fdatasync it): file reads alone would not break the scan up.
  const file = Buffer.allocUnsafe(100_000 * 600);
  let size = 0;
  for (let n = 1; n <= 100_000; n++) {
    const e = entry(n);
    size += writeEntryRecord(file, size, e, headerPairs(e.headers)!, 0);
  }
  fs.writeFileSync(path.join(dir, 'seg-000001.log'), file.subarray(0, size));
  const store = createDirectoryOutbox({ dir });
  // The longest stretch between two turns of the event loop, in this thread's CPU time (Linux,
  // 10 ms ticks): wall time would also count the moments this process waits for a core on a busy
  // machine, and the process's CPU time the GC's helper threads.
  const cpuMs = () => {
    try {
      const stat = fs.readFileSync('/proc/thread-self/stat', 'latin1');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      return (Number(fields[11]) + Number(fields[12])) * 10;
    } catch {
      const { user, system } = process.cpuUsage();
      return (user + system) / 1000;
    }
  };
  let turns = 0;
  let longest = 0;
  let last = cpuMs();
  let done = false;
  const spin = () => {
    const now = cpuMs();
    longest = Math.max(longest, now - last);
    last = now;
    turns++;
    if (!done) setImmediate(spin);
  };
  setImmediate(spin);
  const cpu0 = cpuMs();
  await store.open();
  const cpu = cpuMs() - cpu0;
  done = true;
  open.push(store);
  expect(store.stats()).toMatchObject({ recovered: 100_000, corrupt: 0 });
  // ~50 MB read record by record: hundreds of ms of CPU in all, never much of it in one stretch.
  expect(cpu).toBeGreaterThan(100);
  expect(turns).toBeGreaterThan(50);
  expect(longest).toBeLessThan(100);
  expect(await store.take(3)).toEqual([entry(1), entry(2), entry(3)]);
}, 20_000);

test('model check (seeded): whatever the mix of appends, settles, spills, takes and restarts, the next start recovers exactly the unsettled entries', async () => {
  const op = fc.oneof(
    { arbitrary: fc.constant({ kind: 'append' as const, pick: 0 }), weight: 6 },
    { arbitrary: fc.nat(1000).map((pick) => ({ kind: 'settle' as const, pick })), weight: 4 },
    { arbitrary: fc.nat(1000).map((pick) => ({ kind: 'spill' as const, pick })), weight: 1 },
    { arbitrary: fc.nat(5).map((pick) => ({ kind: 'take' as const, pick })), weight: 1 },
    { arbitrary: fc.constant({ kind: 'restart' as const, pick: 0 }), weight: 1 },
  );
  await fc.assert(
    fc.asyncProperty(fc.array(op, { maxLength: 120 }), async (ops) => {
      const dir = tmpDir();
      const options = { dir, segmentBytes: 600 };
      let store = await openStore(options);
      let seq = 0;
      const live: number[] = []; // unsettled, in append order
      const held = new Set<number>(); // appended by this instance, not spilled
      const queue: number[] = []; // what take() owes, in order
      const check = async () => {
        const got = (await drain(store, 7)).map(seqOf);
        expect(got).toEqual(queue);
        queue.length = 0;
      };
      for (const { kind, pick } of ops) {
        if (kind === 'append') {
          expect(store.append(entry(++seq))).toBe(true);
          live.push(seq);
          held.add(seq);
        } else if (kind === 'settle' && live.length > 0) {
          const [n] = live.splice(pick % live.length, 1);
          store.settle(`k-${n}`);
          held.delete(n!);
          const q = queue.indexOf(n!);
          if (q >= 0) queue.splice(q, 1);
        } else if (kind === 'spill' && held.size > 0) {
          const n = [...held][pick % held.size]!;
          held.delete(n);
          store.spill(`k-${n}`);
          queue.push(n);
        } else if (kind === 'take') {
          await check();
        } else if (kind === 'restart') {
          await closeStore(store);
          store = await openStore(options);
          held.clear();
          queue.length = 0;
          queue.push(...live);
          expect(store.stats()).toMatchObject({ recovered: live.length, persisted: live.length });
          await check();
        }
      }
      await closeStore(store);
      store = await openStore(options);
      queue.length = 0;
      queue.push(...live);
      await check();
      for (const n of live) store.settle(`k-${n}`);
      await closeStore(store);
      expect(segments(dir).length).toBeLessThanOrEqual(1);
      fs.rmSync(dir, { recursive: true });
    }),
    { seed: 1717, numRuns: 60 },
  );
}, 25_000);
