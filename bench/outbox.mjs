/**
 * What the directory outbox costs an Express app (issue 17), in one run, interleaved rounds:
 *   package   analytics() at its defaults (no outbox)
 *   interval  analytics({ outbox: { dir } })                  (sync 'interval', the default)
 *   always    analytics({ outbox: { dir, sync: 'always' } })
 *
 * All three middlewares live in one app process (each tracker with its own worker and outbox
 * directory) and the app is switched between them: on a shared machine whose load comes in bursts,
 * many short windows compared within symmetric cycles (package, interval, always, always,
 * interval, package: a linear drift cancels out of each cycle) hold up far better than one process
 * per variant measured seconds apart. Figures are medians over cycles of per-cycle ratios.
 * 1. Full load: in each window a fresh autocannon run of WINDOW_MS at CONNECTIONS connections:
 *    requests/s, p50/p99; then the CPU time of the delivery threads (the threads that appear once
 *    the trackers exist: their workers, and libuv's pool, which runs the outbox's fdatasyncs) per
 *    event the window's tracker delivered; at the end, after a 3 s drain, each tracker's delivered
 *    events over the requests it saw.
 * 2. A fixed rate (RATE requests/s, well under saturation), the same cycles: the main thread's CPU
 *    time per request (schedstat) and the delivery threads' per delivered event. Writes happen on
 *    the worker: the main thread's figure should not move.
 * 3. Memory per spilled event: a standalone tracker with `outbox: { dir }`, the endpoint
 *    black-holed; 10,000 events (the memory bound), then SPILL - 10,000 more, which wait on disk
 *    only: RSS (all threads), and the main thread's and the delivery worker's heaps after a GC.
 *
 * Prints a markdown table (progress on stderr). About 3 minutes with the defaults.
 *   npm run build && node bench/outbox.mjs
 * Environment: OUTBOX_CYCLES (6, at full load), OUTBOX_RATE_CYCLES (3), OUTBOX_WINDOW_MS (2000),
 * OUTBOX_CONNECTIONS (50), OUTBOX_RATE (600), OUTBOX_SPILL (100000), OUTBOX_DIR (os.tmpdir()).
 *
 * dist/ is copied first (other work may rebuild it mid-run); the copy and the outbox directories
 * are removed at the end. Linux only (thread CPU from /proc).
 */
import { spawn } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { listenForBench, PAGE } from './bench-app.mjs';
import { cycleMean } from './cycles.mjs';
import { threadCpuNs, threadIds } from './thread-cpu.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const VARIANTS = ['package', 'interval', 'always'];
const UA =
  'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36';

