/**
 * The embedded outbox: a directory of append-only segment files (`seg-000001.log`, ...) holding
 * one checksummed record per accepted event and one per settled event (see record-codec.ts), and
 * a `LOCK` file naming the one process that uses it (see dir-lock.ts).
 *
 * Writing. append() and settle() encode into a memory buffer; the buffer goes to the kernel
 * (write(2)) at the end of the current event-loop turn (setImmediate), or at once past 256 KB.
 * From then on the record survives the death of the process (SIGKILL, OOM): the page cache is the
 * kernel's. Surviving a power cut or a kernel crash takes an fdatasync:
 * - `sync: 'interval'` (default): every `syncIntervalMs` (1 s) when something was written;
 * - `sync: 'always'`: after every write to the kernel, as a group commit (one fdatasync at a time,
 *   covering every record written before it started; a write during it gets the next one). It
 *   never blocks the event loop: append() returns before the record is on the disk, and the
 *   record is on the disk within about one fdatasync after the turn that appended it.
 * sync() resolves once everything appended before it is on the disk.
 *
 * Compaction. A segment is deleted once it is not the one being written, every entry in it is
 * settled, and no settle record in it is still needed: a settle record for an entry of an older
 * segment pins that older segment's deletion first (otherwise the entry would come back at
 * recovery). Memory holds, per unsettled entry, its key, segment, offset and length: never its
 * body.
 *
 * Recovery. open() reads the segments in order, a segment at a time, checking every record and
 * yielding to the event loop every few milliseconds. A record that fails its check (torn by a
 * crash, or damaged) is counted in `corrupt` and skipped: the reader moves on to the next valid
 * record after it (the magic bytes and CRC-32 make resynchronisation safe), so damage in the middle
 * of a segment costs only the records it touches. New records go to a new segment (created at its
 * first write): a torn tail is never appended to.
 *
 * Write failures (a full disk, EIO) are reported once; the unwritten bytes stay in memory and are
 * retried every syncIntervalMs; meanwhile append() refuses new entries (counted in `full`).
 */
import { close as closeFd, fdatasync, openSync, promises as fsp, writeSync } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { promisify } from 'node:util';
import type { Reporter } from '../logger.js';
import {
  LOCK_HEARTBEAT_MS,
  acquireLock,
  describeTakeover,
  ioError,
  type HeldLock,
} from './dir-lock.js';
import {
  FLAG_JSON_HEADERS,
  HEADER_BYTES,
  TYPE_ENTRY,
  TYPE_SETTLE,
  decodeEntry,
  entryRecordBound,
  findNextRecord,
  headerPairs,
  probeRecord,
  recordKey,
  settleRecordBound,
  writeEntryRecord,
  writeSettleRecord,
} from './record-codec.js';
import type { OutboxEntry, OutboxStats, OutboxStore } from './types.js';

export { OutboxLockedError } from './dir-lock.js';

/** Where the store reports (the engine's {@link Reporter}). */
export type OutboxReporter = Pick<Reporter, 'info' | 'warn' | 'error'>;

export interface DirectoryOutboxOptions {
  /** The directory (created when missing, mode 0700): one process at a time. */
  dir: string;
  /** `'interval'` (default): fdatasync every `syncIntervalMs`; `'always'`: after every write. */
  sync?: 'interval' | 'always';
  /** Default {@link DEFAULT_SYNC_INTERVAL_MS}. */
  syncIntervalMs?: number;
  /** Past this many bytes on disk, append() refuses new entries. Default {@link DEFAULT_MAX_BYTES}. */
  maxBytes?: number;
  /** A segment file is closed and a new one started past this size (at most maxBytes / 4). */
  segmentBytes?: number;
  reporter?: OutboxReporter;
  /**
   * Names the opener in the lock: a lock this process left under the same token (a delivery
   * worker that crashed) is taken over instead of refused.
   */
  lockToken?: string;
  /** Keys of entries whose record no longer reads back (damaged on disk): the caller counts them lost. */
  onLost?: (keys: string[]) => void;
}

