/**
 * Recovery of a large directory outbox while the app serves its first requests.
 *
 * 1. A tracker with `outbox: { dir }` takes N pageviews while the endpoint answers 503, then
 *    closes: they stay in the outbox (`stored`).
 * 2. A new tracker opens the same directory with the endpoint healthy (bench/sink.mjs, in its own
 *    process so that its work is not counted against this one), next to an HTTP server
 *    that is asked for a page every 5 ms from the moment the tracker is created. Measured: the
 *    page latencies (first, median, p99, max) while the outbox is read back and sent, the main
 *    thread's longest event-loop delay, and how long until every recovered event is delivered.
 *
 *   node bench/outbox-recovery.mjs [events=100000] [worker=true|false|both]
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import readline from 'node:readline';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { createTracker } from '../dist/index.js';
import { createTestCollector } from '../dist/testing/index.js';

const events = Number(process.argv[2] ?? 100_000);
const modes = (process.argv[3] ?? 'both') === 'both' ? [true, false] : [process.argv[3] === 'true'];
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function until(check, ms, what) {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

/** Fills a directory with `events` pageviews the endpoint refused (they stay in the outbox). */
async function fill(dir, collector) {
  const outage = collector.brownout({ status: 503 });
  const tracker = createTracker({
    trackingCode: 'recovery',
    host: collector.url,
    outbox: { dir, maxBytes: 1024 * 1024 * 1024 },
    // 250 visitor IPs would pass the endpoint's per-visitor limit: not what is measured here.
    visitorRateLimit: false,
    logger: false,
  });
  await until(() => tracker.stats().outbox?.state === 'open', 10_000, 'the outbox to open');
  for (let i = 0; i < events; i++) {
    tracker.trackPageview(`https://shop.example/products/${i}?utm_source=bench`, {
      ip: `203.0.113.${i % 250}`,
      userAgent: 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36',
    });
    if (i % 2000 === 1999) await sleep(5);
  }
  await until(
    () => (tracker.stats().outbox?.persisted ?? 0) >= events,
    120_000,
    'every event in the outbox',
  );
  await tracker.close({ timeout: 100 });
  const s = tracker.stats();
  outage.end();
  return s.stored;
}

function percentile(sorted, p) {
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))];
}

/** The sink in a process of its own: its URL, how many events it counted, and a stop. */
async function startSink() {
  const child = spawn(process.execPath, [new URL('./sink.mjs', import.meta.url).pathname, 'ok'], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const line = await new Promise((resolve) =>
    readline.createInterface({ input: child.stdout }).once('line', resolve),
  );
  const url = `http://127.0.0.1:${JSON.parse(line).port}`;
  const count = async () => {
    const response = await fetch(`${url}/count`);
    return (await response.json()).count;
  };
  return { url, count, stop: () => child.kill('SIGTERM') };
}

async function recover(dir, sink, worker) {
  const server = http.createServer((req, res) => {
    res.setHeader('content-type', 'text/html');
    res.end('<!doctype html><title>shop</title><h1>Shop</h1>');
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = server.address().port;
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const latencies = [];
  let asking = true;
  const ask = async () => {
    while (asking) {
      const started = performance.now();
      await new Promise((resolve, reject) => {
        http
          .get({ port, host: '127.0.0.1', path: '/', agent }, (res) => {
            res.resume();
            res.on('end', resolve);
          })
          .on('error', reject);
      });
      latencies.push(performance.now() - started);
      await sleep(5);
    }
  };
  const loop = monitorEventLoopDelay({ resolution: 5 });
  loop.enable();
  const before = await sink.count();
  const started = performance.now();
  const asking1 = ask();
  const tracker = createTracker({
    trackingCode: 'recovery',
    host: sink.url,
    outbox: { dir, maxBytes: 1024 * 1024 * 1024 },
    worker,
    logger: false,
  });
  await until(() => tracker.stats().outbox?.state === 'open', 60_000, 'the outbox to open');
  const openedMs = performance.now() - started;
  let arrivedNow = 0;
  const polling = setInterval(async () => {
    arrivedNow = (await sink.count()) - before;
  }, 50);
  await until(() => arrivedNow >= events, 300_000, 'every recovered event at the sink');
  clearInterval(polling);
  const deliveredMs = performance.now() - started;
  loop.disable();
  asking = false;
  await asking1;
  const stats = tracker.stats();
  await tracker.close();
  agent.destroy();
  await new Promise((resolve) => server.close(resolve));
  const sorted = [...latencies].sort((a, b) => a - b);
  return {
    worker,
    openedMs,
    deliveredMs,
    taken: stats.outbox?.taken ?? 0,
    first: latencies[0],
    median: percentile(sorted, 0.5),
    p99: percentile(sorted, 0.99),
    max: sorted[sorted.length - 1],
    requests: latencies.length,
    loopMaxMs: loop.max / 1e6,
  };
}

const collector = await createTestCollector({ maxEvents: 10 });
const sink = await startSink();
const rows = [];
for (const worker of modes) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'zx-recovery-'));
  try {
    const stored = await fill(dir, collector);
    const row = await recover(dir, sink, worker);
    rows.push({ stored, ...row });
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
await collector.close();
sink.stop();

const f = (n) => (n >= 100 ? n.toFixed(0) : n.toFixed(1));
console.log(
  `\nRecovery of ${events.toLocaleString('en')} events from a directory outbox (Node ${process.version})\n`,
);
console.log(
  '| delivery | left in the outbox | open (ms) | all delivered (s) | taken | page latency first / median / p99 / max (ms) | pages asked | main-thread event-loop max delay (ms) |',
);
console.log('| --- | --- | --- | --- | --- | --- | --- | --- |');
for (const r of rows) {
  console.log(
    `| ${r.worker ? 'worker (default)' : 'main thread (`worker: false`)'} | ${r.stored.toLocaleString('en')} | ${f(r.openedMs)} | ${(r.deliveredMs / 1000).toFixed(1)} | ${r.taken.toLocaleString('en')} | ${f(r.first)} / ${f(r.median)} / ${f(r.p99)} / ${f(r.max)} | ${r.requests} | ${f(r.loopMaxMs)} |`,
  );
}
