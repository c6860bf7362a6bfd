/**
 * Opt-in: close trackers when the process is told to stop or the HTTP server closes, so queued
 * events are delivered before exit.
 */
import { describe } from './options.js';
import type { Tracker } from './tracker.js';

/** What `closeOnShutdown` needs of an HTTP server (`http.Server` fits). */
export interface ClosableServer {
  once(event: 'close', listener: () => void): unknown;
  off?(event: 'close', listener: () => void): unknown;
  close(callback?: (error?: Error) => void): unknown;
  closeAllConnections?(): void;
}

export interface CloseOnShutdownOptions {
  /**
   * Signals that start the shutdown. Once the trackers are closed the signal's default action
   * (exit) happens, unless the app listens to that signal itself. A second signal exits at once.
   * @default ['SIGTERM', 'SIGINT']
   */
  signals?: readonly NodeJS.Signals[];
  /**
   * The app's HTTP server. On a signal it stops accepting connections first (requests in
   * progress get `timeout` to finish and hand over their events); when it closes for any other
   * reason the trackers are closed too.
   */
  server?: ClosableServer;
  /**
   * Milliseconds for the server to drain, and again for the trackers to deliver what is left.
   * @default 5000
   */
  timeout?: number;
  /** Runs after the trackers are closed, before the exit (print stats, close a database). */
  onClose?: () => void | Promise<void>;
}

type Target = Tracker | { readonly tracker: Tracker };

/**
 * Closes the trackers (or the middlewares from `analytics()`) on `SIGTERM`/`SIGINT` and when
 * `server` closes. Returns a function that removes its listeners again.
 */
export function closeOnShutdown(
  targets: Target | readonly Target[],
  options: CloseOnShutdownOptions = {},
): () => void {
  const trackers = (Array.isArray(targets) ? targets : [targets]).map(trackerOf);
  const signals = options.signals ?? ['SIGTERM', 'SIGINT'];
  const timeout = options.timeout ?? 5000;
  if (typeof timeout !== 'number' || !Number.isFinite(timeout) || timeout < 0) {
    throw new TypeError(
      `zenovay-express: closeOnShutdown() option \`timeout\` must be a number of milliseconds >= 0, got ${describe(timeout)}.`,
    );
  }
  if (!Array.isArray(signals) || !signals.every((s) => typeof s === 'string')) {
    throw new TypeError(
      `zenovay-express: closeOnShutdown() option \`signals\` must be an array such as ['SIGTERM', 'SIGINT'], got ${describe(signals)}.`,
    );
  }
  const { server } = options;

  // Never rejects: a shutdown path must not end in an unhandled rejection.
  const closeTrackers = () =>
    Promise.all(
      trackers.map((t) => t.close({ timeout }).catch((error: unknown) => console.error(error))),
    );

  const onSignal = (signal: NodeJS.Signals) => {
    dispose();
    void (async () => {
      if (server) await drain(server, timeout);
      await closeTrackers();
      try {
        await options.onClose?.();
      } catch (error) {
        console.error(error);
      }
      // Our listener is what kept the default action away: restore it, unless the app has its own.
      if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
    })();
  };
  const onServerClose = () => void closeTrackers();

  for (const signal of signals) process.once(signal, onSignal);
  server?.once('close', onServerClose);

  function dispose(): void {
    for (const signal of signals) process.off(signal, onSignal);
    server?.off?.('close', onServerClose);
  }
  return dispose;
}

function trackerOf(target: Target): Tracker {
  const tracker = target && 'tracker' in target ? target.tracker : (target as Tracker);
  if (!tracker || typeof tracker.close !== 'function') {
    throw new TypeError(
      'zenovay-express: closeOnShutdown() takes a tracker, the middleware from analytics(), or an array of them.',
    );
  }
  return tracker;
}

/** Stops the server accepting connections; cuts what is still open after `timeout`. */
function drain(server: ClosableServer, timeout: number): Promise<void> {
  return new Promise<void>((resolve) => {
    const cut = setTimeout(() => {
      server.closeAllConnections?.();
      resolve();
    }, timeout);
    server.close(() => {
      clearTimeout(cut);
      resolve();
    });
  });
}
