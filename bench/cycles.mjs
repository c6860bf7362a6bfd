/**
 * Helpers for the benches that switch one app between modes in symmetric cycles of windows
 * (bench/run.mjs, bench/outbox.mjs): each window is an object with its `mode` and its figures.
 */

/** The mean of `key` over a cycle's windows of `mode`. */
export function cycleMean(windows, mode, key) {
  const xs = windows.filter((w) => w.mode === mode).map((w) => w[key]);
  return xs.reduce((x, y) => x + y, 0) / xs.length;
}
