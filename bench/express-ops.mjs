/**
 * What single operations a middleware makes cost on a real request, through Express 5 and
 * through plain `node:http`, timed one at a time:
 *   node bench/express-ops.mjs
 * Real keep-alive requests on 127.0.0.1, 10 at a time (bench/keep-alive-load.mjs). Each request
 * runs one operation, in turn, timed with process.hrtime.bigint() around it alone; the median of
 * the last two thirds of each, less the median of an empty operation (the timing's own cost), in
 * ns. Express swaps each request's and response's prototype, which is what the comparison shows.
 * Prints one JSON line per server: {"server":"express","ns":{"method":N,...}}.
 */
import http from 'node:http';
import express from 'express';
import { serveRequests } from './keep-alive-load.mjs';

const PER_OPERATION = 3000;

function operations() {
  const registry = new WeakMap();
  return {
    nothing: () => undefined,
    'req.headers': (req) => req.headers,
    'req.method': (req) => req.method,
    'req.url': (req) => req.url,
    'req.socket': (req) => req.socket,
    'req.socket.remoteAddress': (req) => req.socket.remoteAddress,
    'Object.getPrototypeOf(req)': (req) => Object.getPrototypeOf(req),
    'Object.hasOwn(req, ...) twice': (req) =>
      Object.hasOwn(req, 'analytics') || Object.hasOwn(req, 'track'),
    'weakMap.set(req, {})': (req) => registry.set(req, {}),
    "res.on('finish', fn)": (req, res) => res.on('finish', () => req),
    'res.statusCode': (_req, res) => res.statusCode,
    "res.getHeader('content-type')": (_req, res) => res.getHeader('content-type'),
  };
}

async function measure(server) {
  const ops = operations();
  const names = Object.keys(ops);
  const times = Object.fromEntries(names.map((name) => [name, []]));
  let turn = 0;
  const run = (req, res) => {
    const name = names[turn++ % names.length];
    const start = process.hrtime.bigint();
    ops[name](req, res);
    times[name].push(Number(process.hrtime.bigint() - start));
  };
  const page = (res) => {
    res.setHeader('content-type', 'text/html');
    res.end('<p>page</p>');
  };
  let handler;
  if (server === 'express') {
    const app = express();
    app.use((req, res, next) => {
      run(req, res);
      next();
    });
    app.get(/.*/, (_req, res) => page(res));
    handler = app;
  } else {
    handler = (req, res) => {
      run(req, res);
      page(res);
    };
  }
  await serveRequests(http.createServer(handler), names.length * PER_OPERATION, {
    paths: ['/', '/products/widget', '/cart?x=1'],
    headers: { 'user-agent': 'Mozilla/5.0 (X11; Linux x86_64) Chrome/126.0', accept: 'text/html' },
  });
  const median = (xs) => {
    const sorted = xs.slice(Math.floor(xs.length / 3)).sort((a, b) => a - b);
    return sorted[sorted.length >> 1];
  };
  const base = median(times.nothing);
  const ns = {};
  for (const name of names.slice(1)) ns[name] = median(times[name]) - base;
  return ns;
}

for (const server of ['express', 'http']) {
  process.stdout.write(`${JSON.stringify({ server, ns: await measure(server) })}\n`);
}
