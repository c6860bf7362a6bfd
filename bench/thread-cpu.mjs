/** The calling thread's own CPU time. */
import { readFileSync } from 'node:fs';

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
