import { createHook } from 'node:async_hooks';

/**
 * Watches the TCP sockets made from now on (client ends and accepted ones; not listening
 * servers). `holding()` counts those that keep the process alive (not unref'd), at once: a test can
 * look right after a request went out, before any more I/O. A closed socket may count until Node
 * tells of its end, a turn or two later: look while no socket is closing. Counting only these,
 * not every socket of the process (`process.getActiveResourcesInfo()`), keeps a test's count free
 * of sockets that other code (an earlier test's, still closing) ends during it.
 * `stop()` ends the watch; call it in the test's cleanup.
 */
export function watchSockets(): { holding: () => number; stop: () => void } {
  const made = new Map<number, { hasRef: () => boolean }>();
  const hook = createHook({
    init(asyncId, type, _trigger, resource) {
      if (type === 'TCPWRAP') made.set(asyncId, resource as { hasRef: () => boolean });
    },
    destroy(asyncId) {
      made.delete(asyncId);
    },
  }).enable();
  return {
    holding: () => [...made.values()].filter((handle) => handle.hasRef()).length,
    stop: () => {
      hook.disable();
      made.clear();
    },
  };
}
