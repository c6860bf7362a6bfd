/**
 * The example shop's entry point. `npm start` builds the package and runs this file.
 *
 * Environment variables (all optional):
 *   ZENOVAY_TRACKING_CODE  send events to Zenovay under this tracking code. Without it, events
 *                          go to a local collector that prints them in this terminal.
 *   SITE_URL               the shop's public origin, e.g. https://shop.example. Page URLs are
 *                          then built on it rather than on the Host header (do this in production).
 *   PORT, HOST             where to listen (default 3000 on 127.0.0.1).
 *   DEBUG_ZENOVAY=1        explain every request that was not counted as a pageview.
 */
import http from 'node:http';
import { once } from 'node:events';
import { analytics, closeOnShutdown, createTracker } from 'zenovay-express';
import { createApp } from './app.js';
import { startLocalCollector } from './local-collector.js';
import { bold, dim, red, yellow } from './terminal.js';

const port = parsePort(process.env.PORT ?? '3000');
const host = process.env.HOST || '127.0.0.1';
const localUrl = `http://${displayHost(host)}:${port}`;
const siteUrl = process.env.SITE_URL || undefined;
// The public origin, for links the app builds itself (the API, the webhook's event).
const shopUrl = (siteUrl ?? localUrl).replace(/\/+$/, '');

// --- Analytics -----------------------------------------------------------------------------------

// With a tracking code, events go to the real endpoint (the default `host`). Without one, they go
// to a local collector so that you can watch them without an account.
const trackingCode = process.env.ZENOVAY_TRACKING_CODE || undefined;
const collector = trackingCode ? undefined : await startLocalCollector();
const delivery = collector
  ? { trackingCode: 'example-shop', host: collector.url }
  : { trackingCode };

// Info, warnings and errors always; debug lines (why a request was not a pageview) on request
// only. Without a `debug` method the middleware does not even build those messages.
const logger = {
  debug: process.env.DEBUG_ZENOVAY === '1' ? (message) => console.log(dim(message)) : undefined,
  info: (message) => console.log(message),
  warn: (message) => console.warn(yellow(message)),
  error: (message) => console.error(red(message)),
};

let middleware;
let webhookTracker;
try {
  // The middleware: pageviews and `req.track`.
  middleware = analytics({ ...delivery, siteUrl, logger });
  // A standalone tracker for code that runs outside a visitor's request, here the payment
  // webhook. (Passing `middleware.tracker` around would work as well; a separate tracker is
  // what a worker or another process would use.)
  webhookTracker = createTracker({ ...delivery, logger });
} catch (error) {
  // Bad options throw a TypeError that says what to fix, e.g. a malformed tracking code.
  fail(error.message);
}

if (collector?.watch) {
  // The inspector page also shows each tracker's counters: queued, delivered, failed, dropped.
  collector.watch(middleware.tracker, 'pages and req.track');
  collector.watch(webhookTracker, 'webhook tracker');
}

// --- HTTP server ---------------------------------------------------------------------------------

const app = createApp({ analytics: middleware, webhookTracker, shopUrl });
const server = http.createServer(app);
try {
  server.listen(port, host);
  await once(server, 'listening');
} catch (error) {
  if (error.code === 'EADDRINUSE') {
    fail(`Port ${port} is already in use on ${host}. Stop what runs there, or pick another port:
  PORT=${port + 1} npm start`);
  }
  fail(`Could not listen on ${host}:${port}: ${error.message}`);
}

const banner = ['', `  ${bold('Example Shop')} is running at ${bold(localUrl)}`];
if (siteUrl) banner.push(`  Page URLs are recorded on ${siteUrl} (SITE_URL).`);
if (collector) {
  banner.push(`  Events go to a local collector at ${collector.url} and are printed below.`);
  if (collector.pageUrl) {
    banner.push(`  Watch them arrive live in your browser: ${bold(collector.pageUrl)}`);
  }
  banner.push(
    `  To send them to Zenovay instead: ${bold('ZENOVAY_TRACKING_CODE=your-code npm start')}`,
  );
} else {
  banner.push(`  Events go to Zenovay under the tracking code ${bold(trackingCode)}.`);
}
banner.push(dim('  DEBUG_ZENOVAY=1 explains requests that are not pageviews. Ctrl-C stops.'), '');
console.log(banner.join('\n'));

// --- Graceful shutdown ---------------------------------------------------------------------------

// On Ctrl-C or SIGTERM: stop accepting connections (requests in progress get 3 s to finish and
// hand over their events), deliver what is still queued or in flight (3 s at most), then exit.
// A second Ctrl-C exits at once.
closeOnShutdown([middleware, webhookTracker], {
  server,
  timeout: 3000,
  onClose: async () => {
    console.log(`\n  pages and req.track: ${formatStats(middleware.tracker.stats())}`);
    console.log(`  webhook tracker:     ${formatStats(webhookTracker.stats())}`);
    // The local collector last: it had to receive those final events.
    await collector?.close();
    console.log('Bye.');
  },
});

// --- Helpers -------------------------------------------------------------------------------------

function formatStats(stats) {
  const counts = ['enqueued', 'delivered', 'failed', 'dropped'].map(
    (key) => `${stats[key]} ${key}`,
  );
  // Why events failed or were dropped, when any were: e.g. "(dropped: closed=2)".
  const reasons = Object.entries(stats.reasons)
    .map(([kind, byReason]) => {
      const nonZero = Object.entries(byReason).filter(([, n]) => n > 0);
      return nonZero.length === 0
        ? ''
        : `${kind}: ${nonZero.map(([reason, n]) => `${reason}=${n}`).join(', ')}`;
    })
    .filter(Boolean);
  return counts.join(', ') + (reasons.length > 0 ? `  (${reasons.join('; ')})` : '');
}

function parsePort(value) {
  const number = Number(value);
  if (!Number.isInteger(number) || number < 1 || number > 65535) {
    fail(`PORT must be a whole number from 1 to 65535, got ${JSON.stringify(value)}.`);
  }
  return number;
}

/** How to show the listening address in a URL: `localhost` for loopback and "all interfaces". */
function displayHost(address) {
  if (['127.0.0.1', '::1', '0.0.0.0', '::'].includes(address)) return 'localhost';
  return address.includes(':') ? `[${address}]` : address;
}

function fail(message) {
  console.error(red(message));
  process.exit(1);
}
