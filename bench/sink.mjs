/**
 * The endpoint stand-in for the benchmark, in its own process: answers POST /e/{code} with 202
 * and counts (mode `ok`), or accepts them and never answers (mode `blackhole`, an outage).
 * GET /count tells how many events arrived. Prints {"port":N} when ready.
 */
import http from 'node:http';

const mode = process.argv[2] ?? 'ok';
let count = 0;
const ANSWER = '{"ok":true}';
const server = http.createServer((req, res) => {
  if (req.method === 'GET' && req.url === '/count') {
    res.end(JSON.stringify({ count }));
    return;
  }
  req.resume();
  req.on('end', () => {
    count++;
    if (mode === 'blackhole') return; // never answers: the client's timeout has to deal with it
    // With its length, as a JSON API answers (Express's res.json does). The floor's worker reads
    // answers by Content-Length only; a chunked answer (what writeHead without a length gives)
    // also cost the package's client about 4 µs an event more (its client alone posting here,
    // 4 pairs of runs with and without the length).
    res.writeHead(202, {
      'content-type': 'application/json',
      'content-length': String(Buffer.byteLength(ANSWER)),
    });
    res.end(ANSWER);
  });
});
server.keepAliveTimeout = 30_000;
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({ port: server.address().port })}\n`);
});
process.on('SIGTERM', () => process.exit(0));
