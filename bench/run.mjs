/**
 * `npm run bench`: measures side by side, in one run, interleaved (A B C A B C ...):
 *   1. an Express app without tracking, with the documented one-fetch-per-pageview approach,
 *      and with this package (delivery on its worker thread, and `worker: false`): requests/s,
 *      p50/p99 latency, events that reached the sink;
 *   2. the main thread's CPU time per tracked request, tracked minus untracked: in the app at a
 *      fixed request rate (tracking switched on and off in one process), and in one process
 *      without sockets (bench/request-cost.mjs);
 *   3. an outage: the endpoint black-holed under sustained load, against a healthy endpoint
 *      (p99 latency and the app's memory growth);
 *   4. the delivery throughput of one standalone tracker, with the package's HTTP client on its
 *      worker and on the main thread, and with Node's http agent, undici 7 and fetch;
 *   5. once, the middleware's own time on real requests through Express, and what adding a
 *      property to a request costs in Express and on plain http (bench/middleware-time.mjs,
 *      bench/request-properties.mjs).
 *   6. last, delivery at internet distance (bench/distance.mjs): the endpoint answering after
 *      100 ms, 300 ms and 2 s, fixed arrival rates, the package at its defaults, with
 *      `concurrency: 10` and the documented `fetch` approach; and an Express app at distance.
 *      About 7 minutes; BENCH_DISTANCE=0 skips it (the Distance section of the last results is
 *      kept, marked as such), BENCH_DISTANCE_SECONDS (10) shortens it.
 * Prints medians and ratios and writes them to bench/results/latest.md.
 *
 * Thread CPU times come from /proc/thread-self/stat (Linux).
 * Environment: BENCH_ROUNDS (3), BENCH_SECONDS (5), BENCH_CONNECTIONS (50), BENCH_RATE (2000),
 * BENCH_DISTANCE (1), BENCH_DISTANCE_SECONDS (10), BENCH_DISTANCE_APP_ROUNDS (3).
 */
import { spawn } from 'node:child_process';
import { writeFileSync, mkdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import autocannon from 'autocannon';
import { readDistanceSection, runDistance } from './distance.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 50);
const RATE = Number(process.env.BENCH_RATE ?? 2000);
const UA =
  'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36';

const children = new Set();
process.on('exit', () => children.forEach((c) => c.kill('SIGKILL')));

/** Starts a bench script in its own process and waits for the port it prints. */
function start(script, args) {
  const child = spawn(process.execPath, [path.join(here, script), ...args], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  children.add(child);
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (d) => {
      out += d;
      const line = out.split('\n')[0];
      if (out.includes('\n')) {
        const { port } = JSON.parse(line);
        resolve({
          url: `http://127.0.0.1:${port}`,
          stop: () =>
            new Promise((r) => {
              child.once('exit', r);
              child.kill('SIGTERM');
              children.delete(child);
            }),
        });
      }
    });
    child.once('exit', (code) =>
      reject(new Error(`${script} exited with ${code} before it was ready`)),
    );
  });
}

const getJson = async (url) => (await fetch(url)).json();
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const quantile = (xs, q) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.round(q * (s.length - 1)))];
};
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

function load(url, options = {}) {
  return autocannon({
    url: `${url}/`,
    connections: CONNECTIONS,
    duration: SECONDS,
    headers: { 'user-agent': UA, accept: 'text/html' },
    ...options,
  });
}

async function sinkCount(sink) {
  return (await getJson(`${sink.url}/count`)).count;
}

// ---- 1. throughput and latency ------------------------------------------------------------

async function throughputCase(variant, sink) {
  const app = await start('app.mjs', [variant, sink.url]);
  const before = await sinkCount(sink);
  await load(app.url, { duration: 1 });
  const main = await load(app.url);
  await sleep(1500); // let the last events drain
  const events = (await sinkCount(sink)) - before;
  const { served } = await getJson(`${app.url}/__stats`);
  await app.stop();
  return {
    rps: main.requests.average,
    p50: main.latency.p50,
    p99: main.latency.p99,
    served,
    events,
    errors: main.errors + main.timeouts + main.non2xx,
  };
}

// ---- 2. main-thread cost at a fixed rate --------------------------------------------------

/**
 * One app process under a steady RATE, with tracking switched on and off every WINDOW_MS in
 * the order on off off on (drift cancels). Each pair of neighbouring windows gives one
 * difference of main-thread CPU per request; the machine's noise moves both alike. Separate
 * processes per variant were tried first: their untracked baselines alone differed by ±40 µs.
 */
