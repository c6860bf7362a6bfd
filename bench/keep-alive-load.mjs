/**
 * Shared by the benches that time code inside a server: real keep-alive requests, 10 at a time.
 */
import http from 'node:http';

/**
 * Serves `count` GET requests with `server` on 127.0.0.1 (paths taken in turn from `paths`,
 * with `headers`), 10 at a time over keep-alive, then closes it.
 */
export async function serveRequests(server, count, { paths = ['/'], headers = {} } = {}) {
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  const agent = new http.Agent({ keepAlive: true, maxSockets: 10 });
  let made = 0;
  const one = () =>
    new Promise((resolve, reject) => {
      const path = paths[made++ % paths.length];
      http
        .get({ host: '127.0.0.1', port, agent, path, headers }, (res) => {
          res.resume();
          res.on('end', resolve);
        })
        .on('error', reject);
    });
  for (let i = 0; i < count / 10; i++) {
    await Promise.all(Array.from({ length: 10 }, one));
  }
  agent.destroy();
  await new Promise((resolve) => server.close(resolve));
}

/** The median and the mean of a list of times. */
export function medianAndMean(times) {
  const sorted = [...times].sort((a, b) => a - b);
  const mean = sorted.reduce((a, b) => a + b, 0) / sorted.length;
  return { median: sorted[sorted.length >> 1], mean };
}
