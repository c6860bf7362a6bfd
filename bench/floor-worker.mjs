/**
 * The floor's delivery worker (see bench/floor.mjs): takes batches of `url\x01ip\x01ua` lines,
 * turns each into a complete POST request and writes it on one of SOCKETS raw keep-alive
 * sockets to the sink, one request in flight per socket, and counts the answers. No retries, no
 * bounds, no timeouts: the least that off-thread delivery of one request per event can do.
 */
import net from 'node:net';
import { readlinkSync } from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';

const { sinkUrl, sockets: SOCKETS = 10, extraUs = 0 } = workerData;
const EXTRA_NS = BigInt(Math.round(extraUs * 1000));
const target = new URL(sinkUrl);
const HEAD = `POST /e/bench HTTP/1.1\r\nHost: ${target.host}\r\nContent-Type: application/json\r\n`;

/** Requests waiting for a socket, as strings; `head` is the next one. */
let queue = [];
let head = 0;
let answered = 0;
let written = 0;
const idle = [];

function build(line) {
  if (EXTRA_NS > 0n) {
    // floor.mjs `extraUs`: busy CPU, as a heavier delivery engine would spend per event.
    const until = process.hrtime.bigint() + EXTRA_NS;
    while (process.hrtime.bigint() < until);
  }
  const a = line.indexOf('\x01');
  const b = line.indexOf('\x01', a + 1);
  const body = `{"type":"pageview","url":${JSON.stringify(line.slice(0, a))}}`;
  return (
    `${HEAD}User-Agent: ${line.slice(b + 1)}\r\nX-Forwarded-For: ${line.slice(a + 1, b)}\r\n` +
    `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`
  );
}

function next() {
  if (head === queue.length) {
    queue = [];
    head = 0;
    return undefined;
  }
  return queue[head++];
}

function connect() {
  const socket = net.connect({ host: target.hostname, port: Number(target.port) });
  socket.setNoDelay(true);
  let buffered = '';
  socket.on('data', (chunk) => {
    buffered += chunk.toString('latin1');
    // One request in flight: a complete response (head, then Content-Length bytes) ends it.
    const end = buffered.indexOf('\r\n\r\n');
    if (end === -1) return;
    const m = /\r\ncontent-length:\s*(\d+)/i.exec(buffered.slice(0, end));
    const length = m === null ? 0 : Number(m[1]);
    if (buffered.length < end + 4 + length) return;
    buffered = '';
    answered++;
    const request = next();
    if (request === undefined) idle.push(socket);
    else {
      written++;
      socket.write(request);
    }
  });
  socket.on('error', () => undefined);
  idle.push(socket);
}

for (let i = 0; i < SOCKETS; i++) connect();

parentPort.on('message', (message) => {
  if (message === 'count') {
    parentPort.postMessage({ answered, written, queued: queue.length - head });
    return;
  }
  const lines = message.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const request = build(lines[i]);
    const socket = idle.pop();
    if (socket === undefined) queue.push(request);
    else {
      written++;
      socket.write(request);
    }
  }
});

// The OS thread id, so that the app can read this thread's CPU time from /proc.
parentPort.postMessage({ tid: Number(readlinkSync('/proc/thread-self').split('/').pop()) });
