/**
 * The other HTTP clients the package could send with, as `transport` options, for the
 * comparison in `npm run bench` (the package's own client is the default, not in this file):
 *   http    Node's http.request with a keep-alive agent (what the package used before 0.2)
 *   undici  undici 7's Pool (request bodies dumped)
 *   fetch   the global fetch (undici inside Node), one call per event
 * Each honours the signal and resolves { status, retryAfter, body } like the built-in one.
 */
import http from 'node:http';
import https from 'node:https';
import { Pool } from 'undici';

export function httpAgentTransport(maxSockets) {
  const options = { keepAlive: true, maxSockets, scheduling: 'lifo' };
  const agents = { http: new http.Agent(options), https: new https.Agent(options) };
  return {
    send(request, signal) {
      return new Promise((resolve, reject) => {
        const secure = request.url.startsWith('https:');
        const req = (secure ? https : http).request(request.url, {
          method: 'POST',
          agent: secure ? agents.https : agents.http,
          headers: { ...request.headers, 'content-length': Buffer.byteLength(request.body) },
          signal,
        });
        req.once('error', reject);
        req.once('response', (res) => {
          res.resume();
          res.once('end', () =>
            resolve({ status: res.statusCode ?? 0, retryAfter: res.headers['retry-after'] }),
          );
        });
        req.end(request.body);
      });
    },
    close() {
      agents.http.destroy();
      agents.https.destroy();
    },
  };
}

export function undiciTransport(connections) {
  const pools = new Map();
  return {
    async send(request, signal) {
      const url = new URL(request.url);
      let pool = pools.get(url.origin);
      if (!pool) pools.set(url.origin, (pool = new Pool(url.origin, { connections })));
      const res = await pool.request({
        path: url.pathname + url.search,
        method: 'POST',
        headers: request.headers,
        body: request.body,
        signal,
      });
      await res.body.dump();
      const retryAfter = res.headers['retry-after'];
      return {
        status: res.statusCode,
        retryAfter: typeof retryAfter === 'string' ? retryAfter : undefined,
      };
    },
    async close() {
      await Promise.all([...pools.values()].map((pool) => pool.destroy()));
    },
  };
}

export function fetchTransport() {
  return {
    async send(request, signal) {
      const res = await fetch(request.url, {
        method: 'POST',
        headers: request.headers,
        body: request.body,
        signal,
      });
      await res.arrayBuffer();
      return { status: res.status, retryAfter: res.headers.get('retry-after') ?? undefined };
    },
  };
}
