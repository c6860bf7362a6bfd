/**
 * closeOnShutdown: on SIGTERM the app drains, the tracker delivers, and the process exits by
 * the signal; when the server closes, the tracker closes.
 */
import { spawn } from 'node:child_process';
import http from 'node:http';
import path from 'node:path';
import { analytics, closeOnShutdown, createTracker } from '../src/index';
import { startCollector } from './helpers/collector';

test('SIGTERM: the pending pageview is delivered, onClose runs, the signal ends the process', async () => {
  const collector = await startCollector({ sequence: [{ status: 202, delayMs: 300 }] });
  const child = spawn(
    process.execPath,
    [path.join(__dirname, 'fixtures/shutdown.cjs'), collector.url],
    {
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) => {
    const killer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    child.on('exit', (c, s) => {
      clearTimeout(killer);
      resolve([c, s]);
    });
  });
  expect(signal).toBe('SIGTERM');
  expect(code).toBeNull();
  expect(JSON.parse(out)).toMatchObject({ enqueued: 1, delivered: 1, queued: 0, inFlight: 0 });
  expect(collector.events).toHaveLength(1);
});

test('when the server closes, the trackers close; dispose removes the listeners', async () => {
  const collector = await startCollector();
  const middleware = analytics({ trackingCode: 's', host: collector.url, logger: false });
  const other = createTracker({ trackingCode: 's', host: collector.url, logger: false });
  const server = http.createServer();
  const before = process.listenerCount('SIGTERM');
  const dispose = closeOnShutdown([middleware, other], { server });
  expect(process.listenerCount('SIGTERM')).toBe(before + 1);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  await new Promise((r) => server.close(r));
  await new Promise((r) => setImmediate(r));
  await expect(middleware.tracker.trackEvent('late')).resolves.toBe(false);
  await expect(other.trackEvent('late')).resolves.toBe(false);
  expect(other.stats().reasons.dropped.closed).toBe(1);
  dispose();
  expect(process.listenerCount('SIGTERM')).toBe(before);
});

test('a wrong target is refused with the fix', () => {
  expect(() => closeOnShutdown({} as never)).toThrow(/takes a tracker, the middleware/);
});
