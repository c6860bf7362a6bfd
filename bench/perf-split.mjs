/**
 * Where each thread's CPU goes, by kind of code, from Linux `perf` samples of
 * bench/request-cost.mjs (not part of `npm run bench`: it needs `perf`, Debian's `linux-perf`):
 *   node bench/perf-split.mjs <sinkUrl> [variant ...]      (default: floor floor-rules package)
 * For each variant, `perf record` samples every thread at 4 kHz through one request-cost run
 * (node --perf-basic-prof, so JIT code has names), and the samples of the main thread and of the
 * busiest other thread (the delivery worker) are sorted into kinds: the kernel, this package's
 * code (dist/), other JavaScript, regular expressions, V8's property lookups and inline-cache
 * misses, garbage collection, V8 builtins, libc, and other native code (Node, libuv, V8).
 * Printed per request, in µs of samples (perf's own cost included, so compare variants, not
 * absolute values), with the whole of each thread.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const dist = `${path.join(here, '..', 'dist')}/`;
const [sinkUrl, ...asked] = process.argv.slice(2);
if (!sinkUrl) {
  console.error('usage: node bench/perf-split.mjs <sinkUrl> [variant ...]');
  process.exit(2);
}
const variants = asked.length > 0 ? asked : ['floor', 'floor-rules', 'package'];
const HZ = 4000;
const REQUESTS = 40000;
/** request-cost.mjs warms up with 2,000 requests before the measured ones: both are sampled. */
const SAMPLED = REQUESTS + 2000;

const KINDS = [
  'kernel',
  'package code',
  'other JavaScript',
  'regular expressions',
  'V8 property lookup / IC misses',
  'garbage collection',
  'V8 builtins',
  'libc',
  'other native',
];

function kindOf(sym, dso) {
  if (dso.includes('kernel')) return 'kernel';
  if (sym.startsWith('RegExp:')) return 'regular expressions';
  if (sym.startsWith('JS:') || sym.startsWith('Eval:')) {
    return sym.includes(dist) ? 'package code' : 'other JavaScript';
  }
  if (/Scaveng|Heap::|Heap_|GC|Marking|Sweep|Evacuat|Minor|Collector/.test(sym)) {
    return 'garbage collection';
  }
  if (/IC|LookupIterator|StubCache|Map::|DescriptorArray|Transition|MigrateToMap/.test(sym)) {
    return 'V8 property lookup / IC misses';
  }
  if (sym.startsWith('Builtins_')) return 'V8 builtins';
  if (dso.includes('libc')) return 'libc';
  return 'other native';
}

function run(variant) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'zenovay-perf-'));
  const data = path.join(dir, 'perf.data');
  const record = spawnSync(
    'perf',
    [
      'record',
      '-q',
      '-F',
      String(HZ),
      '-o',
      data,
      '--',
      process.execPath,
      '--perf-basic-prof',
      path.join(here, 'request-cost.mjs'),
      sinkUrl,
      variant,
      String(REQUESTS),
      '5000',
    ],
    // In the temporary directory: --perf-basic-prof also writes V8 logs into the working one.
    { encoding: 'utf8', cwd: dir },
  );
  if (record.error || record.status !== 0) {
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`perf record failed: ${record.error?.message ?? record.stderr}`);
  }
  const script = spawnSync('perf', ['script', '-i', data, '-F', 'pid,tid,ip,sym,dso'], {
    encoding: 'utf8',
    maxBuffer: 1 << 30,
  });
  rmSync(dir, { recursive: true, force: true });
  const threads = new Map();
  let pid = '';
  for (const line of script.stdout.split('\n')) {
    const m = /^\s*(\d+)\/(\d+)\s+[0-9a-f]+\s+(.*) \((.*)\)$/.exec(line);
    if (m === null) continue;
    const [, processId, tid, sym, dso] = m;
    pid = processId;
    let thread = threads.get(tid);
    if (thread === undefined) {
      thread = { main: processId === tid, samples: 0, kinds: new Map() };
      threads.set(tid, thread);
    }
    thread.samples++;
    const kind = kindOf(sym, dso);
    thread.kinds.set(kind, (thread.kinds.get(kind) ?? 0) + 1);
  }
  // --perf-basic-prof leaves /tmp/perf-<pid>.map behind.
  if (pid !== '') rmSync(path.join('/tmp', `perf-${pid}.map`), { force: true });
  const all = [...threads.values()];
  const main = all.filter((t) => t.main).sort((a, b) => b.samples - a.samples)[0];
  const worker = all.filter((t) => !t.main).sort((a, b) => b.samples - a.samples)[0];
  const usPer = (n) => (n * 1e6) / HZ / SAMPLED;
  const split = (t) => {
    const out = { total: t === undefined ? 0 : usPer(t.samples) };
    for (const kind of KINDS) out[kind] = t === undefined ? 0 : usPer(t.kinds.get(kind) ?? 0);
    return out;
  };
  return { main: split(main), worker: split(worker) };
}

const results = {};
for (const variant of variants) results[variant] = run(variant);

for (const thread of ['main', 'worker']) {
  console.log(
    `\n${thread === 'main' ? 'Main thread' : 'Busiest other thread (the delivery worker)'}, µs of samples per request`,
  );
  console.log(`| kind | ${variants.join(' | ')} |`);
  console.log(`| --- | ${variants.map(() => '---').join(' | ')} |`);
  for (const kind of ['total', ...KINDS]) {
    const cells = variants.map((v) => results[v][thread][kind].toFixed(1));
    console.log(`| ${kind} | ${cells.join(' | ')} |`);
  }
}
