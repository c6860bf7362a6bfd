/**
 * The main thread's CPU time per tracked request, measured in one process without sockets, so
 * that nothing else (the load generator, the sink, other threads) blurs it:
 *   node bench/request-cost.mjs <sinkUrl> <variant> [requests] [perSecond]
 * variants:
 *   none      the same requests through a middleware that does nothing
 *   package   app.use(analytics()): delivery on its worker thread (the default)
 *   inline    analytics({ worker: false }): delivery on the main thread
 *   floor     the floor of issue 16 (bench/floor.mjs): one string at finish, batched to a worker
 *   floor-rules  the floor that also makes the reads the package's rules need (method, path,
 *            user agent, a stamp on rawHeaders; status and content type at finish): floor.mjs `rules`
 * Each request is a real http.IncomingMessage/ServerResponse pair handled by an Express 5 app
 * (so the request gets Express's prototype, as in production): the middleware runs, the
 * response "finishes" as a 200 HTML page, and the pageview goes to the sink. As Node's server
 * does for each request, the response gets Node's own kind of 'finish' listener, which
 * announces the finish on the `http.server.response.finish` diagnostics channel, and the
 * request is announced on `http.server.request.start` before the app sees it
 * (src/request/finish.ts). Requests come in bursts every 10 ms at `perSecond`, and the run ends
 * once every event is settled.
 *
 * CPU time is the main thread's own (Linux: /proc/thread-self/stat, 10 ms ticks), so the
 * worker's work is not counted; `cpuNs` is the same from /proc/thread-self/schedstat (ns), and
 * `workerNs` the delivery worker's own (package, floor). Prints
 * {"cpuMs":N,"cpuNs":N,"workerNs":N,"requests":N,"delivered":N}.
 *
 * BENCH_PROFILE=file.cpuprofile also writes a CPU profile of the measured part only (sampled
 * every 50 µs): what the request thread spends its time on, without start-up.
 */
import { channel } from 'node:diagnostics_channel';
import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import http from 'node:http';
import express from 'express';
import { analytics } from '../dist/index.js';
import { createFloor } from './floor.mjs';
import { threadCpuMs, threadCpuNs, threadIds } from './thread-cpu.mjs';

const [sinkUrl, variant = 'package', n = '20000', rate = '5000'] = process.argv.slice(2);
const total = Number(n);
const perTick = Math.max(1, Math.round(Number(rate) / 100));

const USER_AGENTS = [
  'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36',
  'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/125.0 Safari/537.36',
  'Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15',
  'Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1',
  'Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:127.0) Gecko/20100101 Firefox/127.0',
];
const PATHS = [
  '/',
  '/products/widget',
  '/products/gadget?utm_source=news&ref=x',
  '/cart',
  '/about',
];

/** Threads before any delivery worker: the delivery worker is the busiest one that came later. */
const startThreads = new Set(threadIds());
let middleware;
let tracker;
let floor;
if (variant === 'floor' || variant === 'floor-rules') {
  floor = createFloor(sinkUrl, { rules: variant === 'floor-rules' });
  await floor.ready;
  middleware = floor.middleware;
} else if (variant === 'none') {
  middleware = (_req, _res, next) => next();
} else if (variant === 'package' || variant === 'inline') {
  middleware = analytics({
    trackingCode: 'bench',
    host: sinkUrl,
    logger: false,
    visitorRateLimit: false,
    maxQueueSize: total,
    worker: variant === 'package',
  });
  tracker = middleware.tracker;
} else {
  throw new Error(`unknown variant ${variant}`);
}

const app = express();
app.use(middleware);
app.use((_req, res) => {
  res.statusCode = 200;
  res.setHeader('content-type', 'text/html; charset=utf-8');
  res.emit('finish');
});

const socket = { remoteAddress: '203.0.113.9', remotePort: 50000, encrypted: false };
let made = 0;
const requestStart = channel('http.server.request.start');
const responseFinish = channel('http.server.response.finish');

/** What Node's server listens with on every response's 'finish' (lib/_http_server.js). */
function serverFinish(req, res) {
  if (responseFinish.hasSubscribers) {
    responseFinish.publish({ request: req, response: res, socket, server: undefined });
  }
}

function request() {
  const i = made++;
  const req = new http.IncomingMessage(socket);
  req.method = 'GET';
  req.url = PATHS[i % PATHS.length];
  req.headers = {
    host: 'shop.example',
    'user-agent': USER_AGENTS[i % USER_AGENTS.length],
    accept: 'text/html',
    referer: 'https://shop.example/',
  };
  const res = new http.ServerResponse(req);
  res.on('finish', serverFinish.bind(undefined, req, res));
  if (requestStart.hasSubscribers) {
    requestStart.publish({ request: req, response: res, socket, server: undefined });
  }
  app(req, res);
}

/** Until the floor's worker has answered everything it was given. */
async function floorDrained() {
  for (;;) {
    const { answered, written, queued } = await floor.count();
    if (queued === 0 && answered === written) return answered;
    await new Promise((r) => setTimeout(r, 5));
  }
}

// Warm up (JIT, the bot cache, the worker's start), then measure.
for (let i = 0; i < 2000; i++) request();
await tracker?.flush();
if (floor) {
  await new Promise((r) => setTimeout(r, 50));
  await floorDrained();
}

const profile = process.env.BENCH_PROFILE;
const session = profile ? new Session() : undefined;
if (session) {
  session.connect();
  await session.post('Profiler.enable');
  await session.post('Profiler.setSamplingInterval', { interval: 50 });
  await session.post('Profiler.start');
}
let workerTid = floor?.tid;
if (tracker) {
  let best = -1;
  for (const tid of threadIds()) {
    const ns = startThreads.has(tid) ? -1 : threadCpuNs(tid);
    if (ns > best) [best, workerTid] = [ns, tid];
  }
}
const before = threadCpuMs();
const beforeNs = threadCpuNs();
const workerBeforeNs = workerTid === undefined ? 0 : threadCpuNs(workerTid);
made = 0;
await new Promise((resolve) => {
  const timer = setInterval(() => {
    for (let i = 0; i < perTick && made < total; i++) request();
    if (made >= total) {
      clearInterval(timer);
      resolve();
    }
  }, 10);
});
await tracker?.flush();
if (floor) {
  await new Promise((r) => setTimeout(r, 50));
  await floorDrained();
}
const cpuMs = threadCpuMs() - before;
const cpuNs = threadCpuNs() - beforeNs;
const workerNs = workerTid === undefined ? 0 : threadCpuNs(workerTid) - workerBeforeNs;
if (session) {
  const { profile: result } = await session.post('Profiler.stop');
  writeFileSync(profile, JSON.stringify(result));
  session.disconnect();
}
const delivered = tracker
  ? tracker.stats().delivered - 2000
  : floor
    ? (await floor.count()).answered - 2000
    : 0;
await tracker?.close();
await floor?.close();
process.stdout.write(`${JSON.stringify({ cpuMs, cpuNs, workerNs, requests: total, delivered })}\n`);