export const DEFAULT_SYNC_INTERVAL_MS = 1000;
export const DEFAULT_MAX_BYTES = 256 * 1024 * 1024;
export const DEFAULT_SEGMENT_BYTES = 8 * 1024 * 1024;
const MIN_MAX_BYTES = 1024;
const MIN_SEGMENT_BYTES = 256;
/** The write buffer's chunk size, and the pending size that goes to the kernel at once. */
const CHUNK_BYTES = 64 * 1024;
const FLUSH_BYTES = 256 * 1024;
/** Recovery yields to the event loop when it has run this long. */
const YIELD_MS = 4;
/** take() reads neighbouring records in one read when they are this close, up to a span. */
const READ_GAP_BYTES = 16 * 1024;
const READ_SPAN_BYTES = 1024 * 1024;

const SEGMENT_NAME = /^seg-(\d+)\.log$/;
const segmentName = (id: number) => `seg-${String(id).padStart(6, '0')}.log`;

const fdatasyncAsync = promisify(fdatasync);
const closeAsync = promisify(closeFd);
const noop = () => undefined;
const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));

interface Segment {
  id: number;
  file: string;
  /** Bytes, the part still in memory included (the segment being written). */
  size: number;
  /** Bytes in the file. */
  written: number;
  unsettled: number;
  /** Settle records here for entries of older segments that still exist. */
  pins: number;
  /** Newer segments holding settle records for entries here, and how many. */
  pinnedBy: Map<Segment, number>;
  deleted: boolean;
}

/** held: the caller has it in memory; queued: take() hands it out; taken: handed out. */
const HELD = 0;
const QUEUED = 1;
const TAKEN = 2;
const SETTLED = 3;

interface Slot {
  key: string;
  seg: Segment;
  offset: number;
  length: number;
  state: number;
  /** Found at open() and not handed out yet. */
  recovered: boolean;
}

type State = 'new' | 'opening' | 'open' | 'closing' | 'closed';

function positiveInt(value: unknown, name: string, min: number, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min) {
    throw new TypeError(
      `outbox.${name} must be an integer of at least ${min} (got ${String(value)})`,
    );
  }
  return value;
}

/** The embedded, directory outbox. */
export function createDirectoryOutbox(options: DirectoryOutboxOptions): OutboxStore {
  return new DirectoryOutbox(options);
}

export class DirectoryOutbox implements OutboxStore {
  readonly dir: string;
  private readonly syncPolicy: 'interval' | 'always';
  private readonly syncIntervalMs: number;
  private readonly maxBytes: number;
  private readonly segmentBytes: number;
  private readonly reporter: OutboxReporter | undefined;
  private readonly lockToken: string | undefined;
  private readonly onLost: ((keys: string[]) => void) | undefined;

  private state: State = 'new';
  private openPromise: Promise<void> | undefined;
  private closePromise: Promise<void> | undefined;
  private lock: HeldLock | undefined;

  private segments: Segment[] = [];
  private current!: Segment;
  private fd: number | undefined;
  /** fds of segments no longer written to, closed after their last fdatasync. */
  private retiring: number[] = [];
  private dirDirty = false;

  private readonly slots = new Map<string, Slot>();
  private recoveredQueue: Slot[] = [];
  private recoveredHead = 0;
  private spilledQueue: Slot[] = [];
  private spilledHead = 0;

  /** The write buffer: full parts waiting, then the chunk being filled. */
  private waiting: Buffer[] = [];
  private chunk = Buffer.allocUnsafe(0);
  private chunkUsed = 0;
  private chunkFlushed = 0;
  private pendingBytes = 0;
  private flushImmediate: NodeJS.Immediate | undefined;
  private writeError: unknown;

  private syncing: Promise<void> | undefined;
  private syncQueued: Promise<void> | undefined;
  private dirtySinceSync = false;
  private syncTimer: NodeJS.Timeout | undefined;
  private heartbeatTimer: NodeJS.Timeout | undefined;
  private lockLost = false;
  private readonly background = new Set<Promise<unknown>>();

