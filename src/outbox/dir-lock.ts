/**
 * One process per outbox directory: a `LOCK` file created with O_EXCL that names its holder, kept
 * fresh by its holder (its mtime moves every {@link LOCK_HEARTBEAT_MS}).
 *
 * A lock left by a process that is gone is taken over. Whether the holder is gone:
 * - on the same host and, on Linux, the same boot and PID namespace: its pid is not running, or
 *   runs a process that started at another moment (the pid was reused; Linux `/proc` start time);
 *   a lock naming this very process (same pid and start) is refused: the directory is already open
 *   here (another store, another worker thread);
 * - otherwise (another host, another container's PID namespace, an unreadable lock): the lock has
 *   not been refreshed for {@link LOCK_STALE_MS}.
 */
import { randomBytes } from 'node:crypto';
import { promises as fsp, readFileSync, readlinkSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export const LOCK_FILE = 'LOCK';
/** How often a holder refreshes its lock's mtime. */
export const LOCK_HEARTBEAT_MS = 3000;
/** A lock whose holder cannot be checked is stale once not refreshed for this long. */
export const LOCK_STALE_MS = 15_000;

/** What a lock file says. */
export interface LockHolder {
  pid: number;
  hostname: string;
  /** When the holder process started (ISO 8601). */
  startedAt: string;
  /** Linux: the holder process's start in clock ticks since boot, from /proc. */
  procStart?: string;
  /** Linux: the boot id. */
  bootId?: string;
  /** Linux: the PID namespace. */
  pidNs?: string;
  /** Random: tells this lock from a later one of the same process. */
  token: string;
}

/** The Error of an open() that finds the directory held by a live process. */
export class OutboxLockedError extends Error {
  readonly code = 'ZENOVAY_OUTBOX_LOCKED';
  constructor(
    message: string,
    readonly holder: Partial<LockHolder>,
  ) {
    super(message);
    this.name = 'OutboxLockedError';
  }
}

function tryRead(fn: () => string): string | undefined {
  try {
    return fn().trim() || undefined;
  } catch {
    return undefined;
  }
}

/** The Linux start time of a process (field 22 of /proc/PID/stat), or undefined. */
export function procStartOf(pid: number | 'self'): string | undefined {
  const stat = tryRead(() => readFileSync(`/proc/${pid}/stat`, 'latin1'));
  if (stat === undefined) return undefined;
  // The command name (field 2) is in parentheses and may hold spaces: count from the last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return fields[19];
}

/** This process as a lock names it. */
export function selfHolder(token?: string): LockHolder {
  const startedAt = new Date(Date.now() - process.uptime() * 1000).toISOString();
  const holder: LockHolder = {
    pid: process.pid,
    hostname: os.hostname(),
    startedAt,
    token: token ?? randomBytes(8).toString('hex'),
  };
  const procStart = procStartOf('self');
  const bootId = tryRead(() => readFileSync('/proc/sys/kernel/random/boot_id', 'latin1'));
  const pidNs = tryRead(() => readlinkSync('/proc/self/ns/pid'));
  if (procStart !== undefined) holder.procStart = procStart;
  if (bootId !== undefined) holder.bootId = bootId;
  if (pidNs !== undefined) holder.pidNs = pidNs;
  return holder;
}

function parseHolder(text: string): Partial<LockHolder> | undefined {
  try {
    const value = JSON.parse(text) as unknown;
    if (typeof value !== 'object' || value === null) return undefined;
    const h = value as Partial<LockHolder>;
    return typeof h.pid === 'number' && typeof h.hostname === 'string' ? h : undefined;
  } catch {
    return undefined;
  }
}

function pidRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: it runs, as another user.
    return (error as NodeJS.ErrnoException).code !== 'ESRCH';
  }
}

type Verdict = { held: true; why: 'self' | 'alive' | 'fresh' } | { held: false; why: string };

/** Whether the lock described still has a live holder. */
export function judgeLock(
  holder: Partial<LockHolder> | undefined,
  mtimeMs: number,
  self: LockHolder,
  now = Date.now(),
): Verdict {
  const sameSystem =
    holder !== undefined &&
    holder.hostname === self.hostname &&
    holder.bootId === self.bootId &&
    holder.pidNs === self.pidNs &&
    typeof holder.pid === 'number';
  if (sameSystem) {
    const pid = holder.pid!;
    if (pid === self.pid) {
      const same =
        holder.procStart !== undefined && self.procStart !== undefined
          ? holder.procStart === self.procStart
          : Math.abs(Date.parse(holder.startedAt ?? '') - Date.parse(self.startedAt)) < 2000;
      return same
        ? { held: true, why: 'self' }
        : { held: false, why: 'an earlier process with the same pid' };
    }
    if (!pidRunning(pid)) return { held: false, why: 'it is no longer running' };
    if (holder.procStart !== undefined && self.procStart !== undefined) {
      const current = procStartOf(pid);
      if (current !== undefined && current !== holder.procStart) {
        return { held: false, why: 'it is no longer running (its pid was reused)' };
      }
    }
    return { held: true, why: 'alive' };
  }
  const age = now - mtimeMs;
  if (age > LOCK_STALE_MS) {
    return { held: false, why: `its lock was not refreshed for ${Math.round(age / 1000)} s` };
  }
  return { held: true, why: 'fresh' };
}

