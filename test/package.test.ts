/**
 * The built package as users get it: both entry points load, and the tarball holds built JS and
 * types, no tests. `npm test` builds before running Jest.
 */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';

const root = path.resolve(__dirname, '..');
const node = (args: string[]) =>
  execFileSync(process.execPath, args, { cwd: root, encoding: 'utf8' });

beforeAll(() => {
  if (!existsSync(path.join(root, 'dist/index.cjs'))) {
    throw new Error('dist/ is missing: run `npm run build` first (npm test does it for you).');
  }
});

test('require() loads the CommonJS build, p-queue bundled in', () => {
  const out = node([
    '-e',
    `const z = require('zenovay-express'); const t = require('zenovay-express/testing');
     console.log(typeof z.analytics, typeof z.createTracker, typeof t.createTestCollector);`,
  ]);
  expect(out.trim()).toBe('function function function');
});

test('the CommonJS build works inside Jest, which does not run ESM here', async () => {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const z = require('../dist/index.cjs') as typeof import('../src/index');
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const kit = require('../dist/testing/index.cjs') as typeof import('../src/testing');
  const collector = await kit.createTestCollector();
  const tracker = z.createTracker({ trackingCode: 'jest-cjs', host: collector.url, logger: false });
  await expect(tracker.trackEvent('from_jest')).resolves.toBe(true);
  await tracker.close();
  await collector.close();
  expect(collector.events.map((e) => e.name)).toEqual(['from_jest']);
});

test('import loads the ESM build', () => {
  const out = node([
    '--input-type=module',
    '-e',
    `import { analytics, createTracker } from 'zenovay-express';
     import { createTestCollector } from 'zenovay-express/testing';
     console.log(typeof analytics, typeof createTracker, typeof createTestCollector);`,
  ]);
  expect(out.trim()).toBe('function function function');
});

test('npm pack ships built JS and types, and no tests or sources', () => {
  const json = execFileSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], {
    cwd: root,
    encoding: 'utf8',
  });
  const files = (JSON.parse(json) as [{ files: { path: string }[] }])[0].files.map((f) => f.path);
  for (const expected of [
    'dist/index.js',
    'dist/index.cjs',
    'dist/index.d.ts',
    'dist/index.d.cts',
    'dist/testing/index.js',
    'dist/testing/index.cjs',
    'dist/cli.js',
    // The delivery worker's script: both builds start it by its path beside them.
    'dist/delivery-worker.js',
    'README.md',
    'LICENSE',
    'CHANGELOG.md',
    'package.json',
  ]) {
    expect(files).toContain(expected);
  }
  expect(files.filter((f) => /(^|\/)(test|src|example-app|bench)\//.test(f))).toEqual([]);
  expect(files.filter((f) => f.endsWith('.map'))).toEqual([]);
});