  private bytes = 0;
  private recoveredCount = 0;
  private written = 0;
  private read = 0;
  private settled = 0;
  private corrupt = 0;
  private full = 0;

  constructor(options: DirectoryOutboxOptions) {
    if (typeof options?.dir !== 'string' || options.dir === '') {
      throw new TypeError('outbox.dir must be a directory path (a non-empty string)');
    }
    if (options.sync !== undefined && options.sync !== 'interval' && options.sync !== 'always') {
      throw new TypeError(
        `outbox.sync must be 'interval' or 'always' (got ${JSON.stringify(options.sync)})`,
      );
    }
    this.dir = path.resolve(options.dir);
    this.syncPolicy = options.sync ?? 'interval';
    this.syncIntervalMs = positiveInt(
      options.syncIntervalMs,
      'syncIntervalMs',
      1,
      DEFAULT_SYNC_INTERVAL_MS,
    );
    if (this.syncIntervalMs > 0x7fffffff) throw new TypeError('outbox.syncIntervalMs is too large');
    this.maxBytes = positiveInt(options.maxBytes, 'maxBytes', MIN_MAX_BYTES, DEFAULT_MAX_BYTES);
    const segmentBytes = positiveInt(
      options.segmentBytes,
      'segmentBytes',
      MIN_SEGMENT_BYTES,
      DEFAULT_SEGMENT_BYTES,
    );
    // A segment is only deleted once closed: keep several within maxBytes.
    this.segmentBytes = Math.max(
      MIN_SEGMENT_BYTES,
      Math.min(segmentBytes, Math.floor(this.maxBytes / 4)),
    );
    this.reporter = options.reporter;
    this.lockToken = options.lockToken;
    this.onLost = options.onLost;
  }

  // ---------------------------------------------------------------------------------------------
  // open

  open(): Promise<void> {
    if (this.state === 'open') return Promise.resolve();
    if (this.state === 'opening') return this.openPromise!;
    if (this.state !== 'new') {
      return Promise.reject(new Error('zenovay outbox: open() after close(); create a new store'));
    }
    this.state = 'opening';
    this.openPromise = this.doOpen().then(
      () => {
        this.state = 'open';
      },
      (error: unknown) => {
        this.state = 'new';
        this.openPromise = undefined;
        throw error;
      },
    );
    return this.openPromise;
  }

  private async doOpen(): Promise<void> {
    try {
      await fsp.mkdir(this.dir, { recursive: true, mode: 0o700 });
    } catch (error) {
      throw ioError(this.dir, 'create the outbox directory', error);
    }
    const lock = await acquireLock(this.dir, this.lockToken);
    try {
      if (lock.tookOver) {
        this.reporter?.warn('ZENOVAY_OUTBOX_STALE_LOCK', describeTakeover(this.dir, lock.tookOver));
      }
      const names = await fsp.readdir(this.dir);
      const ids: number[] = [];
      for (const name of names) {
        const match = SEGMENT_NAME.exec(name);
        if (match) ids.push(Number(match[1]));
        // A takeover that died half-way leaves its copy of the old lock.
        else if (name.startsWith('LOCK.stale-')) {
          await fsp.unlink(path.join(this.dir, name)).catch(noop);
        }
      }
      ids.sort((a, b) => a - b);
      const found: Slot[] = [];
      for (const id of ids) {
        const seg = this.newSegment(id);
        this.segments.push(seg);
        await this.scanSegment(seg, found);
      }
      for (const seg of [...this.segments]) this.collect(seg);
      this.recoveredQueue = found.filter((slot) => slot.state === QUEUED);
      this.recoveredCount = this.recoveredQueue.length;

      // New records go to a new segment, created at its first write.
      const next = this.newSegment((ids.length ? ids[ids.length - 1]! : 0) + 1);
      this.segments.push(next);
      this.current = next;
    } catch (error) {
      this.reset();
      await lock.release();
      throw error;
    }
    this.lock = lock;
    if (this.corrupt > 0) {
      this.reporter?.warn(
        'ZENOVAY_OUTBOX_CORRUPT',
        `skipped ${this.corrupt} torn or damaged record(s) in ${this.dir} at recovery` +
          ' (a crash in the middle of a write leaves one); the records around them were recovered',
      );
    }
    this.syncTimer = setInterval(() => this.tick(), this.syncIntervalMs);
    this.syncTimer.unref();
    this.heartbeatTimer = setInterval(() => this.heartbeat(), LOCK_HEARTBEAT_MS);
    this.heartbeatTimer.unref();
  }

