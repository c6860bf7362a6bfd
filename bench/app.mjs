/**
 * The app under test, in its own process: Express 5 serving a small HTML page, with one of
 *   none     no tracking
 *   fetch    the endpoint documentation's approach: one global fetch per pageview (our code)
 *   package  app.use(analytics()) from this package's build (delivery on its worker thread)
 *   inline   the same with `worker: false` (delivery on the main thread)
 *   alt      the package at its defaults from another build: BENCH_ALT_DIST=/path/to/dist
 *   floor    the floor of issue 16 (bench/floor.mjs): read URL, IP and user agent at finish,
 *            batch them to a worker that writes raw requests on 10 keep-alive sockets
 *   floor-rules  the floor that also makes the reads the package's rules need (floor.mjs `rules`)
 *   toggle   the package, the floor and floor + rules in one process, switched by
 *            GET /__tracking/<mode>: `on` (or `package`), `floor`, `floor-rules`, `off` (so that
 *            the windows compared share the machine's state; see costCase and switchedCase in
 *            run.mjs); GET /__cycles runs such cycles in the app itself and answers with the
 *            figures of each window (costCase)
 * GET /__stats reports memory, the main thread's CPU time and event-loop utilisation since the
 * last call, the tracker's stats, and (cumulative, ns, from /proc/self/task/<tid>/schedstat) the
 * CPU time of the main thread, the package's delivery worker, the floor's worker and all other
 * threads, with the events each delivered.
 * Prints {"port":N} when ready.
 */
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { performance } from 'node:perf_hooks';
import express from 'express';
import { listenForBench, PAGE } from './bench-app.mjs';
import { createFloor } from './floor.mjs';
import { threadCpuMs, threadCpuNs, threadIds } from './thread-cpu.mjs';

const [variant = 'none', sinkUrl = 'http://127.0.0.1:9'] = process.argv.slice(2);
// `alt`: the package from another build (BENCH_ALT_DIST, a dist/ directory), to compare two
// versions in the same rounds.
const dist =
  variant === 'alt'
    ? pathToFileURL(path.join(process.env.BENCH_ALT_DIST, 'index.js')).href
    : '../dist/index.js';
const { analytics } = await import(dist);
const app = express();
// The bench's own routes, ahead of any tracking (the floor would count them as pages).
const control = express.Router();
app.use(control);
let tracker;
let floor;
if (variant === 'floor' || variant === 'floor-rules' || variant === 'toggle') {
  floor = createFloor(sinkUrl, {
    rules: variant === 'floor-rules',
    // BENCH_FLOOR_EXTRA_US (run.mjs): busy CPU per event on the floor + rules worker only.
    extraUs: variant === 'floor-rules' ? Number(process.env.BENCH_FLOOR_EXTRA_US ?? 0) : 0,
  });
  await floor.ready;
}
/**
 * The toggle app's floor + rules (its worker's CPU is not reported: only requests/s are read),
 * with BENCH_FLOOR_EXTRA_US as in the `floor-rules` variant.
 */
const floorRules =
  variant === 'toggle'
    ? createFloor(sinkUrl, { rules: true, extraUs: Number(process.env.BENCH_FLOOR_EXTRA_US ?? 0) })
    : undefined;
await floorRules?.ready;
/** Threads there before any delivery worker (the main thread, V8's and libuv's helpers). */
const startThreads = new Set(threadIds());
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