const WINDOW_MS = 2000;
const WINDOWS = 8;
const COST_WARMUP_MS = 3000;

async function costCase(sink) {
  const app = await start('app.mjs', ['toggle', sink.url]);
  await load(app.url, { duration: 1 });
  const run = load(app.url, {
    connections: 10,
    overallRate: RATE,
    duration: (COST_WARMUP_MS + WINDOWS * WINDOW_MS) / 1000 + 1,
  });
  await sleep(COST_WARMUP_MS);
  const windows = [];
  for (let w = 0; w < WINDOWS; w++) {
    const on = [0, 3].includes(w % 4);
    await fetch(`${app.url}/__tracking/${on ? 'on' : 'off'}`);
    // The first requests after a switch are still the other kind's: skip a moment of them.
    await sleep(100);
    const start = await getJson(`${app.url}/__stats`); // also starts the CPU window
    await sleep(WINDOW_MS - 100);
    const end = await getJson(`${app.url}/__stats`);
    windows.push({ on, usPerRequest: (end.cpuMs * 1000) / (end.served - start.served) });
  }
  await run;
  await app.stop();
  const diffs = [];
  for (let w = 0; w + 1 < WINDOWS; w += 2) {
    const [a, b] = [windows[w], windows[w + 1]];
    diffs.push(a.on ? a.usPerRequest - b.usPerRequest : b.usPerRequest - a.usPerRequest);
  }
  return diffs;
}

/** The same cost without sockets, in one process: see bench/request-cost.mjs. */
async function requestCostCase(variant, sink) {
  const out = await runScript('request-cost.mjs', [sink.url, variant, '40000', '5000']);
  return out;
}

// ---- 3. outage ----------------------------------------------------------------------------

async function outageCase(sink) {
  const app = await start('app.mjs', ['package', sink.url]);
  await load(app.url, { duration: 1 });
  const baseline = await getJson(`${app.url}/__stats`);
  const main = await load(app.url);
  const after = await getJson(`${app.url}/__stats`);
  await app.stop();
  return {
    rps: main.requests.average,
    p99: main.latency.p99,
    rssGrowthMb: (after.rss - baseline.rss) / 2 ** 20,
    heapGrowthMb: (after.heapUsed - baseline.heapUsed) / 2 ** 20,
    tracker: after.tracker,
  };
}

// ---- 4. standalone delivery throughput ----------------------------------------------------

const CLIENTS = ['worker', 'inline', 'http', 'undici', 'fetch'];

async function deliveryCase(sink, client) {
  const n = client === 'fetch' ? 10000 : 30000;
  const { events, ms, delivered, cpuMs } = await runScript('throughput.mjs', [sink.url, n, client]);
  return {
    eventsPerSecond: (events / ms) * 1000,
    delivered,
    events,
    cpuUsPerEvent: (cpuMs * 1000) / events,
  };
}