  private reset(): void {
    this.segments = [];
    this.slots.clear();
    this.recoveredQueue = [];
    this.recoveredCount = 0;
    this.bytes = 0;
    this.corrupt = 0;
  }

  private newSegment(id: number): Segment {
    return {
      id,
      file: path.join(this.dir, segmentName(id)),
      size: 0,
      written: 0,
      unsettled: 0,
      pins: 0,
      pinnedBy: new Map(),
      deleted: false,
    };
  }

  /** Reads one segment, record by record, into the live set (yielding every few ms). */
  private async scanSegment(seg: Segment, found: Slot[]): Promise<void> {
    let buf: Buffer;
    try {
      buf = await fsp.readFile(seg.file);
    } catch (error) {
      throw ioError(this.dir, `read ${path.basename(seg.file)}`, error);
    }
    seg.size = seg.written = buf.length;
    this.bytes += buf.length;
    const end = buf.length;
    let pos = 0;
    let count = 0;
    let since = performance.now();
    while (pos < end) {
      if ((++count & 127) === 0 && performance.now() - since > YIELD_MS) {
        await nextTurn();
        since = performance.now();
      }
      const probe = probeRecord(buf, pos, end);
      if (!probe.ok) {
        this.corrupt++;
        const next = findNextRecord(buf, pos, end);
        if (next < 0) break;
        pos = next;
        continue;
      }
      const length = HEADER_BYTES + probe.payloadBytes;
      const key = recordKey(buf, pos, probe.type, probe.payloadBytes);
      if (key === undefined || (probe.type !== TYPE_ENTRY && probe.type !== TYPE_SETTLE)) {
        this.corrupt++;
      } else if (probe.type === TYPE_ENTRY) {
        if (!this.slots.has(key)) {
          const slot: Slot = { key, seg, offset: pos, length, state: QUEUED, recovered: true };
          this.slots.set(key, slot);
          seg.unsettled++;
          found.push(slot);
        }
      } else {
        const slot = this.slots.get(key);
        if (slot) {
          this.slots.delete(key);
          slot.state = SETTLED;
          slot.seg.unsettled--;
          if (slot.seg !== seg) this.pin(slot.seg, seg);
        }
      }
      pos += length;
    }
  }

  // ---------------------------------------------------------------------------------------------
  // append, settle, spill

  private assertOpen(op: string): void {
    if (this.state === 'open') return;
    const when =
      this.state === 'new' || this.state === 'opening' ? 'before open() resolved' : 'after close()';
    throw new Error(`zenovay outbox: ${op}() ${when}`);
  }

  append(entry: OutboxEntry): boolean {
    this.assertOpen('append');
    if (this.slots.has(entry.key)) return true;
    if (this.writeError !== undefined) {
      this.full++;
      return false;
    }
    const pairs = headerPairs(entry.headers);
    const headersText = pairs ?? JSON.stringify(entry.headers);
    const flags = pairs === undefined ? FLAG_JSON_HEADERS : 0;
    this.maybeRoll();
    for (let attempt = 0; ; attempt++) {
      const at = this.room(entryRecordBound(entry, headersText));
      const length = writeEntryRecord(this.chunk, at, entry, headersText, flags);
      if (this.bytes + length > this.maxBytes) {
        // The segment being written is never deleted: if nothing in it is live, start another.
        if (attempt === 0 && this.reclaimCurrent()) continue;
        this.full++;
        return false;
      }
      const seg = this.current;
      const slot: Slot = {
        key: entry.key,
        seg,
        offset: seg.size,
        length,
        state: HELD,
        recovered: false,
      };
      this.commit(length);
      seg.unsettled++;
      this.slots.set(entry.key, slot);
      this.written++;
      return true;
    }
  }

