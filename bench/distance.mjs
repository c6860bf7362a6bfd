/**
 * Delivery at internet distance (issue 14), side by side in one run. The endpoint stand-in
 * (bench/slow-sink.mjs, its own process) answers each POST 100 ms, 300 ms or 2 s after it
 * arrived; the events come from another process (bench/distance-load.mjs) at a fixed rate:
 *   - 300, 1,000 and 3,000 events/s for 10 s, the endpoint at 100 ms and at 300 ms;
 *   - 50 events/s for 20 s, the endpoint at 2 s (a brownout);
 * each with the package at its default options, the package with `concurrency: 10` (the default
 * before `'auto'`), and the documented approach (one `fetch` per event, not awaited). After the
 * last event the load waits for delivery at most 5 s (10 s in the brownout), then closes.
 * Then an Express 5 app with `analytics()` (bench/app.mjs, `package`) serving 3,000 pages, 20 at
 * a time, with the endpoint at 100 ms and on loopback, interleaved over a few rounds.
 *
 * Run alone (`npm run build && node bench/distance.mjs`) it prints the results and replaces the
 * "Distance" section of bench/results/latest.md; `npm run bench` runs it after the rest and writes
 * it with the rest. Environment: BENCH_DISTANCE_SECONDS (10; the brownout runs twice as long),
 * BENCH_DISTANCE_APP_ROUNDS (3). BENCH_DISTANCE=0 makes `npm run bench` skip it.
 */
import { execFileSync, fork, spawn } from 'node:child_process';
import {
  cpSync,
  existsSync,
  mkdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath, pathToFileURL } from 'node:url';
import autocannon from 'autocannon';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.join(here, '..');
/**
 * Where the child scripts run from: a copy of dist/ and of the scripts, made when the run starts
 * (see snapshot()), so that a rebuild of dist/ during the run neither breaks it nor mixes builds.
 */
let scripts = here;
/** When the copied build was made. */
let builtAt;
const SECONDS = Number(process.env.BENCH_DISTANCE_SECONDS ?? 10);
const APP_ROUNDS = Number(process.env.BENCH_DISTANCE_APP_ROUNDS ?? 3);
const PAGES = 3000;
const APP_CONNECTIONS = 20;
const APP_WINDOW_MS = 5000;
const CLOSE_MS = 1000;
const UA =
  'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36';

const CASES = [
  { delayMs: 100, rate: 300, seconds: SECONDS, windowMs: 5000 },
  { delayMs: 100, rate: 1000, seconds: SECONDS, windowMs: 5000 },
  { delayMs: 100, rate: 3000, seconds: SECONDS, windowMs: 5000 },
  { delayMs: 300, rate: 300, seconds: SECONDS, windowMs: 5000 },
  { delayMs: 300, rate: 1000, seconds: SECONDS, windowMs: 5000 },
  { delayMs: 300, rate: 3000, seconds: SECONDS, windowMs: 5000 },
  { delayMs: 2000, rate: 50, seconds: 2 * SECONDS, windowMs: 10_000 },
];
const APPROACHES = ['default', 'fixed10', 'fetch'];
const APPROACH_LABEL = {
  default: 'package, defaults',
  fixed10: 'package, `concurrency: 10`',
  fetch: 'one `fetch` per event',
};

const epochMs = () => performance.timeOrigin + performance.now();
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const fmt = (n, digits = 0) =>
  n === undefined || Number.isNaN(n)
    ? '-'
    : Number(n).toLocaleString('en-US', {
        maximumFractionDigits: digits,
        minimumFractionDigits: digits,
      });
const pct = (part, whole) => `${fmt((100 * part) / whole, part === whole ? 0 : 1)} %`;

const children = new Set();
/** Removes the copy of the build, if there is one (see snapshot()). */
let removeSnapshot = () => undefined;
process.on('exit', () => {
  children.forEach((c) => c.kill('SIGKILL'));
  removeSnapshot();
});

