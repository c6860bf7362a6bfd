/**
 * What the option `workerNice` does at full load (Linux), in one process:
 *   npm run build && node bench/worker-nice.mjs [niceA] [niceB] [cycles]
 * One Express app (bench/app.mjs's page) holds two `analytics()` middlewares, one with
 * `workerNice: niceA` (default 10) and one with `niceB` (default 0), each with its own tracker
 * and worker, and serves its page through one of them at a time. The load (50 connections, as in
 * `npm run bench`) runs in 2 s windows through symmetric cycles A, B, B, A, so that a linear drift
 * cancels out of each cycle. Prints, per cycle, requests/s and p99 of each and A / B, then the
 * medians and how many cycles A was ahead, and each tracker's stats after a 3 s drain (every
 * event delivered or not). Not part of `npm run bench`.
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import autocannon from 'autocannon';
import { listenForBench, PAGE } from './bench-app.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const [niceA = '10', niceB = '0', cyclesArg = '10', role] = process.argv.slice(2);
const WINDOW_S = 2;
const SETTLE_MS = 300;
const UA =
  'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36';

if (role !== undefined) await serveApp(role);
else await drive();

/** The app, in a process of its own (argument 4 is the sink's URL). */
async function serveApp(sinkUrl) {
  const { default: express } = await import('express');
  const { analytics } = await import('../dist/index.js');
  const common = { trackingCode: 'bench', host: sinkUrl, logger: false, visitorRateLimit: false };
  const middlewares = {
    a: analytics({ ...common, workerNice: Number(niceA) }),
    b: analytics({ ...common, workerNice: Number(niceB) }),
  };
  let through = middlewares.a;
  const app = express();
  app.get('/__through/:which', (req, res) => {
    through = middlewares[req.params.which];
    res.end();
  });
  app.get('/__stats', (_req, res) =>
    res.json({ a: middlewares.a.tracker.stats(), b: middlewares.b.tracker.stats() }),
  );
  app.use((req, res, next) => through(req, res, next));
  app.get('/', (_req, res) => res.type('html').send(PAGE));
  listenForBench(app, () =>
    Promise.all(Object.values(middlewares).map((m) => m.tracker.close({ timeout: 500 }))),
  );
}

/** Starts a script in its own process; resolves with its URL once it printed its port. */
function startProcess(script, args) {
  const child = spawn(process.execPath, [script, ...args], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  return new Promise((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`${script} exited with ${code}`)));
    readline.createInterface({ input: child.stdout }).once('line', (line) => {
      resolve({ child, url: `http://127.0.0.1:${JSON.parse(line).port}` });
    });
  });
}

async function drive() {
  const cycles = Number(cyclesArg);
  const sink = await startProcess(path.join(here, 'sink.mjs'), []);
  const app = await startProcess(fileURLToPath(import.meta.url), [
    niceA,
    niceB,
    cyclesArg,
    sink.url,
  ]);
  const stop = () => {
    app.child.kill('SIGTERM');
    sink.child.kill('SIGTERM');
  };
  try {
    const load = (seconds) =>
      autocannon({
        url: `${app.url}/`,
        connections: 50,
        duration: seconds,
        headers: { 'user-agent': UA, accept: 'text/html' },
      });
    const through = (which) => fetch(`${app.url}/__through/${which}`).then((r) => r.text());
    for (const which of ['a', 'b']) {
      await through(which);
      await load(WINDOW_S);
    }
    const rpsRatios = [];
    const p99Ratios = [];
    for (let c = 1; c <= cycles; c++) {
      const windows = { a: [], b: [] };
      for (const which of ['a', 'b', 'b', 'a']) {
        await through(which);
        await new Promise((r) => setTimeout(r, SETTLE_MS));
        windows[which].push(await load(WINDOW_S));
      }
      const mean = (xs, pick) => xs.reduce((sum, x) => sum + pick(x), 0) / xs.length;
      const rps = (w) => mean(windows[w], (r) => r.requests.average);
      const p99 = (w) => mean(windows[w], (r) => r.latency.p99);
      rpsRatios.push(rps('a') / rps('b'));
      p99Ratios.push(p99('a') / p99('b'));
      console.log(
        `cycle ${c}: requests/s A ${rps('a').toFixed(0)}, B ${rps('b').toFixed(0)}, A / B ${(rps('a') / rps('b')).toFixed(3)}; ` +
          `p99 A ${p99('a').toFixed(1)} ms, B ${p99('b').toFixed(1)} ms, A / B ${(p99('a') / p99('b')).toFixed(2)}`,
      );
    }
    await new Promise((r) => setTimeout(r, 3000));
    const stats = await (await fetch(`${app.url}/__stats`)).json();
    for (const which of ['a', 'b']) {
      const { enqueued, delivered, dropped, queued } = stats[which];
      console.log(
        `${which.toUpperCase()} (workerNice ${which === 'a' ? niceA : niceB}): enqueued ${enqueued}, delivered ${delivered}, dropped ${dropped}, queued ${queued}`,
      );
    }
    const median = (xs) => {
      const s = [...xs].sort((x, y) => x - y);
      return (s[(s.length - 1) >> 1] + s[s.length >> 1]) / 2;
    };
    console.log(
      `A = workerNice ${niceA}, B = workerNice ${niceB}: requests/s A / B median ${median(rpsRatios).toFixed(3)} ` +
        `(A ahead in ${rpsRatios.filter((x) => x > 1).length} of ${cycles} cycles); p99 A / B median ${median(p99Ratios).toFixed(2)}`,
    );
  } finally {
    stop();
  }
}
