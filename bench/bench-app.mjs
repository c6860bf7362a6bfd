/**
 * What the bench's app processes share (bench/app.mjs, bench/outbox.mjs, bench/worker-nice.mjs):
 * the page they serve, and how they listen and stop.
 */
import http from 'node:http';

/** The small HTML page every bench app serves at `/`. */
export const PAGE = `<!doctype html><html><head><title>Widget</title></head><body><h1>Widget</h1>${'<p>A fine widget for every purpose.</p>'.repeat(20)}</body></html>`;

/**
 * Serves `app` on a free port of 127.0.0.1 (keep-alive for 30 s, as load generators expect),
 * prints {"port":N} for the parent, and on SIGTERM stops taking connections, awaits `close`
 * (the trackers' and floors' own) and exits.
 */
export function listenForBench(app, close) {
  const server = http.createServer(app);
  server.keepAliveTimeout = 30_000;
  server.listen(0, '127.0.0.1', () => {
    process.stdout.write(`${JSON.stringify({ port: server.address().port })}\n`);
  });
  process.on('SIGTERM', async () => {
    server.close();
    await close();
    process.exit(0);
  });
}