  settle(key: string): void {
    if (this.state !== 'open' && this.state !== 'closing') return;
    const slot = this.slots.get(key);
    if (slot === undefined) return;
    this.slots.delete(key);
    if (slot.state === QUEUED && slot.recovered) this.recoveredCount--;
    slot.state = SETTLED;
    this.settled++;
    this.maybeRoll();
    const at = this.room(settleRecordBound(key));
    this.commit(writeSettleRecord(this.chunk, at, key));
    const seg = slot.seg;
    seg.unsettled--;
    if (seg !== this.current) this.pin(seg, this.current);
    this.collect(seg);
  }

  spill(key: string): void {
    if (this.state !== 'open') return;
    const slot = this.slots.get(key);
    if (slot === undefined || slot.state === QUEUED) return;
    slot.state = QUEUED;
    slot.recovered = false;
    this.spilledQueue.push(slot);
  }

  /** A settle record in `holder` for an entry of the older `target`. */
  private pin(target: Segment, holder: Segment): void {
    holder.pins++;
    target.pinnedBy.set(holder, (target.pinnedBy.get(holder) ?? 0) + 1);
  }

  /** Deletes `seg` if nothing in it is needed any more, and what that frees in turn. */
  private collect(seg: Segment): void {
    const stack = [seg];
    while (stack.length > 0) {
      const s = stack.pop()!;
      if (s.deleted || s === this.current || s.unsettled > 0 || s.pins > 0) continue;
      s.deleted = true;
      this.segments.splice(this.segments.indexOf(s), 1);
      this.bytes -= s.size;
      this.track(
        fsp.unlink(s.file).catch((error: unknown) => {
          if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
          this.reporter?.error(
            'ZENOVAY_OUTBOX_IO',
            `could not delete ${s.file} (${(error as Error).message}); it is read again at the next start`,
          );
        }),
      );
      for (const [holder, n] of s.pinnedBy) {
        holder.pins -= n;
        stack.push(holder);
      }
      s.pinnedBy.clear();
    }
  }

  // ---------------------------------------------------------------------------------------------
  // the write buffer

  /** The offset in `this.chunk` where a record of up to `bound` bytes goes. */
  private room(bound: number): number {
    if (this.chunk.length - this.chunkUsed >= bound) return this.chunkUsed;
    if (this.chunkUsed > this.chunkFlushed) {
      this.waiting.push(this.chunk.subarray(this.chunkFlushed, this.chunkUsed));
    }
    this.chunk = Buffer.allocUnsafe(Math.max(CHUNK_BYTES, bound));
    this.chunkUsed = this.chunkFlushed = 0;
    return 0;
  }

  /** The record just written at `chunkUsed` is part of the segment now. */
  private commit(length: number): void {
    this.chunkUsed += length;
    this.pendingBytes += length;
    this.current.size += length;
    this.bytes += length;
    if (this.pendingBytes >= FLUSH_BYTES) this.flush();
    else
      this.flushImmediate ??= setImmediate(() => {
        this.flushImmediate = undefined;
        this.flush();
      });
  }

