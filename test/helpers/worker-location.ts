/**
 * Jest runs the sources, but a worker thread needs JavaScript: the tests use the built worker
 * (`npm test` builds before Jest; `npm run test:unit` does too).
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

const built = path.resolve(__dirname, '../../dist/delivery-worker.js');

export function workerScript(): URL {
  if (!existsSync(built)) {
    throw new Error(`${built} is missing: run \`npm run build\` before Jest.`);
  }
  return pathToFileURL(built);
}
