#!/usr/bin/env node
/**
 * Consumer tests: the packed package, installed from its tarball the way users install it, in
 * small apps outside this repo (CommonJS and ESM JavaScript; TypeScript on node16 as CommonJS
 * and as ESM, on bundler resolution, and on TypeScript 5's CommonJS default node10), on
 * Express 5, Express 4 and Connect 3.
 *
 * For each framework, one temporary directory gets `npm install <tarball> <framework> typescript
 * @types/...`; each consumer is a subdirectory with its own package.json "type". TypeScript
 * consumers are compiled with skipLibCheck false, then run. Every app serves a page and a
 * `req.track` route, and checks with `zenovay-express/testing` that both events arrived.
 *
 * Needs a built dist/ (`npm run build`; `npm run test:consumers` builds first) and the npm
 * registry. Runs on the Node that runs it, so `npm run test:matrix` covers other versions.
 *
 *   node scripts/consumers.mjs [--framework express5,express4,connect]
 *                              [--consumer js-cjs,js-esm,ts-node10,ts-node16-cjs,ts-node16-esm,ts-bundler]
 *                              [--jobs 2]  frameworks tested side by side (default: up to 2 cores)
 *                              [--keep]    keep the temporary directory and print where it is
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { cp, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const sources = path.join(root, 'test/consumers');
const nodeMajor = process.versions.node.split('.')[0];

/** The frameworks, what to install for each, and the entry file name of its apps. */
const FRAMEWORKS = {
  express5: { entry: 'express', module: 'express', install: ['express@5', '@types/express@5'] },
  express4: { entry: 'express', module: 'express', install: ['express@4', '@types/express@4'] },
  connect: { entry: 'connect', module: 'connect', install: ['connect@3', '@types/connect@3'] },
};

/** The consumers: which sources, which package "type", what to compile and what to run. */
const CONSUMERS = {
  'js-cjs': {
    type: 'commonjs',
    files: (e) => [`js-cjs/harness.cjs`, `js-cjs/${e}.cjs`],
    run: (e) => `${e}.cjs`,
  },
  'js-esm': {
    type: 'module',
    files: (e) => [`js-esm/harness.mjs`, `js-esm/${e}.mjs`],
    run: (e) => `${e}.mjs`,
  },
  'ts-node10': { type: 'commonjs', tsconfig: 'ts/tsconfig.node10.json' },
  'ts-node16-cjs': { type: 'commonjs', tsconfig: 'ts/tsconfig.node16.json' },
  'ts-node16-esm': { type: 'module', tsconfig: 'ts/tsconfig.node16.json' },
  'ts-bundler': { type: 'module', tsconfig: 'ts/tsconfig.bundler.json' },
};

const { values: args } = parseArgs({
  options: {
    framework: { type: 'string', default: Object.keys(FRAMEWORKS).join(',') },
    consumer: { type: 'string', default: Object.keys(CONSUMERS).join(',') },
    keep: { type: 'boolean', default: false },
    jobs: { type: 'string', default: String(Math.min(2, os.availableParallelism())) },
  },
});
const frameworks = pick(args.framework, FRAMEWORKS, '--framework');
const consumers = pick(args.consumer, CONSUMERS, '--consumer');

function pick(list, known, flag) {
  const names = list.split(',').filter(Boolean);
  for (const name of names) {
    if (!(name in known)) {
      console.error(`${flag}: unknown '${name}' (known: ${Object.keys(known).join(', ')})`);
      process.exit(2);
    }
  }
  return names;
}

/**
 * Runs a command; resolves { code, output (stdout and stderr), stdout, seconds }. The child gets this process's environment
 * less npm's notion of the project it was started from, so that installs land in `cwd`.
 */
