/**
 * The app under test, in its own process: Express 5 serving a small HTML page, with one of
 *   none     no tracking
 *   fetch    the endpoint documentation's approach: one global fetch per pageview (our code)
 *   package  app.use(analytics()) from this package's build (delivery on its worker thread)
 *   inline   the same with `worker: false` (delivery on the main thread)
 *   toggle   the package, switched on and off by GET /__tracking/on|off (one process, so that
 *            tracked and untracked windows share the machine's state; see costCase in run.mjs)
 * GET /__stats reports memory, the main thread's CPU time and event-loop utilisation since the
 * last call, and the tracker's stats.
 * Prints {"port":N} when ready.
 */
import http from 'node:http';
import { performance } from 'node:perf_hooks';
import express from 'express';
import { analytics } from '../dist/index.js';
import { threadCpuMs } from './thread-cpu.mjs';

const [variant = 'none', sinkUrl = 'http://127.0.0.1:9'] = process.argv.slice(2);
const app = express();
let tracker;

if (variant === 'package' || variant === 'inline' || variant === 'toggle') {
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
    let on = true;
    app.get('/__tracking/:state', (req, res) => {
      on = req.params.state === 'on';
      res.end();
    });
    app.use((req, res, next) => (on ? middleware(req, res, next) : next()));
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

const page = `<!doctype html><html><head><title>Widget</title></head><body><h1>Widget</h1>${'<p>A fine widget for every purpose.</p>'.repeat(20)}</body></html>`;
let served = 0;
app.get('/', (_req, res) => {
  served++;
  res.type('html').send(page);
});

let elu = performance.eventLoopUtilization();
let cpu = threadCpuMs();
app.get('/__stats', (_req, res) => {
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
  });
});

const server = http.createServer(app);
server.keepAliveTimeout = 30_000;
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({ port: server.address().port })}\n`);
});
process.on('SIGTERM', async () => {
  server.close();
  await tracker?.close({ timeout: 500 });
  process.exit(0);
});