  /** Writes what is buffered to the segment file. False when a write failed (kept for retry). */
  private flush(): boolean {
    if (this.pendingBytes === 0) return true;
    const parts = this.waiting;
    if (this.chunkUsed > this.chunkFlushed) {
      parts.push(this.chunk.subarray(this.chunkFlushed, this.chunkUsed));
    }
    const data = parts.length === 1 ? parts[0]! : Buffer.concat(parts, this.pendingBytes);
    this.waiting = [];
    this.chunkFlushed = this.chunkUsed;
    let done = 0;
    try {
      if (this.fd === undefined) {
        // Synchronous: a roll happens inside append(); creating a file costs tens of microseconds.
        this.fd = openSync(this.current.file, 'wx', 0o600);
        this.dirDirty = true;
      }
      while (done < data.length) {
        done += writeSync(this.fd!, data, done, data.length - done, this.current.written + done);
      }
    } catch (error) {
      this.current.written += done;
      this.waiting = [data.subarray(done)];
      this.pendingBytes = data.length - done;
      if (this.writeError === undefined) {
        this.reporter?.error(
          'ZENOVAY_OUTBOX_IO',
          `cannot write to ${this.current.file} (${(error as Error).message}); new events are` +
            ' refused as outbox_full until a write succeeds again',
        );
      }
      this.writeError = error;
      return false;
    }
    this.current.written += done;
    this.pendingBytes = 0;
    // Everything in the chunk is written and nothing refers to it: fill it again from the start.
    this.chunkUsed = this.chunkFlushed = 0;
    this.dirtySinceSync = true;
    if (this.writeError !== undefined) {
      this.writeError = undefined;
      this.reporter?.info('ZENOVAY_OUTBOX_IO', `writing to ${this.dir} works again`);
    }
    if (this.syncPolicy === 'always') this.syncInBackground();
    return true;
  }

  /** Bytes of the segment being written that are still in memory. */
  private readPending(offset: number, length: number): Buffer {
    const parts = [...this.waiting];
    if (this.chunkUsed > this.chunkFlushed) {
      parts.push(this.chunk.subarray(this.chunkFlushed, this.chunkUsed));
    }
    const start = offset - this.current.written;
    return Buffer.concat(parts, this.pendingBytes).subarray(start, start + length);
  }

  private maybeRoll(): void {
    if (this.current.size >= this.segmentBytes) this.roll();
  }

  /** The segment being written holds nothing live: start a new one so that it can go. */
  private reclaimCurrent(): boolean {
    const seg = this.current;
    if (seg.unsettled > 0 || seg.pins > 0 || seg.size === 0) return false;
    return this.roll();
  }

  /** Closes the segment being written for writes; the next one is created at its first write. */
  private roll(): boolean {
    if (!this.flush()) return false;
    const old = this.current;
    if (this.fd !== undefined) this.retiring.push(this.fd);
    this.fd = undefined;
    this.current = this.newSegment(old.id + 1);
    this.segments.push(this.current);
    this.collect(old);
    return true;
  }

  // ---------------------------------------------------------------------------------------------
  // sync

  private tick(): void {
    this.flush();
    if (this.dirtySinceSync) this.syncInBackground();
  }

  private syncInBackground(): void {
    this.requestSync().catch((error: unknown) => {
      this.reporter?.error(
        'ZENOVAY_OUTBOX_IO',
        `fdatasync failed in ${this.dir} (${(error as Error).message})`,
      );
    });
  }

  /** An fdatasync pass that starts after this call (group commit: one at a time, shared). */
  private requestSync(): Promise<void> {
    if (this.syncing === undefined) return this.runSync();
    this.syncQueued ??= this.syncing.then(noop, noop).then(() => {
      this.syncQueued = undefined;
      return this.runSync();
    });
    return this.syncQueued;
  }

  private runSync(): Promise<void> {
    this.dirtySinceSync = false;
    const retiring = this.retiring;
    this.retiring = [];
    const fds = this.fd === undefined ? [...retiring] : [this.fd, ...retiring];
    const dir = this.dirDirty;
    this.dirDirty = false;
    const run = (async () => {
      try {
        await Promise.all(fds.map((fd) => fdatasyncAsync(fd)));
        if (dir) await syncDirectory(this.dir);
      } finally {
        await Promise.all(retiring.map((fd) => closeAsync(fd).catch(noop)));
      }
    })();
    this.syncing = run;
    void run.then(noop, noop).then(() => {
      if (this.syncing === run) this.syncing = undefined;
    });
    return run;
  }

  sync(): Promise<void> {
    if (this.state !== 'open') return Promise.resolve();
    if (!this.flush()) return Promise.reject(this.writeError as Error);
    return this.requestSync();
  }

