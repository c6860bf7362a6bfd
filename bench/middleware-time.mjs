/**
 * The middleware's own time on real requests through an Express 5 server:
 *   node bench/middleware-time.mjs <sinkUrl>
 * Two numbers per request, each taken with process.hrtime around our code only:
 *   entry   the middleware call itself (what runs before the app's next handler);
 *   finish  its work when the response finishes: the time between a 'finish' listener added
 *           before the middleware and one added after it, plus the time between a subscriber
 *           to Node's `http.server.response.finish` channel subscribed before the package's
 *           and one subscribed after it (where the package does its finish work for requests
 *           Node's server announced: src/request/finish.ts).
 *   headers the app's own first read of req.headers, in its route: Node builds the headers
 *           object at the first read, so where the middleware read them first, the app's read
 *           is cheaper by what the middleware's call paid for it.
 * The same is measured for a middleware that does nothing, which is the timing's own cost, so
 * the package's time is the difference, and for the floor of issue 16 (bench/floor.mjs), whose
 * work at 'finish' (Express's `req.ip`, the URL, one string) is the least a tracker does there. Delivery runs on the worker as by default; its messages
 * back to the main thread are not in these numbers (bench/request-cost.mjs has them).
 * BENCH_ALT_DIST=/path/to/dist/index.js adds `alt`: the package from another build, timed the
 * same way in the same runs (e.g. an older build against today's, on one machine at one time).
 * Keep-alive requests, 10 at a time, the first 2,000 left out (warm-up). Interleaved runs:
 * none, floor, package, none, ... Prints {"none":{...},"floor":{...},"package":{...}} with the
 * median of the runs' medians and means, in ns.
 */
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import http from 'node:http';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import express from 'express';
import { analytics } from '../dist/index.js';
const alt = process.env.BENCH_ALT_DIST
  ? (await import(pathToFileURL(path.resolve(process.env.BENCH_ALT_DIST)).href)).analytics
  : undefined;
import { createFloor } from './floor.mjs';
import { medianAndMean, serveRequests } from './keep-alive-load.mjs';

const [sinkUrl] = process.argv.slice(2);
const RUNS = 3;
const REQUESTS = 6000;
const WARMUP = 2000;
const USER_AGENT =
  'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36';
const PATHS = [
  '/',
  '/products/widget',
  '/products/gadget?utm_source=news&ref=x',
  '/cart',
  '/about',
];

// The package's finish work in the channel: between these two subscribers. `after` is
// subscribed again after each middleware is made, so that it comes after the package's.
const FINISH = 'http.server.response.finish';
let channelStart = 0n;
let channelSpan = 0;
const beforeChannel = () => {
  channelStart = process.hrtime.bigint();
};
const afterChannel = () => {
  channelSpan = Number(process.hrtime.bigint() - channelStart);
};
subscribe(FINISH, beforeChannel);

async function measure(variant) {
  const floor = variant === 'floor' ? createFloor(sinkUrl) : undefined;
  await floor?.ready;
  const middleware =
    variant === 'package' || variant === 'alt'
      ? (variant === 'alt' ? alt : analytics)({
          trackingCode: 'bench',
          host: sinkUrl,
          logger: false,
          visitorRateLimit: false,
        })
      : (floor?.middleware ?? ((_req, _res, next) => next()));
  unsubscribe(FINISH, afterChannel);
  subscribe(FINISH, afterChannel);
  const entry = [];
  const finish = [];
  const app = express();
  app.use((req, res, next) => {
    let finishStart = 0n;
    res.on('finish', () => {
      finishStart = process.hrtime.bigint();
    });
    let passed = false;
    const start = process.hrtime.bigint();
    middleware(req, res, () => {
      passed = true;
    });
    entry.push(Number(process.hrtime.bigint() - start));
    res.on('finish', () => {
      finish.push(Number(process.hrtime.bigint() - finishStart) + channelSpan);
      channelSpan = 0;
    });
    if (passed) next();
  });
  const headersRead = [];
  app.get(/.*/, (req, res) => {
    // The app's first read of req.headers: Node builds the object then, unless someone did.
    const start = process.hrtime.bigint();
    void req.headers;
    headersRead.push(Number(process.hrtime.bigint() - start));
    res.type('html').end('<p>page</p>');
  });
  const headers = {
    'user-agent': USER_AGENT,
    referer: 'https://shop.example/',
    accept: 'text/html',
  };
  await serveRequests(http.createServer(app), WARMUP + REQUESTS, { paths: PATHS, headers });
  await middleware.tracker?.close();
  await floor?.close();
  return {
    entry: medianAndMean(entry.slice(WARMUP)),
    finish: medianAndMean(finish.slice(WARMUP)),
    headers: medianAndMean(headersRead.slice(WARMUP)),
  };
}

const median = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
const runs = { none: [], floor: [], package: [] };
if (alt) runs.alt = [];
for (let r = 0; r < RUNS; r++) {
  for (const variant of Object.keys(runs)) runs[variant].push(await measure(variant));
}
const result = {};
for (const [variant, rs] of Object.entries(runs)) {
  result[variant] = {};
  for (const part of ['entry', 'finish', 'headers']) {
    result[variant][part] = {
      median: Math.round(median(rs.map((x) => x[part].median))),
      mean: Math.round(median(rs.map((x) => x[part].mean))),
    };
  }
}
process.stdout.write(`${JSON.stringify(result)}\n`);
