/**
 * HTTP/2 against the package's HTTP/1.1 pool, with the endpoint at a distance (issue 14, part 4).
 *
 *   npm run build --silent && node bench/h2-distance.mjs
 *
 * A local TLS endpoint stand-in (a self-signed certificate made at run time with the `openssl`
 * command) offers `h2` and `http/1.1` by ALPN and answers every `POST /e/CODE` with 202 after a
 * fixed delay. It runs in its own process and counts TLS connections (opened, open at most, by
 * ALPN protocol), requests, and HTTP/2 streams open at most on one connection. Like common
 * front ends (nginx, AWS ALB: 128) it allows a bounded number of concurrent streams per
 * connection (H2_MAX_STREAMS).
 *
 * Each client runs in its own process, hands in RATE events a second for SECONDS seconds, then
 * waits for every answer (at most WAIT_MS more). Clients:
 *   h2-node       node:http2, at most 8 sessions (a new one only when the others have no stream
 *                 left), one stream per event
 *   h2-undici     undici 7 Pool with allowH2, at most 8 connections, pipelining 128, requests
 *                 marked idempotent (undici sends a POST alone on its connection otherwise)
 *   pkg-auto      the package: createTracker({ worker: false }) at its default concurrency
 *   pkg-auto-wkr  the same with delivery on its worker thread (the package's real default)
 *   pkg-150       createTracker({ worker: false, concurrency: 150 })
 *   pkg-400       createTracker({ worker: false, concurrency: 400 })
 *   h1-undici     undici 7 Pool over HTTP/1.1, as many connections as the rate needs
 *   none          the harness alone (events built, nothing sent): its CPU is in every other row
 *   h2-undici-plain  (only when named in H2_CLIENTS) undici Pool with allowH2 and nothing else
 * Every client sends what the package sends: a JSON body, content-type, user-agent,
 * x-forwarded-for (a different visitor per event) and idempotency-key. The package's client
 * trusts the certificate through NODE_EXTRA_CA_CERTS; the others get it as `ca`.
 *
 * Per run: delivered %, TLS connections the stand-in saw opened (and open at most), the client
 * process's CPU time per event (user + system, all threads, from the first event to the last
 * answer), its RSS at most, its event-loop delay p99, and the time from the last event handed in
 * to the last answer. Runs are interleaved (every client once per round, the order rotating) and
 * the table shows medians; it is printed and written to bench/results/h2-distance.md.
 *
 * The stand-in delays answers, not packets: handshakes cost loopback time, where at a real
 * distance every new connection costs one round trip for TCP and one more for TLS 1.3 before its
 * first request, which favours the clients that open many connections. H2_RTT=50 puts a relay
 * process between client and stand-in that holds every chunk for half of 50 ms each way
 * (handshakes included; this machine's kernel has no netem).
 *
 * Environment: H2_ROUNDS (3), H2_SECONDS (10), H2_RATES (300,1000,3000), H2_DELAYS (100,300) or
 * H2_CASES (delay:rate pairs, e.g. 100:300,300:1000), H2_RTT (0: ms of round trip the relay adds),
 * H2_CLIENTS (all above), H2_MAX_STREAMS (128), H2_WAIT_MS (30000), H2_OUT (the results file;
 * '-' writes none), H2_RAW (a file for every run's figures as JSON), H2_PACKAGE (the package's
 * ESM entry; dist/index.js).
 */
import { execFileSync, fork } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http2 from 'node:http2';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const self = fileURLToPath(import.meta.url);
const CODE = 'bench_h2';
const UA =
  'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36';
const REQUEST_TIMEOUT_MS = 5000;

const CLIENTS = {
  'h2-node': 'node:http2, ≤ 8 sessions, a stream per event',
  'h2-undici': 'undici Pool, allowH2 (8 conns, pipelining 128, idempotent)',
  'h2-undici-plain': 'undici Pool, allowH2 and nothing else',
  'pkg-auto': "package, `worker: false`, default (`'auto'`)",
  'pkg-auto-wkr': "package at defaults (worker thread, `'auto'`)",
  'pkg-150': 'package, `worker: false`, `concurrency: 150`',
  'pkg-400': 'package, `worker: false`, `concurrency: 400`',
  'h1-undici': 'undici Pool, HTTP/1.1, connections for the rate',
  none: 'the harness alone: events built, none sent',
};
/** What runs unless H2_CLIENTS says otherwise. */
const DEFAULT_CLIENTS = Object.keys(CLIENTS).filter((kind) => kind !== 'h2-undici-plain');

