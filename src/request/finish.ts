/**
 * When a tracked response finishes, without a `'finish'` listener per response where we can.
 *
 * On an Express response `res.on('finish', ...)` costs about 3 µs (bench/express-ops.mjs,
 * against 0.2 µs on a plain `http` response): every property EventEmitter reads on a response
 * with Express's per-request hidden class misses V8's caches. Node's own server already listens
 * for `finish` on every response and announces it on the diagnostics channel
 * `http.server.response.finish`, as it announces each request on `http.server.request.start`
 * before the app sees it. So for a request Node's server announced, the middleware leaves its
 * finish handler on the request's context and one subscriber (per copy of the package) calls
 * it; any other response (HTTP/2's compatibility API, a response made by hand or by a test
 * tool) gets the listener as before.
 *
 * Node calls the built-in channels experimental, so until one response has shown that the
 * channel works, each response handed to it also gets a listener, which runs after Node's own
 * (Node adds its listener before the app sees the response) and finds the handler already
 * taken. If the handler is still there, the listener calls it and the channel is not used again
 * in this process. Whatever announces a request on `http.server.request.start` is trusted to
 * announce its finish too, as Node's server does.
 *
 * The channels are listened to while a middleware whose own tracker is open wants them (with a
 * tracker the app brought, for good): a request waiting for the channel when the last one closes
 * is not sent, as it would have been dropped (`closed`) anyway.
 */
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { contextOf, findContext, releaseSocket } from './attach.js';
import { RequestContext } from './context.js';

export type FinishHandler = (
  req: IncomingMessage,
  res: ServerResponse,
  context: RequestContext,
) => void;

/** Requests announced by Node's server that have not finished, newest last; a ring. */
const RING = 16;
const announced: (object | undefined)[] = new Array<object | undefined>(RING).fill(undefined);
let newest = 0;
/** Whether a response has shown that the channel calls the handler before the app's listeners. */
let verified = false;
/** False for good once the channel missed a response. */
let channelWorks = true;

interface ServerMessage {
  request?: unknown;
  response?: unknown;
  socket?: unknown;
}

function onRequestStart(message: unknown): void {
  const request = (message as ServerMessage | null | undefined)?.request;
  if (typeof request !== 'object' || request === null) return;
  newest = (newest + 1) % RING;
  announced[newest] = request;
}

function onResponseFinish(message: unknown): void {
  // A subscriber that throws would throw into Node's server (on the next tick): never.
  try {
    const { request, response, socket } = message as ServerMessage;
    if (typeof request !== 'object' || request === null) return;
    for (let i = 0; i < RING; i++) {
      if (announced[i] === request) {
        announced[i] = undefined;
        break;
      }
    }
    // The request in flight on its socket, as a rule; otherwise found by its own fields.
    const context = findContext(request, undefined, socket) ?? contextOf(request);
    // Another copy of this package keeps its own requests.
    if (!(context instanceof RequestContext)) return;
    // Finished: the socket's stamp (attach.ts) would keep the request alive while it idles.
    releaseSocket(socket, request);
    const handler = context.takeFinish();
    if (handler !== undefined) {
      handler(request as IncomingMessage, response as ServerResponse, context);
    }
  } catch {
    // The handlers catch their own errors; nothing else here throws.
  }
}

/** Middlewares of this copy that want the channels: subscribed while there is one. */
let watchers = 0;

/**
 * Listens to Node's server channels while a middleware of this copy of the package wants them;
 * returns the function that lets go (once; the last one to let go unsubscribes, so that a test
 * runner that loads the package again for each file does not keep every copy subscribed).
 */
export function watchServerResponses(): () => void {
  if (watchers++ === 0) {
    subscribe('http.server.request.start', onRequestStart);
    subscribe('http.server.response.finish', onResponseFinish);
  }
  let watching = true;
  return () => {
    if (!watching) return;
    watching = false;
    if (--watchers > 0) return;
    unsubscribe('http.server.request.start', onRequestStart);
    unsubscribe('http.server.response.finish', onResponseFinish);
    announced.fill(undefined);
  };
}

/** Whether Node's server announced this request and has not seen its response finish. */
function wasAnnounced(req: object): boolean {
  // Newest first: the middleware usually runs in the same turn as the announcement.
  for (let i = 0, at = newest; i < RING; i++, at = (at + RING - 1) % RING) {
    if (announced[at] === req) return true;
  }
  return false;
}

/** Calls `handler` once, when the response has finished. */
export function onResponseFinished(
  req: IncomingMessage,
  res: ServerResponse,
  context: RequestContext,
  handler: FinishHandler,
): void {
  if (channelWorks && watchers > 0 && wasAnnounced(req)) {
    context.setFinish(handler);
    if (verified) return;
    res.on('finish', () => {
      const missed = context.takeFinish();
      if (missed === undefined) {
        verified = true;
        return;
      }
      // Unsubscribed meanwhile (the last tracker closed): no verdict on the channel.
      if (watchers > 0) channelWorks = false;
      releaseSocket(req.socket, req);
      missed(req, res, context);
    });
    return;
  }
  res.on('finish', () => {
    releaseSocket(req.socket, req);
    handler(req, res, context);
  });
}
