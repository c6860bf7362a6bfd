import { createHook } from 'node:async_hooks';

/**
 * Watches the timers set from now on. `holding()` counts those still set that keep the process
 * alive (not unref'd); it waits a turn of the event loop first, as Node tells of a timer's end
 * (fired or cleared) a little after it. A timer set again with `refresh()` after its end is not
 * counted. Counting only these, not every timer of the process, keeps a test's count
 * free of timers that other code (Jest's own, an earlier test's) set before and clears during it.
 * `stop()` ends the watch; call it in the test's cleanup.
 */
export function watchTimers(): { holding: () => Promise<number>; stop: () => void } {
  const set = new Map<number, NodeJS.Timeout>();
  const hook = createHook({
    init(asyncId, type, _trigger, resource) {
      if (type === 'Timeout') set.set(asyncId, resource as NodeJS.Timeout);
    },
    destroy(asyncId) {
      set.delete(asyncId);
    },
  }).enable();
  return {
    holding: async () => {
      await new Promise((resolve) => setImmediate(resolve));
      return [...set.values()].filter((timer) => timer.hasRef()).length;
    },
    stop: () => {
      hook.disable();
      set.clear();
    },
  };
}