function run(command, commandArgs, cwd, timeoutMs) {
  const env = { ...process.env };
  for (const key of Object.keys(env)) {
    if (/^npm_(config_local_prefix|package_|lifecycle_)/i.test(key)) delete env[key];
  }
  const started = performance.now();
  return new Promise((resolve) => {
    const child = spawn(command, commandArgs, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    let stdout = '';
    child.stdout.on('data', (chunk) => {
      output += chunk;
      stdout += chunk;
    });
    child.stderr.on('data', (chunk) => (output += chunk));
    const timer = setTimeout(() => {
      output += `\n[killed after ${timeoutMs / 1000} s]`;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.on('error', (error) => (output += `\n${error.message}`));
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? 1, output, stdout, seconds: (performance.now() - started) / 1000 });
    });
  });
}

async function must(step, command, commandArgs, cwd, timeoutMs) {
  const result = await run(command, commandArgs, cwd, timeoutMs);
  if (result.code !== 0) {
    throw new Error(
      `${step} failed (${command} ${commandArgs.join(' ')} in ${cwd}):\n${result.output}`,
    );
  }
  return result;
}

async function devDependency(name) {
  const pkg = JSON.parse(await readFile(path.join(root, 'package.json'), 'utf8'));
  return pkg.devDependencies[name];
}

/** Copies a consumer into `dir` with its package.json; returns the file to run, compiled if TS. */
async function prepare(consumerName, entry, dir) {
  const consumer = CONSUMERS[consumerName];
  await mkdir(dir, { recursive: true });
  await writeFile(
    path.join(dir, 'package.json'),
    JSON.stringify(
      { name: `consumer-${consumerName}`, private: true, type: consumer.type },
      null,
      2,
    ),
  );
  if (!consumer.tsconfig) {
    for (const file of consumer.files(entry)) {
      await cp(path.join(sources, file), path.join(dir, path.basename(file)));
    }
    return { compile: undefined, main: consumer.run(entry) };
  }
  await cp(path.join(sources, consumer.tsconfig), path.join(dir, 'tsconfig.json'));
  for (const file of ['harness.ts', `${entry}.ts`]) {
    await cp(path.join(sources, 'ts/src', file), path.join(dir, 'src', file));
  }
  return { compile: 'tsconfig.json', main: `dist/${entry}.js` };
}

/** Every file that package.json points at (exports, main, module, types, typesVersions). */
function entryFiles(pkg) {
  const found = new Set();
  const walk = (value) => {
    if (typeof value === 'string') found.add(path.posix.normalize(value));
    else if (Array.isArray(value)) value.forEach(walk);
    else if (value && typeof value === 'object') Object.values(value).forEach(walk);
  };
  walk([pkg.exports, pkg.main, pkg.module, pkg.types, pkg.typesVersions]);
  return [...found];
}

/** Packs the package into `dir`; checks that the tarball has every entry file. */
async function pack(dir) {
  const packed = await must(
    'npm pack',
    'npm',
    ['pack', '--json', '--pack-destination', dir],
    root,
    120_000,
  );
  const [info] = JSON.parse(packed.stdout);
  const pkg = JSON.parse(await readFile(path.join(root, 'package.json'), 'utf8'));
  const files = new Set(info.files.map((f) => f.path));
  const missing = entryFiles(pkg).filter((f) => !files.has(f));
  if (missing.length > 0) {
    throw new Error(
      `the tarball lacks ${missing.join(', ')}: dist/ is incomplete (a build running right now?). ` +
        'Run `npm run build` and try again.',
    );
  }
  return path.join(dir, info.filename);
}

/**
 * Installs one framework with the tarball, then builds and runs every consumer on it. Returns
 * the results and the lines to print (printed together, as frameworks may run side by side).
 */
