import { createHook } from 'node:async_hooks';

/** A frame in Jest's own code: its reporter shares the process when the tests run in band. */
const JEST_CODE = /[\\/]node_modules[\\/](?:@jest[\\/]|jest-)/;

/**
 * Whether the timer being set was set by Jest itself: the frame that called setTimeout or
 * setInterval is Jest's. (In band, which is the default on a machine of 2 cores, Jest's status
 * line sets a 100 ms timer each second, at any moment of a test.) Only that frame is looked at:
 * code under test is often called from Jest further down the stack.
 */
function setByJest(): boolean {
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = 16;
  const frames = (new Error().stack ?? '').split('\n');
  Error.stackTraceLimit = limit;
  const setter = frames.findIndex((frame) => /^\s*at (?:setTimeout|setInterval) /.test(frame));
  return setter !== -1 && JEST_CODE.test(frames[setter + 1] ?? '');
}

/**
 * Watches the timers set from now on, except Jest's own. `holding()` counts those still set that
 * keep the process alive (not unref'd); it waits a turn of the event loop first, as Node tells of
 * a timer's end (fired or cleared) a little after it. A timer set again with `refresh()` after its
 * end is not counted. Counting only these, not every timer of the process, keeps a test's count
 * free of timers that other code (Jest's own, an earlier test's) set before and clears during it,
 * or that Jest sets during it.
 * `stop()` ends the watch; call it in the test's cleanup.
 */
export function watchTimers(): { holding: () => Promise<number>; stop: () => void } {
  const set = new Map<number, NodeJS.Timeout>();
  const hook = createHook({
    init(asyncId, type, _trigger, resource) {
      if (type === 'Timeout' && !setByJest()) set.set(asyncId, resource as NodeJS.Timeout);
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
