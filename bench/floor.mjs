/**
 * The floor (issue 16): the least a server-side tracker must do, as a reference for the package
 * in the same runs. Our own bench code, never shipped. An Express middleware that, when the
 * response finishes, reads the page's URL (`http://` + Host + `req.originalUrl`, as the documented
 * fetch approach does), the visitor's IP (`req.ip`, under the app's trust proxy) and user agent into one string; every FLUSH_MS or BATCH events the batch crosses to a
 * worker thread (bench/floor-worker.mjs) that writes one POST per event on 10 raw keep-alive
 * sockets to the sink and counts the answers. No rules, no retries, no bounds.
 *
 *   const floor = createFloor(sinkUrl);
 *   app.use(floor.middleware);
 *   await floor.ready;       // the worker's OS thread id is floor.tid
 *   await floor.count();     // { answered, written, queued }
 */
import { Worker } from 'node:worker_threads';

const FLUSH_MS = 20;
const BATCH = 512;

export function createFloor(sinkUrl, { sockets = 10 } = {}) {
  const worker = new Worker(new URL('./floor-worker.mjs', import.meta.url), {
    workerData: { sinkUrl, sockets },
  });
  worker.unref();
  let batch = [];
  let timer;
  let counted;
  const floor = {
    tid: 0,
    ready: undefined,
    middleware(req, res, next) {
      res.on('finish', () => {
        const headers = req.headers;
        batch.push(
          `http://${headers.host}${req.originalUrl}\x01${req.ip}\x01${headers['user-agent']}`,
        );
        if (batch.length >= BATCH) send();
        else timer ??= setTimeout(send, FLUSH_MS);
      });
      next();
    },
    count() {
      return new Promise((resolve) => {
        counted = resolve;
        worker.postMessage('count');
      });
    },
    close: () => worker.terminate(),
  };
  function send() {
    clearTimeout(timer);
    timer = undefined;
    if (batch.length === 0) return;
    worker.postMessage(batch.join('\n'));
    batch = [];
  }
  floor.ready = new Promise((resolve) => {
    worker.on('message', (message) => {
      if (message.tid !== undefined) {
        floor.tid = message.tid;
        resolve();
      } else counted?.(message);
    });
  });
  return floor;
}
