/**
 * Delivery through an HTTP proxy: a real tinyproxy (Debian's `tinyproxy`, started per test on a
 * free port with its own config) between the tracker and the collector. Its log proves that
 * requests went through it: `POST http://...` lines for an http endpoint (absolute-form, as curl
 * and Node send them), `CONNECT host:port` lines for an https one (a tunnel, TLS inside).
 *
 * Covered: the `proxy` option, HTTP_PROXY / http_proxy / NO_PROXY, `proxy: false`, a proxy that
 * refuses (nothing listening, 407), credentials, an https endpoint through CONNECT both in
 * this process and in a child process that runs the built package with its default worker.
 * The environment rules themselves (NO_PROXY forms, which variable wins) are unit-tested on
 * resolveProxy at the end.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { createTracker, type Tracker } from '../../src/index';
import { bypasses, createProxyTransport, resolveProxy } from '../../src/delivery/proxy-transport';
import { startCollector } from '../helpers/collector';

const TINYPROXY = '/usr/bin/tinyproxy';
const PROXY_VARS = [
  'http_proxy',
  'HTTP_PROXY',
  'https_proxy',
  'HTTPS_PROXY',
  'no_proxy',
  'NO_PROXY',
];

const dir = mkdtempSync(path.join(os.tmpdir(), 'zenovay-proxy-'));
const proxies: TinyProxy[] = [];
const trackers: Tracker[] = [];
const savedEnv = Object.fromEntries(PROXY_VARS.map((name) => [name, process.env[name]]));

beforeAll(() => {
  try {
    execFileSync(TINYPROXY, ['-v'], { stdio: 'ignore' });
  } catch {
    throw new Error(
      `${TINYPROXY} is missing: the proxy tests need a real CONNECT proxy. Install it with ` +
        '`apt-get install -y tinyproxy` (.ci/run does).',
    );
  }
});

beforeEach(() => {
  for (const name of PROXY_VARS) delete process.env[name];
});

afterEach(async () => {
  await Promise.all(trackers.splice(0).map((t) => t.close({ timeout: 500 })));
  for (const name of PROXY_VARS) {
    if (savedEnv[name] === undefined) delete process.env[name];
    else process.env[name] = savedEnv[name];
  }
});

afterAll(async () => {
  await Promise.all(proxies.map((p) => p.stop()));
  rmSync(dir, { recursive: true, force: true });
});

interface TinyProxy {
  port: number;
  url: string;
  /** Request lines tinyproxy logged: `POST http://127.0.0.1:1234/e/x HTTP/1.1`, `CONNECT ...`. */
  requests(): string[];
  stop(): Promise<void>;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/** A tinyproxy in the foreground, logging to stdout; `auth` makes it ask for Basic credentials. */
