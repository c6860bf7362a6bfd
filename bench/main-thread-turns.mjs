/**
 * The main-thread target of issue 16 measured on its own, without sockets:
 *   node bench/main-thread-turns.mjs [turns=12] [pageviews=20000]
 * Runs bench/request-cost.mjs (one process per run: real Express 5 requests and responses, the
 * main thread's own CPU time, pageviews at 5,000/s until all are delivered) for no tracking, the
 * floor, floor + rules and the package, in turns (each turn starts one variant later than the
 * one before), and prints each difference per turn with its median and the median's 95 %
 * interval. The same measure as part 2 of `npm run bench`, with more turns and nothing else
 * around it: about 20 s a turn. Needs a build (`npm run build`).
 */
import { runScript, start } from './children.mjs';
import { median, medianInterval } from './medians.mjs';

const TURNS = Number(process.argv[2] ?? 12);
const PAGEVIEWS = Number(process.argv[3] ?? 20000);
const VARIANTS = ['none', 'floor', 'floor-rules', 'package'];

if (TURNS < 6)
  console.error(
    'Fewer than 6 turns: the "interval" printed is their range, which holds the median less surely than 95 %.',
  );
const sink = await start('sink.mjs', ['ok']);
const turns = [];
for (let t = 0; t < TURNS; t++) {
  const turn = {};
  for (let i = 0; i < VARIANTS.length; i++) {
    const v = VARIANTS[(i + t) % VARIANTS.length];
    const { cpuNs, requests, delivered } = await runScript('request-cost.mjs', [
      sink.url,
      v,
      PAGEVIEWS,
      5000,
    ]);
    if (v !== 'none' && delivered !== requests)
      throw new Error(`${v}: ${delivered} of ${requests} delivered`);
    turn[v] = cpuNs / 1000 / requests;
  }
  turns.push(turn);
  console.error(
    `turn ${t + 1}: ${VARIANTS.map((v) => `${v} ${turn[v].toFixed(1)}`).join(', ')} µs/request`,
  );
}
await sink.stop();

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