function describe(holder: Partial<LockHolder> | undefined): string {
  if (holder === undefined) return 'an unknown process (unreadable lock)';
  const since = holder.startedAt ? `, started ${holder.startedAt}` : '';
  return `process ${holder.pid} on host ${holder.hostname}${since}`;
}

function lockedError(
  dir: string,
  holder: Partial<LockHolder> | undefined,
  why: 'self' | 'alive' | 'fresh',
): OutboxLockedError {
  const file = path.join(dir, LOCK_FILE);
  let message = `zenovay outbox: ${dir} is in use by ${describe(holder)}: one process per outbox directory.`;
  if (why === 'self') {
    message +=
      ' It is already open in this process: open it once, or give each tracker its own dir.';
  } else if (why === 'alive') {
    message += ' Stop that process, or give this one another directory.';
  } else {
    message +=
      ` That process cannot be checked from here; its lock counts as abandoned once it has not` +
      ` been refreshed for ${LOCK_STALE_MS / 1000} s (a live holder refreshes it every` +
      ` ${LOCK_HEARTBEAT_MS / 1000} s), or remove ${file} if you know it is gone.`;
  }
  return new OutboxLockedError(message, holder ?? {});
}

/** Writable-directory failures say what to fix. */
export function ioError(dir: string, what: string, error: unknown): Error {
  const code = (error as NodeJS.ErrnoException).code ?? 'error';
  let hint = '';
  if (code === 'EACCES' || code === 'EPERM' || code === 'EROFS') {
    hint = ': the outbox directory must be writable by this process';
    if (typeof process.getuid === 'function') hint += ` (uid ${process.getuid()})`;
  } else if (code === 'ENOTDIR' || code === 'EEXIST') {
    hint = ': the path (or a parent) is not a directory';
  } else if (code === 'ENOSPC') {
    hint = ': the disk is full';
  }
  const err = new Error(
    `zenovay outbox: cannot ${what} in ${dir} (${code})${hint}. ${(error as Error).message}`,
  );
  (err as NodeJS.ErrnoException).code = code;
  return err;
}

export interface HeldLock {
  holder: LockHolder;
  /** The holder that was taken over, and why it was judged gone. */
  tookOver?: { holder: Partial<LockHolder> | undefined; why: string };
  /** Refreshes the mtime; resolves false when the lock file is no longer ours. */
  refresh(): Promise<boolean>;
  /** Removes the lock file if it is still ours. */
  release(): Promise<void>;
}

/**
 * Takes the directory's lock, or rejects naming the live holder. A lock of this same process with
 * the same `token` was left by an earlier opener that is gone (a crashed delivery worker of the
 * same tracker): it is taken over.
 */
export async function acquireLock(dir: string, token?: string): Promise<HeldLock> {
  const file = path.join(dir, LOCK_FILE);
  const self = selfHolder(token);
  const content = JSON.stringify(self) + '\n';
  let tookOver: HeldLock['tookOver'];
  for (let attempt = 0; ; attempt++) {
    try {
      await fsp.writeFile(file, content, { flag: 'wx', mode: 0o600 });
      break;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') {
        throw ioError(dir, 'create the lock file', error);
      }
    }
    // Someone holds it, or held it.
    let text: string;
    let mtimeMs: number;
    try {
      text = await fsp.readFile(file, 'utf8');
      mtimeMs = (await fsp.stat(file)).mtimeMs;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT' && attempt < 5) continue;
      throw ioError(dir, 'read the lock file', error);
    }
    const holder = parseHolder(text);
    const verdict: Verdict =
      token !== undefined && holder?.token === token && holder.pid === self.pid
        ? { held: false, why: 'it was left by an earlier delivery thread of the same tracker' }
        : judgeLock(holder, mtimeMs, self);
    if (verdict.held) throw lockedError(dir, holder, verdict.why);
    if (attempt >= 5) throw lockedError(dir, holder, 'fresh');
    // Stale: move it aside, then check that what moved is what was judged (a racing process may
    // have taken over in between: then its fresh lock goes back).
    const aside = `${file}.stale-${self.token}`;
    try {
      await fsp.rename(file, aside);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') continue;
      throw ioError(dir, 'take over the lock file', error);
    }
    const moved = await fsp.readFile(aside, 'utf8').catch(() => '');
    if (moved !== text) {
      await fsp.link(aside, file).catch(() => undefined);
      await fsp.unlink(aside).catch(() => undefined);
      const other = parseHolder(moved);
      throw lockedError(dir, other, 'alive');
    }
    await fsp.unlink(aside).catch(() => undefined);
    tookOver = { holder, why: verdict.why };
  }

  const ours = async (): Promise<boolean> => {
    try {
      return parseHolder(await fsp.readFile(file, 'utf8'))?.token === self.token;
    } catch {
      return false;
    }
  };
  const held: HeldLock = {
    holder: self,
    async refresh() {
      if (!(await ours())) return false;
      const now = new Date();
      await fsp.utimes(file, now, now).catch(() => undefined);
      return true;
    },
    async release() {
      if (await ours()) await fsp.unlink(file).catch(() => undefined);
    },
  };
  if (tookOver) held.tookOver = tookOver;
  return held;
}

/** Words for a takeover warning. */
export function describeTakeover(dir: string, t: NonNullable<HeldLock['tookOver']>): string {
  return `took over the outbox lock in ${dir} from ${describe(t.holder)}: ${t.why}. The events it left are recovered.`;
}
