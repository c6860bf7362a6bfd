/**
 * The tracker's process of bench/distance.mjs: hands events in at a fixed rate, then waits a
 * bounded time for them to be delivered.
 *   node bench/distance-load.mjs <sinkUrl> <approach> <eventsPerSecond> <seconds> <windowMs> <closeMs>
 * approaches:
 *   default  createTracker({ trackingCode, host }) from the build, nothing else set
 *   fixed10  the same with `concurrency: 10` (the default before `'auto'`)
 *   fetch    the endpoint documentation's approach: one global `fetch` per event, not awaited
 *            (its trackEvent, with the error logged as a count instead of a line)
 * Events are handed in by a 1 ms timer, each tick handing in the events due by then (a steady
 * rate, not a tight loop; a process too busy to keep up stops at 1.5 times the scheduled time,
 * and says how many it handed in); each has its own `data.i` and one of 20,000 visitor IPs (so that the
 * package's per-visitor guard, on by default, lets every one through). After the last one, the
 * package waits for `flush()` at most `windowMs`, then `close({ timeout: closeMs })`; `fetch`
 * waits at most `windowMs` for its requests to settle.
 * Prints one JSON line: times in ms since the epoch, CPU of the whole process (all threads),
 * the largest RSS seen (sampled every 50 ms), the tracker's stats() after close, and the largest
 * in-flight limit seen when stats() has `concurrency.limit`.
 */
import { performance } from 'node:perf_hooks';
import { createTracker } from '../dist/index.js';

const [sinkUrl, approach, rateArg, secondsArg, windowArg, closeArg] = process.argv.slice(2);
const rate = Number(rateArg);
const seconds = Number(secondsArg);
const windowMs = Number(windowArg);
const closeMs = Number(closeArg);
const total = Math.round(rate * seconds);
const UA =
  'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36';
const epochMs = () => performance.timeOrigin + performance.now();
const ipOf = (i) => `198.18.${(i % 20_000) >> 8}.${i & 255}`;

let trueCount = 0;
let falseCount = 0;
let lastTrueAt = 0;
let open = 0;
let firstError;
let allSettled;
const settledOne = (ok) => {
  if (ok) {
    trueCount++;
    lastTrueAt = epochMs();
  } else {
    falseCount++;
  }
  if (--open === 0) allSettled?.();
};

let tracker;
let hand;
let trackEvent;
if (approach === 'fetch') {
  const endpoint = `${sinkUrl}/e/bench`;
  // As the documentation's trackEvent: await the response, answer `response.ok`, body unread.
  trackEvent = async (name, data, visitor) => {
    try {
      const response = await fetch(endpoint, {
        method: 'POST',
        headers: {
          'Content-Type': 'application/json',
          'User-Agent': visitor.userAgent,
          'X-Forwarded-For': visitor.ip,
        },
        body: JSON.stringify({ type: 'event', url: visitor.url, name, data }),
      });
      return response.ok;
    } catch (error) {
      firstError ??= String(error?.cause ?? error);
      return false;
    }
  };
  hand = (i) => {
    open++;
    void trackEvent(
      'distance',
      { i },
      { url: 'https://shop.example/checkout', userAgent: UA, ip: ipOf(i) },
    ).then(settledOne);
  };
} else if (approach === 'none') {
  hand = () => undefined; // the harness alone: its timers and sampling, for comparison
} else {
  tracker = createTracker({
    trackingCode: 'bench',
    host: sinkUrl,
    ...(approach === 'fixed10' ? { concurrency: 10 } : {}),
  });
  hand = (i) => {
    open++;
    void tracker
      .trackEvent(
        'distance',
        { i },
        { url: 'https://shop.example/checkout', userAgent: UA, ip: ipOf(i) },
      )
      .then(settledOne);
  };
}

let rssMax = 0;
let limitMax;
let sampleError;
const sample = () => {
  try {
    const rss = process.memoryUsage.rss();
    if (rss > rssMax) rssMax = rss;
  } catch (error) {
    sampleError ??= String(error); // EMFILE: the process ran out of file descriptors
  }
  const limit = tracker?.stats().concurrency?.limit;
  if (typeof limit === 'number' && !(limit <= limitMax)) limitMax = limit;
};
const sampler = setInterval(sample, 50);

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const bounded = (promise, ms) => {
  let timer;
  return Promise.race([
    promise.then(() => true),
    new Promise((resolve) => (timer = setTimeout(() => resolve(false), ms))),
  ]).finally(() => clearTimeout(timer));
};

// One event first, delivered before anything is measured: the worker thread (or fetch's undici)
// loaded and one connection open, as in an app that has been up a while. The stand-in does not
// count it (its data.i is 'warm-up').
open++;
await new Promise((resolve) => {
  allSettled = resolve;
  const visitor = { userAgent: UA, ip: ipOf(0) };
  if (tracker) void tracker.trackEvent('distance', { i: 'warm-up' }, visitor).then(settledOne);
  else if (trackEvent) void trackEvent('distance', { i: 'warm-up' }, visitor).then(settledOne);
  else settledOne(true);
});
allSettled = undefined;
trueCount = 0;
falseCount = 0;
await sleep(100);
const cpu0 = process.cpuUsage();
const startedAt = epochMs();
let handed = 0;
let maxBehindMs = 0;
await new Promise((resolve) => {
  const start = performance.now();
  // A process too busy to keep the schedule stops handing in at 1.5 times the scheduled time
  // (checked between events: one event can take a millisecond when the process is swamped); the
  // events it did not hand in by then count as not delivered.
  const deadline = start + 1500 * seconds;
  const tick = setInterval(() => {
    const now = performance.now();
    const due = Math.min(total, Math.floor(((now - start) * rate) / 1000));
    if (due > handed) {
      const behind = now - start - (handed * 1000) / rate; // the oldest event due in this tick
      if (behind > maxBehindMs) maxBehindMs = behind;
    }
    while (handed < due && (handed & 63 || performance.now() < deadline)) hand(handed++);
    if (handed >= total || performance.now() >= deadline) {
      clearInterval(tick);
      resolve();
    }
  }, 1);
});
const lastHandedAt = epochMs();

let settledInWindow;
if (tracker) {
  settledInWindow = await bounded(tracker.flush(), windowMs);
} else {
  settledInWindow = open === 0 || (await bounded(new Promise((r) => (allSettled = r)), windowMs));
}
const waitedMs = epochMs() - lastHandedAt;
if (tracker) await tracker.close({ timeout: closeMs });
const closedAt = epochMs();
sample();
clearInterval(sampler);
const cpu = process.cpuUsage(cpu0);

const stats = tracker?.stats();
if (stats) {
  // Less the warm-up event (delivered before the measurement).
  stats.enqueued--;
  stats.delivered--;
}
const result = {
  approach,
  rate,
  seconds,
  events: total,
  handedIn: handed,
  startedAt,
  lastHandedAt,
  generationMs: lastHandedAt - startedAt,
  maxBehindMs,
  settledInWindow,
  waitedMs,
  closingMs: tracker ? closedAt - lastHandedAt - waitedMs : 0,
  resolvedTrue: trueCount,
  resolvedFalse: falseCount,
  stillOpen: open,
  lastTrueAt,
  cpuMs: (cpu.user + cpu.system) / 1000,
  rssMaxMb: rssMax / 2 ** 20,
  stats,
  limitMax,
  firstError,
  sampleError,
};
process.stdout.write(`${JSON.stringify(result)}\n`, () => process.exit(0));