const list = (value, fallback) =>
  (value ?? fallback)
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);

// ---- the endpoint stand-in ------------------------------------------------------------------

async function serve({ keyPath, certPath, delay, maxStreams }) {
  const stats = {
    connections: 0,
    openConnections: 0,
    maxOpenConnections: 0,
    alpn: {},
    requests: 0,
    h2Requests: 0,
    h1Requests: 0,
    inFlight: 0,
    maxInFlight: 0,
    maxStreamsOnOneConnection: 0,
    rejected: 0,
  };
  const server = http2.createSecureServer({
    key: readFileSync(keyPath),
    cert: readFileSync(certPath),
    allowHTTP1: true,
    settings: { maxConcurrentStreams: maxStreams },
  });
  server.on('secureConnection', (socket) => {
    stats.connections++;
    stats.openConnections++;
    stats.maxOpenConnections = Math.max(stats.maxOpenConnections, stats.openConnections);
    const alpn = socket.alpnProtocol || 'none';
    stats.alpn[alpn] = (stats.alpn[alpn] ?? 0) + 1;
    socket.once('close', () => stats.openConnections--);
  });
  server.on('session', (session) => {
    let open = 0;
    session.on('stream', (stream) => {
      open++;
      stats.maxStreamsOnOneConnection = Math.max(stats.maxStreamsOnOneConnection, open);
      stream.once('close', () => open--);
    });
  });
  server.on('request', (req, res) => {
    stats.requests++;
    if (req.httpVersionMajor === 2) stats.h2Requests++;
    else stats.h1Requests++;
    stats.inFlight++;
    stats.maxInFlight = Math.max(stats.maxInFlight, stats.inFlight);
    res.once('close', () => stats.inFlight--);
    const ok = req.method === 'POST' && req.url === `/e/${CODE}`;
    if (!ok) stats.rejected++;
    req.resume();
    req.once('end', () =>
      setTimeout(() => {
        res.writeHead(ok ? 202 : 404, { 'content-length': '0' });
        res.end();
      }, delay),
    );
  });
  // HTTP/1.1 connections stay open between requests as long as the package's client keeps them.
  server.keepAliveTimeout = 5000;
  server.on('sessionError', () => {});
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const cpu0 = process.cpuUsage();
  process.on('message', (message) => {
    if (message === 'stats') {
      const cpu = process.cpuUsage(cpu0);
      stats.cpuUsPerRequest = stats.requests ? (cpu.user + cpu.system) / stats.requests : NaN;
      process.send({ stats });
    } else if (message === 'stop') process.exit(0);
  });
  process.send({ port: server.address().port });
}

// ---- a relay that adds round-trip time ------------------------------------------------------

/**
 * A TCP relay in front of the stand-in that holds every chunk for half the round trip in each
 * direction, so that TCP and TLS handshakes cost round trips as they do at a distance (this
 * machine has no netem). Bytes pass through untouched; TLS runs end to end.
 */
