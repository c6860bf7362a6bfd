/**
 * `npm run bench`: measures side by side, in one run, interleaved (each round starts one case
 * later than the one before, so that no case always follows the same one):
 *   1. an Express app without tracking, with the documented one-fetch-per-pageview approach,
 *      with the floor of issue 16 (bench/floor.mjs: the least a tracker must do, our own bench
 *      code), and with this package (delivery on its worker thread, and `worker: false`):
 *      requests/s, p50/p99 latency, events that reached the sink after a 3 s drain, and the
 *      delivery thread's CPU per delivered event. The headline is package / floor; then the same
 *      ratios switched in one process (the package, the floor and floor + rules in one app at
 *      full load, in 2 s windows through symmetric cycles: more samples, seconds apart);
 *   2. at a fixed request rate (a steady load, bench/paced-load.mjs), in one app holding the
 *      package, the floor and floor + rules, switching itself every 500 ms through symmetric
 *      cycles: the whole main thread's CPU per request (package minus floor, minus floor + rules,
 *      and each minus no tracking) and each delivery worker's CPU per delivered event
 *      (/proc/self/task/<tid>/schedstat), medians with their 95 % intervals; and the same
 *      main-thread cost in one process without sockets (bench/request-cost.mjs, three runs of
 *      each variant a round);
 *   3. an outage: the endpoint black-holed under sustained load, against a healthy endpoint
 *      (p99 latency and the app's memory growth);
 *   4. the delivery throughput of one standalone tracker, with the package's HTTP client on its
 *      worker and on the main thread, and with Node's http agent, undici 7 and fetch;
 *   5. once, the middleware's own time on real requests through Express, and what adding a
 *      property to a request costs in Express and on plain http (bench/middleware-time.mjs,
 *      bench/request-properties.mjs).
 *   6. the directory outbox's cost (bench/outbox.mjs, about 2.5 minutes; BENCH_OUTBOX=0 skips it);
 *   7. last, delivery at internet distance (bench/distance.mjs): the endpoint answering after
 *      100 ms, 300 ms and 2 s, fixed arrival rates, the package at its defaults, with
 *      `concurrency: 10` and the documented `fetch` approach; and an Express app at distance.
 *      About 7 minutes; BENCH_DISTANCE=0 skips it (the Distance section of the last results is
 *      kept, marked as such), BENCH_DISTANCE_SECONDS (10) shortens it.
 * Prints medians and ratios and writes them to bench/results/latest.md. About 10 minutes on 2
 * cores at the defaults (2 rounds), plus about 2.5 for part 6 and 7 for part 7.
 *
 * Thread CPU times come from /proc (Linux).
 * Environment: BENCH_ROUNDS (2), BENCH_SECONDS (5), BENCH_CONNECTIONS (50), BENCH_RATE (2000),
 * BENCH_CYCLES (15 cycles of part 2 a round), BENCH_COST_WINDOW_MS (500, one window of part 2),
 * BENCH_WINDOW_MS (2000, one window of part 1's switched case),
 * BENCH_OUTBOX (1), BENCH_DISTANCE (1), BENCH_DISTANCE_SECONDS (10), BENCH_DISTANCE_APP_ROUNDS (3),
 * BENCH_SWITCH_CYCLES (2 cycles of part 1's switched windows a round).
 * BENCH_QUICK=1: parts 1 (no tracking, floor, package) and 2 only, printed, latest.md untouched.
 * BENCH_ALT_DIST=/path/to/dist: part 1 also runs the package from that build (another version),
 * in the same rounds.
 * BENCH_FLOOR_EXTRA_US=N (with BENCH_QUICK=1 only): the floor + rules worker spins N µs of CPU per
 * event, to measure how throughput answers to worker CPU (floor.mjs `extraUs`).
 */
