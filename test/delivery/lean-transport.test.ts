/**
 * The lean HTTP/1.1 transport against real servers on 127.0.0.1: `node:http`/`node:https` servers
 * for ordinary answers, raw `node:net` servers for exact bytes, odd framing and broken peers.
 */
import { execFileSync, spawn } from 'node:child_process';
import { getEventListeners } from 'node:events';
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import ts from 'typescript';
import {
  createLeanTransport,
  type LeanTransportOptions,
  type PostTransport,
} from '../../src/delivery/lean-transport';
import type { DeadlineTransport, Transport, TransportRequest } from '../../src/delivery/transport';
import { watchSockets } from '../helpers/sockets';
import { watchTimers } from '../helpers/timers';

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function transport(options: Partial<LeanTransportOptions> = {}): Transport {
  const t = createLeanTransport({ maxSockets: 4, ...options });
  cleanups.push(() => t.close?.());
  return t;
}

const never = (): AbortSignal => new AbortController().signal;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function post(url: string, body = '{}', headers: Record<string, string> = {}): TransportRequest {
  return { url, headers: { 'content-type': 'application/json', ...headers }, body };
}

async function until(condition: () => boolean, timeoutMs = 2000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await sleep(5);
  }
}

/** The rejection of `promise` (fails the test when it resolves). */
async function rejection(promise: Promise<unknown>): Promise<Error & { code?: string }> {
  try {
    await promise;
  } catch (error) {
    return error as Error & { code?: string };
  }
  throw new Error('expected a rejection');
}

