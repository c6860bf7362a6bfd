/**
 * The endpoint stand-in at a distance, for bench/distance.mjs, in its own process (started with
 * `fork`, so that it reports over the IPC channel and no control request shows up in its
 * connection counts):
 *   node bench/slow-sink.mjs <delayMs>
 * Every POST is read to its end and answered 202 `delayMs` later (0: at once, a loopback
 * endpoint). It counts requests received, requests answered (the client still there), the
 * events among them by the `data.i` of their body or else their `Idempotency-Key` header
 * (retries and duplicates count once; `data.i: 'warm-up'` not at all), connections open now and at most and set up in all,
 * requests open (received, not yet answered) at most, and the times of the last request's
 * arrival and of the last answer (ms since the epoch, with fractions: comparable across
 * processes on one machine).
 * Sends {"port":N} when ready; answers {"cmd":"stats","cutoff":T} with the counts, where
 * `answeredBy` is how many events had their answer by T (ms since the epoch).
 */
import http from 'node:http';
import { performance } from 'node:perf_hooks';

const delayMs = Number(process.argv[2] ?? 0);
const epochMs = () => performance.timeOrigin + performance.now();

let received = 0;
let answered = 0;
let connectionsOpen = 0;
let connectionsMax = 0;
let connectionsTotal = 0;
let requestsOpen = 0;
let requestsMax = 0;
let lastArrivalAt = 0;
let lastAnswerAt = 0;
/** Event key -> time of its first answer. */
const events = new Map();
let unkeyed = 0;

/** The event's `data.i` (bench/distance-load.mjs), else its `Idempotency-Key` (pageviews). */
function keyOf(req, body) {
  let i;
  try {
    i = JSON.parse(body)?.data?.i;
  } catch {
    // not JSON: keyed by its header, if any
  }
  if (i !== undefined) return `i:${i}`;
  const header = req.headers['idempotency-key'];
  return typeof header === 'string' && header !== '' ? header : undefined;
}

const server = http.createServer((req, res) => {
  requestsOpen++;
  if (requestsOpen > requestsMax) requestsMax = requestsOpen;
  res.on('close', () => requestsOpen--); // answered, or the client went away
  const chunks = [];
  req.on('data', (chunk) => chunks.push(chunk));
  req.on('end', () => {
    const body = Buffer.concat(chunks).toString('utf8');
    const key = keyOf(req, body);
    const counted = key !== 'i:warm-up'; // the load's first event, before it measures
    if (counted) {
      received++;
      lastArrivalAt = epochMs();
    }
    const answer = () => {
      if (req.socket.destroyed) return; // the client gave up: not delivered
      res.writeHead(202, { 'content-type': 'application/json' });
      res.end('{"ok":true}');
      if (!counted) return;
      answered++;
      lastAnswerAt = epochMs();
      if (key === undefined) unkeyed++;
      else if (!events.has(key)) events.set(key, lastAnswerAt);
    };
    if (delayMs > 0) setTimeout(answer, delayMs);
    else answer();
  });
  req.on('error', () => undefined);
});
server.on('connection', (socket) => {
  connectionsTotal++;
  connectionsOpen++;
  if (connectionsOpen > connectionsMax) connectionsMax = connectionsOpen;
  socket.on('close', () => connectionsOpen--);
});
// Accepting fails when the process is out of file descriptors (EMFILE): count it, keep serving.
let acceptErrors = 0;
let acceptError;
server.on('error', (error) => {
  acceptErrors++;
  acceptError ??= String(error);
});
server.keepAliveTimeout = 30_000;
server.headersTimeout = 60_000;

process.on('message', (message) => {
  if (message?.cmd !== 'stats') return;
  let answeredBy = unkeyed;
  if (typeof message.cutoff === 'number') {
    answeredBy = 0;
    for (const at of events.values()) if (at <= message.cutoff) answeredBy++;
  }
  process.send({
    delayMs,
    received,
    answered,
    events: events.size + unkeyed,
    answeredBy,
    connectionsOpen,
    connectionsMax,
    connectionsTotal,
    requestsOpen,
    requestsMax,
    lastArrivalAt,
    lastAnswerAt,
    acceptErrors,
    acceptError,
  });
});
process.on('disconnect', () => process.exit(0)); // the bench that forked it is gone
process.on('SIGTERM', () => process.exit(0));

server.listen({ port: 0, host: '127.0.0.1', backlog: 4096 }, () => {
  const ready = { port: server.address().port };
  if (process.send) process.send(ready);
  else process.stdout.write(`${JSON.stringify(ready)}\n`); // run by hand: no counts to ask for
});
