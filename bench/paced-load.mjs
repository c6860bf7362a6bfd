/**
 * A steady load for the fixed-rate measures (bench/run.mjs part 2): GET / at `rate` requests/s,
 * spread evenly over time (a check every millisecond sends what is due), on `connections` raw
 * keep-alive sockets with one request in flight on each. autocannon's `overallRate` sends each
 * connection's share of a second back to back at the start of that second, so the app is
 * saturated for part of every second and idle for the rest: a fixed rate in name only. Here the
 * requests come as they would from many visitors, and every window of the app's time sees the
 * same load.
 *
 *   const done = pacedLoad(url, { rate: 2000, seconds: 60 });
 *   const { sent, answered, errors, behind } = await done;
 *
 * `behind`: requests that were due but found every connection busy (the app could not keep up);
 * they are skipped, not sent later in a burst.
 * Answers are read by their Content-Length (the bench apps send one).
 */
import net from 'node:net';

const USER_AGENTS = [
  'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36',
  'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/125.0 Safari/537.36',
  'Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15',
];

export function pacedLoad(url, { rate, seconds, connections = 20 }) {
  const target = new URL(url);
  const requests = USER_AGENTS.map((ua) =>
    Buffer.from(
      `GET / HTTP/1.1\r\nHost: ${target.host}\r\nUser-Agent: ${ua}\r\nAccept: text/html\r\n\r\n`,
    ),
  );
  const idle = [];
  const sockets = [];
  /** Requests due so far: sent, or skipped as behind. */
  let taken = 0;
  let sent = 0;
  let answered = 0;
  let errors = 0;
  let behind = 0;
  for (let i = 0; i < connections; i++) {
    const socket = net.connect({ host: target.hostname, port: Number(target.port) });
    socket.setNoDelay(true);
    sockets.push(socket);
    let buffered = '';
    socket.on('connect', () => idle.push(socket));
    socket.on('data', (chunk) => {
      buffered += chunk.toString('latin1');
      for (;;) {
        const end = buffered.indexOf('\r\n\r\n');
        if (end === -1) return;
        const m = /\r\ncontent-length:\s*(\d+)/i.exec(buffered.slice(0, end));
        if (m === null) throw new Error('paced-load: an answer without Content-Length');
        const length = end + 4 + Number(m[1]);
        if (buffered.length < length) return;
        buffered = buffered.slice(length);
        answered++;
        idle.push(socket);
      }
    });
    socket.on('error', () => errors++);
  }
  return new Promise((resolve) => {
    const started = performance.now();
    const timer = setInterval(() => {
      const elapsed = performance.now() - started;
      if (elapsed >= seconds * 1000) {
        clearInterval(timer);
        // The last answers come in, then the connections close.
        setTimeout(() => {
          for (const socket of sockets) socket.destroy();
          resolve({ sent, answered, errors, behind });
        }, 200);
        return;
      }
      const due = Math.floor((rate * elapsed) / 1000);
      while (taken < due) {
        const socket = idle.pop();
        if (socket === undefined) {
          // Every connection busy: what is due is skipped (not sent in a burst later), and counted.
          behind += due - taken;
          taken = due;
          break;
        }
        socket.write(requests[sent % requests.length]);
        sent++;
        taken++;
      }
    }, 1);
  });
}
