/**
 * Two builds from the same sources:
 * - ESM (`dist/*.js`) keeps every dependency external.
 * - CJS (`dist/*.cjs`) bundles p-queue and p-timeout, which ship ESM only, so that
 *   `require('zenovay-express')` works on every Node 20 (require(esm) only arrived in 20.19)
 *   and inside Jest projects that do not run ESM.
 */
import { defineConfig } from 'tsup';

const entry = { index: 'src/index.ts', 'testing/index': 'src/testing/index.ts' };
const common = {
  entry,
  target: 'node20',
  platform: 'node' as const,
  // No source maps: they would point at src/, which is not published.
  sourcemap: false,
  // tsup sets `baseUrl`, which TypeScript 6 deprecates.
  dts: {
    compilerOptions: { ignoreDeprecations: '6.0' },
    // Our types use Node's; TypeScript 6 loads @types/node only when referenced.
    banner: '/// <reference types="node" />',
  },
  splitting: false,
  treeshake: true,
};

export default defineConfig([
  { ...common, format: ['esm'] },
  // import.meta.url (where the delivery worker's script is) gets tsup's CommonJS shim.
  { ...common, format: ['cjs'], noExternal: ['p-queue', 'p-timeout'], shims: true },
  // The delivery worker: one ESM file beside the entry points, started by both builds.
  {
    ...common,
    entry: { 'delivery-worker': 'src/delivery/worker-host.ts' },
    format: ['esm'],
    dts: false,
  },
  // The command line (`npx zenovay-express inspect`): ESM only, no types.
  { ...common, entry: { cli: 'src/cli.ts' }, format: ['esm'], dts: false },
]);