import { writeFileSync, mkdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import autocannon from 'autocannon';
import { runScript, runText, start } from './children.mjs';
import { cycleMean } from './cycles.mjs';
import { median, medianInterval } from './medians.mjs';
import { pacedLoad } from './paced-load.mjs';
import { readDistanceSection, runDistance } from './distance.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 2);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 50);
const RATE = Number(process.env.BENCH_RATE ?? 2000);
/** How long the sink gets after the load before its count is read (the issue's 3 s drain). */
const DRAIN_MS = 3000;
const UA =
  'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36';

const getJson = async (url) => (await fetch(url)).json();
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
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
  const start0 = await getJson(`${app.url}/__stats`);
  const main = await load(app.url);
  await sleep(DRAIN_MS); // the last events drain, as the issue's targets count them
  const events = (await sinkCount(sink)) - before;
  const { served, threads } = await getJson(`${app.url}/__stats`);
  await app.stop();
  const t0 = start0.threads;
  // The delivery thread's CPU per event it delivered, from the end of the warm-up to the end.
  const isFloor = variant === 'floor' || variant === 'floor-rules';
  const workerNs = isFloor ? threads.floorNs - t0.floorNs : threads.workerNs - t0.workerNs;
  const delivered = isFloor
    ? threads.floorAnswered - t0.floorAnswered
    : threads.packageDelivered - t0.packageDelivered;
  return {
    rps: main.requests.average,
    p50: main.latency.p50,
    p99: main.latency.p99,
    served,
    events,
    workerUsPerEvent: delivered > 0 ? workerNs / 1000 / delivered : Number.NaN,
    errors: main.errors + main.timeouts + main.non2xx,
  };
}

// ---- 2. main-thread cost at a fixed rate --------------------------------------------------

/**
 * The modes in the order of a cycle (part 1's switched case and part 2): symmetric, so that a
 * linear drift of the machine cancels out of every difference of a cycle's means.
 */
const CYCLE = ['off', 'floor', 'floor-rules', 'package', 'package', 'floor-rules', 'floor', 'off'];

/**
 * One app process under a steady RATE (bench/paced-load.mjs: evenly spread, not autocannon's
 * bursts at the start of each second), holding the package, the floor and floor + rules. The app
 * switches itself (GET /__cycles, bench/app.mjs) every COST_WINDOW_MS through symmetric cycles of
 * CYCLE, so that a linear drift of the machine cancels out of every difference of a cycle's
 * means; the first COST_SETTLE_MS of a window are not counted (the last mode's batches and
 * reports land there). Each cycle gives one figure each of main-thread CPU per request (the whole
 * thread, /proc schedstat, ns) per mode and of the delivery workers' CPU per event they delivered
 * (package and floor). Short windows switched in the app, many cycles: the earlier 2 s windows
 * switched by control requests under autocannon's bursts spread over ±50 µs a cycle.
 */
const COST_WINDOW_MS = Number(process.env.BENCH_COST_WINDOW_MS ?? 500);
const COST_SETTLE_MS = 150;
const COST_CYCLES = Number(process.env.BENCH_CYCLES ?? 15);
const COST_WARMUP_MS = 3000;

async function costCase(sink) {
  const app = await start('app.mjs', ['toggle', sink.url]);
  // The load outlasts the cycles: each window's two snapshots take a few ms more than its length.
  const seconds = (COST_WARMUP_MS + COST_CYCLES * CYCLE.length * COST_WINDOW_MS) / 1000 + 5;
  const loaded = pacedLoad(app.url, { rate: RATE, seconds });
  const query = new URLSearchParams({
    window: COST_WINDOW_MS,
    settle: COST_SETTLE_MS,
    cycles: COST_CYCLES,
    warm: COST_WARMUP_MS,
    modes: CYCLE.join(','),
  });
  const windows = (await getJson(`${app.url}/__cycles?${query}`)).map(({ mode, a, b }) => {
    const isFloor = mode === 'floor';
    const workerNs = isFloor ? b.floorNs - a.floorNs : b.workerNs - a.workerNs;
    const delivered = isFloor
      ? b.floorAnswered - a.floorAnswered
      : b.packageDelivered - a.packageDelivered;
    return {
      mode,
      served: b.served - a.served,
      mainUs: (b.mainNs - a.mainNs) / 1000 / (b.served - a.served),
      workerUsPerEvent: isFloor || mode === 'package' ? workerNs / 1000 / delivered : Number.NaN,
    };
  });
  const paced = await loaded;
  await app.stop();
  const cycles = [];
  for (let c = 0; c < COST_CYCLES; c++) {
    const part = windows.slice(c * CYCLE.length, (c + 1) * CYCLE.length);
    const main = (mode) => cycleMean(part, mode, 'mainUs');
    const worker = (mode) => cycleMean(part, mode, 'workerUsPerEvent');
    cycles.push({
      packageMinusOff: main('package') - main('off'),
      floorMinusOff: main('floor') - main('off'),
      packageMinusFloor: main('package') - main('floor'),
      packageMinusFloorRules: main('package') - main('floor-rules'),
      floorRulesMinusFloor: main('floor-rules') - main('floor'),
      offUs: main('off'),
      packageWorkerUs: worker('package'),
      floorWorkerUs: worker('floor'),
      workerRatio: worker('package') / worker('floor'),
      rate: (cycleMean(part, 'off', 'served') * 1000) / (COST_WINDOW_MS - COST_SETTLE_MS),
    });
  }
  return { cycles, paced };
}

