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
 *
 * With `{ rules: true }` it also makes the reads that the package's rules cannot do without, in
 * the cheapest form: when the request comes, its method (GET only), the path's extension (no
 * assets), the user agent (isbot, each string once) and a private-field stamp on the request's
 * `rawHeaders` array (what `req.track` and `req.analytics` are found by; a WeakMap entry costs
 * about 2 µs more, src/request/attach.ts); at `finish`, the status (2xx) and the content
 * type (text/html). This is "floor + rules": what is left between it and the package is the
 * package's own way of doing the same, not the rules themselves.
 *   await floor.ready;       // the worker's OS thread id is floor.tid
 *   await floor.count();     // { answered, written, queued }
 * `extraUs` (an experiment, never in latest.md): the worker spins that many µs of CPU per event,
 * to see how the app's throughput answers to the delivery worker's CPU on a shared machine.
 */
import { Worker } from 'node:worker_threads';
import { isbot } from 'isbot';

const FLUSH_MS = 20;
const BATCH = 512;

const ASSET = /\.(?:js|css|png|jpe?g|gif|svg|ico|woff2?|map|json|txt|xml)$/i;

/** A private field put on any object (its constructor returns that object to the subclass). */
class Target {
  constructor(target) {
    return target;
  }
}
class Stamp extends Target {
  #value;
  constructor(target, value) {
    super(target);
    this.#value = value;
  }
  static on(target, value) {
    if (#value in target) target.#value = value;
    else new Stamp(target, value);
  }
}

export function createFloor(sinkUrl, { sockets = 10, rules = false, extraUs = 0 } = {}) {
  const worker = new Worker(new URL('./floor-worker.mjs', import.meta.url), {
    workerData: { sinkUrl, sockets, extraUs },
  });
  worker.unref();
  let batch = [];
  let timer;
  let counted;
  const floor = {
    tid: 0,
    ready: undefined,
    middleware(req, res, next) {
      if (rules && !pageRequest(req)) {
        next();
        return;
      }
      res.on('finish', () => {
        if (rules && !pageResponse(res)) return;
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
  const bots = new Map();
  const marker = {};
  function pageRequest(req) {
    if (req.method !== 'GET' || ASSET.test(req.originalUrl)) return false;
    const userAgent = req.headers['user-agent'] ?? '';
    let bot = bots.get(userAgent);
    if (bot === undefined) {
      bot = isbot(userAgent);
      if (bots.size < 1000) bots.set(userAgent, bot);
    }
    if (bot) return false;
    Stamp.on(req.rawHeaders, marker);
    return true;
  }
  function pageResponse(res) {
    const status = res.statusCode;
    if (status < 200 || status > 299) return false;
    const type = res.getHeader('content-type');
    return typeof type === 'string' && type.startsWith('text/html');
  }
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