/** Runs a bench script to its end and parses the JSON line it prints. */
async function runScript(script, args) {
  const child = spawn(process.execPath, [path.join(here, script), ...args.map(String)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  const code = await new Promise((r) => child.once('exit', r));
  if (code !== 0) throw new Error(`${script} ${args.join(' ')} exited with ${code}`);
  return JSON.parse(out);
}

// ---- run ----------------------------------------------------------------------------------

const fmt = (n, digits = 0) =>
  Number(n).toLocaleString('en-US', {
    maximumFractionDigits: digits,
    minimumFractionDigits: digits,
  });

async function main() {
  const sink = await start('sink.mjs', ['ok']);
  const blackhole = await start('sink.mjs', ['blackhole']);
  const variants = ['none', 'fetch', 'package', 'inline'];
  const results = Object.fromEntries(variants.map((v) => [v, []]));
  /** Tracked minus untracked main-thread CPU per request, one per pair of windows. */
  const cost = [];
  const requestCost = { none: [], package: [], inline: [] };
  const outage = { healthy: [], outage: [] };
  const delivery = Object.fromEntries(CLIENTS.map((c) => [c, []]));

  for (let round = 1; round <= ROUNDS; round++) {
    for (const v of variants) {
      const r = await throughputCase(v, sink);
      results[v].push(r);
      console.error(
        `round ${round} ${v}: ${fmt(r.rps)} req/s, p99 ${r.p99} ms, events ${r.events}/${r.served}`,
      );
    }
    cost.push(...(await costCase(sink)));
    for (const v of ['none', 'package', 'inline']) {
      requestCost[v].push(await requestCostCase(v, sink));
    }
    outage.healthy.push(await outageCase(sink));
    outage.outage.push(await outageCase(blackhole));
    const o = outage.outage.at(-1);
    console.error(`round ${round} outage: p99 ${o.p99} ms, rss +${fmt(o.rssGrowthMb, 1)} MB`);
    for (const c of CLIENTS) delivery[c].push(await deliveryCase(sink, c));
    console.error(
      `round ${round} delivery: ${CLIENTS.map((c) => `${c} ${fmt(delivery[c].at(-1).eventsPerSecond)}/s`).join(', ')}`,
    );
  }
  const own = await runScript('middleware-time.mjs', [sink.url]);
  await sink.stop();
  await blackhole.stop();
  const properties = await runScript('request-properties.mjs', []);

  const none = results.none;
  const ratio = (v, key) => median(results[v].map((r, i) => r[key] / none[i][key]));
  const lines = [];
  lines.push('# Benchmark results', '');
  lines.push(
    `Node ${process.version}, ${os.cpus().length} CPUs (${os.cpus()[0]?.model ?? 'unknown'}), ` +
      `${ROUNDS} rounds interleaved, ${SECONDS} s per case, ${CONNECTIONS} connections. Medians; ` +
      'ratios are the median of the per-round ratios to "no tracking" measured in the same round.',
    '',
  );
  lines.push('## Express app, every page tracked', '');
  lines.push(
    '| approach | requests/s | vs none | p50 ms | p99 ms | p99 vs none | events at sink / requests |',
  );
  lines.push('| --- | --- | --- | --- | --- | --- | --- |');
  const label = {
    none: 'no tracking',
    fetch: 'one `fetch` per pageview (documented approach)',
    package: 'zenovay-express (delivery on its worker thread, the default)',
    inline: 'zenovay-express, `worker: false` (delivery on the main thread)',
  };
  for (const v of variants) {
    const rs = results[v];
    const delivered =
      v === 'none' ? '-' : `${fmt(median(rs.map((r) => (100 * r.events) / r.served)), 2)} %`;
    lines.push(
      `| ${label[v]} | ${fmt(median(rs.map((r) => r.rps)))} | ${fmt(ratio(v, 'rps'), 2)} | ${fmt(median(rs.map((r) => r.p50)), 1)} | ${fmt(median(rs.map((r) => r.p99)), 1)} | ${fmt(ratio(v, 'p99'), 2)} | ${delivered} |`,
    );
  }
  const inProcess = (v) =>
    requestCost[v].map((p, i) => ((p.cpuMs - requestCost.none[i].cpuMs) * 1000) / p.requests);
  lines.push('', '## Main-thread cost per tracked request', '');
  lines.push(
    'CPU time of the main thread only (/proc/thread-self/stat, 10 ms ticks), with tracking minus without, per request:',
    '',
    `- in the Express app at a fixed ${fmt(RATE)} requests/s, one process with tracking switched on and off every ${WINDOW_MS / 1000} s: ` +
      `**${fmt(median(cost), 1)} µs** (median of ${cost.length} pairs of windows; middle half ${fmt(quantile(cost, 0.25), 1)} to ${fmt(quantile(cost, 0.75), 1)} µs);`,
    `- in one process through Express 5 without sockets (bench/request-cost.mjs, 40,000 pageviews at 5,000/s, until all are delivered): ` +
      `**${fmt(median(inProcess('package')), 1)} µs** with delivery on the worker (rounds: ${inProcess(
        'package',
      )
        .map((x) => fmt(x, 1))
        .join(', ')}), ` +
      `${fmt(median(inProcess('inline')), 1)} µs with \`worker: false\`.`,
  );
  const h = outage.healthy;
  const o = outage.outage;
  lines.push('', '## Outage: the endpoint black-holed under sustained load', '');
  lines.push(
    '| endpoint | requests/s | p99 ms | p99 vs healthy | RSS growth MB | heap growth MB | dropped (queue_full) |',
  );
  lines.push('| --- | --- | --- | --- | --- | --- | --- |');
  const p99Ratio = median(o.map((x, i) => x.p99 / h[i].p99));
  for (const [name, rs] of [
    ['healthy', h],
    ['black-holed', o],
  ]) {
    lines.push(
      `| ${name} | ${fmt(median(rs.map((r) => r.rps)))} | ${fmt(median(rs.map((r) => r.p99)), 1)} | ${name === 'healthy' ? '1.00' : fmt(p99Ratio, 2)} | ${fmt(median(rs.map((r) => r.rssGrowthMb)), 1)} | ${fmt(median(rs.map((r) => r.heapGrowthMb)), 1)} | ${fmt(median(rs.map((r) => r.tracker?.reasons?.dropped?.queue_full ?? 0)))} |`,
    );
  }
  lines.push('', '## Delivery throughput of one standalone tracker', '');
  lines.push(
    'Events handed over as fast as the tracker takes them (30,000; 10,000 for fetch), until all are settled; ' +
      'CPU is the whole process (all threads) per event. The sink shares the machine.',
    '',
    '| HTTP client | events/s | CPU µs per event | all delivered |',
    '| --- | --- | --- | --- |',
  );
  const clientLabel = {
    worker: "the package's own client, on its worker thread (default)",
    inline: "the package's own client, on the main thread (`worker: false`)",
    http: "Node's `http` with a keep-alive agent (`transport` option)",
    undici: 'undici 7 `Pool` (`transport` option)',
    fetch: 'global `fetch` (`transport` option)',
  };
  for (const c of CLIENTS) {
    const ds = delivery[c];
    lines.push(
      `| ${clientLabel[c]} | ${fmt(median(ds.map((d) => d.eventsPerSecond)))} | ${fmt(median(ds.map((d) => d.cpuUsPerEvent)), 1)} | ${ds.every((d) => d.delivered === d.events) ? 'yes' : 'no'} |`,
    );
  }
  lines.push('', "## The middleware's own time on an Express request", '');
  const ownTime = (part, key) => fmt((own.package[part][key] - own.none[part][key]) / 1000, 2);
  const headersSaved = (key) => fmt((own.none.headers[key] - own.package.headers[key]) / 1000, 2);
  lines.push(
    'Timed with `process.hrtime` around our code only, on real keep-alive requests through an Express 5 server ' +
      '(bench/middleware-time.mjs; median of 3 runs, each the median or mean of 6,000 requests), less the same ' +
      'timing around a middleware that does nothing. µs per request:',
    '',
    '| part | median | mean |',
    '| --- | --- | --- |',
    `| the middleware call | ${ownTime('entry', 'median')} | ${ownTime('entry', 'mean')} |`,
    `| its work when the response finishes | ${ownTime('finish', 'median')} | ${ownTime('finish', 'mean')} |`,
    `| what the app's own first read of \`req.headers\` saves (Node builds them once, and the middleware read them first) | ${headersSaved('median')} | ${headersSaved('mean')} |`,
  );
  lines.push(
    '',
    "Most apps read a header anyway (Express's `res.send` does, for its freshness check), and then the " +
      "last row is time the middleware moves rather than adds; this bench's route answers with `res.end` " +
      'and reads them only to time it.',
  );
  lines.push('', '## Adding a property to a request', '');
  const perProperty = (kind, key) =>
    properties[kind][key].map((ns) => fmt(ns / 1000, 2)).join(' / ');
  lines.push(
    'What a middleware pays to add 0 / 1 / 2 properties to `req`, in µs per request (bench/request-properties.mjs; ' +
      'the median is the stores alone, the mean adds the GC pauses that land in them). Express gives every request ' +
      'a hidden class of its own, so each added property builds a new one. This is why the middleware adds none there.',
    '',
    '| server | median | mean |',
    '| --- | --- | --- |',
    `| Express 5 | ${perProperty('express', 'median')} | ${perProperty('express', 'mean')} |`,
    `| plain \`http\` | ${perProperty('http', 'median')} | ${perProperty('http', 'mean')} |`,
    '',
  );

  if (process.env.BENCH_DISTANCE === '0') {
    const earlier = readDistanceSection();
    const marker = '_From an earlier run: BENCH_DISTANCE=0 skipped this section in the run above._';
    if (earlier) {
      lines.push(earlier.includes(marker) ? earlier : earlier.replace(/\n/, `\n\n${marker}\n`), '');
    }
  } else {
    lines.push(...(await runDistance()));
  }

  const text = lines.join('\n');
  console.log(text);
  mkdirSync(path.join(here, 'results'), { recursive: true });
  writeFileSync(path.join(here, 'results', 'latest.md'), text);
}

main().catch((error) => {
  console.error(error);
  process.exitCode = 1;
});
