/**
 * The main-thread target of issue 16 measured on its own, without sockets:
 *   node bench/main-thread-turns.mjs [turns=12] [pageviews=20000]
 * Runs bench/request-cost.mjs (one process per run: real Express 5 requests and responses, the
 * main thread's own CPU time, pageviews at 5,000/s until all are delivered) for no tracking, the
 * floor, floor + rules and the package, in turns (each turn starts one variant later than the
 * one before), and prints each difference per turn with its median and the median's 95 %
 * interval. The same measure as part 2 of `npm run bench`, with more turns and nothing else
 * around it: about 15 s a turn. Needs a build (`npm run build`).
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { median, medianInterval } from './medians.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const TURNS = Number(process.argv[2] ?? 12);
const PAGEVIEWS = Number(process.argv[3] ?? 20000);
const VARIANTS = ['none', 'floor', 'floor-rules', 'package'];

/** Runs a bench script to its end; its stdout. */
function run(script, args) {
  const child = spawn(process.execPath, [path.join(here, script), ...args.map(String)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  return new Promise((resolve, reject) =>
    child.once('exit', (code) =>
      code === 0 ? resolve(out) : reject(new Error(`${script} exited with ${code}`)),
    ),
  );
}

/** The endpoint stand-in, in its own process: its URL once it listens. */
function startSink() {
  const child = spawn(process.execPath, [path.join(here, 'sink.mjs'), 'ok'], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  return new Promise((resolve) => {
    let out = '';
    child.stdout.on('data', (d) => {
      out += d;
      if (out.includes('\n')) {
        resolve({ url: `http://127.0.0.1:${JSON.parse(out.split('\n')[0]).port}`, child });
      }
    });
  });
}

if (TURNS < 6)
  console.error(
    'Fewer than 6 turns: the "interval" printed is their range, which holds the median less surely than 95 %.',
  );
const sink = await startSink();
const sinkUrl = sink.url;
// An error that ends this process ends the stand-in too (which otherwise keeps it alive).
process.on('exit', () => sink.child.kill('SIGKILL'));
const turns = [];
for (let t = 0; t < TURNS; t++) {
  const turn = {};
  for (let i = 0; i < VARIANTS.length; i++) {
    const v = VARIANTS[(i + t) % VARIANTS.length];
    const { cpuNs, requests, delivered } = JSON.parse(
      await run('request-cost.mjs', [sinkUrl, v, PAGEVIEWS, 5000]),
    );
    if (v !== 'none' && delivered !== requests)
      throw new Error(`${v}: ${delivered} of ${requests} delivered`);
    turn[v] = cpuNs / 1000 / requests;
  }
  turns.push(turn);
  console.error(
    `turn ${t + 1}: ${VARIANTS.map((v) => `${v} ${turn[v].toFixed(1)}`).join(', ')} µs/request`,
  );
}
sink.child.kill('SIGTERM');

const fmt = (x) => x.toFixed(1);
console.log(
  `Main thread without sockets (bench/request-cost.mjs, ${PAGEVIEWS} pageviews at 5,000/s), ` +
    `${TURNS} turns, µs per request:\n`,
);
console.log('| difference | median | 95 % interval of the median | each turn |');
console.log('| --- | --- | --- | --- |');
for (const [a, b] of [
  ['package', 'floor'],
  ['package', 'floor-rules'],
  ['floor-rules', 'floor'],
  ['package', 'none'],
  ['floor', 'none'],
]) {
  const d = turns.map((turn) => turn[a] - turn[b]);
  const [lo, hi] = medianInterval(d);
  console.log(
    `| ${a} minus ${b} | ${fmt(median(d))} | ${fmt(lo)} to ${fmt(hi)} | ${d.map(fmt).join(', ')} |`,
  );
}
console.log(
  `\nNo tracking: ${fmt(median(turns.map((turn) => turn.none)))} µs per request (median).`,
);