async function relay({ port, rtt }) {
  const half = rtt / 2;
  const forward = (from, to) => {
    from.on('data', (chunk) => setTimeout(() => to.destroyed || to.write(chunk), half));
    from.once('end', () => setTimeout(() => to.destroyed || to.end(), half));
    from.once('close', () => setTimeout(() => to.destroy(), half + 1));
    from.on('error', () => {});
  };
  const server = net.createServer((down) => {
    down.setNoDelay(true);
    const up = net.connect(port, '127.0.0.1');
    up.setNoDelay(true);
    forward(down, up);
    forward(up, down);
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  process.on('message', (message) => message === 'stop' && process.exit(0));
  process.send({ port: server.address().port });
}

// ---- the clients ----------------------------------------------------------------------------

/** Visitor i: its IP (20,000 different ones, as the package's guard allows 60 per 10 s each). */
function visitorIp(i) {
  const k = i % 20000;
  return `198.18.${(k >> 8) & 255}.${k & 255 || 1}`;
}

function eventBody(i) {
  return JSON.stringify({
    type: 'event',
    url: `https://shop.example/products/${i % 100}`,
    name: 'purchase',
    data: { order: i, value: 9.99 },
  });
}

function wireHeaders(i) {
  return {
    'content-type': 'application/json',
    'user-agent': UA,
    'x-forwarded-for': visitorIp(i),
    'idempotency-key': randomUUID(),
  };
}

/** node:http2: one stream per event on a few sessions; a new session only when all are full. */
function nodeH2Sender(origin, ca, maxSessions = 8) {
  const sessions = [];
  const waiting = [];
  let closed = false;

  function open() {
    const entry = { session: http2.connect(origin, { ca }), active: 0, max: 100 };
    entry.session.on('remoteSettings', (s) => {
      if (s.maxConcurrentStreams !== undefined) entry.max = s.maxConcurrentStreams;
      drain();
    });
    const drop = () => {
      const at = sessions.indexOf(entry);
      if (at >= 0) sessions.splice(at, 1);
    };
    entry.session.on('error', drop);
    entry.session.on('goaway', drop);
    entry.session.on('close', drop);
    sessions.push(entry);
    return entry;
  }

  function pick() {
    for (const entry of sessions) if (entry.active < entry.max) return entry;
    return sessions.length < maxSessions ? open() : undefined;
  }

  function drain() {
    while (waiting.length > 0) {
      const entry = pick();
      if (!entry) return;
      start(entry, waiting.shift());
    }
  }

  function start(entry, job) {
    entry.active++;
    let status = 0;
    let stream;
    try {
      stream = entry.session.request({
        ':method': 'POST',
        ':path': `/e/${CODE}`,
        ...job.headers,
        'content-length': String(Buffer.byteLength(job.body)),
      });
    } catch {
      entry.active--;
      job.resolve(false);
      return;
    }
    stream.setTimeout(REQUEST_TIMEOUT_MS, () => stream.close(http2.constants.NGHTTP2_CANCEL));
    stream.once('response', (headers) => (status = headers[':status']));
    stream.on('error', () => {});
    stream.once('close', () => {
      entry.active--;
      job.resolve(status >= 200 && status < 300);
      drain();
    });
    stream.resume();
    stream.end(job.body);
  }

  return {
    send(i) {
      return new Promise((resolve) => {
        if (closed) return resolve(false);
        const job = { body: eventBody(i), headers: wireHeaders(i), resolve };
        const entry = waiting.length === 0 ? pick() : undefined;
        if (entry) start(entry, job);
        else waiting.push(job);
      });
    },
    info: () => ({ sessions: sessions.length }),
    async close() {
      closed = true;
      for (const job of waiting.splice(0)) job.resolve(false);
      await Promise.all(
        sessions.map(
          ({ session }) =>
            new Promise((resolve) => {
              session.once('close', resolve);
              session.destroy();
            }),
        ),
      );
    },
  };
}

async function undiciSender(origin, ca, { h2, connections, plain = false }) {
  const { Pool } = await import('undici');
  const pool = new Pool(origin, {
    connect: { ca },
    allowH2: h2,
    // Over h2, pipelining is how many streams one connection carries before another is opened.
    pipelining: h2 && !plain ? 128 : 1,
    // With no cap, undici opens another h2 connection for every request that arrives while the
    // first is still in its handshake: 8 x 128 streams carry 3,000/s at 300 ms.
    connections: plain ? null : h2 ? 8 : connections,
    headersTimeout: REQUEST_TIMEOUT_MS,
    bodyTimeout: REQUEST_TIMEOUT_MS,
  });
  return {
    async send(i) {
      try {
        const res = await pool.request({
          path: `/e/${CODE}`,
          method: 'POST',
          headers: wireHeaders(i),
          body: eventBody(i),
          // A POST is not idempotent to undici: over h2 it would wait for the connection to be
          // empty. Our events are (Idempotency-Key), so they may share it.
          idempotent: !plain,
        });
        await res.body.dump();
        return res.statusCode >= 200 && res.statusCode < 300;
      } catch {
        return false;
      }
    },
    info: () => ({}),
    close: () => pool.destroy(),
  };
}

async function packageSender(origin, { worker, concurrency }) {
  const entry = process.env.H2_PACKAGE ?? path.join(here, '..', 'dist', 'index.js');
  const { createTracker } = await import(pathToFileURL(entry).href);
  const options = { trackingCode: CODE, host: origin, worker, logger: false };
  if (concurrency !== undefined) options.concurrency = concurrency;
  const tracker = createTracker(options);
  let maxLimit = 0;
  return {
    send: (i) =>
      tracker.trackEvent(
        'purchase',
        { order: i, value: 9.99 },
        { url: `https://shop.example/products/${i % 100}`, userAgent: UA, ip: visitorIp(i) },
      ),
    sample() {
      maxLimit = Math.max(maxLimit, tracker.stats().concurrency?.limit ?? 0);
    },
    info: () => {
      const s = tracker.stats();
      return { dropped: s.dropped, failed: s.failed, retries: s.retries, maxLimit };
    },
    close: () => tracker.close({ timeout: 1000 }),
  };
}

async function client({ kind, port, rate, seconds, delay, rtt, certPath, waitMs }) {
  const origin = `https://127.0.0.1:${port}`;
  const ca = readFileSync(certPath);
  let sender;
  if (kind === 'h2-node') sender = nodeH2Sender(origin, ca);
  else if (kind === 'h2-undici') sender = await undiciSender(origin, ca, { h2: true });
  else if (kind === 'h2-undici-plain')
    sender = await undiciSender(origin, ca, { h2: true, plain: true });
  else if (kind === 'h1-undici') {
    // Little's law with a margin: rate x (delay + round trip + 10 ms) x 1.25.
    const connections = Math.ceil(((rate * (delay + rtt + 10)) / 1000) * 1.25);
    sender = await undiciSender(origin, ca, { h2: false, connections });
  } else if (kind === 'pkg-auto') sender = await packageSender(origin, { worker: false });
  else if (kind === 'pkg-auto-wkr') sender = await packageSender(origin, { worker: true });
  else if (kind === 'pkg-150')
    sender = await packageSender(origin, { worker: false, concurrency: 150 });
  else if (kind === 'pkg-400')
    sender = await packageSender(origin, { worker: false, concurrency: 400 });
  else if (kind === 'none') {
    // The harness alone: events built as for h2-node, nothing sent.
    sender = {
      send: (i) =>
        Promise.resolve(eventBody(i).length + wireHeaders(i)['x-forwarded-for'].length > 0),
      info: () => ({}),
      close: async () => {},
    };
  } else throw new Error(`unknown client ${kind}`);

  const total = Math.round(rate * seconds);
  let sent = 0;
  let settled = 0;
  let delivered = 0;
  let lastAnswer = 0;
  let rssMax = process.memoryUsage.rss();
  const loop = monitorEventLoopDelay({ resolution: 10 });
  loop.enable();
  const sampler = setInterval(() => {
    rssMax = Math.max(rssMax, process.memoryUsage.rss());
    sender.sample?.();
  }, 50);

  let allSettled;
  const done = new Promise((resolve) => (allSettled = resolve));
  const onSettled = (ok) => {
    settled++;
    if (ok) delivered++;
    lastAnswer = performance.now();
    if (settled === total) allSettled();
  };

  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  await new Promise((resolve) => {
    const tick = () => {
      const due = Math.min(total, Math.floor((rate * (performance.now() - t0)) / 1000));
      while (sent < due) sender.send(sent++).then(onSettled, () => onSettled(false));
      if (sent === total) {
        clearInterval(timer);
        resolve();
      }
    };
    const timer = setInterval(tick, 10);
  });
  const lastSent = performance.now();
  let timedOut = false;
  await Promise.race([
    done,
    new Promise((resolve) =>
      setTimeout(() => {
        timedOut = true;
        resolve();
      }, waitMs).unref(),
    ),
  ]);
  const cpu = process.cpuUsage(cpu0);
  const end = timedOut ? performance.now() : lastAnswer;
  rssMax = Math.max(rssMax, process.memoryUsage.rss());
  clearInterval(sampler);
  loop.disable();
  const info = sender.info();
  await sender.close();
  process.send({
    result: {
      total,
      delivered,
      settled,
      timedOut,
      cpuUsPerEvent: (cpu.user + cpu.system) / total,
      sysUsPerEvent: cpu.system / total,
      rssMb: rssMax / 2 ** 20,
      lastAnswerMs: Math.max(0, end - lastSent),
      sendSeconds: (lastSent - t0) / 1000,
      loopP99Ms: loop.percentile(99) / 1e6,
      info,
    },
  });
  // Let the message go out, then leave even if a library still holds a handle.
  setTimeout(() => process.exit(0), 200).unref();
  process.disconnect();
}

// ---- the orchestra --------------------------------------------------------------------------

function startChild(args, env) {
  const child = fork(self, args, { env: { ...process.env, ...env }, stdio: 'inherit' });
  const messages = [];
  const waiters = [];
  child.on('message', (m) => {
    const w = waiters.shift();
    if (w) w(m);
    else messages.push(m);
  });
  const next = (timeoutMs) =>
    new Promise((resolve, reject) => {
      if (messages.length > 0) return resolve(messages.shift());
      const timer = setTimeout(() => reject(new Error(`no answer from ${args[0]}`)), timeoutMs);
      waiters.push((m) => {
        clearTimeout(timer);
        resolve(m);
      });
      child.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`${args[0]} exited with ${code}`));
      });
    });
  return { child, next };
}