/**
 * Throughput switched in one process: the toggle app (package, floor, floor + rules) at full
 * load, in windows of WINDOW_MS through symmetric cycles of CYCLE (a linear drift cancels
 * out of each cycle): the variants compared seconds apart in one process, rather than minutes
 * apart in separate ones as in part 1, and floor + rules beside the package in every cycle. Each
 * cycle gives requests/s and p99 of each mode (the mean of its two windows). A window can still
 * be hit by whatever else the machine runs: the per-cycle ratios are printed with the median.
 */
const WINDOW_MS = Number(process.env.BENCH_WINDOW_MS ?? 2000);
const SWITCH_CYCLES = Number(process.env.BENCH_SWITCH_CYCLES ?? 2);
/** Pause after a switch: what the last mode's worker still had to send goes out meanwhile. */
const SWITCH_SETTLE_MS = 300;

async function switchedCase(sink) {
  const app = await start('app.mjs', ['toggle', sink.url]);
  // Warm-up: every mode's code, and both floors' workers and the package's, get going.
  for (const mode of ['floor', 'floor-rules', 'package', 'off']) {
    await fetch(`${app.url}/__tracking/${mode}`);
    await load(app.url, { duration: 1 });
  }
  const cycles = [];
  for (let c = 0; c < SWITCH_CYCLES; c++) {
    const windows = [];
    for (const mode of CYCLE) {
      await fetch(`${app.url}/__tracking/${mode}`);
      await sleep(SWITCH_SETTLE_MS);
      const r = await load(app.url, { duration: WINDOW_MS / 1000 });
      windows.push({ mode, rps: r.requests.average, p99: r.latency.p99 });
    }
    const modes = ['off', 'floor', 'floor-rules', 'package'];
    cycles.push(
      Object.fromEntries(
        modes.map((m) => [
          m,
          { rps: cycleMean(windows, m, 'rps'), p99: cycleMean(windows, m, 'p99') },
        ]),
      ),
    );
  }
  await app.stop();
  return cycles;
}

/**
 * The same cost without sockets, in one process: see bench/request-cost.mjs. Each round runs
 * every variant REQUEST_COST_REPEATS times, in turn (a repeat starts one variant later), so that
 * each difference is taken between runs seconds apart.
 */
const REQUEST_COST_REPEATS = 3;
const REQUEST_COST_PAGEVIEWS = 20000;

