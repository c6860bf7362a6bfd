/**
 * A stand-in for the Zenovay endpoint when no tracking code is configured: the package's test
 * collector (`zenovay-express/testing`), listening on 127.0.0.1, printing every event it receives.
 * Nothing leaves your machine.
 */
import { createTestCollector } from 'zenovay-express/testing';
import { cyan, dim, green, magenta, truncate } from './terminal.js';

/** Starts the collector on a free port; pass `collector.url` as the `host` option. */
export function startLocalCollector() {
  return createTestCollector({
    onEvent(event) {
      try {
        console.log(formatEvent(event));
      } catch (error) {
        console.error('could not print an event:', error);
      }
    },
  });
}

/**
 * One line per event, e.g.
 *   → pageview  http://localhost:3000/products/widget  ref=http://localhost:3000/  ip=127.0.0.1  ua=Mozilla/5.0…
 *   → event purchase  {"order_id":"ord_…","value":19.99}  url=http://localhost:3000/checkout
 */
export function formatEvent(event) {
  const parts = [];
  if (event.type === 'pageview') {
    parts.push(green('→ pageview'), event.url ?? '(no url)');
  } else {
    parts.push(magenta(`→ event ${event.name ?? '(no name)'}`));
    if (event.data !== undefined) parts.push(cyan(truncate(JSON.stringify(event.data), 240)));
    if (event.url !== undefined) parts.push(`url=${event.url}`);
  }
  // What the package forwarded about the visitor (an event from a webhook has none of these).
  const { 'x-forwarded-for': ip, 'user-agent': userAgent } = event.headers;
  const details = [];
  if (event.referrer !== undefined) details.push(`ref=${event.referrer}`);
  if (ip !== undefined) details.push(`ip=${ip}`);
  if (userAgent !== undefined) details.push(`ua=${truncate(String(userAgent), 40)}`);
  if (details.length > 0) parts.push(dim(details.join('  ')));
  return parts.join('  ');
}