interface Received {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** A `node:http` server that notes requests and connections; `handler` answers. */
async function httpServer(
  handler: (req: http.IncomingMessage, res: http.ServerResponse, body: string) => void,
  host = '127.0.0.1',
) {
  const received: Received[] = [];
  const sockets = new Set<net.Socket>();
  const stats = { connections: 0, open: 0, maxOpen: 0, active: 0, maxActive: 0 };
  const server = http.createServer((req, res) => {
    stats.active++;
    stats.maxActive = Math.max(stats.maxActive, stats.active);
    res.on('close', () => stats.active--);
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      received.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body });
      handler(req, res, body);
    });
  });
  server.keepAliveTimeout = 60_000;
  server.on('connection', (socket: net.Socket) => {
    stats.connections++;
    stats.open++;
    stats.maxOpen = Math.max(stats.maxOpen, stats.open);
    sockets.add(socket);
    socket.on('close', () => {
      stats.open--;
      sockets.delete(socket);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, host, resolve));
  const { port } = server.address() as net.AddressInfo;
  const origin = host.includes(':') ? `http://[${host}]:${port}` : `http://${host}:${port}`;
  cleanups.push(
    () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  );
  return { server, port, url: `${origin}/e/CODE`, origin, received, stats, sockets };
}

interface RawRequest {
  /** Which connection (0, 1, ...) and which request on it (0, 1, ...). */
  conn: number;
  index: number;
  head: string;
  body: string;
  raw: Buffer;
}

/**
 * A raw TCP server: splits what each connection sends into requests (by Content-Length) and hands
 * each to `onRequest`, which writes whatever bytes the test wants.
 */
/**
 * The bytes a POST of `body` to `target` on 127.0.0.1:`port` must be: the head in latin1 (one
 * byte a character), `headerLines` between Host and the framing headers, the body in UTF-8.
 */
function requestBytes(target: string, port: number, headerLines: string[], body: string): Buffer {
  const head =
    `POST ${target} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n` +
    headerLines.map((line) => `${line}\r\n`).join('') +
    `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: keep-alive\r\n\r\n`;
  return Buffer.concat([Buffer.from(head, 'latin1'), Buffer.from(body, 'utf8')]);
}

async function rawServer(
  onRequest: (socket: net.Socket, request: RawRequest, server: RawServer) => void,
) {
  const server = net.createServer();
  const raw: RawServer = {
    port: 0,
    url: '',
    sockets: [],
    requests: [],
    firstChunks: [],
    closed: 0,
  };
  server.on('connection', (socket) => {
    const conn = raw.sockets.length;
    raw.sockets.push(socket);
    socket.setNoDelay(true);
    socket.on('error', () => {});
    socket.on('close', () => raw.closed++);
    let pending = Buffer.alloc(0);
    let index = 0;
    socket.on('data', (chunk: Buffer) => {
      if (pending.length === 0 && index === 0) raw.firstChunks.push(chunk);
      pending = Buffer.concat([pending, chunk]);
      for (;;) {
        const end = pending.indexOf('\r\n\r\n');
        if (end === -1) return;
        const head = pending.toString('latin1', 0, end + 4);
        const length = Number(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1] ?? 0);
        if (pending.length < end + 4 + length) return;
        const request: RawRequest = {
          conn,
          index: index++,
          head,
          body: pending.toString('utf8', end + 4, end + 4 + length),
          raw: pending.subarray(0, end + 4 + length),
        };
        pending = pending.subarray(end + 4 + length);
        raw.requests.push(request);
        onRequest(socket, request, raw);
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  raw.port = (server.address() as net.AddressInfo).port;
  raw.url = `http://127.0.0.1:${raw.port}/e/CODE`;
  cleanups.push(
    () =>
      new Promise<void>((resolve) => {
        for (const socket of raw.sockets) socket.destroy();
        server.close(() => resolve());
      }),
  );
  return raw;
}

interface RawServer {
  port: number;
  url: string;
  sockets: net.Socket[];
  requests: RawRequest[];
  /** The first chunk read on each connection. */
  firstChunks: Buffer[];
  /** Server-side sockets closed so far. */
  closed: number;
}

/** Writes `bytes` one byte per write, a timer tick apart. */
async function trickle(socket: net.Socket, bytes: string): Promise<void> {
  const buffer = Buffer.from(bytes, 'latin1');
  for (let i = 0; i < buffer.length; i++) {
    if (socket.destroyed) return;
    socket.write(buffer.subarray(i, i + 1));
    await new Promise((resolve) => setImmediate(resolve));
  }
}

const OK = 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok';

describe('answers', () => {
  test.each([
    [202, 'accepted'],
    [400, 'bad request: no tracking code'],
    [404, 'not found'],
    [429, 'slow down'],
    [500, 'internal error'],
    [503, 'unavailable'],
  ])('status %i and the body are resolved', async (status, text) => {
    const server = await httpServer((_req, res) => {
      res.statusCode = status;
      res.end(text);
    });
    const response = await transport().send(post(server.url), never());
    expect(response).toEqual({ status, retryAfter: undefined, body: text });
  });

  test('Retry-After is passed on', async () => {
    const server = await httpServer((_req, res) => {
      res.writeHead(429, { 'Retry-After': '120' });
      res.end();
    });
    const response = await transport().send(post(server.url), never());
    expect(response).toEqual({ status: 429, retryAfter: '120', body: '' });
  });

  test('header names are case-insensitive, values trimmed', async () => {
    const server = await rawServer((socket) => {
      socket.write(
        'HTTP/1.1 503 Service Unavailable\r\nRETRY-AFTER:   Wed, 21 Oct 2026 07:28:00 GMT  \r\n' +
          'CONTENT-length:5\r\nX-Other: 1\r\n\r\nbusy!',
      );
    });
    const response = await transport().send(post(server.url), never());
    expect(response).toEqual({
      status: 503,
      retryAfter: 'Wed, 21 Oct 2026 07:28:00 GMT',
      body: 'busy!',
    });
  });

  test('the body snippet is capped at 512 characters, and the rest is read', async () => {
    const bodies = ['x'.repeat(5000), 'é'.repeat(3000), '😀'.repeat(1000), 'ab€'.repeat(400)];
    const server = await httpServer((req, res) => {
      res.statusCode = 500;
      res.end(bodies[Number(req.url?.split('=')[1])]);
    });
    const t = transport();
    for (let i = 0; i < bodies.length; i++) {
      const response = await t.send(post(`${server.url}?i=${i}`), never());
      expect(response.body).toBe((bodies[i] as string).slice(0, 512));
      expect(response.body).toHaveLength(512);
    }
    // Every body was read to its end: the one connection was reused throughout.
    expect(server.stats.connections).toBe(1);
  });

  test('a multi-byte character split across reads decodes whole', async () => {
    const server = await rawServer((socket) => {
      const body = Buffer.from('€uro', 'utf8');
      socket.write(`HTTP/1.1 500 Oops\r\nContent-Length: ${body.length}\r\n\r\n`);
      socket.write(body.subarray(0, 1));
      setTimeout(() => socket.write(body.subarray(1)), 10);
    });
    const response = await transport().send(post(server.url), never());
    expect(response.body).toBe('€uro');
  });
});

describe('the request', () => {
  test('exact bytes: request line, Host, headers, Content-Length in bytes, UTF-8 body, one write', async () => {
    const server = await rawServer((socket) => socket.write(OK));
    const body = JSON.stringify({ name: 'héllo wörld €', emoji: '😀', cjk: '漢字' });
    const headers = {
      'content-type': 'application/json',
      'user-agent': 'Mozilla/5.0 (X11; Linux x86_64)',
      'x-forwarded-for': '203.0.113.7',
      'idempotency-key': 'abc-123',
    };
    await transport().send({ url: `${server.url}?v=1&w=2#frag`, headers, body }, never());
    const bytes = Buffer.byteLength(body);
    expect(bytes).toBeGreaterThan(body.length);
    const expected = requestBytes(
      '/e/CODE?v=1&w=2',
      server.port,
      [
        'content-type: application/json',
        'user-agent: Mozilla/5.0 (X11; Linux x86_64)',
        'x-forwarded-for: 203.0.113.7',
        'idempotency-key: abc-123',
      ],
      body,
    );
    expect(server.requests).toHaveLength(1);
    expect((server.requests[0] as RawRequest).raw.equals(expected)).toBe(true);
    expect((server.requests[0] as RawRequest).body).toBe(body);
    // Written at once: the server's first read holds the whole request.
    expect((server.firstChunks[0] as Buffer).equals(expected)).toBe(true);
  });

  test('a header value with latin1 characters goes out one byte each; the body stays UTF-8', async () => {
    const server = await rawServer((socket) => socket.write(OK));
    const body = '{"city":"Zürich"}';
    const headers = { 'content-type': 'application/json', 'user-agent': 'Agent/1 (Zürich)' };
    await transport().send({ url: server.url, headers, body }, never());
    const expected = requestBytes(
      '/e/CODE',
      server.port,
      ['content-type: application/json', 'user-agent: Agent/1 (Z\xfcrich)'],
      body,
    );
    expect((server.requests[0] as RawRequest).raw.equals(expected)).toBe(true);
    expect((server.firstChunks[0] as Buffer).equals(expected)).toBe(true);
  });

  test('refuses a bad header name or value, and leaves out the framing headers it writes itself', async () => {
    const server = await rawServer((socket) => socket.write(OK));
    const t = transport();
    const send = (headers: Record<string, string>) =>
      t.send({ url: server.url, headers, body: '{}' }, never());
    expect((await rejection(send({ 'bad name': 'x' }))).message).toBe(
      'Invalid header name "bad name"',
    );
    expect((await rejection(send({ 'x-a': 'line\r\nbreak' }))).message).toBe(
      'Invalid value for header x-a',
    );
    expect((await rejection(send({ 'x-a': 'snow \u2603' }))).message).toBe(
      'Invalid value for header x-a',
    );
    // Twice: the second time the names are known, and still checked for what they are.
    for (let i = 0; i < 2; i++) {
      await send({ Host: 'evil', 'content-length': '1', 'x-a': 'b', Connection: 'close' });
    }
    expect(server.requests.map((r) => r.head)).toEqual(
      Array(2).fill(
        `POST /e/CODE HTTP/1.1\r\nHost: 127.0.0.1:${server.port}\r\nx-a: b\r\n` +
          'Content-Length: 2\r\nConnection: keep-alive\r\n\r\n',
      ),
    );
  });

  test('a node:http server reads the method, path, headers and body', async () => {
    const server = await httpServer((_req, res) => res.end());
    const body = '{"text":"naïve café – ok"}';
    await transport().send(post(`${server.url}?q=1`, body, { 'x-custom': 'v' }), never());
    const [request] = server.received;
    expect(request).toMatchObject({ method: 'POST', url: '/e/CODE?q=1', body });
    expect(request?.headers).toMatchObject({
      host: `127.0.0.1:${server.port}`,
      'content-type': 'application/json',
      'content-length': String(Buffer.byteLength(body)),
      connection: 'keep-alive',
      'x-custom': 'v',
    });
  });

  test('Host is the host name and port as in the URL', async () => {
    const server = await rawServer((socket) => socket.write(OK));
    const url = server.url.replace('127.0.0.1', 'localhost');
    const outcome = await transport()
      .send(post(url), never())
      .catch((error: { code?: string }) => error.code);
    if (outcome === 'ECONNREFUSED') {
      console.warn('localhost does not reach 127.0.0.1 here: Host test skipped');
      return;
    }
    expect(outcome).toMatchObject({ status: 200 });
    expect((server.requests[0] as RawRequest).head).toContain(
      `\r\nHost: localhost:${server.port}\r\n`,
    );
  });

  test('an IPv6 literal host works, with Host: [::1]:port', async () => {
    let server: Awaited<ReturnType<typeof httpServer>>;
    try {
      server = await httpServer((_req, res) => res.end('six'), '::1');
    } catch {
      console.warn('IPv6 loopback unavailable: test skipped');
      return;
    }
    const response = await transport().send(post(server.url), never());
    expect(response).toMatchObject({ status: 200, body: 'six' });
    expect(server.received[0]?.headers.host).toBe(`[::1]:${server.port}`);
  });

  test.each([
    ['CR in a value', { 'x-a': 'a\rb' }],
    ['LF in a value', { 'x-a': 'a\nInjected: 1' }],
    ['NUL in a value', { 'x-a': 'a\0b' }],
    ['CRLF in a name', { 'x-a\r\nInjected': 'b' }],
    ['a space in a name', { 'x a': 'b' }],
    ['a colon in a name', { 'x:a': 'b' }],
    ['an empty name', { '': 'b' }],
  ])('%s is refused with a TypeError, nothing sent', async (_what, headers) => {
    const server = await httpServer((_req, res) => res.end());
    const t = transport();
    let result: Promise<unknown> | undefined;
    expect(() => {
      result = t.send(post(server.url, '{}', headers), never());
    }).not.toThrow();
    const error = await rejection(result as Promise<unknown>);
    expect(error).toBeInstanceOf(TypeError);
    await sleep(20);
    expect(server.stats.connections).toBe(0);
  });

  test('framing headers among the given ones are not written twice', async () => {
    const server = await rawServer((socket) => socket.write(OK));
    await transport().send(
      post(server.url, '{"a":1}', { 'content-length': '999', connection: 'close', host: 'evil' }),
      never(),
    );
    const head = (server.requests[0] as RawRequest).head;
    expect(head.match(/content-length/gi)).toHaveLength(1);
    expect(head).toContain('Content-Length: 7\r\n');
    expect(head.match(/connection/gi)).toHaveLength(1);
    expect(head).not.toContain('evil');
  });

  test('bad URLs reject (never throw)', async () => {
    const t = transport();
    await expect(t.send(post('ftp://127.0.0.1/e/CODE'), never())).rejects.toThrow(TypeError);
    // Node's own TypeError (another realm than Jest's): compared by name.
    await expect(t.send(post('not a url'), never())).rejects.toMatchObject({
      name: 'TypeError',
      code: 'ERR_INVALID_URL',
    });
    await expect(
      t.send({ url: 'http://127.0.0.1:1/e', headers: {}, body: 1 as unknown as string }, never()),
    ).rejects.toThrow(TypeError);
  });
});

describe('connections', () => {
  test('50 sequential requests share one connection', async () => {
    const server = await httpServer((_req, res) => res.end('ok'));
    const t = transport();
    for (let i = 0; i < 50; i++) {
      const response = await t.send(post(server.url, `{"i":${i}}`), never());
      expect(response.status).toBe(200);
    }
    expect(server.stats.connections).toBe(1);
    expect(server.received.map((r) => r.body)).toEqual(
      Array.from({ length: 50 }, (_, i) => `{"i":${i}}`),
    );
  });

  test('30 concurrent requests use at most maxSockets connections; the rest wait', async () => {
    const server = await httpServer((_req, res) => {
      setTimeout(() => res.end('ok'), 15);
    });
    const t = transport({ maxSockets: 4 });
    const responses = await Promise.all(
      Array.from({ length: 30 }, (_, i) => t.send(post(server.url, `{"i":${i}}`), never())),
    );
    expect(responses.every((r) => r.status === 200)).toBe(true);
    expect(server.received).toHaveLength(30);
    expect(server.stats.connections).toBe(4);
    expect(server.stats.maxOpen).toBe(4);
    expect(server.stats.maxActive).toBe(4);
    // Settled in waves of four.
    expect(new Set(server.received.map((r) => r.body)).size).toBe(30);
  });

  test('waiting requests go out first in, first out', async () => {
    const server = await httpServer((_req, res) => {
      setTimeout(() => res.end('ok'), 2);
    });
    const t = transport({ maxSockets: 1 });
    await Promise.all(
      Array.from({ length: 10 }, (_, i) => t.send(post(server.url, `${i}`), never())),
    );
    expect(server.received.map((r) => r.body)).toEqual(
      Array.from({ length: 10 }, (_, i) => `${i}`),
    );
    expect(server.stats.connections).toBe(1);
  });

  test('idle connections are reused most recently used first', async () => {
    const server = await rawServer((socket, request) => {
      // The first request answers at once, the second a little later: connection 1 is freed last.
      setTimeout(() => socket.write(OK), request.body === 'slow' ? 40 : 0);
    });
    const t = transport({ maxSockets: 2 });
    await Promise.all([
      t.send(post(server.url, 'fast'), never()),
      t.send(post(server.url, 'slow'), never()),
    ]);
    const slowConn = server.requests.find((r) => r.body === 'slow')?.conn;
    await t.send(post(server.url, 'next'), never());
    expect(server.requests.find((r) => r.body === 'next')?.conn).toBe(slowConn);
    expect(server.sockets).toHaveLength(2);
  });

  test('Connection: close in a response: the next request opens a new connection', async () => {
    const server = await httpServer((_req, res) => {
      res.setHeader('Connection', 'close');
      res.end('bye');
    });
    const t = transport();
    expect(await t.send(post(server.url), never())).toMatchObject({ status: 200, body: 'bye' });
    expect(await t.send(post(server.url), never())).toMatchObject({ status: 200, body: 'bye' });
    expect(server.stats.connections).toBe(2);
  });

  test('Connection: close from a server that keeps its end open: closed by the client', async () => {
    const server = await rawServer((socket) => {
      socket.write(
        'HTTP/1.1 200 OK\r\nConnection: keep-alive, close\r\nContent-Length: 2\r\n\r\nok',
      );
    });
    const t = transport();
    expect(await t.send(post(server.url), never())).toMatchObject({ status: 200, body: 'ok' });
    await until(() => server.closed === 1);
    expect(await t.send(post(server.url), never())).toMatchObject({ status: 200, body: 'ok' });
    expect(server.sockets).toHaveLength(2);
  });

  test('an idle connection is closed after idleTimeoutMs', async () => {
    const server = await rawServer((socket) => socket.write(OK));
    const t = transport({ idleTimeoutMs: 80 });
    await t.send(post(server.url), never());
    await sleep(20);
    expect(server.closed).toBe(0);
    await until(() => server.closed === 1, 1000);
    await t.send(post(server.url), never());
    expect(server.sockets).toHaveLength(2);
  });

  test('the idle timer restarts with each request', async () => {
    const server = await rawServer((socket) => socket.write(OK));
    const t = transport({ idleTimeoutMs: 150 });
    for (let i = 0; i < 6; i++) {
      await t.send(post(server.url), never());
      await sleep(50);
    }
    expect(server.sockets).toHaveLength(1);
    expect(server.closed).toBe(0);
  });

  test('bytes arriving on an idle connection: that connection is dropped', async () => {
    const server = await rawServer((socket, request) => {
      socket.write(OK);
      if (request.conn === 0) setTimeout(() => socket.write('garbage'), 10);
    });
    const t = transport();
    await t.send(post(server.url), never());
    await until(() => server.closed === 1);
    expect(await t.send(post(server.url), never())).toMatchObject({ status: 200 });
    expect(server.sockets).toHaveLength(2);
  });

  test('extra bytes after a complete response: answered, then the connection is dropped', async () => {
    const server = await rawServer((socket) => socket.write(`${OK}HTTP/1.1 200 OK\r\n`));
    const t = transport();
    expect(await t.send(post(server.url), never())).toEqual({
      status: 200,
      retryAfter: undefined,
      body: 'ok',
    });
    await until(() => server.closed === 1);
    await t.send(post(server.url), never());
    expect(server.sockets).toHaveLength(2);
  });

  test('idle sockets do not hold the event loop; an active one does', async () => {
    const server = await httpServer((_req, res) => {
      setTimeout(() => res.end('ok'), 50);
    });
    server.server.on('connection', (socket: net.Socket) => socket.unref());
    // Only the sockets made from here on: not those of other tests, which may close meanwhile.
    const sockets = watchSockets();
    cleanups.push(sockets.stop);
    const t = transport({ idleTimeoutMs: 60_000 });
    for (let i = 0; i < 2; i++) {
      // The second time, the idle connection is reused: held again while active.
      const pending = t.send(post(server.url), never());
      await sleep(20);
      expect(sockets.holding()).toBe(1);
      await pending;
      expect(sockets.holding()).toBe(0);
    }
    expect(server.stats.connections).toBe(1);
    expect(server.stats.open).toBe(1);
  });
});

describe('incremental parsing', () => {
  test('a response delivered one byte per write', async () => {
    const response =
      'HTTP/1.1 100 Continue\r\n\r\n' +
      'HTTP/1.1 503 Service Unavailable\r\nRetry-After: 3\r\nContent-Length: 11\r\n\r\nhello world';
    const server = await rawServer((socket) => void trickle(socket, response));
    const t = transport();
    expect(await t.send(post(server.url), never())).toEqual({
      status: 503,
      retryAfter: '3',
      body: 'hello world',
    });
    // Read exactly to its end: reused.
    expect(await t.send(post(server.url), never())).toMatchObject({ status: 503 });
    expect(server.sockets).toHaveLength(1);
  });

  test('a chunked response with extensions and trailers, one byte per write', async () => {
    const response =
      'HTTP/1.1 500 Internal Server Error\r\nTransfer-Encoding: chunked\r\n\r\n' +
      '5;name=value\r\nhello\r\n' +
      '1 ; a="b;c"\r\n \r\n' +
      'A\r\n0123456789\r\n' +
      '0\r\nX-Trailer: one\r\nX-Other: two\r\n\r\n';
    const server = await rawServer((socket) => void trickle(socket, response));
    const t = transport();
    expect(await t.send(post(server.url), never())).toMatchObject({
      status: 500,
      body: 'hello 0123456789',
    });
    expect(await t.send(post(server.url), never())).toMatchObject({ status: 500 });
    expect(server.sockets).toHaveLength(1);
  });

  test('chunked, in one piece, with hex sizes and a long body', async () => {
    const big = 'y'.repeat(0x1a2b);
    const server = await rawServer((socket) => {
      socket.write(
        'HTTP/1.1 502 Bad Gateway\r\ntransfer-encoding: gzip, chunked\r\n\r\n' +
          `1A2B\r\n${big}\r\n3;ext\r\nend\r\n0\r\n\r\n`,
      );
    });
    const t = transport();
    const response = await t.send(post(server.url), never());
    expect(response).toMatchObject({ status: 502, body: big.slice(0, 512) });
    await t.send(post(server.url), never());
    expect(server.sockets).toHaveLength(1);
  });

  test('a chunked answer from node:http', async () => {
    const server = await httpServer((_req, res) => {
      res.statusCode = 500;
      res.write('part one, ');
      setTimeout(() => res.end('part two'), 5);
    });
    const t = transport();
    expect(await t.send(post(server.url), never())).toMatchObject({
      status: 500,
      body: 'part one, part two',
    });
    await t.send(post(server.url), never());
    expect(server.stats.connections).toBe(1);
  });

  test('100 Continue and 103 Early Hints are skipped', async () => {
    const server = await rawServer((socket) => {
      socket.write('HTTP/1.1 100 Continue\r\n\r\n');
      setTimeout(() => {
        socket.write('HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n');
        socket.write('HTTP/1.1 201 Created\r\nContent-Length: 4\r\n\r\ndone');
      }, 10);
    });
    const t = transport();
    expect(await t.send(post(server.url), never())).toMatchObject({ status: 201, body: 'done' });
    await t.send(post(server.url), never());
    expect(server.sockets).toHaveLength(1);
  });

  test('a node:http server sending 100 Continue then 200', async () => {
    const server = await httpServer((_req, res) => {
      res.writeContinue();
      res.end('after continue');
    });
    expect(await transport().send(post(server.url), never())).toMatchObject({
      status: 200,
      body: 'after continue',
    });
  });

  test('a body delimited by the connection closing; then a new connection', async () => {
    const server = await rawServer((socket) => {
      socket.write('HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/plain\r\n\r\nuntil ');
      setTimeout(() => socket.end('the end'), 10);
    });
    const t = transport();
    expect(await t.send(post(server.url), never())).toEqual({
      status: 500,
      retryAfter: undefined,
      body: 'until the end',
    });
    expect(await t.send(post(server.url), never())).toMatchObject({ body: 'until the end' });
    expect(server.sockets).toHaveLength(2);
  });

  test('204 and 304 have no body', async () => {
    const server = await rawServer((socket, request) => {
      socket.write(
        request.index === 0
          ? 'HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n'
          : 'HTTP/1.1 304 Not Modified\r\nETag: "x"\r\n\r\n',
      );
    });
    const t = transport();
    expect(await t.send(post(server.url), never())).toEqual({
      status: 204,
      retryAfter: undefined,
      body: '',
    });
    expect(await t.send(post(server.url), never())).toMatchObject({ status: 304, body: '' });
    await t.send(post(server.url), never());
    expect(server.sockets).toHaveLength(1);
  });

  test('HTTP/1.0 without keep-alive: the connection is closed after the answer', async () => {
    const server = await rawServer((socket) => {
      socket.write('HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nold');
    });
    const t = transport();
    expect(await t.send(post(server.url), never())).toMatchObject({ status: 200, body: 'old' });
    await until(() => server.closed === 1);
    expect(await t.send(post(server.url), never())).toMatchObject({ status: 200, body: 'old' });
    expect(server.sockets).toHaveLength(2);
  });

  test('HTTP/1.0 with Connection: keep-alive is reused', async () => {
    const server = await rawServer((socket) => {
      socket.write('HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 3\r\n\r\nold');
    });
    const t = transport();
    await t.send(post(server.url), never());
    await t.send(post(server.url), never());
    expect(server.sockets).toHaveLength(1);
  });

  test.each([
    ['a CR where the hyphen goes', 'keep\ralive'],
    ['an underscore', 'keep_alive'],
    ['one more letter', 'keep-alives'],
  ])('HTTP/1.0 with a Connection value near keep-alive (%s) is closed', async (_, value) => {
    const server = await rawServer((socket) => {
      socket.write(`HTTP/1.0 200 OK\r\nConnection: ${value}\r\nContent-Length: 3\r\n\r\nold`);
    });
    const t = transport();
    expect(await t.send(post(server.url), never())).toMatchObject({ status: 200, body: 'old' });
    await until(() => server.closed === 1);
    await t.send(post(server.url), never());
    expect(server.sockets).toHaveLength(2);
  });

  test('HTTP/1.0 with a body until close', async () => {
    const server = await rawServer((socket) => socket.end('HTTP/1.0 200 OK\r\n\r\nall of it'));
    expect(await transport().send(post(server.url), never())).toMatchObject({
      status: 200,
      body: 'all of it',
    });
  });

  test('Content-Length repeated with one value, and as a list, is accepted', async () => {
    const server = await rawServer((socket) => {
      socket.write('HTTP/1.1 200 OK\r\nContent-Length: 3\r\ncontent-length: 3, 3\r\n\r\nabc');
    });
    expect(await transport().send(post(server.url), never())).toMatchObject({ body: 'abc' });
  });

  test('bare LF line endings in the head are accepted', async () => {
    const server = await rawServer((socket) =>
      socket.write('HTTP/1.1 202 OK\nContent-Length: 1\n\nz'),
    );
    expect(await transport().send(post(server.url), never())).toMatchObject({
      status: 202,
      body: 'z',
    });
  });
});

describe('malformed answers reject and drop the connection', () => {
  test.each([
    ['a bad status line', 'HTTP/1.1 OK 200\r\nContent-Length: 0\r\n\r\n'],
    ['not HTTP at all', 'SSH-2.0-OpenSSH_9.6\r\n\r\n'],
    ['HTTP/2 text', 'HTTP/2 200\r\n\r\n'],
    ['a two-digit status', 'HTTP/1.1 20 OK\r\n\r\n'],
    ['a header line without a colon', 'HTTP/1.1 200 OK\r\nContent-Length 2\r\n\r\nok'],
    ['a space before the colon', 'HTTP/1.1 200 OK\r\nContent-Length : 2\r\n\r\nok'],
    ['a non-numeric Content-Length', 'HTTP/1.1 200 OK\r\nContent-Length: 2x\r\n\r\nok'],
    ['a negative Content-Length', 'HTTP/1.1 200 OK\r\nContent-Length: -2\r\n\r\nok'],
    [
      'conflicting Content-Lengths',
      'HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok!',
    ],
    ['a Content-Length list that differs', 'HTTP/1.1 200 OK\r\nContent-Length: 2, 3\r\n\r\nok'],
    [
      'Content-Length with Transfer-Encoding',
      'HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n',
    ],
    [
      'a bad chunk size',
      'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nok\r\n0\r\n\r\n',
    ],
    ['an empty chunk size', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\r\nok\r\n'],
    [
      'a chunk size too large',
      'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffff\r\nok\r\n',
    ],
    [
      'chunk data without its CRLF',
      'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nokk\r\n0\r\n\r\n',
    ],
    [
      'a control character in a chunk extension',
      'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2;a\x01b\r\nok\r\n0\r\n\r\n',
    ],
    ['101 Switching Protocols', 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n'],
  ])('%s', async (_what, answer) => {
    const server = await rawServer((socket, request) => {
      socket.write(request.conn === 0 ? answer : OK);
    });
    const t = transport();
    const error = await rejection(t.send(post(server.url), never()));
    expect(error).toBeInstanceOf(Error);
    expect(error.message).toMatch(/Malformed HTTP response/);
    await until(() => server.closed === 1);
    // The transport carries on, on a new connection.
    expect(await t.send(post(server.url), never())).toMatchObject({ status: 200, body: 'ok' });
    expect(server.sockets).toHaveLength(2);
  });

  test('a header section over 16 KiB rejects (in one piece and split)', async () => {
    const huge = `HTTP/1.1 200 OK\r\nX-Big: ${'a'.repeat(17 * 1024)}\r\nContent-Length: 2\r\n\r\nok`;
    const server = await rawServer((socket, request) => {
      if (request.conn === 0) socket.write(huge);
      else void trickle(socket, huge.slice(0, 100)).then(() => socket.write(huge.slice(100)));
    });
    const t = transport();
    expect((await rejection(t.send(post(server.url), never()))).message).toMatch(/too large/);
    expect((await rejection(t.send(post(server.url), never()))).message).toMatch(/too large/);
  });

  test('a header section just under 16 KiB is fine', async () => {
    const head = `HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Big: `;
    const filler = 'a'.repeat(16 * 1024 - head.length - 4);
    const server = await rawServer((socket) => socket.write(`${head}${filler}\r\n\r\nok`));
    expect(await transport().send(post(server.url), never())).toMatchObject({ body: 'ok' });
  });
});

describe('network failures', () => {
  test('ECONNREFUSED', async () => {
    const probe = net.createServer();
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
    const { port } = probe.address() as net.AddressInfo;
    await new Promise((resolve) => probe.close(resolve));
    const error = await rejection(transport().send(post(`http://127.0.0.1:${port}/e/X`), never()));
    expect(error.code).toBe('ECONNREFUSED');
  });

  test('a reset in the middle of a response rejects with ECONNRESET', async () => {
    const server = await rawServer((socket) => {
      socket.write('HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial');
      setTimeout(() => socket.resetAndDestroy(), 10);
    });
    const error = await rejection(transport().send(post(server.url), never()));
    expect(error.code).toBe('ECONNRESET');
  });

  test('a close in the middle of a response rejects (ECONNRESET-like), without a retry', async () => {
    const server = await rawServer((socket, request) => {
      if (request.conn === 0 && request.index === 0) socket.write(OK);
      else socket.end('HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial');
    });
    const t = transport();
    await t.send(post(server.url), never());
    const error = await rejection(t.send(post(server.url), never()));
    expect(error.code).toBe('ECONNRESET');
    expect(error.message).toMatch(/before the response was complete/);
    expect(server.requests).toHaveLength(2);
  });

  test('a new connection closed without an answer rejects, without a retry', async () => {
    const server = await rawServer((socket) => socket.destroy());
    const error = await rejection(transport().send(post(server.url), never()));
    expect(error.code).toBe('ECONNRESET');
    await sleep(30);
    expect(server.sockets).toHaveLength(1);
    expect(server.requests).toHaveLength(1);
  });
});

describe('stale keep-alive connections', () => {
  test('the server closed an idle connection: the next request still succeeds, sent once', async () => {
    const server = await httpServer((_req, res) => res.end('ok'));
    server.server.keepAliveTimeout = 50;
    const t = transport();
    await t.send(post(server.url, 'one'), never());
    // Node's server closes it after keepAliveTimeout (plus a buffer, in recent versions).
    await until(() => server.stats.open === 0, 3000);
    expect(await t.send(post(server.url, 'two'), never())).toMatchObject({ status: 200 });
    expect(server.received.map((r) => r.body)).toEqual(['one', 'two']);
    expect(server.stats.connections).toBe(2);
  });

  test('closed as the request was written: retried once, transparently, on a new connection', async () => {
    const answered: string[] = [];
    const server = await rawServer((socket, request) => {
      if (request.index === 1) {
        // The race: this server had given up on the connection as the second request arrived.
        socket.destroy();
        return;
      }
      answered.push(request.body);
      socket.write(OK);
    });
    const t = transport();
    await t.send(post(server.url, 'first'), never());
    expect(await t.send(post(server.url, 'second'), never())).toMatchObject({ status: 200 });
    expect(answered).toEqual(['first', 'second']);
    expect(server.sockets).toHaveLength(2);
    expect(server.requests.map((r) => [r.conn, r.index, r.body])).toEqual([
      [0, 0, 'first'],
      [0, 1, 'second'],
      [1, 0, 'second'],
    ]);
  });

  test('a reset as the request was written is retried too', async () => {
    const server = await rawServer((socket, request) => {
      if (request.conn === 0 && request.index === 0) socket.write(OK);
      else if (request.conn === 0) socket.resetAndDestroy();
      // The retry, on connection 1, is answered (index 0) and then the next one dies fresh.
      else if (request.index === 0) socket.write(OK);
      else socket.resetAndDestroy();
    });
    const t = transport({ maxSockets: 1 });
    await t.send(post(server.url, 'a'), never());
    expect(await t.send(post(server.url, 'b'), never())).toMatchObject({ status: 200 });
    // Connection 1 is reused for 'c', reset; 'c' is retried on connection 2 (answered).
    expect(await t.send(post(server.url, 'c'), never())).toMatchObject({ status: 200 });
    expect(server.requests.map((r) => r.body)).toEqual(['a', 'b', 'b', 'c', 'c']);
  });

  test('a retry that fails too rejects', async () => {
    const server = await rawServer((socket, request) => {
      if (request.conn === 0 && request.index === 0) socket.write(OK);
      else socket.destroy();
    });
    const t = transport();
    await t.send(post(server.url, 'a'), never());
    const error = await rejection(t.send(post(server.url, 'b'), never()));
    expect(error.code).toBe('ECONNRESET');
    expect(server.requests.map((r) => r.body)).toEqual(['a', 'b', 'b']);
  });
});

describe('abort', () => {
  test('an aborted signal rejects before anything is sent', async () => {
    const server = await httpServer((_req, res) => res.end());
    const controller = new AbortController();
    controller.abort();
    const error = await rejection(transport().send(post(server.url), controller.signal));
    expect(error.name).toBe('AbortError');
    await sleep(20);
    expect(server.stats.connections).toBe(0);
  });

  test('an abort during a request rejects at once, closes that socket and frees the slot', async () => {
    const server = await rawServer((socket, request) => {
      if (request.body !== 'hang') socket.write(OK);
    });
    const t = transport({ maxSockets: 1 });
    const controller = new AbortController();
    const pending = t.send(post(server.url, 'hang'), controller.signal);
    await until(() => server.requests.length === 1);
    // At once: before the event loop turns (no I/O, no timer), however busy the machine is.
    const turned = new Promise<null>((resolve) => setImmediate(() => resolve(null)));
    controller.abort();
    const error = await Promise.race([rejection(pending), turned]);
    expect(error).not.toBeNull();
    expect(error?.name).toBe('AbortError');
    expect(getEventListeners(controller.signal, 'abort')).toHaveLength(0);
    await until(() => server.closed === 1);
    expect(await t.send(post(server.url, 'later'), never())).toMatchObject({ status: 200 });
  });

  test('an abort while waiting for a connection: never sent, and the queue moves on', async () => {
    const server = await rawServer((socket, request) => {
      setTimeout(() => socket.write(OK), request.body === 'first' ? 60 : 0);
    });
    const t = transport({ maxSockets: 1 });
    const controller = new AbortController();
    const first = t.send(post(server.url, 'first'), never());
    const waiting = t.send(post(server.url, 'aborted'), controller.signal);
    const third = t.send(post(server.url, 'third'), never());
    controller.abort();
    expect((await rejection(waiting)).name).toBe('AbortError');
    await Promise.all([first, third]);
    expect(server.requests.map((r) => r.body)).toEqual(['first', 'third']);
    expect(server.sockets).toHaveLength(1);
  });

  test('no abort listener is left once a request settles', async () => {
    const server = await httpServer((req, res) => {
      res.statusCode = req.url?.endsWith('fail') ? 500 : 200;
      res.end();
    });
    const t = transport({ maxSockets: 1 });
    const signal = never();
    await Promise.all([
      t.send(post(server.url), signal),
      t.send(post(`${server.url}fail`), signal),
    ]);
    expect(getEventListeners(signal, 'abort')).toHaveLength(0);
    await rejection(t.send(post('http://127.0.0.1:1/e/X'), signal));
    expect(getEventListeners(signal, 'abort')).toHaveLength(0);
  });
});

describe('sendWithin: the deadline the engine uses instead of a signal', () => {
  const within = (t: Transport) => t as Transport & DeadlineTransport;

  test('answers like send', async () => {
    const server = await rawServer((socket) => socket.write(OK));
    const t = within(transport());
    expect(await t.sendWithin(post(server.url), 1000)).toMatchObject({ status: 200 });
  });

  test('past its deadline it rejects as a TimeoutError, closes that socket and frees the slot', async () => {
    const server = await rawServer((socket, request) => {
      if (request.body !== 'hang') socket.write(OK);
    });
    const t = within(transport({ maxSockets: 1 }));
    const started = performance.now();
    const error = await rejection(t.sendWithin(post(server.url, 'hang'), 50));
    expect(error.name).toBe('TimeoutError');
    expect(performance.now() - started).toBeGreaterThanOrEqual(45);
    await until(() => server.closed === 1);
    expect(await t.sendWithin(post(server.url, 'later'), 1000)).toMatchObject({ status: 200 });
  });

  test('close() ends a request in flight, and its deadline timer with it', async () => {
    const server = await rawServer(() => undefined);
    const t = within(transport());
    const timers = watchTimers();
    cleanups.push(timers.stop);
    const pending = t.sendWithin(post(server.url), 60_000);
    await until(() => server.requests.length === 1);
    expect(await timers.holding()).toBe(1);
    void t.close?.();
    expect((await rejection(pending)).code).toBe('ERR_TRANSPORT_CLOSED');
    expect(await timers.holding()).toBe(0);
  });
});

describe("post: the engine's way, a callback instead of a promise", () => {
  interface Answered {
    context: string;
    error: (Error & { code?: string }) | undefined;
    status: number;
    retryAfter: string | undefined;
    body: string;
  }

  /** The transport, and `send`: post() as a promise of what its callback heard. */
  function poster(options: Partial<LeanTransportOptions> = {}) {
    const t = transport(options) as Transport & PostTransport;
    const send = (
      url: string,
      timeoutMs = 1000,
      headers: Record<string, string> = { 'content-type': 'application/json' },
      key = 'key-1',
      body = '{}',
    ) =>
      new Promise<Answered>((resolve) => {
        t.post(
          url,
          headers,
          key,
          body,
          timeoutMs,
          (context, error, status, retryAfter, text) => {
            resolve({ context, error: error as Answered['error'], status, retryAfter, body: text });
          },
          'ctx',
        );
      });
    return { t, send };
  }

  test('writes the same bytes as send() with the key as the last header, and answers', async () => {
    const server = await rawServer((socket) => socket.write(OK));
    const { send } = poster();
    const headers = {
      'content-type': 'application/json',
      'user-agent': 'Mozilla/5.0 (X11; Linux x86_64)',
      'x-forwarded-for': '203.0.113.7',
    };
    const body = '{"type":"pageview","url":"https://shop.example/€"}';
    const answer = await send(server.url, 1000, headers, 'abc-123', body);
    expect(answer).toEqual({
      context: 'ctx',
      error: undefined,
      status: 200,
      retryAfter: undefined,
      body: '', // a 2xx body: nobody reads it
    });
    await transport().send(
      { url: server.url, headers: { ...headers, 'idempotency-key': 'abc-123' }, body },
      never(),
    );
    const [viaPost, viaSend] = server.requests as [RawRequest, RawRequest];
    expect(viaPost.raw.equals(viaSend.raw)).toBe(true);
    expect(viaPost.head).toMatch(/\r\nidempotency-key: abc-123\r\nContent-Length: \d+\r\n/);
  });

  test('the key is checked as a header value: a line break refused, latin1 written as latin1', async () => {
    const server = await rawServer((socket) => socket.write(OK));
    const { send } = poster();
    const json = { 'content-type': 'application/json' };
    for (const key of ['k\r\nx-evil: 1', 'k\n', 'k\0']) {
      const refused = await send(server.url, 1000, json, key);
      expect(refused.error?.message).toBe('Invalid value for header idempotency-key');
    }
    expect(server.requests).toHaveLength(0);
    expect(await send(server.url, 1000, json, 'caf\xe9-1', '"\u20ac"')).toMatchObject({
      error: undefined,
      status: 200,
    });
    const [request] = server.requests as [RawRequest];
    expect(request.raw.includes(Buffer.from('\r\nidempotency-key: caf\xe9-1\r\n', 'latin1'))).toBe(
      true,
    );
    // The body is still UTF-8: three bytes for the euro sign.
    expect(request.raw.subarray(-5).equals(Buffer.from('"\u20ac"', 'utf8'))).toBe(true);
  });

  test('a non-2xx answer comes with its status, Retry-After and the start of its body', async () => {
    const server = await rawServer((socket) =>
      socket.write('HTTP/1.1 429 Too Many\r\nRetry-After: 7\r\nContent-Length: 9\r\n\r\nslow down'),
    );
    const { send } = poster();
    expect(await send(server.url)).toMatchObject({
      error: undefined,
      status: 429,
      retryAfter: '7',
      body: 'slow down',
    });
  });

  test('the deadline sweep ends a request a real server never answers, closes its socket, frees the slot', async () => {
    const server = await rawServer((socket, request) => {
      if (request.body !== 'hang') socket.write(OK);
    });
    const { send } = poster({ maxSockets: 1 });
    const started = performance.now();
    const answer = await send(server.url, 50, undefined, 'k', 'hang');
    expect(answer.error?.name).toBe('TimeoutError');
    expect(answer.error?.message).toBe('The endpoint did not answer in time');
    expect(performance.now() - started).toBeGreaterThanOrEqual(45);
    await until(() => server.closed === 1);
    expect(await send(server.url, 1000, undefined, 'k', 'later')).toMatchObject({ status: 200 });
  });

  test('one timer for every deadline: a shorter deadline sent later still ends first, each on time', async () => {
    const server = await rawServer(() => undefined);
    const { send } = poster();
    const timers = watchTimers();
    cleanups.push(timers.stop);
    const started = performance.now();
    const ended: string[] = [];
    const long = send(server.url, 400, undefined, 'k', 'long').then((a) => {
      ended.push('long');
      return [a, performance.now() - started] as const;
    });
    await until(() => server.requests.length === 1);
    const short = send(server.url, 60, undefined, 'k', 'short').then((a) => {
      ended.push('short');
      return [a, performance.now() - started] as const;
    });
    await until(() => server.requests.length === 2);
    expect(await timers.holding()).toBe(1);
    const [[shortAnswer, shortMs], [longAnswer, longMs]] = await Promise.all([short, long]);
    expect(ended).toEqual(['short', 'long']);
    expect(shortAnswer.error?.name).toBe('TimeoutError');
    expect(longAnswer.error?.name).toBe('TimeoutError');
    expect(shortMs).toBeGreaterThanOrEqual(55);
    expect(longMs).toBeGreaterThanOrEqual(395);
    // Nothing with a deadline is left: no timer holds the process.
    expect(await timers.holding()).toBe(0);
  });

  test('deadlines keep to a clock that is never set back: the wall clock stepped back 10 s does not hold one', async () => {
    const server = await rawServer(() => undefined);
    const { send } = poster({ maxSockets: 1 });
    const realNow = Date.now;
    const started = performance.now();
    const answer = send(server.url, 100, undefined, 'k', 'hang');
    await until(() => server.requests.length === 1);
    // NTP (or a resumed VM) sets the wall clock back just after the request went out.
    Date.now = () => realNow() - 10_000;
    try {
      const result = await Promise.race([answer, sleep(2000).then(() => 'still waiting')]);
      expect(result).toMatchObject({ error: { name: 'TimeoutError' } });
      expect(performance.now() - started).toBeLessThan(2000);
    } finally {
      Date.now = realNow;
    }
  });

  test('a deadline past what a timer can wait (2^31 - 1 ms) is not taken for one that passed', async () => {
    const server = await rawServer(() => undefined);
    const { t, send } = poster();
    let answered = false;
    const answer = send(server.url, 2 ** 31 + 1000).then((a) => {
      answered = true;
      return a;
    });
    await until(() => server.requests.length === 1);
    await sleep(30);
    expect(answered).toBe(false);
    void t.close?.();
    expect((await answer).error?.code).toBe('ERR_TRANSPORT_CLOSED');
  });

  test('a request waiting for a connection has its deadline too', async () => {
    const server = await rawServer(() => undefined);
    const { t, send } = poster({ maxSockets: 1 });
    const first = send(server.url, 5000, undefined, 'k', 'first');
    await until(() => server.requests.length === 1);
    const waiting = await send(server.url, 50, undefined, 'k', 'waiting');
    expect(waiting.error?.name).toBe('TimeoutError');
    // It never got the connection: the one in flight keeps it.
    expect(server.requests).toHaveLength(1);
    expect(server.closed).toBe(0);
    void t.close?.();
    expect((await first).error?.code).toBe('ERR_TRANSPORT_CLOSED');
  });

  test('close() ends what is in flight, and the deadline timer with it', async () => {
    const server = await rawServer(() => undefined);
    const { t, send } = poster();
    const timers = watchTimers();
    cleanups.push(timers.stop);
    const answer = send(server.url, 60_000);
    await until(() => server.requests.length === 1);
    expect(await timers.holding()).toBe(1);
    void t.close?.();
    expect((await answer).error?.code).toBe('ERR_TRANSPORT_CLOSED');
    expect(await timers.holding()).toBe(0);
  });

  test('never answers before it returns, even when it fails at once', async () => {
    const { t } = poster();
    const calls: string[] = [];
    const answer = (context: string, error: unknown) => {
      calls.push(`${context}: ${(error as Error).message}`);
    };
    t.post('ftp://127.0.0.1/e/X', {}, 'k', '{}', 1000, answer, 'bad url');
    t.post('http://127.0.0.1:1/e/X', { 'bad name': 'x' }, 'k', '{}', 1000, answer, 'bad header');
    void t.close?.();
    t.post('http://127.0.0.1:1/e/X', {}, 'k', '{}', 1000, answer, 'closed');
    expect(calls).toEqual([]);
    await sleep(0);
    expect(calls).toEqual([
      'bad url: Unsupported protocol ftp: (http: or https: only)',
      'bad header: Invalid header name "bad name"',
      'closed: The transport is closed',
    ]);
  });
});

describe('close()', () => {
  test('rejects in-flight and waiting requests, closes sockets, then refuses sends', async () => {
    const server = await rawServer(() => {});
    const t = createLeanTransport({ maxSockets: 1 });
    const signal = never();
    const requests = [1, 2, 3].map((i) => t.send(post(server.url, `${i}`), signal));
    await until(() => server.requests.length === 1);
    await t.close?.();
    const errors = await Promise.all(requests.map(rejection));
    expect(errors.map((e) => e.message)).toEqual(Array(3).fill('The transport is closed'));
    expect(getEventListeners(signal, 'abort')).toHaveLength(0);
    await until(() => server.closed === 1);
    await expect(t.send(post(server.url), never())).rejects.toThrow('closed');
    await sleep(20);
    expect(server.sockets).toHaveLength(1);
  });

  test('idle connections are closed too', async () => {
    const server = await httpServer((_req, res) => res.end());
    const t = createLeanTransport({ maxSockets: 4 });
    await Promise.all([1, 2, 3].map(() => t.send(post(server.url), never())));
    expect(server.stats.open).toBe(3);
    await t.close?.();
    await until(() => server.stats.open === 0);
  });
});

describe('the process', () => {
  let modulePath = '';
  beforeAll(() => {
    const source = fs.readFileSync(
      path.join(__dirname, '../../src/delivery/lean-transport.ts'),
      'utf8',
    );
    const { outputText } = ts.transpileModule(source, {
      compilerOptions: {
        module: ts.ModuleKind.CommonJS,
        target: ts.ScriptTarget.ES2022,
        esModuleInterop: true,
      },
    });
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lean-transport-'));
    modulePath = path.join(dir, 'lean-transport.cjs');
    fs.writeFileSync(modulePath, outputText);
  });
  afterAll(() => fs.rmSync(path.dirname(modulePath), { recursive: true, force: true }));

  /**
   * A child process that sends two requests and exits when nothing holds it; `ways` says how
   * each is sent: `send` (with a signal, no deadline) or `post` (with a deadline, as the engine).
   */
  function child(
    url: string,
    ways: readonly ['send' | 'post', 'send' | 'post'] = ['send', 'send'],
  ): Promise<{ code: number | null; out: string; ms: number }> {
    const script = `
      const { createLeanTransport } = require(process.env.LEAN_TRANSPORT);
      const t = createLeanTransport({ maxSockets: 2, idleTimeoutMs: 60000 });
      const target = process.env.TARGET;
      const ways = {
        send: (body) => t.send({ url: target, headers: {}, body }, new AbortController().signal),
        post: (body) =>
          new Promise((resolve, reject) =>
            t.post(target, {}, 'key-' + body, body, 30000, (_, error, status) =>
              error === undefined ? resolve({ status }) : reject(error), null)),
      };
      const [first, second] = process.env.WAYS.split(',');
      // Two requests: the second on the reused (idle, then active again) connection.
      ways[first]('first')
        .then(() => ways[second]('second'))
        .then((r) => console.log('status', r.status), (e) => console.log('error', e.message));
    `;
    const started = Date.now();
    return new Promise((resolve, reject) => {
      const proc = spawn(process.execPath, ['-e', script], {
        env: { ...process.env, LEAN_TRANSPORT: modulePath, TARGET: url, WAYS: ways.join() },
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      let out = '';
      proc.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
      const killer = setTimeout(() => proc.kill(), 8000);
      proc.on('error', reject);
      proc.on('exit', (code) => {
        clearTimeout(killer);
        resolve({ code, out: out.trim(), ms: Date.now() - started });
      });
    });
  }

  const WAYS = [
    ['send', 'send'],
    ['post', 'post'],
    ['send', 'post'],
    ['post', 'send'],
  ] as const;

  test.each(WAYS)(
    'an idle keep-alive connection does not keep the process alive (%s, then %s)',
    async (...ways) => {
      const server = await httpServer((_req, res) => res.end());
      const result = await child(server.url, ways);
      expect(result).toMatchObject({ code: 0, out: 'status 200' });
      // Exited on its own, long before the 60 s idle timeout (and the server's keep-alive).
      expect(result.ms).toBeLessThan(5000);
      expect(server.received.map((r) => r.body)).toEqual(['first', 'second']);
      expect(server.stats.connections).toBe(1);
    },
  );

  test.each(WAYS)(
    'a pending request keeps the process alive until its answer (%s, then %s)',
    async (...ways) => {
      const server = await httpServer((_req, res, body) => {
        setTimeout(() => res.end(), body === 'second' ? 400 : 0);
      });
      const result = await child(server.url, ways);
      expect(result).toMatchObject({ code: 0, out: 'status 200' });
      expect(result.ms).toBeGreaterThanOrEqual(400);
      expect(server.stats.connections).toBe(1);
    },
  );
});

describe('https', () => {
  let key = '';
  let cert = '';
  beforeAll(() => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lean-tls-'));
    try {
      execFileSync(
        'openssl',
        [
          'req',
          '-x509',
          '-newkey',
          'rsa:2048',
          '-nodes',
          '-subj',
          '/CN=localhost',
          '-addext',
          'subjectAltName=IP:127.0.0.1,DNS:localhost',
          '-days',
          '1',
          '-keyout',
          path.join(dir, 'key.pem'),
          '-out',
          path.join(dir, 'cert.pem'),
        ],
        { stdio: 'ignore' },
      );
      key = fs.readFileSync(path.join(dir, 'key.pem'), 'utf8');
      cert = fs.readFileSync(path.join(dir, 'cert.pem'), 'utf8');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  async function httpsServer() {
    const received: string[] = [];
    const tls = {
      connections: 0,
      alpn: [] as Array<string | false | null>,
      servername: [] as unknown[],
    };
    const server = https.createServer({ key, cert, ALPNProtocols: ['http/1.1'] }, (req, res) => {
      let body = '';
      req.setEncoding('utf8');
      req.on('data', (chunk: string) => (body += chunk));
      req.on('end', () => {
        received.push(body);
        res.writeHead(202, { 'Retry-After': '1' });
        res.end(`secure ${body}`);
      });
    });
    server.keepAliveTimeout = 60_000;
    server.on('secureConnection', (socket) => {
      tls.connections++;
      tls.alpn.push(socket.alpnProtocol);
      tls.servername.push((socket as unknown as { servername: unknown }).servername);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as net.AddressInfo;
    cleanups.push(
      () =>
        new Promise<void>((resolve) => {
          server.closeAllConnections();
          server.close(() => resolve());
        }),
    );
    return { url: `https://127.0.0.1:${port}/e/CODE`, port, received, tls };
  }

  test('a self-signed certificate, trusted through tls.ca: answered, connection reused', async () => {
    const server = await httpsServer();
    const t = transport({ tls: { ca: cert } });
    for (let i = 0; i < 5; i++) {
      expect(await t.send(post(server.url, `{"i":${i}}`), never())).toEqual({
        status: 202,
        retryAfter: '1',
        body: `secure {"i":${i}}`,
      });
    }
    expect(server.received).toHaveLength(5);
    expect(server.tls.connections).toBe(1);
    expect(server.tls.alpn).toEqual(['http/1.1']);
    // No SNI for an IP address.
    expect(server.tls.servername[0]).toBeFalsy();
  });

  test('the certificate is verified: untrusted, the request rejects', async () => {
    const server = await httpsServer();
    const error = await rejection(transport().send(post(server.url), never()));
    expect(error.code).toMatch(/SELF_SIGNED|UNABLE_TO_VERIFY/);
    expect(server.received).toHaveLength(0);
  });

  test('a host name is sent as SNI', async () => {
    const server = await httpsServer();
    const t = transport({ tls: { ca: cert } });
    // Resolve "localhost" to the IPv4 loopback the server listens on.
    const url = server.url.replace('127.0.0.1', 'localhost');
    const response = await t
      .send(post(url), never())
      .catch((error: { code?: string }) => error.code);
    if (response === 'ECONNREFUSED') {
      console.warn('localhost does not reach 127.0.0.1 here: SNI test skipped');
      return;
    }
    expect(response).toMatchObject({ status: 202 });
    expect(server.tls.servername).toEqual(['localhost']);
  });
});