if (variant === 'floor' || variant === 'floor-rules') {
  app.use(floor.middleware);
} else if (['package', 'alt', 'inline', 'toggle'].includes(variant)) {
  const middleware = analytics({
    worker: variant !== 'inline',
    trackingCode: 'bench',
    host: sinkUrl,
    logger: false,
    // Every request comes from 127.0.0.1: the per-visitor guard would (rightly) drop them.
    visitorRateLimit: false,
  });
  tracker = middleware.tracker;
  if (variant === 'toggle') {
    let mode = 'package';
    control.get('/__tracking/:state', (req, res) => {
      const state = req.params.state;
      mode = state === 'on' ? 'package' : state;
      res.end();
    });
    // The fixed-rate cost (run.mjs costCase): the app switches itself through `cycles` of `modes`,
    // in windows of `window` ms, and answers with each window's figures once done. In-process, so
    // no control request lands in a window, and the windows can be short (more of them, each
    // mode's closer in time to the others'): the first `settle` ms of each are not counted, as
    // the last mode's batches (the package's cross after 50 ms, the floor's after 20) and their
    // reports still land there. Warm-up first: the modes in turn, 100 ms each, for `warm` ms.
    control.get('/__cycles', async (req, res) => {
      const { window, settle, cycles, warm } = Object.fromEntries(
        ['window', 'settle', 'cycles', 'warm'].map((k) => [k, Number(req.query[k])]),
      );
      const modes = String(req.query.modes).split(',');
      for (let t = 0; t < warm; t += 100) {
        mode = modes[(t / 100) % modes.length];
        await sleep(100);
      }
      const windows = [];
      for (let w = 0; w < cycles * modes.length; w++) {
        mode = modes[w % modes.length];
        await sleep(settle);
        const a = { served, ...(await threadStats()) };
        await sleep(window - settle);
        const b = { served, ...(await threadStats()) };
        windows.push({ mode, a, b });
      }
      mode = 'off';
      res.json(windows);
    });
    app.use((req, res, next) =>
      mode === 'package'
        ? middleware(req, res, next)
        : mode === 'floor'
          ? floor.middleware(req, res, next)
          : mode === 'floor-rules'
            ? floorRules.middleware(req, res, next)
            : next(),
    );
  } else {
    app.use(middleware);
  }
} else if (variant === 'fetch') {
  // What the endpoint's documentation shows: skip assets and /api/, then fetch per pageview.
  app.use((req, res, next) => {
    if (!/\.(js|css|png|jpg|ico)$/.test(req.path) && !req.path.startsWith('/api/')) {
      fetch(`${sinkUrl}/e/bench`, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'user-agent': req.headers['user-agent'] ?? '',
          'x-forwarded-for': req.ip ?? '',
        },
        body: JSON.stringify({
          type: 'pageview',
          url: `http://${req.headers.host}${req.originalUrl}`,
        }),
      }).catch(() => undefined);
    }
    next();
  });
} else if (variant !== 'none') {
  throw new Error(`unknown variant ${variant}`);
}

let served = 0;
app.get('/', (_req, res) => {
  served++;
  res.type('html').send(PAGE);
});

let elu = performance.eventLoopUtilization();
let cpu = threadCpuMs();
/** The package's delivery worker: the busiest thread that was not there at the start. */
let workerTid;
function deliveryWorkerTid() {
  if (workerTid !== undefined || tracker === undefined || variant === 'inline') return workerTid;
  let best = 0;
  for (const tid of threadIds()) {
    if (startThreads.has(tid) || tid === floor?.tid) continue;
    const ns = threadCpuNs(tid);
    if (ns > best) {
      best = ns;
      workerTid = tid;
    }
  }
  return workerTid;
}

async function threadStats() {
  let all = 0;
  for (const tid of threadIds()) all += threadCpuNs(tid) || 0;
  const mainNs = threadCpuNs();
  const wid = deliveryWorkerTid();
  const workerNs = wid === undefined ? 0 : threadCpuNs(wid) || 0;
  const floorNs = floor ? threadCpuNs(floor.tid) || 0 : 0;
  return {
    mainNs,
    workerNs,
    floorNs,
    othersNs: all - mainNs - workerNs - floorNs,
    packageDelivered: tracker?.stats().delivered ?? 0,
    floorAnswered: floor ? (await floor.count()).answered : 0,
  };
}

control.get('/__stats', async (_req, res) => {
  const threads = await threadStats();
  const now = performance.eventLoopUtilization();
  const delta = performance.eventLoopUtilization(now, elu);
  elu = now;
  const cpuNow = threadCpuMs();
  const cpuMs = cpuNow - cpu;
  cpu = cpuNow;
  const mem = process.memoryUsage();
  res.json({
    served,
    rss: mem.rss,
    heapUsed: mem.heapUsed,
    elu: delta.utilization,
    active: delta.active,
    cpuMs,
    tracker: tracker?.stats(),
    threads,
  });
});

listenForBench(app, async () => {
  await tracker?.close({ timeout: 500 });
  await floor?.close();
  await floorRules?.close();
});
