/**
 * What adding a property to a request costs, in an Express 5 app and on a plain `http` server:
 *   node bench/request-properties.mjs
 * Express swaps each request's prototype, which leaves every request with a hidden class of its
 * own, so each property a middleware adds builds a new one. This is why the middleware adds none
 * to an Express request (src/request/attach.ts). A middleware times the adding of 0, 1 and 2 properties to
 * real requests (keep-alive, 10 at a time); the cost of one property is the difference.
 * Prints {"express":{"median":[ns0,ns1,ns2],"mean":[...]},"http":{...}}: per request, the median
 * (the stores alone) and the mean (with the GC pauses that land in them), each the median of 5
 * runs.
 */
import http from 'node:http';
import express from 'express';
import { medianAndMean, serveRequests } from './keep-alive-load.mjs';

const REQUESTS = 3000;
const WARMUP = 1000;

/** The middleware: adds `count` properties and keeps the time it took. */
function timing(count, times) {
  return (req, _res, next) => {
    const start = process.hrtime.bigint();
    if (count > 0) req.benchOne = 1;
    if (count > 1) req.benchTwo = 2;
    times.push(Number(process.hrtime.bigint() - start));
    next?.();
  };
}

async function measure(kind, count) {
  const times = [];
  const middleware = timing(count, times);
  let server;
  if (kind === 'express') {
    const app = express();
    app.use(middleware);
    app.get('/', (_req, res) => res.end('ok'));
    server = http.createServer(app);
  } else {
    server = http.createServer((req, res) => {
      middleware(req, res);
      res.end('ok');
    });
  }
  await serveRequests(server, WARMUP + REQUESTS);
  return medianAndMean(times.slice(WARMUP));
}

const median = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
const result = {};
for (const kind of ['express', 'http']) {
  result[kind] = { median: [], mean: [] };
  for (const count of [0, 1, 2]) {
    const runs = [];
    for (let r = 0; r < 5; r++) runs.push(await measure(kind, count));
    result[kind].median.push(median(runs.map((run) => run.median)));
    result[kind].mean.push(Math.round(median(runs.map((run) => run.mean))));
  }
}
process.stdout.write(`${JSON.stringify(result)}\n`);
