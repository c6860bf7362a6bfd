/** The calling thread's own CPU time. */
import { readdirSync, readFileSync } from 'node:fs';

/**
 * User + system CPU time of the calling thread in ms, from /proc/thread-self/stat (Linux; clock
 * ticks of 10 ms), or NaN elsewhere. process.cpuUsage() would count the worker threads too.
 */
export function threadCpuMs() {
  try {
    const stat = readFileSync('/proc/thread-self/stat', 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) * 10;
  } catch {
    return Number.NaN;
  }
}

/**
 * CPU time of one thread of this process in ns, from /proc/self/task/<tid>/schedstat (the
 * scheduler's own run time, not 10 ms ticks); the calling thread when `tid` is omitted. NaN
 * where there is no such file.
 */
export function threadCpuNs(tid) {
  try {
    const path =
      tid === undefined ? '/proc/thread-self/schedstat' : `/proc/self/task/${tid}/schedstat`;
    return Number(readFileSync(path, 'utf8').split(' ')[0]);
  } catch {
    return Number.NaN;
  }
}

/** The OS thread ids of this process. */
export function threadIds() {
  try {
    return readdirSync('/proc/self/task').map(Number);
  } catch {
    return [];
  }
}