  private heartbeat(): void {
    const lock = this.lock;
    if (lock === undefined) return;
    this.track(
      lock.refresh().then((ours) => {
        if (!ours && !this.lockLost && this.state === 'open') {
          this.lockLost = true;
          this.reporter?.error(
            'ZENOVAY_OUTBOX_LOCK',
            `the lock file in ${this.dir} was removed or replaced by someone else: another process` +
              ' may now use the same outbox directory',
          );
        }
      }),
    );
  }

  private track(p: Promise<unknown>): void {
    this.background.add(p);
    void p.then(noop, noop).then(() => this.background.delete(p));
  }

  // ---------------------------------------------------------------------------------------------
  // take

  take(max: number): Promise<OutboxEntry[]> {
    if (this.state !== 'open' || !(max >= 1)) return Promise.resolve([]);
    const out: Slot[] = [];
    while (out.length < max && this.recoveredHead < this.recoveredQueue.length) {
      const slot = this.recoveredQueue[this.recoveredHead++]!;
      if (slot.state !== QUEUED || !slot.recovered) continue;
      slot.state = TAKEN;
      slot.recovered = false;
      this.recoveredCount--;
      out.push(slot);
    }
    while (out.length < max && this.spilledHead < this.spilledQueue.length) {
      const slot = this.spilledQueue[this.spilledHead++]!;
      if (slot.state !== QUEUED) continue;
      slot.state = TAKEN;
      out.push(slot);
    }
    this.compactQueues();
    if (out.length === 0) return Promise.resolve([]);
    const p = this.readSlots(out);
    this.track(p);
    return p;
  }

  private compactQueues(): void {
    if (this.recoveredHead > 1024 && this.recoveredHead * 2 > this.recoveredQueue.length) {
      this.recoveredQueue = this.recoveredQueue.slice(this.recoveredHead);
      this.recoveredHead = 0;
    }
    if (this.spilledHead > 1024 && this.spilledHead * 2 > this.spilledQueue.length) {
      this.spilledQueue = this.spilledQueue.slice(this.spilledHead);
      this.spilledHead = 0;
    }
  }

  private async readSlots(slots: Slot[]): Promise<OutboxEntry[]> {
    const entries: (OutboxEntry | undefined)[] = new Array(slots.length);
    const handles = new Map<Segment, FileHandle>();
    try {
      let i = 0;
      while (i < slots.length) {
        const first = slots[i]!;
        const seg = first.seg;
        if (first.offset + first.length > seg.written) {
          // Still in the write buffer (the segment being written).
          entries[i] = decodeSlot(first, this.readPending(first.offset, first.length), 0);
          i++;
          continue;
        }
        let j = i + 1;
        let end = first.offset + first.length;
        while (j < slots.length) {
          const s = slots[j]!;
          if (s.seg !== seg || s.offset < end || s.offset - end > READ_GAP_BYTES) break;
          if (s.offset + s.length - first.offset > READ_SPAN_BYTES) break;
          if (s.offset + s.length > seg.written) break;
          end = s.offset + s.length;
          j++;
        }
        try {
          let handle = handles.get(seg);
          if (handle === undefined) {
            handle = await fsp.open(seg.file, 'r');
            handles.set(seg, handle);
          }
          const buf = Buffer.allocUnsafe(end - first.offset);
          const { bytesRead } = await handle.read(buf, 0, buf.length, first.offset);
          for (let k = i; k < j; k++) {
            const s = slots[k]!;
            const at = s.offset - first.offset;
            if (at + s.length <= bytesRead) entries[k] = decodeSlot(s, buf, at);
          }
        } catch (error) {
          if (slots.slice(i, j).some((s) => s.state !== SETTLED)) {
            this.reporter?.error(
              'ZENOVAY_OUTBOX_IO',
              `cannot read ${seg.file} (${(error as Error).message})`,
            );
          }
        }
        i = j;
      }
    } finally {
      await Promise.all([...handles.values()].map((h) => h.close().catch(noop)));
    }
    const result: OutboxEntry[] = [];
    for (let k = 0; k < slots.length; k++) {
      const slot = slots[k]!;
      if (slot.state === SETTLED) continue;
      const entry = entries[k];
      if (entry === undefined) {
        this.dropUnreadable(slot);
        continue;
      }
      this.read++;
      result.push(entry);
    }
    return result;
  }