function makeCertificate(dir) {
  const keyPath = path.join(dir, 'key.pem');
  const certPath = path.join(dir, 'cert.pem');
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-days',
      '1',
      '-subj',
      '/CN=127.0.0.1',
      '-addext',
      'subjectAltName=IP:127.0.0.1',
      '-keyout',
      keyPath,
      '-out',
      certPath,
    ],
    { stdio: 'ignore' },
  );
  return { keyPath, certPath };
}

async function runOnce({ kind, rate, delay, rtt, seconds, maxStreams, waitMs, keyPath, certPath }) {
  const server = startChild(['server', JSON.stringify({ keyPath, certPath, delay, maxStreams })]);
  let relayed;
  try {
    let { port } = await server.next(10_000);
    if (rtt > 0) {
      relayed = startChild(['relay', JSON.stringify({ port, rtt })]);
      ({ port } = await relayed.next(10_000));
    }
    const c = startChild(
      ['client', JSON.stringify({ kind, port, rate, seconds, delay, rtt, certPath, waitMs })],
      { NODE_EXTRA_CA_CERTS: certPath },
    );
    const { result } = await c.next(seconds * 1000 + waitMs + 30_000);
    await new Promise((resolve) => {
      if (c.child.exitCode !== null) return resolve();
      c.child.once('exit', resolve);
      setTimeout(() => c.child.kill('SIGKILL'), 5000).unref();
    });
    server.child.send('stats');
    const { stats } = await server.next(5000);
    return { ...result, server: stats };
  } finally {
    server.child.kill('SIGKILL');
    relayed?.child.kill('SIGKILL');
  }
}