async function startTinyproxy(auth?: { user: string; password: string }): Promise<TinyProxy> {
  const port = await freePort();
  const conf = path.join(dir, `tinyproxy-${port}.conf`);
  writeFileSync(
    conf,
    [
      `Port ${port}`,
      'Listen 127.0.0.1',
      'Timeout 30',
      'LogLevel Connect',
      'MaxClients 64',
      'Allow 127.0.0.1',
      'DisableViaHeader Yes',
      // No ConnectPort line: CONNECT to any port (the test endpoints are on random ports).
      ...(auth ? [`BasicAuth ${auth.user} ${auth.password}`] : []),
      '',
    ].join('\n'),
  );
  const child: ChildProcess = spawn(TINYPROXY, ['-d', '-c', conf], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const proxy: TinyProxy = {
    port,
    url: `http://127.0.0.1:${port}`,
    requests: () =>
      [...output.matchAll(/Request \(file descriptor \d+\): (.+)$/gm)].map((m) => m[1]!.trim()),
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
  proxies.push(proxy);
  // Ready once it accepts a connection.
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`tinyproxy exited at start:\n${output}`);
    const ok = await new Promise<boolean>((resolve) => {
      const socket = net.connect(port, '127.0.0.1');
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (ok) return proxy;
    if (Date.now() > deadline) throw new Error(`tinyproxy did not start on ${port}:\n${output}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

function tracker(host: string, lines: string[], options: Record<string, unknown> = {}): Tracker {
  const t = createTracker({
    trackingCode: 'proxied',
    host,
    retryDelay: 5,
    maxRetryDelay: 20,
    logger: {
      info: (l: string) => lines.push(l),
      warn: (l: string) => lines.push(l),
      error: (l: string) => lines.push(l),
    },
    ...options,
  });
  trackers.push(t);
  return t;
}

const MODES = [
  ['in-thread', { worker: false }],
  ['worker', {}],
] as const;

describe.each(MODES)('through tinyproxy (%s delivery)', (_mode, modeOptions) => {
  test('the proxy option: events reach the collector as absolute-form requests through it', async () => {
    const proxy = await startTinyproxy();
    const collector = await startCollector();
    const lines: string[] = [];
    const t = tracker(collector.url, lines, { ...modeOptions, proxy: proxy.url });
    const results = await Promise.all(
      [1, 2, 3].map((n) =>
        t.trackEvent('signup', { n }, { userAgent: 'Mozilla/5.0 test', ip: '203.0.113.9' }),
      ),
    );
    expect(results).toEqual([true, true, true]);
    const events = await collector.waitFor(3);
    expect(events.map((e) => e.data?.n).sort()).toEqual([1, 2, 3]);
    // The visitor's headers crossed the proxy untouched.
    expect(events[0]!.headers['user-agent']).toBe('Mozilla/5.0 test');
    expect(events[0]!.headers['x-forwarded-for']).toBe('203.0.113.9');
    const posts = proxy.requests().filter((r) => r.startsWith(`POST ${collector.url}/e/proxied `));
    expect(posts).toHaveLength(3);
    expect(t.stats()).toMatchObject({ delivered: 3, failed: 0, dropped: 0 });
    expect(lines).toEqual([]);
  });

  test('HTTP_PROXY is honoured for an http endpoint, and http_proxy wins over it', async () => {
    const proxy = await startTinyproxy();
    const collector = await startCollector();
    process.env.HTTP_PROXY = `http://127.0.0.1:${await freePort()}`; // nothing listens there
    process.env.http_proxy = proxy.url;
    const t = tracker(collector.url, [], { ...modeOptions });
    await expect(t.trackPageview('https://shop.example/a')).resolves.toBe(true);
    expect(proxy.requests()).toEqual([`POST ${collector.url}/e/proxied HTTP/1.1`]);

    delete process.env.http_proxy;
    process.env.HTTP_PROXY = proxy.url;
    const upper = tracker(collector.url, [], { ...modeOptions });
    await expect(upper.trackPageview('https://shop.example/b')).resolves.toBe(true);
    expect(proxy.requests()).toHaveLength(2);
    expect(collector.events.map((e) => e.url)).toEqual([
      'https://shop.example/a',
      'https://shop.example/b',
    ]);
  });

  test('NO_PROXY listing the endpoint, and proxy: false, go direct', async () => {
    const proxy = await startTinyproxy();
    const collector = await startCollector();
    process.env.HTTP_PROXY = proxy.url;
    process.env.NO_PROXY = 'localhost, 127.0.0.1';
    const listed = tracker(collector.url, [], { ...modeOptions });
    await expect(listed.trackEvent('direct')).resolves.toBe(true);

    delete process.env.NO_PROXY;
    const off = tracker(collector.url, [], { ...modeOptions, proxy: false });
    await expect(off.trackEvent('also-direct')).resolves.toBe(true);

    // A control: the same environment without either sends through the proxy.
    const through = tracker(collector.url, [], { ...modeOptions });
    await expect(through.trackEvent('proxied')).resolves.toBe(true);
    expect(collector.events.map((e) => e.name)).toEqual(['direct', 'also-direct', 'proxied']);
    expect(proxy.requests()).toEqual([`POST ${collector.url}/e/proxied HTTP/1.1`]);
  });

  test('a proxy with nothing listening: the event fails (network), one log line names the proxy, never its credentials', async () => {
    const collector = await startCollector();
    const port = await freePort();
    const lines: string[] = [];
    const t = tracker(collector.url, lines, {
      ...modeOptions,
      proxy: `http://zenuser:s3cret-pw@127.0.0.1:${port}`,
      maxRetries: 2,
    });
    await expect(t.trackEvent('lost')).resolves.toBe(false);
    const stats = t.stats();
    expect(stats).toMatchObject({ failed: 1, delivered: 0, retries: 2 });
    expect(stats.reasons.failed.network).toBe(1);
    expect(collector.requestCount).toBe(0);
    const naming = lines.filter((l) => l.includes(`http://127.0.0.1:${port}`));
    expect(naming).toHaveLength(1);
    expect(naming[0]).toMatch(/ZENOVAY_NETWORK/);
    expect(naming[0]).toMatch(/refused the connection \(ECONNREFUSED\)/);
    expect(lines.join('\n')).not.toMatch(/s3cret|zenuser/);
  });

  test('a proxy that wants credentials: 407 fails the event (network) and says so; the right ones pass', async () => {
    const proxy = await startTinyproxy({ user: 'zen', password: 'good-pw' });
    const collector = await startCollector();
    const lines: string[] = [];
    const bare = tracker(collector.url, lines, { ...modeOptions, proxy: proxy.url, maxRetries: 0 });
    await expect(bare.trackEvent('no-credentials')).resolves.toBe(false);
    expect(bare.stats().reasons.failed.network).toBe(1);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain(`the proxy ${proxy.url} answered 407`);
    expect(lines[0]).toContain('give it credentials in the proxy URL');

    const right = tracker(collector.url, [], {
      ...modeOptions,
      proxy: `http://zen:good-pw@127.0.0.1:${proxy.port}`,
    });
    await expect(right.trackEvent('with-credentials')).resolves.toBe(true);
    expect(collector.events.map((e) => e.name)).toEqual(['with-credentials']);
    // The credentials were for the proxy: the endpoint never sees them.
    expect(collector.events[0]!.headers['proxy-authorization']).toBeUndefined();
  });
});

/** A TLS endpoint on 127.0.0.1 with a certificate made for this run, recording what arrives. */
async function startTlsCollector(delayMs = 0): Promise<{
  url: string;
  ca: string;
  caFile: string;
  received: { path: string; body: string; headers: Record<string, unknown> }[];
  close(): Promise<void>;
}> {
  const key = path.join(dir, 'key.pem');
  const cert = path.join(dir, 'cert.pem');
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
      '-keyout',
      key,
      '-out',
      cert,
      '-days',
      '1',
      '-subj',
      '/CN=127.0.0.1',
      '-addext',
      'subjectAltName=IP:127.0.0.1',
    ],
    { stdio: 'ignore' },
  );
  const ca = readFileSync(cert, 'utf8');
  const received: { path: string; body: string; headers: Record<string, unknown> }[] = [];
  const server = https.createServer({ key: readFileSync(key), cert: ca }, (req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (chunk: string) => (body += chunk));
    req.on('end', () => {
      received.push({ path: req.url ?? '', body, headers: req.headers });
      setTimeout(() => {
        res.writeHead(202, { 'content-type': 'application/json' }).end('{"ok":true}');
      }, delayMs);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  return {
    url: `https://127.0.0.1:${port}`,
    ca,
    caFile: cert,
    received,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

describe('an https endpoint through a CONNECT tunnel', () => {
  test('in this process: the proxy transport tunnels TLS to the endpoint', async () => {
    const proxy = await startTinyproxy();
    const endpoint = await startTlsCollector();
    try {
      const transport = createProxyTransport({
        proxy: proxy.url,
        connections: 4,
        tls: { ca: endpoint.ca },
      });
      const t = tracker(endpoint.url, [], { transport });
      const results = await Promise.all([1, 2].map((n) => t.trackEvent('tls', { n })));
      expect(results).toEqual([true, true]);
      expect(endpoint.received.map((r) => r.path)).toEqual(['/e/proxied', '/e/proxied']);
      const port = new URL(endpoint.url).port;
      const connects = proxy.requests().filter((r) => r === `CONNECT 127.0.0.1:${port} HTTP/1.1`);
      expect(connects.length).toBeGreaterThanOrEqual(1);
      expect(connects.length).toBeLessThanOrEqual(2);
      // Nothing went to the proxy in the clear.
      expect(proxy.requests().filter((r) => !r.startsWith('CONNECT '))).toEqual([]);
    } finally {
      await endpoint.close();
    }
  });

  test('at most `connections` tunnels, reused: 8 events in flight over 2', async () => {
    const proxy = await startTinyproxy();
    const endpoint = await startTlsCollector(100);
    try {
      const transport = createProxyTransport({
        proxy: proxy.url,
        connections: 2,
        tls: { ca: endpoint.ca },
      });
      const t = tracker(endpoint.url, [], { transport, concurrency: 8 });
      const results = await Promise.all(
        Array.from({ length: 8 }, (_, n) => t.trackEvent('capped', { n })),
      );
      expect(results.every(Boolean)).toBe(true);
      expect(endpoint.received).toHaveLength(8);
      expect(proxy.requests().filter((r) => r.startsWith('CONNECT '))).toHaveLength(2);
    } finally {
      await endpoint.close();
    }
  });

  test('a tunnel the proxy does not open (407; 401 for wrong credentials; an endpoint it cannot reach): network, named, no credentials', async () => {
    const proxy = await startTinyproxy({ user: 'zen', password: 'good-pw' });
    const endpoint = await startTlsCollector();
    try {
      const send = async (proxyUrl: string, host = endpoint.url) => {
        const lines: string[] = [];
        const transport = createProxyTransport({
          proxy: proxyUrl,
          connections: 2,
          tls: { ca: endpoint.ca },
        });
        const t = tracker(host, lines, { transport, maxRetries: 0 });
        const ok = await t.trackEvent('tunnel');
        return { ok, lines, stats: t.stats() };
      };
      const bare = await send(proxy.url);
      expect(bare.ok).toBe(false);
      expect(bare.stats.reasons.failed.network).toBe(1);
      expect(bare.lines).toEqual([
        expect.stringContaining(
          `the proxy ${proxy.url} answered 407 (Proxy Authentication Required): give it credentials`,
        ),
      ]);

      const wrong = await send(`http://zen:bad-pw@127.0.0.1:${proxy.port}`);
      expect(wrong.ok).toBe(false);
      expect(wrong.stats.reasons.failed.network).toBe(1);
      expect(wrong.lines).toEqual([
        expect.stringContaining(
          `the proxy ${proxy.url} did not open a tunnel to the endpoint (it answered 401 to CONNECT)`,
        ),
      ]);
      expect(wrong.lines[0]).not.toMatch(/bad-pw|zen:/);

      const nowhere = await send(
        `http://zen:good-pw@127.0.0.1:${proxy.port}`,
        `https://127.0.0.1:${await freePort()}`,
      );
      expect(nowhere.ok).toBe(false);
      expect(nowhere.stats.reasons.failed.network).toBe(1);
      expect(nowhere.lines).toEqual([
        expect.stringMatching(
          /the proxy http:\/\/127\.0\.0\.1:\d+ did not open a tunnel to the endpoint \(it answered 5\d\d to CONNECT\)/,
        ),
      ]);
      expect(nowhere.lines[0]).not.toMatch(/good-pw|zen:/);

      const right = await send(`http://zen:good-pw@127.0.0.1:${proxy.port}`);
      expect(right.ok).toBe(true);
      expect(endpoint.received).toHaveLength(1);
      expect(endpoint.received[0]!.headers['proxy-authorization']).toBeUndefined();
    } finally {
      await endpoint.close();
    }
  });

  test('the built package in a child process: HTTPS_PROXY and the default worker', async () => {
    const proxy = await startTinyproxy();
    const endpoint = await startTlsCollector();
    try {
      const entry = path.resolve(__dirname, '../../dist/index.cjs');
      if (!existsSync(entry)) throw new Error(`${entry} is missing: run \`npm run build\` first.`);
      const script = [
        `const { createTracker } = require(${JSON.stringify(entry)});`,
        'const lines = [];',
        'const log = (l) => lines.push(l);',
        `const t = createTracker({ trackingCode: 'child', host: process.env.ENDPOINT,`,
        '  logger: { info: log, warn: log, error: log } });',
        "t.trackEvent('from-child', { via: 'HTTPS_PROXY' }).then(async (ok) => {",
        '  const stats = t.stats();',
        '  await t.close();',
        '  console.log(JSON.stringify({ ok, delivered: stats.delivered, lines }));',
        '});',
      ].join('\n');
      const env: NodeJS.ProcessEnv = {
        ...process.env,
        ENDPOINT: endpoint.url,
        HTTPS_PROXY: proxy.url,
        NODE_EXTRA_CA_CERTS: endpoint.caFile,
      };
      for (const name of ['http_proxy', 'HTTP_PROXY', 'https_proxy', 'no_proxy', 'NO_PROXY']) {
        delete env[name];
      }
      const output = await new Promise<string>((resolve, reject) => {
        const child = spawn(process.execPath, ['-e', script], { env, stdio: 'pipe' });
        let out = '';
        let err = '';
        child.stdout.on('data', (c: Buffer) => (out += c.toString()));
        child.stderr.on('data', (c: Buffer) => (err += c.toString()));
        child.on('exit', (code) =>
          code === 0 ? resolve(out) : reject(new Error(`child exited ${code}: ${err}`)),
        );
      });
      expect(JSON.parse(output)).toEqual({ ok: true, delivered: 1, lines: [] });
      expect(endpoint.received).toHaveLength(1);
      expect(JSON.parse(endpoint.received[0]!.body)).toMatchObject({
        type: 'event',
        name: 'from-child',
        data: { via: 'HTTPS_PROXY' },
      });
      expect(proxy.requests()).toEqual([
        `CONNECT 127.0.0.1:${new URL(endpoint.url).port} HTTP/1.1`,
      ]);
    } finally {
      await endpoint.close();
    }
  });
});

describe('which proxy the environment picks (resolveProxy)', () => {
  const resolve = (host: string, env: Record<string, string>) =>
    resolveProxy(undefined, host, false, 'createTracker', env);

  test('the lower-case variable wins; an https endpoint never falls back to HTTP_PROXY', () => {
    expect(resolve('https://api.zenovay.com', { HTTPS_PROXY: 'http://upper:1' })).toBe(
      'http://upper:1/',
    );
    expect(
      resolve('https://api.zenovay.com', {
        HTTPS_PROXY: 'http://upper:1',
        https_proxy: 'http://lower:2',
      }),
    ).toBe('http://lower:2/');
    expect(resolve('https://api.zenovay.com', { HTTP_PROXY: 'http://plain:3' })).toBeUndefined();
    expect(resolve('http://collector.local', { HTTP_PROXY: 'http://plain:3' })).toBe(
      'http://plain:3/',
    );
    expect(resolve('http://collector.local', { HTTPS_PROXY: 'http://secure:4' })).toBeUndefined();
    // An empty lower-case variable does not hide the upper-case one; no scheme means http://.
    expect(
      resolve('https://api.zenovay.com', { https_proxy: ' ', HTTPS_PROXY: 'proxy.corp:3128' }),
    ).toBe('http://proxy.corp:3128/');
  });

  test('the option beats the environment; a custom transport ignores it', () => {
    const env = { HTTPS_PROXY: 'http://env:1' };
    const host = 'https://api.zenovay.com';
    expect(resolveProxy('http://option:2', host, false, 'createTracker', env)).toBe(
      'http://option:2/',
    );
    expect(resolveProxy(false, host, false, 'createTracker', env)).toBeUndefined();
    expect(resolveProxy(undefined, host, true, 'createTracker', env)).toBeUndefined();
  });

  test('a variable we cannot use: direct, with one warning that says which variable and how to fix it, without credentials', () => {
    const warnings: [string, string][] = [];
    const warn = (code: string, text: string) => warnings.push([code, text]);
    const env = { HTTPS_PROXY: 'socks5://user:hunter2@proxy:1080' };
    expect(
      resolveProxy(undefined, 'https://api.zenovay.com', false, 'createTracker', env, warn),
    ).toBeUndefined();
    expect(warnings).toHaveLength(1);
    expect(warnings[0]![0]).toBe('ZENOVAY_PROXY_ENV');
    expect(warnings[0]![1]).toMatch(
      /the HTTPS_PROXY environment variable has the scheme socks5: .*"socks5:\/\/\*\*\*@proxy:1080".*proxy: false.*Events go direct/,
    );
    resolveProxy(
      undefined,
      'https://api.zenovay.com',
      false,
      'createTracker',
      { https_proxy: 'http://u:hunter2@proxy:1/path' },
      warn,
    );
    expect(warnings[1]![1]).toMatch(/https_proxy environment variable has a path/);
    expect(JSON.stringify(warnings)).not.toContain('hunter2');
    // Through createTracker: no throw, the warning reaches the logger, delivery goes direct.
    process.env.HTTPS_PROXY = 'socks5://user:hunter2@proxy:1080';
    const lines: string[] = [];
    const t = createTracker({
      trackingCode: 'env',
      logger: { warn: (line: string) => lines.push(line) },
      worker: false,
    });
    trackers.push(t);
    expect(lines.join('\n')).toMatch(/ZENOVAY_PROXY_ENV.*socks5/);
    expect(lines.join('\n')).not.toContain('hunter2');
    // A value NO_PROXY makes irrelevant is not read.
    expect(
      resolveProxy(
        undefined,
        'https://api.zenovay.com',
        false,
        'createTracker',
        {
          HTTPS_PROXY: '::bad::',
          NO_PROXY: 'zenovay.com',
        },
        warn,
      ),
    ).toBeUndefined();
    expect(warnings).toHaveLength(2);
  });

  test('the proxy option: a % that is not an escape in the credentials throws at construction; a user name alone is sent as user:', async () => {
    expect(() =>
      createTracker({ trackingCode: 'p', proxy: 'http://bob:50%off@proxy:3128' }),
    ).toThrow(/has a % in its credentials that is not a percent-escape \(write % as %25\)/);
    // An http endpoint through a stand-in proxy that records what it is sent (absolute-form).
    const seen: (string | undefined)[] = [];
    const { createServer } = await import('node:http');
    const fake = createServer((req, res) => {
      seen.push(req.headers['proxy-authorization']);
      req.resume();
      req.on('end', () => res.writeHead(202).end('{}'));
    });
    await new Promise<void>((resolve) => fake.listen(0, '127.0.0.1', resolve));
    const { port } = fake.address() as net.AddressInfo;
    const transport = createProxyTransport({
      proxy: `http://token@127.0.0.1:${port}`,
      connections: 1,
    });
    const answer = await transport.send(
      {
        url: 'http://collector.invalid/e/x',
        headers: { 'content-type': 'application/json' },
        body: '{}',
      },
      new AbortController().signal,
    );
    await transport.close?.();
    await new Promise((resolve) => fake.close(resolve));
    expect(answer.status).toBe(202);
    expect(seen).toEqual([`Basic ${Buffer.from('token:').toString('base64')}`]);
  });

  test.each<[string, string, boolean]>([
    ['*', 'https://api.zenovay.com', true],
    ['zenovay.com', 'https://api.zenovay.com', true],
    ['zenovay.com', 'https://zenovay.com', true],
    ['.zenovay.com', 'https://api.zenovay.com', true],
    ['*.zenovay.com', 'https://api.zenovay.com', true],
    ['ZENOVAY.COM.', 'https://api.zenovay.com', true],
    ['novay.com', 'https://api.zenovay.com', false],
    ['api.zenovay.com:443', 'https://api.zenovay.com', true],
    ['api.zenovay.com:8443', 'https://api.zenovay.com', false],
    ['example.com other.org,api.zenovay.com', 'https://api.zenovay.com', true],
    ['127.0.0.1', 'http://127.0.0.1:4000', true],
    ['127.0.0.1:4000', 'http://127.0.0.1:4000', true],
    ['127.0.0.1:5000', 'http://127.0.0.1:4000', false],
    ['127.0.0.0/8', 'http://127.0.0.1:4000', true],
    ['10.0.0.0/8', 'http://127.0.0.1:4000', false],
    ['127.0.0.1-127.0.0.9', 'http://127.0.0.5', true],
    ['::1', 'http://[::1]:4000', true],
    ['[::1]:4000', 'http://[::1]:4000', true],
    ['fd00::/8', 'http://[fd12::1]', true],
    ['localhost', 'http://127.0.0.1', false],
    ['127.0.0.1', 'http://localhost', false],
    ['', 'https://api.zenovay.com', false],
    ['10.0.0.0/99', 'http://10.1.1.1', false],
  ])('NO_PROXY %j for %s: direct %s', (list, endpoint, direct) => {
    expect(bypasses(list, new URL(endpoint))).toBe(direct);
  });
});
