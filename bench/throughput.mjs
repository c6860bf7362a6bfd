/**
 * Delivery throughput of one standalone tracker to the sink: N events as fast as the tracker
 * takes them, until all are settled. Prints {"events":N,"ms":T,"delivered":D}.
 */
import { createTracker } from '../dist/index.js';

const [sinkUrl, n = '30000'] = process.argv.slice(2);
const total = Number(n);
const tracker = createTracker({
  trackingCode: 'bench',
  host: sinkUrl,
  logger: false,
  maxQueueSize: total,
  visitorRateLimit: false,
});
const started = performance.now();
const results = [];
for (let i = 0; i < total; i++) {
  results.push(tracker.trackEvent('bench', { i }, { userAgent: 'bench', ip: '203.0.113.1' }));
}
await Promise.all(results);
const ms = performance.now() - started;
await tracker.close();
process.stdout.write(
  `${JSON.stringify({ events: total, ms, delivered: tracker.stats().delivered })}\n`,
);