const fixed = (x, digits = 0) => (Number.isFinite(x) ? x.toFixed(digits) : '–');

const median = (xs) => {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (s.length === 0) return Number.NaN;
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

async function main() {
  const rounds = Number(process.env.H2_ROUNDS ?? 3);
  const seconds = Number(process.env.H2_SECONDS ?? 10);
  const rates = list(process.env.H2_RATES, '300,1000,3000').map(Number);
  const delays = list(process.env.H2_DELAYS, '100,300').map(Number);
  const kinds = list(process.env.H2_CLIENTS, DEFAULT_CLIENTS.join(','));
  const maxStreams = Number(process.env.H2_MAX_STREAMS ?? 128);
  const rtt = Number(process.env.H2_RTT ?? 0);
  const waitMs = Number(process.env.H2_WAIT_MS ?? 30_000);
  const out = process.env.H2_OUT ?? path.join(here, 'results', 'h2-distance.md');
  for (const kind of kinds) if (!(kind in CLIENTS)) throw new Error(`unknown client ${kind}`);

  const dir = mkdtempSync(path.join(os.tmpdir(), 'h2-distance-'));
  const { keyPath, certPath } = makeCertificate(dir);
  const cases = process.env.H2_CASES
    ? list(process.env.H2_CASES).map((c) => {
        const [delay, rate] = c.split(':').map(Number);
        return { delay, rate };
      })
    : delays.flatMap((delay) => rates.map((rate) => ({ delay, rate })));
  const runs = new Map();
  try {
    for (let round = 0; round < rounds; round++) {
      for (const { delay, rate } of cases) {
        const order = kinds.map((_, i) => kinds[(i + round) % kinds.length]);
        for (const kind of order) {
          const r = await runOnce({
            kind,
            rate,
            delay,
            rtt,
            seconds,
            maxStreams,
            waitMs,
            keyPath,
            certPath,
          });
          const key = `${delay}|${rate}|${kind}`;
          if (!runs.has(key)) runs.set(key, []);
          runs.get(key).push(r);
          const pct = ((100 * r.delivered) / r.total).toFixed(2);
          console.error(
            `round ${round + 1} ${delay} ms ${rate}/s ${kind}: ${pct}% delivered, ` +
              `${r.server.connections} conns (${r.server.maxOpenConnections} open at most), ` +
              `${r.cpuUsPerEvent.toFixed(1)} us/event, ${r.rssMb.toFixed(0)} MB, ` +
              `last answer +${r.lastAnswerMs.toFixed(0)} ms` +
              (r.timedOut ? ' (timed out)' : '') +
              ` ${JSON.stringify(r.info)}`,
          );
        }
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }

  const lines = [
    `# HTTP/2 against HTTP/1.1 at a distance (bench/h2-distance.mjs)`,
    '',
    `Node ${process.version}, ${os.cpus().length} cores, ${new Date().toISOString().slice(0, 10)}. ` +
      `Each client in its own process hands in the rate for ${seconds} s, then waits for every ` +
      `answer. The TLS stand-in answers 202 after the delay and allows ${maxStreams} streams per ` +
      `h2 connection. Medians of ${rounds} interleaved runs.` +
      (rtt > 0
        ? ` A relay adds ${rtt} ms of round trip to every exchange, handshakes included: ` +
          `"endpoint" is the stand-in's delay + ${rtt} ms.`
        : ''),
    '',
    '| endpoint | rate | client | delivered | connections opened | open at most | h2 streams on one conn. at most | requests in flight at most | CPU µs/event | CPU µs/delivered event | RSS MB | last answer after last event | loop delay p99 | stand-in CPU µs/request |',
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |',
  ];
  for (const { delay, rate } of cases) {
    for (const kind of kinds) {
      const rs = runs.get(`${delay}|${rate}|${kind}`) ?? [];
      const m = (f) => median(rs.map(f));
      const pct = m((r) => (100 * r.delivered) / r.total);
      lines.push(
        `| ${rtt > 0 ? `${delay} + ${rtt}` : delay} ms | ${rate}/s | ${CLIENTS[kind]} | ${pct.toFixed(pct === 100 ? 0 : 2)}% | ` +
          `${m((r) => r.server.connections)} | ${m((r) => r.server.maxOpenConnections)} | ` +
          `${m((r) => r.server.maxStreamsOnOneConnection)} | ${m((r) => r.server.maxInFlight)} | ` +
          `${m((r) => r.cpuUsPerEvent).toFixed(0)} | ` +
          `${m((r) => (r.cpuUsPerEvent * r.total) / r.delivered).toFixed(0)} | ` +
          `${m((r) => r.rssMb).toFixed(0)} | ${m((r) => r.lastAnswerMs).toFixed(0)} ms | ` +
          `${m((r) => r.loopP99Ms).toFixed(0)} ms | ${fixed(m((r) => r.server.cpuUsPerRequest))} |`,
      );
    }
  }
  const table = lines.join('\n') + '\n';
  console.log(table);
  if (out !== '-') {
    mkdirSync(path.dirname(out), { recursive: true });
    writeFileSync(out, table);
  }
  if (process.env.H2_RAW)
    writeFileSync(process.env.H2_RAW, JSON.stringify(Object.fromEntries(runs)));
}

const role = process.argv[2];
if (role === 'server') await serve(JSON.parse(process.argv[3]));
else if (role === 'relay') await relay(JSON.parse(process.argv[3]));
else if (role === 'client') await client(JSON.parse(process.argv[3]));
else await main();