/** Forks the stand-in answering after `delayMs`; its counts come over the IPC channel. */
async function startSink(delayMs) {
  const child = fork(path.join(scripts, 'slow-sink.mjs'), [String(delayMs)], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  children.add(child);
  const { port } = await new Promise((resolve, reject) => {
    child.once('message', resolve);
    child.once('exit', (code) => reject(new Error(`slow-sink.mjs exited with ${code}`)));
  });
  return {
    url: `http://127.0.0.1:${port}`,
    /** Its counts; `answeredBy`: events answered by `cutoff` (ms since the epoch). */
    stats: (cutoff) =>
      new Promise((resolve) => {
        child.once('message', resolve);
        child.send({ cmd: 'stats', cutoff });
      }),
    stop: () =>
      new Promise((resolve) => {
        child.once('exit', resolve);
        child.kill('SIGTERM');
        children.delete(child);
      }),
  };
}

/** Runs one load process to its end; its JSON line, and its first lines on stderr. */
async function runLoad(sinkUrl, approach, { rate, seconds, windowMs }) {
  const args = [sinkUrl, approach, rate, seconds, windowMs, CLOSE_MS].map(String);
  const child = spawn(process.execPath, [path.join(scripts, 'distance-load.mjs'), ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(child);
  let out = '';
  let err = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (err += d));
  const code = await new Promise((resolve) => child.once('exit', resolve));
  children.delete(child);
  if (code !== 0)
    throw new Error(`distance-load.mjs ${args.join(' ')} exited with ${code}\n${err}`);
  const logLines = err.split('\n').filter(Boolean);
  return { ...JSON.parse(out), logLines };
}

/** Starts bench/app.mjs (`package`: Express 5 with `analytics()`) sending to `sinkUrl`. */
async function startApp(sinkUrl) {
  const child = spawn(process.execPath, [path.join(scripts, 'app.mjs'), 'package', sinkUrl], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  children.add(child);
  const port = await new Promise((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (d) => {
      out += d;
      if (out.includes('\n')) resolve(JSON.parse(out.split('\n')[0]).port);
    });
    child.once('exit', (code) =>
      reject(new Error(`app.mjs exited with ${code} before it was ready`)),
    );
  });
  return {
    url: `http://127.0.0.1:${port}`,
    stop: () =>
      new Promise((resolve) => {
        child.once('exit', resolve);
        child.kill('SIGTERM');
        children.delete(child);
      }),
  };
}

// ---- the fixed-rate cases ------------------------------------------------------------------

async function rateCase(c, approach) {
  const started = epochMs();
  const sink = await startSink(c.delayMs);
  const load = await runLoad(sink.url, approach, c);
  const at = await sink.stats(load.lastHandedAt + c.windowMs);
  await sink.stop();
  return { ...c, approach, load, sink: at, wallSeconds: (epochMs() - started) / 1000 };
}

/** CPU of the load process's own timers and sampling, per second of generation, no events. */
async function harnessCpuPerSecond() {
  const run = await runLoad('http://127.0.0.1:9', 'none', {
    rate: 1000,
    seconds: Math.min(3, SECONDS),
    windowMs: 0,
  });
  return (run.cpuMs / run.generationMs) * 1000;
}

// ---- the Express app -----------------------------------------------------------------------

async function appCase(delayMs) {
  const sink = await startSink(delayMs);
  const app = await startApp(sink.url);
  // Warm the app up with requests that are no pageviews (a bot's user agent): same route, same
  // middleware, nothing sent.
  await autocannon({
    url: `${app.url}/`,
    connections: APP_CONNECTIONS,
    amount: 2000,
    headers: { 'user-agent': 'curl/8.5.0', accept: 'text/html' },
  });
  const warm = await sink.stats();
  // The time of the last page's answer, from autocannon's own events: its promise resolves up to
  // a second later (it ends on its sampling tick).
  let lastPageAt = 0;
  const run = await new Promise((resolve, reject) => {
    const instance = autocannon(
      {
        url: `${app.url}/`,
        connections: APP_CONNECTIONS,
        amount: PAGES,
        headers: { 'user-agent': UA, accept: 'text/html' },
      },
      (error, result) => (error ? reject(error) : resolve(result)),
    );
    instance.on('response', () => (lastPageAt = epochMs()));
  });
  const cutoff = lastPageAt + APP_WINDOW_MS;
  let at = await sink.stats(cutoff);
  while (at.events < PAGES && epochMs() < cutoff) {
    await sleep(100);
    at = await sink.stats(cutoff);
  }
  const appStats = await (await fetch(`${app.url}/__stats`)).json();
  await app.stop();
  await sink.stop();
  return {
    delayMs,
    rps: run.requests.total / run.duration, // a run of a second or two: no per-second mean
    p50: run.latency.p50,
    p99: run.latency.p99,
    errors: run.errors + run.timeouts + run.non2xx,
    warmEvents: warm.events,
    lastPageAt,
    sink: at,
    tracker: appStats.tracker,
    rssMb: appStats.rss / 2 ** 20,
  };
}

// ---- report --------------------------------------------------------------------------------

function buildInfo() {
  try {
    const git = (...args) => execFileSync('git', args, { cwd: root, encoding: 'utf8' }).trim();
    const commit = git('rev-parse', '--short', 'HEAD');
    const dirty = git('status', '--porcelain', '--', 'src').split('\n').filter(Boolean).length;
    const when = builtAt
      ? `, dist/ built ${builtAt.toISOString().slice(0, 19).replace('T', ' ')} UTC`
      : '';
    return `${dirty ? `${commit} with ${dirty} changed files under src/` : commit}${when}`;
  } catch {
    return 'unknown';
  }
}

const endpointLabel = (ms) => (ms === 0 ? 'loopback' : ms >= 1000 ? `${ms / 1000} s` : `${ms} ms`);
const concurrencyOf = (stats) => stats?.concurrency;

function caseRow(r, harnessPerSecond) {
  const { load, sink } = r;
  const stats = load.stats;
  const tracker = stats
    ? `${fmt(stats.delivered)} / ${fmt(stats.dropped)} / ${fmt(stats.failed)}`
    : `${fmt(load.resolvedTrue)} ok / ${fmt(load.resolvedFalse)} failed / ${fmt(load.stillOpen)} open`;
  const lag = sink.lastAnswerAt > 0 ? (sink.lastAnswerAt - load.lastHandedAt) / 1000 : undefined;
  const cpuUs =
    ((load.cpuMs - (harnessPerSecond * load.generationMs) / 1000) * 1000) / load.handedIn;
  const limit = concurrencyOf(stats);
  return [
    endpointLabel(r.delayMs),
    `${fmt(r.rate)}/s × ${r.seconds} s`,
    APPROACH_LABEL[r.approach],
    pct(sink.events, load.events),
    pct(sink.answeredBy, load.events),
    tracker,
    lag === undefined ? '-' : fmt(lag, 1),
    `${fmt(sink.connectionsMax)} (${fmt(sink.connectionsTotal)})`,
    fmt(sink.requestsMax),
    limit && typeof limit.limit === 'number' ? `${fmt(limit.limit)} (${fmt(load.limitMax)})` : '-',
    fmt(load.rssMaxMb),
    fmt(cpuUs),
  ];
}

const row = (cells) => `| ${cells.join(' | ')} |`;

function dropReasons(stats) {
  const parts = [];
  for (const kind of ['dropped', 'failed']) {
    for (const [reason, n] of Object.entries(stats?.reasons?.[kind] ?? {})) {
      if (n > 0) parts.push(`${kind} ${reason} ${fmt(n)}`);
    }
  }
  return parts.join(', ');
}

function describeConcurrency(c) {
  if (!c) return '';
  const parts = [`limit ${fmt(c.limit)}`];
  if (typeof c.latencyMs === 'number') parts.push(`latency ${fmt(c.latencyMs, 1)} ms`);
  if (typeof c.baselineMs === 'number') parts.push(`baseline ${fmt(c.baselineMs, 1)} ms`);
  for (const [k, v] of Object.entries(c)) {
    if (!['limit', 'latencyMs', 'baselineMs', 'adaptive'].includes(k) && typeof v !== 'object') {
      parts.push(`${k} ${v}`);
    }
  }
  return parts.join(', ');
}

function targets(results, apps) {
  const find = (delayMs, rate) =>
    results.find((r) => r.approach === 'default' && r.delayMs === delayMs && r.rate === rate);
  const lines = [];
  const mark = (ok) => (ok ? 'met' : '**not met**');
  const within = (r, share) => r && r.sink.answeredBy >= share * r.load.events;
  const noDrops = (r) => r && r.load.stats && r.load.stats.dropped === 0;
  const full = SECONDS === 10 ? '' : ` (shortened run: ${SECONDS} s)`;
  const c100 = find(100, 1000);
  const c300 = find(300, 300);
  const brown = find(2000, 50);
  lines.push(
    `- endpoint at 100 ms, 1,000/s: ≥ 99.9 % within 5 s of the last event, nothing dropped: ` +
      `${mark(within(c100, 0.999) && noDrops(c100))}${full}`,
    `- endpoint at 300 ms, 300/s: ≥ 99.9 % within 5 s of the last event: ${mark(within(c300, 0.999))}`,
    `- endpoint at 2 s, 50/s: nothing dropped, all within 10 s of the last event: ${mark(within(brown, 1) && noDrops(brown))}`,
  );
  const slow = apps.filter((a) => a.delayMs > 0);
  if (slow.length) {
    const ratio = p99Ratio(apps);
    lines.push(
      `- Express app, endpoint at 100 ms: every pageview within 5 s of the last page in every round: ${mark(slow.every((a) => a.sink.answeredBy === PAGES))}; ` +
        `p99 within 1.1× of loopback: ${mark(ratio <= 1.1)} (${fmt(ratio, 3)}×, ${slow.length === 1 ? 'one round' : `the median of ${slow.length} rounds' ratios`})`,
    );
  }
  const conns = Math.max(
    ...results.filter((r) => r.approach === 'default').map((r) => r.sink.connectionsMax),
    ...apps.map((a) => a.sink.connectionsMax),
  );
  lines.push(
    `- at most 512 connections at any moment: ${mark(conns <= 512)} (at most ${fmt(conns)})`,
  );
  return lines;
}

function p99Ratio(apps) {
  const ratios = [];
  for (let i = 0; i + 1 < apps.length; i += 2) ratios.push(apps[i + 1].p99 / apps[i].p99);
  return median(ratios);
}

function markdown(results, apps, harnessPerSecond, wallSeconds) {
  const lines = [];
  lines.push('## Distance: the endpoint 100 ms to 2 s away', '');
  lines.push(
    `Node ${process.version}, ${os.cpus().length} CPUs, build ${buildInfo()}, ${fmt(wallSeconds)} s in all. ` +
      'The endpoint stand-in (bench/slow-sink.mjs) answers each POST after a fixed delay and counts in its own ' +
      'process; the events come from another process (bench/distance-load.mjs) at a steady rate (a 1 ms timer ' +
      'hands in the events due), after one warm-up event that is not counted. After the last event the package ' +
      `waits for \`flush()\` at most 5 s (10 s at 2 s), then \`close({ timeout: ${CLOSE_MS} })\`; the \`fetch\` ` +
      'approach waits as long for its requests. Visitor IPs are spread over 20,000 addresses, so that the ' +
      'per-visitor guard (on by default) lets every event through. One run per case.',
    '',
  );
  lines.push(
    '- **delivered**: events the stand-in answered while the client was still there, each once, of the scheduled events (a process too busy to keep the schedule stops handing in at 1.5 times the scheduled time); ' +
      '**in window**: the same, answered by 5 s (10 s at 2 s) after the last event;',
    "- **tracker**: the package's `stats()` after `close()` (delivered / dropped / failed; the warm-up event left out); " +
      'for `fetch`, its promises (`true` / `false` / still open when the wait ended);',
    '- **lag**: last event handed in → last answer the stand-in gave, s;',
    '- **conns**: connections open at once at most at the stand-in (set up in all); **reqs**: requests open at once at most;',
    '- **limit**: `stats().concurrency.limit` at the end (largest seen, sampled every 50 ms), when there is one;',
    `- **RSS**: the load process's largest, MB; **CPU**: the load process's CPU time (all threads, user + system) per event handed in, µs, less the harness's own timers (${fmt(harnessPerSecond)} ms per second of generation, measured with no events).`,
    '',
  );
  lines.push(
    row([
      'endpoint',
      'events',
      'approach',
      'delivered',
      'in window',
      'tracker',
      'lag s',
      'conns',
      'reqs',
      'limit',
      'RSS',
      'CPU',
    ]),
    row(Array(12).fill('---')),
  );
  for (const r of results) lines.push(row(caseRow(r, harnessPerSecond)));
  const notes = [];
  for (const r of results) {
    const name = `${endpointLabel(r.delayMs)}, ${fmt(r.rate)}/s, ${APPROACH_LABEL[r.approach]}`;
    const parts = [];
    const reasons = dropReasons(r.load.stats);
    if (reasons) parts.push(reasons);
    if (r.load.stats?.retries) parts.push(`retries ${fmt(r.load.stats.retries)}`);
    const c = describeConcurrency(concurrencyOf(r.load.stats));
    if (c) parts.push(`at the end: ${c}`);
    if (r.load.handedIn < r.load.events) {
      parts.push(
        `the process was too busy to keep the schedule: ${fmt(r.load.handedIn)} of ${fmt(r.load.events)} events handed in by 1.5 times the scheduled time, when it stopped`,
      );
    } else if (r.load.maxBehindMs > 100) {
      parts.push(
        `the events were handed in over ${fmt(r.load.generationMs / 1000, 1)} s, up to ${fmt(r.load.maxBehindMs / 1000, 1)} s behind their schedule (the process was busy)`,
      );
    }
    if (r.load.firstError) parts.push(`first error: ${r.load.firstError}`);
    if (r.load.sampleError) parts.push(`the load process: ${r.load.sampleError}`);
    if (r.sink.acceptErrors) {
      parts.push(
        `the stand-in failed to accept ${fmt(r.sink.acceptErrors)} connections (${r.sink.acceptError})`,
      );
    }
    if (parts.length) notes.push(`- ${name}: ${parts.join('; ')}.`);
  }
  if (notes.length) lines.push('', ...notes);

  if (apps.length) {
    lines.push('', '### An Express app at distance', '');
    lines.push(
      `Express 5 with \`analytics()\` at its defaults but \`visitorRateLimit: false\` (every request comes from ` +
        `127.0.0.1; bench/app.mjs) serving ${fmt(PAGES)} HTML pages as fast as it can, ${APP_CONNECTIONS} at a time ` +
        '(autocannon, after 2,000 warm-up requests from a bot that are not tracked), the endpoint at 100 ms and ' +
        `on loopback, ${APP_ROUNDS} rounds interleaved. Medians; the p99 ratio is the median of the per-round ratios. ` +
        '"In 5 s": pageviews the stand-in answered by 5 s after the last page, in the worst round.',
      '',
      row([
        'endpoint',
        'requests/s',
        'p50 ms',
        'p99 ms',
        'p99 vs loopback',
        'in 5 s',
        'lag s',
        'conns',
        'limit at the end',
      ]),
      row(Array(9).fill('---')),
    );
    const ratio = p99Ratio(apps);
    for (const delayMs of [0, 100]) {
      const rs = apps.filter((a) => a.delayMs === delayMs);
      const worst = Math.min(...rs.map((a) => a.sink.answeredBy));
      const lags = rs.map((a) => (a.sink.lastAnswerAt - a.lastPageAt) / 1000);
      const limits = rs.map((a) => concurrencyOf(a.tracker)?.limit).filter((x) => x !== undefined);
      lines.push(
        row([
          endpointLabel(delayMs),
          fmt(median(rs.map((a) => a.rps))),
          fmt(median(rs.map((a) => a.p50)), 1),
          fmt(median(rs.map((a) => a.p99)), 1),
          delayMs === 0 ? '1.00' : fmt(ratio, 2),
          `${fmt(worst)} of ${fmt(PAGES)}`,
          fmt(median(lags), 1),
          fmt(Math.max(...rs.map((a) => a.sink.connectionsMax))),
          limits.length ? limits.map((x) => fmt(x)).join(', ') : '-',
        ]),
      );
    }
    const errors = apps.reduce((n, a) => n + a.errors, 0);
    const warm = apps.reduce((n, a) => n + a.warmEvents, 0);
    if (errors || warm) {
      lines.push('', `Load errors: ${fmt(errors)}; events sent during the warm-up: ${fmt(warm)}.`);
    }
  }
  lines.push('', '### Targets of issue 14 at default options', '', ...targets(results, apps), '');
  return lines;
}

/**
 * Copies dist/ and the scripts the children run to .tmp/bench-distance-<pid>/ (inside the
 * project, so that node_modules is found as usual); removeSnapshot() removes it.
 */
async function snapshot() {
  const dir = path.join(root, '.tmp', `bench-distance-${process.pid}`);
  // Someone may be rebuilding dist/ right now: wait for a whole build (up to a minute).
  const built = ['index.js', 'delivery-worker.js'].map((f) => path.join(root, 'dist', f));
  for (let i = 0; i < 600 && !built.every((f) => existsSync(f)); i++) await sleep(100);
  await sleep(500);
  builtAt = statSync(built[0]).mtime;
  cpSync(path.join(root, 'dist'), path.join(dir, 'dist'), { recursive: true });
  for (const file of [
    'slow-sink.mjs',
    'distance-load.mjs',
    'app.mjs',
    'thread-cpu.mjs',
    'floor.mjs',
    'floor-worker.mjs',
  ]) {
    cpSync(path.join(here, file), path.join(dir, 'bench', file));
  }
  scripts = path.join(dir, 'bench');
  removeSnapshot = () => {
    scripts = here;
    removeSnapshot = () => undefined;
    rmSync(dir, { recursive: true, force: true });
  };
}

/** Runs every distance case; returns the "Distance" section of the results, as lines. */
export async function runDistance({ log = console.error } = {}) {
  await snapshot();
  try {
    return await runCases(log);
  } finally {
    children.forEach((c) => c.kill('SIGKILL'));
    children.clear();
    removeSnapshot();
  }
}

async function runCases(log) {
  const started = epochMs();
  const harnessPerSecond = await harnessCpuPerSecond();
  log(`distance: the harness alone uses ${fmt(harnessPerSecond)} ms of CPU per second`);
  const results = [];
  for (const c of CASES) {
    for (const approach of APPROACHES) {
      const r = await rateCase(c, approach);
      results.push(r);
      log(
        `distance ${endpointLabel(c.delayMs)} ${c.rate}/s ${approach}: delivered ${pct(r.sink.events, r.load.events)}, ` +
          `in window ${pct(r.sink.answeredBy, r.load.events)}, conns ${r.sink.connectionsMax}, ` +
          `${fmt(r.wallSeconds, 1)} s` +
          (r.load.logLines.length
            ? `; ${r.load.logLines.length} log lines, first: ${r.load.logLines[0].slice(0, 160)}`
            : ''),
      );
    }
  }
  const apps = [];
  for (let round = 1; round <= APP_ROUNDS; round++) {
    for (const delayMs of [0, 100]) {
      const a = await appCase(delayMs);
      apps.push(a);
      log(
        `distance app round ${round} ${endpointLabel(delayMs)}: ${fmt(a.rps)} req/s, p99 ${a.p99} ms, ` +
          `${a.sink.answeredBy}/${PAGES} in 5 s`,
      );
    }
  }
  return markdown(results, apps, harnessPerSecond, (epochMs() - started) / 1000);
}

const resultsFile = path.join(here, 'results', 'latest.md');

/** Splits bench/results/latest.md around its "Distance" section: [before, section, after]. */
function splitResults() {
  const text = existsSync(resultsFile)
    ? readFileSync(resultsFile, 'utf8')
    : '# Benchmark results\n';
  const start = text.indexOf('\n## Distance');
  if (start === -1) return [text, '', ''];
  const next = text.indexOf('\n## ', start + 1);
  const end = next === -1 ? text.length : next;
  return [text.slice(0, start), text.slice(start + 1, end), text.slice(end)];
}

/** The "Distance" section of bench/results/latest.md as it is now ('' if none). */
export function readDistanceSection() {
  return splitResults()[1].trimEnd();
}

/** Puts `section` (starting "## Distance") into bench/results/latest.md in place of the old one. */
export function writeDistanceSection(section) {
  const [head, , tail] = splitResults();
  mkdirSync(path.dirname(resultsFile), { recursive: true });
  writeFileSync(resultsFile, `${head.trimEnd()}\n\n${section.trimEnd()}\n${tail}`);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  // Stopped by hand: the exit handler above still ends the children and removes the copy.
  for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => process.exit(1));
  runDistance()
    .then((lines) => {
      const text = lines.join('\n');
      console.log(text);
      writeDistanceSection(text);
    })
    .catch((error) => {
      console.error(error);
      process.exitCode = 1;
    });
}