  /** An entry whose record no longer reads back: it cannot be sent; it is counted and let go. */
  private dropUnreadable(slot: Slot): void {
    if (this.slots.get(slot.key) !== slot) return;
    this.slots.delete(slot.key);
    slot.state = SETTLED;
    slot.seg.unsettled--;
    this.corrupt++;
    this.reporter?.error(
      'ZENOVAY_OUTBOX_CORRUPT',
      `a record in ${slot.seg.file} no longer reads back (damaged on disk); its event is lost`,
    );
    this.collect(slot.seg);
    try {
      this.onLost?.([slot.key]);
    } catch {
      // The caller's accounting must not break reading.
    }
  }

  // ---------------------------------------------------------------------------------------------

  stats(): OutboxStats {
    return {
      persisted: this.slots.size,
      recovered: this.recoveredCount,
      bytes: this.bytes,
      written: this.written,
      read: this.read,
      settled: this.settled,
      corrupt: this.corrupt,
      full: this.full,
    };
  }

  close(): Promise<void> {
    this.closePromise ??= this.doClose();
    return this.closePromise;
  }

  private async doClose(): Promise<void> {
    if (this.state === 'opening') await this.openPromise!.catch(noop);
    if (this.state !== 'open') {
      this.state = 'closed';
      return;
    }
    this.state = 'closing';
    clearInterval(this.syncTimer);
    clearInterval(this.heartbeatTimer);
    if (this.flushImmediate !== undefined) clearImmediate(this.flushImmediate);
    this.flushImmediate = undefined;
    // Settles may still arrive while closing (answers in flight): write until nothing is left.
    for (let round = 0; round < 10; round++) {
      await Promise.all([...this.background].map((p) => p.catch(noop)));
      if (!this.flush() && round >= 2) break;
      try {
        await this.requestSync();
      } catch (error) {
        this.reporter?.error(
          'ZENOVAY_OUTBOX_IO',
          `fdatasync failed in ${this.dir} at close (${(error as Error).message})`,
        );
      }
      if (this.pendingBytes === 0 && this.background.size === 0) break;
    }
    if (this.pendingBytes > 0) {
      this.reporter?.error(
        'ZENOVAY_OUTBOX_IO',
        `closed with ${this.pendingBytes} bytes that could not be written to ${this.current.file}:` +
          ' the events in them are not kept',
      );
    }
    this.state = 'closed';
    while (this.syncing !== undefined) await this.syncing.catch(noop);
    const fds = this.fd === undefined ? this.retiring : [this.fd, ...this.retiring];
    this.fd = undefined;
    this.retiring = [];
    await Promise.all(fds.map((fd) => closeAsync(fd).catch(noop)));
    await this.lock?.release();
    this.lock = undefined;
  }
}

function decodeSlot(slot: Slot, buf: Buffer, at: number): OutboxEntry | undefined {
  try {
    const probe = probeRecord(buf, at, at + slot.length);
    if (!probe.ok || probe.type !== TYPE_ENTRY) return undefined;
    if (HEADER_BYTES + probe.payloadBytes !== slot.length) return undefined;
    const entry = decodeEntry(buf, at, probe.payloadBytes, probe.flags);
    return entry.key === slot.key ? entry : undefined;
  } catch {
    return undefined;
  }
}

/** fsync of the directory, so that new and deleted segment names survive a power cut. */
async function syncDirectory(dir: string): Promise<void> {
  let handle: FileHandle | undefined;
  try {
    handle = await fsp.open(dir, 'r');
    await handle.sync();
  } catch {
    // Not supported everywhere (Windows): the file data itself is synced regardless.
  } finally {
    await handle?.close().catch(noop);
  }
}
