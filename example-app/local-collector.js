/**
 * A stand-in for the Zenovay endpoint when no tracking code is configured: the package's
 * inspector (`zenovay-express/testing`), a test collector on 127.0.0.1 that prints every event it
 * receives and shows them live on a page in your browser. Nothing leaves your machine.
 */
import { createInspector, createTestCollector } from 'zenovay-express/testing';
import { cyan, dim, green, magenta, truncate } from './terminal.js';

/**
 * Starts the collector on a free port: pass `collector.url` as the `host` option, open
 * `collector.pageUrl` in a browser, and `collector.watch(tracker)` to show a tracker's counters.
 * The inspector is a development tool and refuses to run when NODE_ENV is 'production': then a
 * plain test collector only prints the events (it has no `pageUrl` and no `watch`).
 */
export function startLocalCollector() {
  const onEvent = (event) => {
    try {
      console.log(formatEvent(event));
    } catch (error) {
      console.error('could not print an event:', error);
    }
  };
  if (process.env.NODE_ENV === 'production') return createTestCollector({ onEvent });
  return createInspector({ onEvent });
}

/**
 * One line per event, e.g.
 *   → pageview  http://localhost:3000/products/widget  ref=http://localhost:3000/  ip=127.0.0.1  ua=Mozilla/5.0…
 *   → event purchase  {"order_id":"ord_…","value":19.99}  url=http://localhost:3000/checkout
 */
export function formatEvent(event) {
  const parts = [];
  if (event.type === 'pageview') {
    parts.push(green('→ pageview'), printable(event.url ?? '(no url)'));
  } else {
    parts.push(magenta(`→ event ${printable(event.name ?? '(no name)')}`));
    if (event.data !== undefined) {
      parts.push(cyan(truncate(printable(JSON.stringify(event.data)), 240)));
    }
    if (event.url !== undefined) parts.push(`url=${printable(event.url)}`);
  }
  // What the package forwarded about the visitor (an event from a webhook has none of these).
  const { 'x-forwarded-for': ip, 'user-agent': userAgent } = event.headers;
  const details = [];
  if (event.referrer !== undefined) details.push(`ref=${printable(event.referrer)}`);
  if (ip !== undefined) details.push(`ip=${printable(String(ip))}`);
  if (userAgent !== undefined) details.push(`ua=${truncate(printable(String(userAgent)), 40)}`);
  if (details.length > 0) parts.push(dim(details.join('  ')));
  return parts.join('  ');
}

/**
 * Event fields come from visitors: without control characters they cannot send escape sequences
 * to your terminal.
 */
function printable(text) {
  // eslint-disable-next-line no-control-regex
  return text.replace(/[\u0000-\u001f\u007f-\u009f]/g, '?');
}