/** The middleware options of a variant; `dir` is where its outbox goes. */
function variantOptions(variant, dir) {
  if (variant === 'interval') return { outbox: { dir } };
  if (variant === 'always') return { outbox: { dir, sync: 'always' } };
  return {};
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// ---- role: the app ------------------------------------------------------------------------------

/**
 * Express 5 serving a small HTML page through one of `modes` (the first at start; GET
 * /__tracking/<mode> switches). GET /__stats: requests served and events delivered per mode, the
 * main thread's and the delivery threads' CPU time (ns, cumulative), the trackers' stats.
 * Prints {"port":N}.
 */
async function runApp(dist, sinkUrl, base, modeList) {
  const { analytics } = await import(pathToFileURL(path.join(dist, 'index.js')).href);
  const { default: express } = await import('express');
  const modes = modeList.split(',');
  // Threads there before any tracker (the main thread, V8's helpers): the others are delivery
  // workers and libuv's pool (which runs the outbox's fdatasyncs).
  const startThreads = new Set(threadIds());
  const app = express();
  const control = express.Router();
  app.use(control);
  const middlewares = {};
  for (const mode of modes) {
    middlewares[mode] = analytics({
      trackingCode: 'bench',
      host: sinkUrl,
      logger: false,
      // Every request comes from 127.0.0.1: the per-visitor guard would drop them.
      visitorRateLimit: false,
      ...variantOptions(mode, path.join(base, `${mode}-${process.pid}`)),
    });
  }
  let current = modes[0];
  const served = Object.fromEntries(modes.map((m) => [m, 0]));
  control.get('/__tracking/:mode', (req, res) => {
    current = req.params.mode;
    res.end();
  });
  const trackers = Object.values(middlewares).map((m) => m.tracker);
  control.get('/__stats', (_req, res) => {
    let deliveryNs = 0;
    for (const tid of threadIds()) if (!startThreads.has(tid)) deliveryNs += threadCpuNs(tid) || 0;
    const mem = process.memoryUsage();
    res.json({
      served: { ...served },
      mainNs: threadCpuNs(),
      deliveryNs,
      delivered: Object.fromEntries(
        modes.map((m) => [m, middlewares[m].tracker.stats().delivered]),
      ),
      rss: mem.rss,
      stats: Object.fromEntries(modes.map((m) => [m, middlewares[m].tracker.stats()])),
    });
  });
  app.use((req, res, next) => middlewares[current](req, res, next));
  app.get('/', (_req, res) => {
    served[current]++;
    res.type('html').send(PAGE);
  });
  listenForBench(app, () => Promise.all(trackers.map((t) => t.close({ timeout: 500 }))));
}

// ---- role: the spill test -----------------------------------------------------------------------

/**
 * Preloaded (`--import`) into every thread of the spill process: a worker thread answers
 * 'measure' on a BroadcastChannel with its heap in use after a full GC. The package's own message
 * port is left alone, and (unlike a heap snapshot) the worker is not held long enough for the
 * main thread's watchdog to take it for stuck.
 */
const HEAP_PRELOAD = `data:text/javascript,${encodeURIComponent(
  "import { BroadcastChannel, isMainThread } from 'node:worker_threads';" +
    "import v8 from 'node:v8';" +
    'if (!isMainThread) {' +
    "  const channel = new BroadcastChannel('zx-bench-heap');" +
    '  channel.onmessage = (e) => {' +
    "    if (e.data !== 'measure') return;" +
    '    globalThis.gc?.(); globalThis.gc?.();' +
    '    channel.postMessage(v8.getHeapStatistics().used_heap_size);' +
    '  };' +
    '  channel.unref();' +
    '}',
)}`;

/** The delivery worker's heap in use after a GC (see HEAP_PRELOAD); NaN without an answer. */
async function workerHeapBytes() {
  const { BroadcastChannel } = await import('node:worker_threads');
  const channel = new BroadcastChannel('zx-bench-heap');
  try {
    return await new Promise((resolve) => {
      const timer = setTimeout(() => resolve(Number.NaN), 5000);
      channel.onmessage = (e) => {
        clearTimeout(timer);
        resolve(e.data);
      };
      channel.postMessage('measure');
    });
  } finally {
    channel.close();
  }
}

/**
 * A standalone tracker with `outbox: { dir }` against a black-holed endpoint: 10,000 events (the
 * memory bound), then `total - 10,000` more, which wait on disk only. At the start, after the
 * first 10,000 and at the end: RSS, the main thread's heap after a GC and the delivery worker's.
 * Prints one JSON line.
 */
async function runSpill(dist, sinkUrl, dir, total) {
  const { createTracker } = await import(pathToFileURL(path.join(dist, 'index.js')).href);
  const tracker = createTracker({
    trackingCode: 'bench',
    host: sinkUrl,
    logger: false,
    visitorRateLimit: false,
    // Requests to the black hole hang; a short timeout keeps the retries (never given up with an
    // outbox) turning over, as in a real outage.
    timeout: 2000,
    outbox: { dir },
  });
  const waitFor = async (check, what) => {
    const end = Date.now() + 60_000;
    while (!check(tracker.stats())) {
      if (Date.now() > end)
        throw new Error(`timed out: ${what} ${JSON.stringify(tracker.stats())}`);
      await sleep(50);
    }
  };
  const sample = async () => {
    await sleep(1000);
    const worker = await workerHeapBytes();
    globalThis.gc?.();
    globalThis.gc?.();
    const m = process.memoryUsage();
    return { rss: m.rss, heap: m.heapUsed, worker };
  };
  await waitFor((s) => s.outbox?.state === 'open', 'outbox open');
  const samples = [await sample()];
  // req.track-sized events with a visitor (the forwarded headers), a batch per event-loop turn.
  const send = async (from, to) => {
    for (let n = from; n < to; n++) {
      void tracker.trackEvent(
        'signup',
        { plan: 'pro', n },
        {
          url: `https://shop.example/products/widget-${n % 997}?utm_source=newsletter`,
          userAgent: UA,
          ip: `203.0.113.${n % 250}`,
        },
      );
      if (n % 1000 === 999) await new Promise((resolve) => setImmediate(resolve));
    }
  };
  const bound = 10_000;
  await send(0, bound);
  await waitFor((s) => (s.outbox?.written ?? 0) >= bound, 'first batch written');
  samples.push(await sample());
  const t0 = performance.now();
  await send(bound, total);
  const handMs = performance.now() - t0;
  await waitFor((s) => (s.outbox?.written ?? 0) >= total, 'all written');
  const writtenMs = performance.now() - t0;
  samples.push(await sample());
  const s = tracker.stats();
  await tracker.close({ timeout: 200 });
  process.stdout.write(
    `${JSON.stringify({
      total,
      spilled: s.outbox.spilled,
      written: s.outbox.written,
      bytesOnDisk: s.outbox.bytes,
      handMs,
      writtenMs,
      samples,
      stored: tracker.stats().stored,
    })}\n`,
  );
}

// ---- role: the bench ----------------------------------------------------------------------------

const CYCLES = Number(process.env.OUTBOX_CYCLES ?? 6);
const RATE_CYCLES = Number(process.env.OUTBOX_RATE_CYCLES ?? 3);
const CONNECTIONS = Number(process.env.OUTBOX_CONNECTIONS ?? 50);
const RATE = Number(process.env.OUTBOX_RATE ?? 600);
const WINDOW_MS = Number(process.env.OUTBOX_WINDOW_MS ?? 2000);
const SPILL = Number(process.env.OUTBOX_SPILL ?? 100_000);
const DRAIN_MS = 3000;
/** After a switch: the last window's events finish delivery before the next is measured. */
const SETTLE_MS = 300;
const CYCLE = ['package', 'interval', 'always', 'always', 'interval', 'package'];

const children = new Set();
process.on('exit', () => children.forEach((c) => c.kill('SIGKILL')));

/** Starts a process (this script in a role, or a bench script) and waits for its {"port"} line. */
function start(args) {
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  children.add(child);
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (d) => {
      out += d;
      if (!out.includes('\n')) return;
      const { port } = JSON.parse(out.split('\n')[0]);
      resolve({
        url: `http://127.0.0.1:${port}`,
        stop: () =>
          new Promise((r) => {
            child.once('exit', r);
            child.kill('SIGTERM');
            children.delete(child);
          }),
      });
    });
    child.once('exit', (code) => reject(new Error(`${args.join(' ')} exited with ${code}`)));
  });
}

