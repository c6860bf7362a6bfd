/**
 * Delivery throughput of one standalone tracker to the sink: N events as fast as the tracker
 * takes them, until all are settled.
 *   node bench/throughput.mjs <sinkUrl> [events] [client]
 * clients: worker (the default: the package's client on its worker thread), inline (the same
 * client on the main thread, `worker: false`), and on the main thread through the `transport`
 * option: http (Node's agent), undici (undici 7 Pool), fetch.
 * Prints {"events":N,"ms":T,"delivered":D,"cpuMs":C} (C: the process's CPU time, all threads).
 */
import { createTracker } from '../dist/index.js';
import { fetchTransport, httpAgentTransport, undiciTransport } from './transports.mjs';

const [sinkUrl, n = '30000', client = 'worker'] = process.argv.slice(2);
const total = Number(n);
const concurrency = 10;
const transports = {
  http: () => httpAgentTransport(concurrency),
  undici: () => undiciTransport(concurrency),
  fetch: () => fetchTransport(),
};
const tracker = createTracker({
  trackingCode: 'bench',
  host: sinkUrl,
  logger: false,
  maxQueueSize: total,
  visitorRateLimit: false,
  concurrency,
  ...(client === 'worker'
    ? {}
    : client === 'inline'
      ? { worker: false }
      : { transport: transports[client]() }),
});
const cpu0 = process.cpuUsage();
const started = performance.now();
for (let i = 0; i < total; i++) {
  void tracker.trackEvent('bench', { i }, { userAgent: 'bench', ip: '203.0.113.1' });
}
await tracker.flush();
const ms = performance.now() - started;
const cpu = process.cpuUsage(cpu0);
await tracker.close();
process.stdout.write(
  `${JSON.stringify({ events: total, ms, delivered: tracker.stats().delivered, cpuMs: (cpu.user + cpu.system) / 1000 })}\n`,
);
