/**
 * Which Redis client the Redis outbox uses (issue 17), by measurement: ioredis against node-redis
 * (`@redis/client`, the core of the `redis` package), on the commands the outbox sends and on the
 * outbox itself, against a redis-server of our own on a free port (no persistence).
 *
 *   node bench/outbox-redis-clients.mjs [--events 30000] [--rounds 5]
 *
 * Both clients are dev dependencies. To measure other versions, name directories that hold a
 * node_modules with them in OUTBOX_BENCH_CLIENTS (':'-separated; searched after this project):
 *   mkdir -p /tmp/nr5 && (cd /tmp/nr5 && npm init -y && npm i @redis/client@5)
 *   OUTBOX_BENCH_CLIENTS=/tmp/nr5 node bench/outbox-redis-clients.mjs
 * (this project's node_modules comes first: move the order by setting OUTBOX_BENCH_ONLY=1, which
 * searches OUTBOX_BENCH_CLIENTS alone).
 *
 * Per client, the median of the rounds:
 *   xadd await-each     one XADD, await its answer, the next (round-trip bound)
 *   xadd same-tick      500 XADDs issued in one tick, then awaited together (what a store does
 *                       with a buffer of appends when the client writes them as they come)
 *   xadd pipeline       the same 500 as one explicit pipeline (ioredis pipeline().exec(),
 *                       node-redis multi().execAsPipeline())
 *   xadd auto-pipeline  ioredis with enableAutoPipelining (node-redis does this by default)
 *   read+ack            XREADGROUP COUNT 500, then XACK and XDEL of those ids, until the group
 *                       has read everything: entries per second and round trips
 *   store append        the Redis outbox itself (src/outbox/redis-store.ts, transpiled into .tmp/)
 *                       given the client: 500 appends per tick, then sync(): its write script
 *                       adds them and puts them in the writer's pending list
 *   store settle        settle() of all of them (XACK + XDEL in the write script), then sync()
 *   store spill+take    every entry spilled, then take(500) and settle() until all are back
 * Figures: events per second, this process's CPU (user + system) per event in microseconds
 * (redis-server's CPU is not counted), plus the install size of each client with its
 * dependencies and the time to load it in CommonJS and in ESM (child processes).
 */
import { spawn, execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { mkdtempSync, rmSync, readdirSync, statSync, existsSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import { pathToFileURL } from 'node:url';
import { writeFileSync, mkdirSync } from 'node:fs';

const args = process.argv.slice(2);
const arg = (name, fallback) => {
  const at = args.indexOf(`--${name}`);
  return at >= 0 ? Number(args[at + 1]) : fallback;
};
const EVENTS = arg('events', 30_000);
const ROUNDS = arg('rounds', 5);
const AWAIT_EACH = Math.min(EVENTS, 5_000);
const BATCH = 500;

// An outbox entry the size of a real one: a pageview's JSON and its forwarded headers.
const body = JSON.stringify({
  type: 'pageview',
  url: 'https://shop.example/products/widget-2000?utm_source=newsletter&utm_medium=email',
  referrer: 'https://www.google.com/',
});
const headers = JSON.stringify({
  'content-type': 'application/json',
  'user-agent':
    'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36',
  'x-forwarded-for': '203.0.113.42',
  'sec-ch-ua': '"Chromium";v="126", "Google Chrome";v="126", "Not-A.Brand";v="8"',
  'sec-ch-ua-mobile': '?0',
  'sec-ch-ua-platform': '"Windows"',
});
const xaddArgs = (stream) => [
  'XADD',
  stream,
  'MAXLEN',
  '~',
  '1000000',
  '*',
  'key',
  randomUUID(),
  'body',
  body,
  'headers',
  headers,
  'acceptedAt',
  String(Date.now()),
];

// --- where the clients come from ---------------------------------------------------------------
const roots = [
  ...(process.env.OUTBOX_BENCH_ONLY
    ? []
    : [path.resolve(path.dirname(new URL(import.meta.url).pathname), '..')]),
  ...(process.env.OUTBOX_BENCH_CLIENTS ?? '').split(':').filter(Boolean),
];
function locate(name) {
  for (const root of roots) {
    try {
      const require = createRequire(path.join(root, 'noop.js'));
      return { require, root, resolved: require.resolve(name) };
    } catch {
      // not in this root
    }
  }
  return undefined;
}

function dirSize(dir) {
  let total = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) total += dirSize(full);
    else if (entry.isFile()) total += statSync(full).size;
  }
  return total;
}

