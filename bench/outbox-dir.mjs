/**
 * The directory outbox on its own (not wired into delivery yet): append cost with sync
 * 'interval' and 'always', append + settle in a steady state, and open() of 100,000 entries
 * (time, and the longest the event loop was held meanwhile).
 *
 *   node bench/outbox-dir.mjs [events=200000] [dir=os.tmpdir()]
 *
 * The store's TypeScript source is compiled to a temporary directory first (not part of dist/).
 */
import fs from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { threadCpuMs } from './thread-cpu.mjs';

const require = createRequire(import.meta.url);
const ts = require('typescript');
const here = path.dirname(fileURLToPath(import.meta.url));

const events = Number(process.argv[2] ?? 200_000);
const base = fs.mkdtempSync(path.join(process.argv[3] ?? os.tmpdir(), 'zx-outbox-bench-'));

const moduleDir = path.join(base, 'module');
fs.mkdirSync(moduleDir);
for (const name of ['dir-store', 'dir-lock', 'record-codec', 'types']) {
  const source = fs.readFileSync(path.join(here, '../src/outbox', `${name}.ts`), 'utf8');
  const { outputText } = ts.transpileModule(source, {
    compilerOptions: { module: 'commonjs', target: 'es2022', esModuleInterop: true },
  });
  fs.writeFileSync(path.join(moduleDir, `${name}.js`), outputText);
}
const { createDirectoryOutbox } = require(path.join(moduleDir, 'dir-store.js'));

/** A pageview as the engine would keep it: ~250 bytes of JSON, the forwarded headers. */
function entry(n) {
  return {
    key: `0b7c5e9a-${String(n).padStart(4, '0')}-4d1e-9f3a-6c2b8e1d7a40`,
    body: JSON.stringify({
      type: 'pageview',
      url: `https://shop.example/products/widget-${n % 997}?utm_source=newsletter&utm_medium=email`,
      referrer: 'https://www.google.com/',
    }),
    headers: {
      'content-type': 'application/json',
      'user-agent':
        'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36',
      'x-forwarded-for': `203.0.113.${n % 250}`,
      'sec-ch-ua': '"Chromium";v="126", "Google Chrome";v="126"',
      'sec-ch-ua-mobile': '?0',
      'sec-ch-ua-platform': '"Windows"',
    },
    acceptedAt: 1_700_000_000_000 + n,
  };
}

const turn = () => new Promise((resolve) => setImmediate(resolve));
const cpuMs = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};
let dirs = 0;
const newDir = () => path.join(base, `d${++dirs}`);

/** Appends `events` entries, `perTurn` per event-loop turn (the worker gets them in batches). */
async function appendRun(
  label,
  options,
  { perTurn = 100, settleLag = -1, awaitSync = false } = {},
) {
  const entries = Array.from({ length: events }, (_, i) => entry(i + 1));
  const store = createDirectoryOutbox({ dir: newDir(), ...options });
  await store.open();
  const cpu0 = cpuMs();
  const t0 = performance.now();
  let appendMs = 0;
  for (let i = 0; i < events; i += perTurn) {
    const a = performance.now();
    for (let k = i; k < Math.min(events, i + perTurn); k++) {
      if (!store.append(entries[k])) throw new Error('refused');
      if (settleLag >= 0 && k >= settleLag) store.settle(entries[k - settleLag].key);
    }
    appendMs += performance.now() - a;
    if (awaitSync) await store.sync();
    else await turn();
  }
  await store.sync();
  const wall = performance.now() - t0;
  const cpu = cpuMs() - cpu0;
  const stats = store.stats();
  await store.close();
  const row = {
    run: label,
    events,
    'events/s': Math.round(events / (wall / 1000)),
    'µs/event (wall)': +((wall * 1000) / events).toFixed(2),
    'µs/event in append/settle': +((appendMs * 1000) / events).toFixed(2),
    'µs/event CPU (all threads)': +((cpu * 1000) / events).toFixed(2),
    'MB on disk at end': +(stats.bytes / 1048576).toFixed(1),
  };
  console.log(JSON.stringify(row));
  return row;
}

async function openRun(count) {
  const dir = newDir();
  const writer = createDirectoryOutbox({ dir, maxBytes: 1024 * 1024 * 1024 });
  await writer.open();
  for (let n = 1; n <= count; n++) {
    writer.append(entry(n));
    if (n % 1000 === 0) await turn();
  }
  const bytes = writer.stats().bytes;
  await writer.close();

  if (global.gc) global.gc();
  const heap0 = process.memoryUsage().heapUsed;
  const histogram = monitorEventLoopDelay({ resolution: 1 });
  let longest = 0;
  let longestCpu = 0;
  let last = performance.now();
  let lastCpu = threadCpuMs();
  let spinning = true;
  const spin = () => {
    const now = performance.now();
    const nowCpu = threadCpuMs();
    longest = Math.max(longest, now - last);
    longestCpu = Math.max(longestCpu, nowCpu - lastCpu);
    last = now;
    lastCpu = nowCpu;
    if (spinning) setImmediate(spin);
  };
  const store = createDirectoryOutbox({ dir, maxBytes: 1024 * 1024 * 1024 });
  histogram.enable();
  setImmediate(spin);
  const t0 = performance.now();
  await store.open();
  const openMs = performance.now() - t0;
  spinning = false;
  histogram.disable();
  if (global.gc) global.gc();
  const heapMB = (process.memoryUsage().heapUsed - heap0) / 1048576;
  const t1 = performance.now();
  let read = 0;
  for (;;) {
    const got = await store.take(1000);
    if (got.length === 0) break;
    read += got.length;
    for (const e of got) store.settle(e.key);
  }
  const drainMs = performance.now() - t1;
  await store.close();
  const row = {
    run: `open() of ${count} entries`,
    'MB on disk': +(bytes / 1048576).toFixed(1),
    'open ms': Math.round(openMs),
    'longest gap between loop turns, wall ms': +longest.toFixed(1),
    'longest gap between loop turns, thread CPU ms (10 ms ticks)': longestCpu,
    'monitorEventLoopDelay max ms': +(histogram.max / 1e6).toFixed(1),
    'monitorEventLoopDelay p99 ms': +(histogram.percentile(99) / 1e6).toFixed(1),
    'heap after open MB (index of 100k offsets)': global.gc
      ? +heapMB.toFixed(1)
      : 'run with --expose-gc',
    'take+settle all ms': Math.round(drainMs),
    read,
  };
  console.log(JSON.stringify(row));
  return row;
}

try {
  const load = os.loadavg().map((l) => l.toFixed(2));
  console.log(`node ${process.version}, ${os.cpus().length} CPUs, load ${load}, dir ${base}`);
  await appendRun("sync 'interval' (1 s), 100 appends/turn", { sync: 'interval' });
  await appendRun("sync 'always' (group commit), 100 appends/turn", { sync: 'always' });
  await appendRun(
    "sync 'always', caller awaits sync() per 100",
    { sync: 'always' },
    { awaitSync: true },
  );
  await appendRun("sync 'interval', 10 appends/turn", { sync: 'interval' }, { perTurn: 10 });
  await appendRun(
    "sync 'interval', append + settle (lag 1000)",
    { sync: 'interval', segmentBytes: 1024 * 1024 },
    { settleLag: 1000 },
  );
  await openRun(100_000);
} finally {
  fs.rmSync(base, { recursive: true, force: true });
}