async function runToEnd(args) {
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  children.add(child);
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  const code = await new Promise((r) => child.once('exit', r));
  children.delete(child);
  if (code !== 0) throw new Error(`${args.join(' ')} exited with ${code}`);
  return JSON.parse(out);
}

const getJson = async (url) => (await fetch(url)).json();
const median = (xs) => {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (s.length === 0) return Number.NaN;
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const fmt = (n, digits = 0) =>
  Number.isFinite(n)
    ? Number(n).toLocaleString('en-US', {
        maximumFractionDigits: digits,
        minimumFractionDigits: digits,
      })
    : '-';

async function load(url, options = {}) {
  const { default: autocannon } = await import('autocannon');
  return autocannon({
    url: `${url}/`,
    connections: CONNECTIONS,
    duration: WINDOW_MS / 1000,
    headers: { 'user-agent': UA, accept: 'text/html' },
    ...options,
  });
}

/** Full load: CYCLES cycles of autocannon windows, one mode per window. */
async function fullLoad(app) {
  for (const mode of VARIANTS) {
    await fetch(`${app.url}/__tracking/${mode}`);
    await load(app.url, { duration: 1 }); // warm-up: each tracker's worker and outbox get going
  }
  const cycles = [];
  for (let c = 0; c < CYCLES; c++) {
    const windows = [];
    for (const mode of CYCLE) {
      await fetch(`${app.url}/__tracking/${mode}`);
      await sleep(SETTLE_MS);
      const a = await getJson(`${app.url}/__stats`);
      const r = await load(app.url);
      const b = await getJson(`${app.url}/__stats`);
      windows.push({
        mode,
        rps: r.requests.average,
        p50: r.latency.p50,
        p99: r.latency.p99,
        errors: r.errors + r.timeouts + r.non2xx,
        deliveryUsPerEvent:
          (b.deliveryNs - a.deliveryNs) / 1000 / (b.delivered[mode] - a.delivered[mode]),
      });
    }
    const cycle = Object.fromEntries(
      VARIANTS.map((v) => [
        v,
        Object.fromEntries(
          ['rps', 'p50', 'p99', 'errors', 'deliveryUsPerEvent'].map((k) => [
            k,
            cycleMean(windows, v, k),
          ]),
        ),
      ]),
    );
    cycles.push(cycle);
    console.error(
      `full load, cycle ${c + 1}: ${VARIANTS.map((v) => `${v} ${fmt(cycle[v].rps)} req/s p99 ${fmt(cycle[v].p99)} ms`).join(', ')}`,
    );
  }
  await sleep(DRAIN_MS);
  const end = await getJson(`${app.url}/__stats`);
  const deliveredPct = Object.fromEntries(
    VARIANTS.map((v) => [v, (100 * end.delivered[v]) / end.served[v]]),
  );
  return { cycles, deliveredPct, stats: end.stats };
}

/** A fixed rate: RATE_CYCLES cycles of windows in one autocannon run. */
async function fixedRate(app) {
  const run = load(app.url, {
    connections: 10,
    overallRate: RATE,
    // Past the last window (the stats requests between windows take a little time too).
    duration: (1000 + RATE_CYCLES * CYCLE.length * WINDOW_MS) / 1000 + 3,
  });
  await sleep(1000);
  const cycles = [];
  for (let c = 0; c < RATE_CYCLES; c++) {
    const windows = [];
    for (const mode of CYCLE) {
      await fetch(`${app.url}/__tracking/${mode}`);
      await sleep(SETTLE_MS);
      const a = await getJson(`${app.url}/__stats`);
      await sleep(WINDOW_MS - SETTLE_MS);
      const b = await getJson(`${app.url}/__stats`);
      windows.push({
        mode,
        mainUs: (b.mainNs - a.mainNs) / 1000 / (b.served[mode] - a.served[mode]),
        deliveryUsPerEvent:
          (b.deliveryNs - a.deliveryNs) / 1000 / (b.delivered[mode] - a.delivered[mode]),
        rate: ((b.served[mode] - a.served[mode]) * 1000) / (WINDOW_MS - SETTLE_MS),
      });
    }
    const cycle = Object.fromEntries(
      VARIANTS.map((v) => [
        v,
        Object.fromEntries(
          ['mainUs', 'deliveryUsPerEvent', 'rate'].map((k) => [k, cycleMean(windows, v, k)]),
        ),
      ]),
    );
    cycles.push(cycle);
    console.error(
      `fixed rate, cycle ${c + 1}: main µs/request ${VARIANTS.map((v) => `${v} ${fmt(cycle[v].mainUs, 1)}`).join(', ')}`,
    );
  }
  await run;
  return cycles;
}

async function main() {
  const built = path.join(here, '../dist');
  if (
    !existsSync(path.join(built, 'index.js')) ||
    !existsSync(path.join(built, 'delivery-worker.js'))
  ) {
    throw new Error('dist/ is missing or incomplete: run `npm run build` first.');
  }
  // A copy of the build inside the project (so that its imports resolve from node_modules).
  mkdirSync(path.join(here, '../.tmp'), { recursive: true });
  const dist = mkdtempSync(path.join(here, '../.tmp/outbox-bench-dist-'));
  const base = mkdtempSync(path.join(process.env.OUTBOX_DIR ?? os.tmpdir(), 'zx-outbox-bench-'));
  cpSync(built, dist, { recursive: true });
  const self = fileURLToPath(import.meta.url);
  const sink = await start([path.join(here, 'sink.mjs'), 'ok']);
  const blackhole = await start([path.join(here, 'sink.mjs'), 'blackhole']);
  const started = Date.now();
  const loadAtStart = os.loadavg();
  try {
    const app = await start([self, 'app', dist, sink.url, base, VARIANTS.join(',')]);
    let full;
    let fixed;
    try {
      full = await fullLoad(app);
      fixed = await fixedRate(app);
    } finally {
      await app.stop();
    }
    const spill = await runToEnd([
      '--expose-gc',
      '--import',
      HEAP_PRELOAD,
      self,
      'spill',
      dist,
      blackhole.url,
      path.join(base, 'spill'),
      String(SPILL),
    ]);
    console.error(`spill: ${JSON.stringify(spill)}`);

    const { cycles } = full;
    const ratio = (v, key) => median(cycles.map((c) => c[v][key] / c.package[key]));
    const perCycle = (v, key, digits) =>
      cycles.map((c) => fmt(c[v][key] / c.package[key], digits)).join(', ');
    const lines = [];
    lines.push(
      `Node ${process.version}, ${os.cpus().length} CPUs, load average ${loadAtStart.map((l) => l.toFixed(1)).join(' ')} at start, ` +
        `${os
          .loadavg()
          .map((l) => l.toFixed(1))
          .join(' ')} at the end; ${fmt((Date.now() - started) / 1000)} s in all. ` +
        `Full load: ${CYCLES} cycles of ${WINDOW_MS / 1000} s windows at ${CONNECTIONS} connections; ` +
        `fixed rate: ${RATE_CYCLES} cycles at ${fmt(RATE)} requests/s. Medians over cycles.`,
      '',
      '| variant | requests/s | vs package | p50 ms | p99 ms | p99 vs package | delivered after 3 s drain | delivery threads µs/event, full load | main thread µs/request, fixed rate | main minus package, µs | delivery threads µs/event, fixed rate |',
      '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |',
    );
    const label = {
      package: 'package, defaults (no outbox)',
      interval: "`outbox: { dir }` (sync 'interval')",
      always: "`outbox: { dir, sync: 'always' }`",
    };
    for (const v of VARIANTS) {
      const col = (key) => cycles.map((c) => c[v][key]);
      const mainDiff = median(fixed.map((c) => c[v].mainUs - c.package.mainUs));
      lines.push(
        `| ${label[v]} | ${fmt(median(col('rps')))} | ${fmt(ratio(v, 'rps'), 3)} | ` +
          `${fmt(median(col('p50')), 1)} | ${fmt(median(col('p99')), 1)} | ${fmt(ratio(v, 'p99'), 2)} | ` +
          `${fmt(full.deliveredPct[v], 2)} % | ${fmt(median(col('deliveryUsPerEvent')), 1)} | ` +
          `${fmt(median(fixed.map((c) => c[v].mainUs)), 1)} | ${v === 'package' ? '-' : fmt(mainDiff, 1)} | ` +
          `${fmt(median(fixed.map((c) => c[v].deliveryUsPerEvent)), 1)} |`,
      );
    }
    const errors = cycles.reduce(
      (sum, c) => sum + VARIANTS.reduce((x, v) => x + c[v].errors, 0),
      0,
    );
    lines.push(
      '',
      `Per cycle, requests/s vs package: interval ${perCycle('interval', 'rps', 3)}; always ${perCycle('always', 'rps', 3)}. ` +
        `p99 vs package: interval ${perCycle('interval', 'p99', 2)}; always ${perCycle('always', 'p99', 2)}. ` +
        `Load errors: ${errors}.`,
      '',
      `At the fixed rate, main thread minus package (µs/request) per cycle: interval ${fixed.map((c) => fmt(c.interval.mainUs - c.package.mainUs, 1)).join(', ')}; ` +
        `always ${fixed.map((c) => fmt(c.always.mainUs - c.package.mainUs, 1)).join(', ')}. ` +
        `Rates reached (package/interval/always): ${fixed.map((c) => VARIANTS.map((v) => fmt(c[v].rate)).join('/')).join(', ')} requests/s.`,
    );
    const r = spill;
    const spilled = r.spilled;
    const mb = (x) => fmt(x / 2 ** 20, 1);
    const per = (a, b) => `${fmt((b - a) / spilled)} bytes`;
    lines.push(
      '',
      `Spilled to the outbox (endpoint black-holed, \`outbox: { dir }\`, \`trackEvent\` with a visitor, 1,000 per turn): ` +
        `${fmt(SPILL)} events, ${fmt(spilled)} waiting on disk only (the rest in memory), ${mb(r.bytesOnDisk)} MB on disk; ` +
        `handing over the last ${fmt(SPILL - 10_000)} took ${fmt(r.handMs)} ms, all written ${fmt(r.writtenMs)} ms after the first.`,
      '',
      `| memory (MB) | at open | ${fmt(10_000)} in memory | + ${fmt(SPILL - 10_000)} (${fmt(spilled)} spilled) | per spilled event |`,
      '| --- | --- | --- | --- | --- |',
      `| RSS, all threads | ${mb(r.samples[0].rss)} | ${mb(r.samples[1].rss)} | ${mb(r.samples[2].rss)} | ${per(r.samples[1].rss, r.samples[2].rss)} |`,
      `| main thread heap after GC | ${mb(r.samples[0].heap)} | ${mb(r.samples[1].heap)} | ${mb(r.samples[2].heap)} | ${per(r.samples[1].heap, r.samples[2].heap)} |`,
      `| delivery worker heap after GC | ${mb(r.samples[0].worker)} | ${mb(r.samples[1].worker)} | ${mb(r.samples[2].worker)} | ${per(r.samples[1].worker, r.samples[2].worker)} |`,
    );
    console.log(lines.join('\n'));
  } finally {
    await sink.stop();
    await blackhole.stop();
    rmSync(dist, { recursive: true, force: true });
    rmSync(base, { recursive: true, force: true });
  }
}

const [role, ...rest] = process.argv.slice(2);
if (role === 'app') {
  await runApp(...rest);
} else if (role === 'spill') {
  await runSpill(rest[0], rest[1], rest[2], Number(rest[3]));
} else {
  await main().catch((error) => {
    console.error(error);
    process.exitCode = 1;
  });
}