/** The package's directory and those of its dependencies (recursively), each counted once. */
function installSize(name, root) {
  const seen = new Set();
  const visit = (pkg, from) => {
    let dir = from;
    for (;;) {
      const candidate = path.join(dir, 'node_modules', pkg);
      if (existsSync(path.join(candidate, 'package.json'))) {
        if (seen.has(candidate)) return;
        seen.add(candidate);
        const manifest = JSON.parse(readFileSync(path.join(candidate, 'package.json'), 'utf8'));
        for (const dep of Object.keys(manifest.dependencies ?? {})) visit(dep, candidate);
        return;
      }
      const up = path.dirname(dir);
      if (up === dir) return;
      dir = up;
    }
  };
  visit(name, root);
  let bytes = 0;
  for (const dir of seen) bytes += dirSize(dir);
  return { bytes, packages: seen.size };
}

function loadTime(resolved, kind) {
  const code =
    kind === 'cjs'
      ? `const t=process.hrtime.bigint();require(${JSON.stringify(resolved)});console.log(Number(process.hrtime.bigint()-t)/1e6)`
      : `const t=process.hrtime.bigint();await import(${JSON.stringify(pathToFileURL(resolved).href)});console.log(Number(process.hrtime.bigint()-t)/1e6)`;
  const times = [];
  for (let i = 0; i < 5; i++) {
    const out = execFileSync(
      process.execPath,
      kind === 'cjs' ? ['-e', code] : ['--input-type=module', '-e', code],
      { encoding: 'utf8' },
    );
    times.push(Number(out.trim()));
  }
  return median(times);
}

// --- the store, transpiled from the sources (it is not in dist/ yet) ---------------------------
const projectRoot = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
async function loadStore() {
  const ts = createRequire(path.join(projectRoot, 'noop.js'))('typescript');
  const out = path.join(projectRoot, '.tmp', 'bench-outbox');
  const files = [
    'logger',
    'outbox/types',
    'outbox/redis-scripts',
    'outbox/redis-client',
    'outbox/redis-store',
  ];
  for (const file of files) {
    const source = readFileSync(path.join(projectRoot, 'src', `${file}.ts`), 'utf8');
    const { outputText } = ts.transpileModule(source, {
      compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 },
    });
    mkdirSync(path.dirname(path.join(out, `${file}.js`)), { recursive: true });
    writeFileSync(path.join(out, `${file}.js`), outputText);
  }
  writeFileSync(path.join(out, 'package.json'), '{"type":"module"}');
  return import(pathToFileURL(path.join(out, 'outbox/redis-store.js')).href);
}

const quiet = { warn() {}, error() {}, info() {}, debug() {}, debugEnabled: false };

async function storeScenarios(storeModule, rawClient, stream) {
  const store = storeModule.createRedisOutbox({
    redis: rawClient,
    stream,
    reporter: quiet,
    claimAfterMs: 600_000,
    maxBuffered: EVENTS,
  });
  await store.open();
  const keys = [];
  const results = {};
  results['store append'] = await measure(EVENTS, async () => {
    for (let i = 0; i < EVENTS; i += BATCH) {
      for (let j = 0; j < BATCH; j++) {
        const key = randomUUID();
        keys.push(key);
        store.append({ key, body, headers: JSON.parse(headers), acceptedAt: Date.now() });
      }
      await new Promise((resolve) => setImmediate(resolve));
    }
    await store.sync();
  });
  if (store.stats().written !== EVENTS) throw new Error(`written ${JSON.stringify(store.stats())}`);
  results['store settle'] = await measure(EVENTS, async () => {
    for (const key of keys) store.settle(key);
    await store.sync();
  });
  // Again, spilled this time, then read back and settled.
  keys.length = 0;
  for (let i = 0; i < EVENTS; i++) {
    const key = randomUUID();
    keys.push(key);
    store.append({ key, body, headers: JSON.parse(headers), acceptedAt: Date.now() });
  }
  await store.sync();
  for (const key of keys) store.spill(key);
  results['store spill+take'] = await measure(EVENTS, async () => {
    let got = 0;
    for (;;) {
      const entries = await store.take(BATCH);
      if (entries.length === 0) break;
      got += entries.length;
      for (const entry of entries) store.settle(entry.key);
    }
    await store.sync();
    if (got !== EVENTS) throw new Error(`took ${got} of ${EVENTS}`);
  });
  await store.close();
  return results;
}