async function requestCostCase(variant, sink) {
  return runScript('request-cost.mjs', [sink.url, variant, REQUEST_COST_PAGEVIEWS, '5000']);
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

// ---- run ----------------------------------------------------------------------------------

const fmt = (n, digits = 0) =>
  Number(n).toLocaleString('en-US', {
    maximumFractionDigits: digits,
    minimumFractionDigits: digits,
  });

async function main() {
  const sink = await start('sink.mjs', ['ok']);
  const blackhole = await start('sink.mjs', ['blackhole']);
  // BENCH_QUICK=1: only the Express app and the fixed-rate costs, printed, latest.md untouched.
  const quick = process.env.BENCH_QUICK === '1';
  // BENCH_FLOOR_EXTRA_US: read by each bench/app.mjs child; checked and announced here.
  const floorExtraUs = Number(process.env.BENCH_FLOOR_EXTRA_US ?? 0);
  if (!(floorExtraUs >= 0 && floorExtraUs <= 1e6)) {
    throw new Error('BENCH_FLOOR_EXTRA_US must be a number of µs, 0 to 1,000,000');
  }
  if (floorExtraUs > 0) {
    if (!quick) throw new Error('BENCH_FLOOR_EXTRA_US is an experiment: run it with BENCH_QUICK=1');
    console.error(
      `floor-rules below is floor + rules with ${floorExtraUs} µs of extra CPU per event on its worker (BENCH_FLOOR_EXTRA_US)`,
    );
  }
  const variants = quick
    ? ['none', 'floor', 'floor-rules', 'package']
    : ['none', 'fetch', 'floor', 'floor-rules', 'package', 'inline'];
  // BENCH_ALT_DIST=/path/to/dist: the package from another build too, in the same rounds.
  if (process.env.BENCH_ALT_DIST) variants.push('alt');
  const results = Object.fromEntries(variants.map((v) => [v, []]));
  /** Per cycle of costCase: main-thread and worker CPU figures. */
  const cost = [];
  /** Per round of costCase: what the paced load sent. */
  const costLoads = [];
  /** Per cycle of switchedCase: requests/s and p99 of each mode. */
  const switched = [];
  const requestCost = { none: [], floor: [], 'floor-rules': [], package: [], inline: [] };
  const outage = { healthy: [], outage: [] };
  const delivery = Object.fromEntries(CLIENTS.map((c) => [c, []]));

  for (let round = 1; round <= ROUNDS; round++) {
    // Each round starts one case later: a case that follows another (the same one every round)
    // was measured up to a third slower than in the next slot, on a shared 2-core machine.
    const order = variants.map((_, i) => variants[(i + round - 1) % variants.length]);
    for (const v of order) {
      const r = await throughputCase(v, sink);
      results[v].push(r);
      console.error(
        `round ${round} ${v}: ${fmt(r.rps)} req/s, p99 ${r.p99} ms, events ${r.events}/${r.served}, worker ${fmt(r.workerUsPerEvent, 1)} µs/event`,
      );
    }
    for (const c of await switchedCase(sink)) {
      switched.push(c);
      console.error(
        `round ${round} switched: package / floor ${fmt(c.package.rps / c.floor.rps, 2)} requests/s, p99 ${fmt(c.package.p99 / c.floor.p99, 2)}×; floor + rules / floor ${fmt(c['floor-rules'].rps / c.floor.rps, 2)}; floor / off ${fmt(c.floor.rps / c.off.rps, 2)}`,
      );
    }
    const { cycles, paced } = await costCase(sink);
    cost.push(...cycles);
    const roundMedian = (key) => fmt(median(cycles.map((c) => c[key])), 1);
    console.error(
      `round ${round} cost (${cycles.length} cycles, medians): main package-floor ${roundMedian('packageMinusFloor')}, ` +
        `package-floor+rules ${roundMedian('packageMinusFloorRules')}, floor-off ${roundMedian('floorMinusOff')} µs; ` +
        `worker ${roundMedian('packageWorkerUs')} vs ${roundMedian('floorWorkerUs')} µs/event; ` +
        `load ${paced.sent} sent, ${paced.behind} behind, ${paced.errors} errors`,
    );
    costLoads.push(paced);
    if (quick) continue;
    for (let repeat = 0; repeat < REQUEST_COST_REPEATS; repeat++) {
      const kinds = Object.keys(requestCost);
      for (let i = 0; i < kinds.length; i++) {
        const v = kinds[(i + repeat + round) % kinds.length];
        requestCost[v].push(await requestCostCase(v, sink));
      }
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
  const own = quick ? undefined : await runScript('middleware-time.mjs', [sink.url]);
  await sink.stop();
  await blackhole.stop();
  const properties = quick ? undefined : await runScript('request-properties.mjs', []);

  const none = results.none;
  const ratio = (v, key, to = none) => median(results[v].map((r, i) => r[key] / to[i][key]));
  const floor = results.floor;
  const pkg = results.package;
  const deliveredPct = (rs) => median(rs.map((r) => (100 * r.events) / r.served));
  const range = (xs, digits) =>
    `${fmt(Math.min(...xs), digits)} to ${fmt(Math.max(...xs), digits)}`;
  const perRound = (v, key) => results[v].map((r, i) => r[key] / floor[i][key]);
  const switchedRatio = (a, b, key) => median(switched.map((c) => c[a][key] / c[b][key]));
  const headline = {
    rps: ratio('package', 'rps', floor),
    p99: ratio('package', 'p99', floor),
    delivered: Math.min(...pkg.map((r) => (100 * r.events) / r.served)),
    mainAbove: median(cost.map((c) => c.packageMinusFloor)),
    worker: median(cost.map((c) => c.workerRatio)),
  };
  const lines = [];
  lines.push('# Benchmark results', '');
  lines.push(
    `Node ${process.version}, ${os.cpus().length} CPUs (${os.cpus()[0]?.model ?? 'unknown'}), ` +
      `${ROUNDS} rounds interleaved, ${SECONDS} s per case, ${CONNECTIONS} connections. Medians; ` +
      'ratios are the median of the per-round ratios to "no tracking" (or to the floor) measured in the same round.',
    '',
  );
  lines.push('## Express app, every page tracked', '');
  lines.push(
    `**zenovay-express / floor: ${fmt(headline.rps, 2)}** requests/s (rounds ${perRound(
      'package',
      'rps',
    )
      .map((x) => fmt(x, 2))
      .join(', ')}), p99 ${fmt(headline.p99, 2)}× the floor's (rounds ${perRound('package', 'p99')
      .map((x) => fmt(x, 2))
      .join(
        ', ',
      )}), ${fmt(deliveredPct(pkg), 2)} % of pageviews at the sink ${DRAIN_MS / 1000} s after the load (worst round ${fmt(headline.delivered, 2)} %).`,
    '',
    'The floor (bench/floor.mjs, our own bench code, never shipped) is the least a tracker must do: at ' +
      '`finish` it reads the URL, IP (`req.ip`) and user agent into one string; every 20 ms or 512 events ' +
      'the batch crosses to a worker thread that writes one prebuilt POST per event on 10 raw keep-alive ' +
      'sockets to the sink, one request in flight per socket, and counts the answers. No rules, retries or bounds. ' +
      "Worker µs/event: the delivery thread's own CPU time (/proc/self/task/<tid>/schedstat) per event it delivered, at full load.",
    '',
  );
  lines.push(
    '| approach | requests/s | vs none | vs floor | p50 ms | p99 ms | p99 vs none | p99 vs floor | events at sink / requests | worker µs/event |',
  );
  lines.push('| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |');
  const label = {
    none: 'no tracking',
    fetch: 'one `fetch` per pageview (documented approach)',
    floor: '**floor**: one string at finish, raw sockets on a worker',
    'floor-rules':
      'floor + the reads the rules need (method, path, user agent, a stamp on rawHeaders; status and content type)',
    alt: `zenovay-express from ${process.env.BENCH_ALT_DIST} (BENCH_ALT_DIST)`,
    package: 'zenovay-express (delivery on its worker thread, the default)',
    inline: 'zenovay-express, `worker: false` (delivery on the main thread)',
  };
  for (const v of variants) {
    const rs = results[v];
    const delivered = v === 'none' ? '-' : `${fmt(deliveredPct(rs), 2)} %`;
    const worker = ['floor', 'floor-rules', 'package', 'alt'].includes(v)
      ? fmt(median(rs.map((r) => r.workerUsPerEvent)), 1)
      : '-';
    lines.push(
      `| ${label[v]} | ${fmt(median(rs.map((r) => r.rps)))} | ${fmt(ratio(v, 'rps'), 2)} | ${fmt(ratio(v, 'rps', floor), 2)} | ${fmt(median(rs.map((r) => r.p50)), 1)} | ${fmt(median(rs.map((r) => r.p99)), 1)} | ${fmt(ratio(v, 'p99'), 2)} | ${fmt(ratio(v, 'p99', floor), 2)} | ${delivered} | ${worker} |`,
    );
  }
  const col = (key) => cost.map((c) => c[key]);
  lines.push(
    '',
    `Against the floor + rules (the floor that also makes the reads the package's rules need: method, path, user agent and a stamp on the request's rawHeaders when the request comes, status and content type at \`finish\`): ` +
      `floor + rules / floor ${fmt(ratio('floor-rules', 'rps', floor), 2)} requests/s, p99 ${fmt(ratio('floor-rules', 'p99', floor), 2)}×; ` +
      `zenovay-express / floor + rules ${fmt(ratio('package', 'rps', results['floor-rules']), 2)} requests/s, p99 ${fmt(ratio('package', 'p99', results['floor-rules']), 2)}×.`,
    '',
    '### The same, switched in one process',
    '',
    `One app process (bench/app.mjs \`toggle\`) holding the package, the floor and floor + rules, at full load (${CONNECTIONS} connections), switched every ${WINDOW_MS / 1000} s window through symmetric cycles of ${CYCLE.join(', ')} (${switched.length} cycles; a linear drift cancels out of each). ` +
      "Ratios are per cycle (each mode's mean over its two windows), then the median: the same ratios as above from variants seconds apart in one process, and so more samples of them; a window can still be hit by whatever else runs on the machine (the cycles' column).",
    '',
    '| ratio | median | cycles |',
    '| --- | --- | --- |',
    ...[
      ['requests/s, package / floor', 'package', 'floor', 'rps'],
      ['requests/s, package / floor + rules', 'package', 'floor-rules', 'rps'],
      ['requests/s, floor + rules / floor', 'floor-rules', 'floor', 'rps'],
      ['requests/s, floor / no tracking', 'floor', 'off', 'rps'],
      ['p99, package / floor', 'package', 'floor', 'p99'],
      ['p99, package / floor + rules', 'package', 'floor-rules', 'p99'],
    ].map(
      ([name, a, b, key]) =>
        `| ${name} | **${fmt(switchedRatio(a, b, key), 2)}** | ${switched.map((c) => fmt(c[a][key] / c[b][key], 2)).join(', ')} |`,
    ),
  );
  lines.push('', '## Main thread and worker at a fixed rate, against the floor', '');
  /** The median's 95 % interval, printed. */
  const interval = (xs, digits = 1) => {
    const [lo, hi] = medianInterval(xs);
    return `${fmt(lo, digits)} to ${fmt(hi, digits)}`;
  };
  const ci = (key, digits = 1) => interval(col(key), digits);
  const [mainLo, mainHi] = medianInterval(col('packageMinusFloor'));
  // The verdict is the median's, as for the other targets; the interval says how sure it is.
  const mainVerdict =
    (headline.mainAbove <= 3 ? 'met' : 'not met') +
    (cost.length < 6
      ? ` (${cost.length} cycles, too few for a 95 % interval; their range: ${fmt(mainLo, 1)} to ${fmt(mainHi, 1)} µs)`
      : mainLo <= 3 && mainHi > 3
        ? ` (the median's 95 % interval, ${fmt(mainLo, 1)} to ${fmt(mainHi, 1)} µs, holds the target: not certain either way at this precision)`
        : ` (the median's 95 % interval: ${fmt(mainLo, 1)} to ${fmt(mainHi, 1)} µs)`);
  const reached = median(cost.map((c) => c.rate));
  const behind = costLoads.reduce((n, l) => n + l.behind, 0);
  const sent = costLoads.reduce((n, l) => n + l.sent, 0);
  lines.push(
    `One Express app holding the package, the floor and floor + rules under a steady ${fmt(RATE)} requests/s ` +
      '(bench/paced-load.mjs: evenly spread on 20 keep-alive connections), switching itself every ' +
      `${COST_WINDOW_MS} ms through symmetric cycles of ${CYCLE.join(', ')} (${cost.length} cycles; a linear ` +
      `drift cancels out of each; the first ${COST_SETTLE_MS} ms of a window, where the last mode's batches still land, are not counted). ` +
      'CPU time is the whole thread in the app (/proc/self/task/<tid>/schedstat), per request for the main thread and per ' +
      "delivered event for the workers. Medians over cycles, with the median's 95 % interval (distribution-free, from the " +
      `cycles' order statistics) and the range. Rate reached: ${fmt(reached)} requests/s; ${fmt(behind)} of ${fmt(sent + behind)} requests ` +
      'were skipped because every connection was busy.',
    '',
    '| figure | median | 95 % interval of the median | range |',
    '| --- | --- | --- | --- |',
    `| main thread, package minus floor, µs per request | **${fmt(headline.mainAbove, 1)}** | ${ci('packageMinusFloor')} | ${range(col('packageMinusFloor'), 1)} |`,
    `| main thread, package minus floor + rules, µs per request | ${fmt(median(col('packageMinusFloorRules')), 1)} | ${ci('packageMinusFloorRules')} | ${range(col('packageMinusFloorRules'), 1)} |`,
    `| main thread, floor + rules minus floor, µs per request | ${fmt(median(col('floorRulesMinusFloor')), 1)} | ${ci('floorRulesMinusFloor')} | ${range(col('floorRulesMinusFloor'), 1)} |`,
    `| main thread, package minus no tracking, µs per request | ${fmt(median(col('packageMinusOff')), 1)} | ${ci('packageMinusOff')} | ${range(col('packageMinusOff'), 1)} |`,
    `| main thread, floor minus no tracking, µs per request | ${fmt(median(col('floorMinusOff')), 1)} | ${ci('floorMinusOff')} | ${range(col('floorMinusOff'), 1)} |`,
    `| main thread, no tracking, µs per request | ${fmt(median(col('offUs')), 1)} | ${ci('offUs')} | ${range(col('offUs'), 1)} |`,
    `| package's delivery worker, µs per delivered event | ${fmt(median(col('packageWorkerUs')), 1)} | ${ci('packageWorkerUs')} | ${range(col('packageWorkerUs'), 1)} |`,
    `| floor's worker, µs per delivered event | ${fmt(median(col('floorWorkerUs')), 1)} | ${ci('floorWorkerUs')} | ${range(col('floorWorkerUs'), 1)} |`,
    `| package worker / floor worker | **${fmt(headline.worker, 2)}** | ${ci('workerRatio', 2)} | ${range(col('workerRatio'), 2)} |`,
    '',
    '### Targets of issue 16',
    '',
    `- requests/s, package / floor ≥ 0.95: ${fmt(headline.rps, 2)}, ${headline.rps >= 0.95 ? 'met' : 'not met'}; switched in one process: ${fmt(switchedRatio('package', 'floor', 'rps'), 2)}, ${switchedRatio('package', 'floor', 'rps') >= 0.95 ? 'met' : 'not met'}`,
    `- p99, package / floor ≤ 1.1: ${fmt(headline.p99, 2)}, ${headline.p99 <= 1.1 ? 'met' : 'not met'}; switched in one process: ${fmt(switchedRatio('package', 'floor', 'p99'), 2)}, ${switchedRatio('package', 'floor', 'p99') <= 1.1 ? 'met' : 'not met'}`,
    `- ≥ 99.9 % of pageviews delivered after a ${DRAIN_MS / 1000} s drain, every round: worst ${fmt(headline.delivered, 2)} %, ${headline.delivered >= 99.9 ? 'met' : 'not met'}`,
    `- main thread ≤ 3 µs per request above the floor: ${fmt(headline.mainAbove, 1)} µs, ${mainVerdict}`,
    `- worker CPU per event ≤ 1.5× the floor's: ${fmt(headline.worker, 2)}×, ${headline.worker <= 1.5 ? 'met' : 'not met'}`,
  );
  if (quick) {
    console.log(lines.join('\n'));
    return;
  }
  const inProcess = (v, to = 'none') =>
    requestCost[v].map((p, i) => (p.cpuNs - requestCost[to][i].cpuNs) / 1000 / p.requests);
  const noSockets = (name, xs) =>
    `| ${name} | ${fmt(median(xs), 1)} | ${interval(xs)} | ${xs.map((x) => fmt(x, 1)).join(', ')} |`;
  lines.push('', '## Main-thread cost per tracked request, without sockets', '');
  lines.push(
    'The same CPU time of the main thread in one process through Express 5 without sockets ' +
      `(bench/request-cost.mjs: ${fmt(REQUEST_COST_PAGEVIEWS)} pageviews at 5,000/s, until all are delivered), ` +
      `each variant run ${REQUEST_COST_REPEATS} times a round, in turn; each difference is between runs of the same turn. ` +
      "No load generator, sink or parser shares the thread's time, so these spread less than the figures in the app above. " +
      'Floor + rules: bench/floor.mjs `rules` (method, path, user agent and a stamp on its rawHeaders when the request comes; ' +
      'status and content type at `finish`). µs per request:',
    '',
    '| difference | median | 95 % interval of the median | each turn |',
    '| --- | --- | --- | --- |',
    noSockets('package minus floor', inProcess('package', 'floor')),
    noSockets('package minus floor + rules', inProcess('package', 'floor-rules')),
    noSockets('floor + rules minus floor', inProcess('floor-rules', 'floor')),
    noSockets('package minus no tracking', inProcess('package')),
    noSockets('floor minus no tracking', inProcess('floor')),
    noSockets('`worker: false` minus no tracking', inProcess('inline')),
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
  const ownTime = (who, part, key) => fmt((own[who][part][key] - own.none[part][key]) / 1000, 2);
  const headersSaved = (who, key) => fmt((own.none.headers[key] - own[who].headers[key]) / 1000, 2);
  const row = (label, part) =>
    `| ${label} | ${ownTime('floor', part, 'median')} | ${ownTime('package', part, 'median')} | ` +
    `${ownTime('floor', part, 'mean')} | ${ownTime('package', part, 'mean')} |`;
  lines.push(
    'Timed with `process.hrtime` around the middleware only, on real keep-alive requests through an Express 5 server ' +
      '(bench/middleware-time.mjs; median of 3 runs, each the median or mean of 6,000 requests), less the same ' +
      'timing around a middleware that does nothing; the floor timed the same way. µs per request:',
    '',
    '| part | floor, median | package, median | floor, mean | package, mean |',
    '| --- | --- | --- | --- | --- |',
    row('the middleware call', 'entry'),
    row('its work when the response finishes', 'finish'),
    `| what the app's own first read of \`req.headers\` saves (Node builds them once, at the first read) | ` +
      `${headersSaved('floor', 'median')} | ${headersSaved('package', 'median')} | ` +
      `${headersSaved('floor', 'mean')} | ${headersSaved('package', 'mean')} |`,
  );
  lines.push(
    '',
    "The floor reads the headers at 'finish' and the package in the call. Most apps read a header anyway " +
      "(Express's `res.send` does, for its freshness check), and then the last row is time moved rather than " +
      "added; this bench's route answers with `res.end` and reads them only to time it. At 'finish' the floor " +
      "reads Express's `req.ip` (proxy-addr) and the URL; the package works out the IP with its own code.",
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

  // The durable outbox (bench/outbox.mjs, its own processes, about 2.5 minutes).
  if (process.env.BENCH_OUTBOX !== '0') {
    lines.push(
      '## The directory outbox',
      '',
      'bench/outbox.mjs: one Express app with three middlewares (no outbox, `outbox: { dir }`, ' +
        "`{ dir, sync: 'always' }`) switched in symmetric cycles; then memory per event spilled to the outbox.",
      '',
      (await runText('outbox.mjs', [])).trim(),
      '',
    );
  }

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