async function testFramework(frameworkName, tarball, tmp, typescript) {
  const framework = FRAMEWORKS[frameworkName];
  const base = path.join(tmp, frameworkName);
  const lines = [];
  const results = [];
  await mkdir(base);
  await writeFile(path.join(base, 'package.json'), '{ "name": "consumers", "private": true }\n');
  // The current releases in each range, as a new user gets them (hence no --prefer-offline).
  const install = await run(
    'npm',
    [
      'install',
      '--no-audit',
      '--no-fund',
      '--no-package-lock',
      tarball,
      ...framework.install,
    ].concat([typescript, `@types/node@${nodeMajor}`]),
    base,
    300_000,
  );
  if (install.code !== 0) {
    lines.push(`\n${frameworkName}: npm install failed`, indent(install.output));
    for (const consumerName of consumers) results.push({ ok: false, frameworkName, consumerName });
    return { results, lines };
  }
  const version = async (name) =>
    JSON.parse(await readFile(path.join(base, 'node_modules', name, 'package.json'), 'utf8'))
      .version;
  const label = `${framework.module} ${await version(framework.module)}`;
  lines.push(
    `\n${frameworkName}: ${label}, typescript ${await version('typescript')} ` +
      `(installed in ${install.seconds.toFixed(1)} s)`,
  );

  for (const consumerName of consumers) {
    const dir = path.join(base, consumerName);
    const { compile, main } = await prepare(consumerName, framework.entry, dir);
    let result = { code: 0, output: '', seconds: 0 };
    if (compile) {
      const tsc = path.join(base, 'node_modules/typescript/bin/tsc');
      result = await run(process.execPath, [tsc, '-p', compile], dir, 180_000);
    }
    if (result.code === 0) {
      const ran = await run(process.execPath, [main], dir, 60_000);
      result = { ...ran, seconds: result.seconds + ran.seconds };
    }
    const ok = result.code === 0;
    results.push({ ok, frameworkName, consumerName });
    lines.push(
      `  ${ok ? 'PASS' : 'FAIL'}  ${consumerName.padEnd(14)} ${label.padEnd(16)} ` +
        `${result.seconds.toFixed(1)} s`,
    );
    if (!ok) lines.push(indent(result.output));
  }
  return { results, lines };
}

function indent(text) {
  return text.trimEnd().replace(/^/gm, '        ');
}

async function main() {
  if (
    !existsSync(path.join(root, 'dist/index.cjs')) ||
    !existsSync(path.join(root, 'dist/index.js'))
  ) {
    console.error('dist/ is missing: run `npm run build` first (`npm run test:consumers` does).');
    process.exit(2);
  }
  const started = performance.now();
  const tmp = await mkdtemp(path.join(os.tmpdir(), 'zenovay-consumers-'));
  const typescript = `typescript@${await devDependency('typescript')}`;
  const jobs = Math.max(1, Number(args.jobs) || 1);
  console.log(
    `consumer tests on Node ${process.version}, ${typescript}, ${jobs} at a time, in ${tmp}`,
  );

  const results = [];
  try {
    const tarball = await pack(tmp);
    const queue = [...frameworks];
    const worker = async () => {
      for (let name = queue.shift(); name !== undefined; name = queue.shift()) {
        const outcome = await testFramework(name, tarball, tmp, typescript);
        results.push(...outcome.results);
        console.log(outcome.lines.join('\n'));
      }
    };
    await Promise.all(Array.from({ length: jobs }, worker));
  } finally {
    if (args.keep) console.log(`\nkept ${tmp}`);
    else await rm(tmp, { recursive: true, force: true });
  }

  const failed = results.filter((r) => !r.ok);
  const seconds = (performance.now() - started) / 1000;
  console.log(`\nconsumers on Node ${process.version}: ${seconds.toFixed(1)} s`);
  for (const r of failed) console.log(`  failed: ${r.frameworkName} ${r.consumerName}`);
  console.log(`${results.length - failed.length} passed, ${failed.length} failed`);
  if (failed.length > 0) process.exitCode = 1;
}

main().catch((error) => {
  console.error(error instanceof Error ? error.message : error);
  process.exitCode = 1;
});