// --- a redis-server of our own ----------------------------------------------------------------
function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

async function startRedis() {
  const port = await freePort();
  const dir = mkdtempSync(path.join(tmpdir(), 'outbox-bench-redis-'));
  const child = spawn(
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
    { cwd: dir, stdio: ['ignore', 'pipe', 'inherit'] },
  );
  child.once('error', (error) => {
    console.error(`redis-server could not start (${error.message}): apt-get install redis-server`);
    process.exit(1);
  });
  await new Promise((resolve) => {
    let seen = '';
    child.stdout.on('data', (chunk) => {
      seen += chunk;
      if (seen.includes('Ready to accept connections')) resolve();
    });
  });
  child.stdout.resume();
  return {
    port,
    stop() {
      child.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

// --- the two clients behind one small face ----------------------------------------------------
async function ioredisClient(found, port, autoPipelining) {
  const Redis = found.require('ioredis').default ?? found.require('ioredis');
  const client = new Redis({ port, host: '127.0.0.1', enableAutoPipelining: autoPipelining });
  await new Promise((resolve, reject) => {
    client.once('ready', resolve);
    client.once('error', reject);
  });
  return {
    raw: client,
    send: (cmd) => client.call(cmd[0], cmd.slice(1)),
    pipeline: (cmds) => {
      const p = client.pipeline();
      for (const cmd of cmds) p.call(cmd[0], cmd.slice(1));
      return p.exec();
    },
    close: () => client.quit(),
  };
}

async function nodeRedisClient(found, port) {
  const { createClient } = found.require('@redis/client');
  const client = createClient({ socket: { port, host: '127.0.0.1' } });
  await client.connect();
  return {
    raw: client,
    send: (cmd) => client.sendCommand(cmd),
    pipeline: (cmds) => {
      const multi = client.multi();
      for (const cmd of cmds) multi.addCommand(cmd);
      return multi.execAsPipeline();
    },
    close: () => client.close(),
  };
}

// --- the measurements ---------------------------------------------------------------------------
function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

async function measure(n, work) {
  const cpu = process.cpuUsage();
  const start = process.hrtime.bigint();
  const extra = await work();
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  const used = process.cpuUsage(cpu);
  return { rate: n / seconds, cpuUs: (used.user + used.system) / n, ...extra };
}

/**
 * The entries of an XREADGROUP reply for one stream, whatever the client made of it: RESP2
 * `[[name, entries]]`, ioredis's RESP3 map as `[name, entries]`, node-redis's as `{ name: entries }`.
 */
function readEntries(reply) {
  if (reply == null) return [];
  if (Array.isArray(reply)) return (Array.isArray(reply[0]) ? reply[0][1] : reply[1]) ?? [];
  if (reply instanceof Map) return [...reply.values()][0] ?? [];
  return Object.values(reply)[0] ?? [];
}

const scenarios = {
  'xadd await-each': (c, stream) =>
    measure(AWAIT_EACH, async () => {
      for (let i = 0; i < AWAIT_EACH; i++) await c.send(xaddArgs(stream));
    }),
  'xadd same-tick': (c, stream) =>
    measure(EVENTS, async () => {
      for (let i = 0; i < EVENTS; i += BATCH) {
        const pending = [];
        for (let j = 0; j < BATCH; j++) pending.push(c.send(xaddArgs(stream)));
        await Promise.all(pending);
      }
    }),
  'xadd pipeline': (c, stream) =>
    measure(EVENTS, async () => {
      for (let i = 0; i < EVENTS; i += BATCH) {
        const cmds = [];
        for (let j = 0; j < BATCH; j++) cmds.push(xaddArgs(stream));
        await c.pipeline(cmds);
      }
    }),
  'read+ack': async (c, stream) => {
    // Fill the stream first (not measured), then read it all through a group.
    for (let i = 0; i < EVENTS; i += BATCH) {
      const cmds = [];
      for (let j = 0; j < BATCH; j++) cmds.push(xaddArgs(stream));
      await c.pipeline(cmds);
    }
    await c.send(['XGROUP', 'CREATE', stream, 'g', '0']);
    return measure(EVENTS, async () => {
      let read = 0;
      let trips = 0;
      for (;;) {
        const reply = await c.send([
          'XREADGROUP',
          'GROUP',
          'g',
          'c1',
          'COUNT',
          String(BATCH),
          'STREAMS',
          stream,
          '>',
        ]);
        trips++;
        const entries = readEntries(reply);
        if (entries.length === 0) break;
        const ids = entries.map((entry) => entry[0]);
        read += ids.length;
        // XACK and XDEL go together, as the store sends them.
        await Promise.all([
          c.send(['XACK', stream, 'g', ...ids]),
          c.send(['XDEL', stream, ...ids]),
        ]);
        trips++;
      }
      if (read !== EVENTS) throw new Error(`read ${read} of ${EVENTS}`);
      return { trips };
    });
  },
};

async function main() {
  try {
    execFileSync('redis-server', ['--version'], { stdio: 'ignore' });
  } catch {
    console.error('redis-server is not installed: apt-get install redis-server');
    process.exit(1);
  }
  const clients = [];
  const io = locate('ioredis');
  if (io) {
    clients.push({
      name: 'ioredis',
      pkg: 'ioredis',
      found: io,
      make: (p) => ioredisClient(io, p, false),
    });
    clients.push({
      name: 'ioredis auto-pipelining',
      pkg: 'ioredis',
      found: io,
      make: (p) => ioredisClient(io, p, true),
      only: ['xadd same-tick'],
    });
  } else
    console.log('ioredis: not found (install it, or name its directory in OUTBOX_BENCH_CLIENTS)');
  const nr = locate('@redis/client');
  if (nr)
    clients.push({
      name: 'node-redis',
      pkg: '@redis/client',
      found: nr,
      make: (p) => nodeRedisClient(nr, p),
    });
  else
    console.log(
      '@redis/client: not found (install it, or name its directory in OUTBOX_BENCH_CLIENTS)',
    );

  console.log(
    `node ${process.version}, ${EVENTS} events per run (${AWAIT_EACH} for await-each), ${ROUNDS} rounds, ` +
      `entry ${body.length + headers.length + 36 + 13} bytes of fields`,
  );
  for (const c of clients) {
    if (c.only) continue;
    const manifest = JSON.parse(
      readFileSync(path.join(c.found.root, 'node_modules', c.pkg, 'package.json'), 'utf8'),
    );
    const size = installSize(c.pkg, c.found.root);
    console.log(
      `${c.name} (${c.pkg} ${manifest.version}, ${manifest.license}, node ${manifest.engines?.node}): ` +
        `${(size.bytes / 1e6).toFixed(1)} MB in ${size.packages} packages; ` +
        `load ${loadTime(c.found.resolved, 'cjs').toFixed(0)} ms CJS, ${loadTime(c.found.resolved, 'esm').toFixed(0)} ms ESM`,
    );
  }

  const storeModule = await loadStore();
  const redis = await startRedis();
  const results = new Map();
  try {
    for (let round = 0; round < ROUNDS; round++) {
      // Alternate the order so neither client always runs on a warmer (or noisier) machine.
      const order = round % 2 === 0 ? clients : [...clients].reverse();
      for (const c of order) {
        const client = await c.make(redis.port);
        for (const [name, run] of Object.entries(scenarios)) {
          if (c.only && !c.only.includes(name)) continue;
          const stream = `bench:${randomUUID()}`;
          const r = await run(client, stream);
          await client.send(['DEL', stream]);
          const key = `${c.name}\t${name}`;
          if (!results.has(key)) results.set(key, []);
          results.get(key).push(r);
        }
        if (!c.only) {
          const stream = `bench:{${randomUUID()}}`;
          const r = await storeScenarios(storeModule, client.raw, stream);
          await client.send(['DEL', stream, `${stream}:alive`]);
          for (const [name, value] of Object.entries(r)) {
            const key = `${c.name}\t${name}`;
            if (!results.has(key)) results.set(key, []);
            results.get(key).push(value);
          }
        }
        await client.close();
      }
    }
  } finally {
    redis.stop();
    rmSync(path.join(projectRoot, '.tmp', 'bench-outbox'), { recursive: true, force: true });
  }

  console.log('\n| client | scenario | events/s | CPU us/event | round trips |');
  console.log('| --- | --- | ---: | ---: | ---: |');
  for (const [key, runs] of results) {
    const [client, scenario] = key.split('\t');
    const rate = median(runs.map((r) => r.rate));
    const cpu = median(runs.map((r) => r.cpuUs));
    const trips = runs[0].trips ?? '';
    console.log(
      `| ${client} | ${scenario} | ${Math.round(rate).toLocaleString('en-US')} | ${cpu.toFixed(1)} | ${trips} |`,
    );
  }
}

await main();
