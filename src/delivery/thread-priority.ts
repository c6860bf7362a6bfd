/**
 * The delivery worker's scheduling priority (option `workerNice`). On a machine whose cores are
 * all busy, the worker's CPU competes with the threads that serve requests; a worker that runs
 * nicer than the process yields to them and catches up when a core is free, so a page is not
 * kept waiting behind analytics (bench/results/latest.md: throughput and p99 at full load).
 *
 * Only on Linux, where the nice value belongs to each thread: `setpriority` with a thread's id
 * changes that thread alone. Elsewhere the same call changes the whole process, so nothing is
 * done there.
 */
import { readlinkSync } from 'node:fs';
import { getPriority, setPriority } from 'node:os';

/** Nice values run from -20 (first) to 19 (last). */
const NICEST = 19;

export type PriorityResult =
  | { kind: 'changed'; from: number; to: number }
  | { kind: 'unchanged'; why: string }
  | { kind: 'failed'; error: unknown };

/**
 * Makes the calling thread `by` nice steps lower in priority than it is (at most nice 19).
 * Never throws.
 */
export function lowerThreadPriority(by: number, platform = process.platform): PriorityResult {
  if (by === 0) return { kind: 'unchanged', why: 'workerNice is 0' };
  if (platform !== 'linux') return { kind: 'unchanged', why: `not on Linux (${platform})` };
  try {
    // "<pid>/task/<tid>": the thread's own id, which setpriority takes on Linux.
    const tid = Number(readlinkSync('/proc/thread-self').split('/').pop());
    if (!Number.isSafeInteger(tid) || tid <= 0) {
      return { kind: 'unchanged', why: 'no thread id in /proc/thread-self' };
    }
    const from = getPriority(tid);
    const to = Math.min(NICEST, from + by);
    if (to === from) return { kind: 'unchanged', why: `already at nice ${from}` };
    setPriority(tid, to);
    return { kind: 'changed', from, to };
  } catch (error) {
    return { kind: 'failed', error };
  }
}
