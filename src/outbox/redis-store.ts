/**
 * The shared outbox: a Redis Stream that a fleet of app instances writes to and reads through one
 * consumer group (issue 17). Every accepted event is an entry (`key`, `body`, `headers`,
 * `acceptedAt`) until the endpoint has answered for it; then it is acknowledged and deleted.
 *
 * Who holds what (the point of the design): an instance delivers the events it accepted from its
 * own memory, so nobody else may be served them while it lives. Its writes therefore go through a
 * Lua script that adds the entries and, in the same atomic step, reads them through the group into
 * the writer's own pending list (PEL): the group's `>` cursor is always past them, and no
 * XREADGROUP of another instance (or of its own `take()`) ever returns them. They leave that PEL
 * only by `settle()` (XACK + XDEL), or when the instance is dead: each instance keeps a deadline
 * in a hash beside the stream (refreshed by every write and by a heartbeat; set to 0 by `close()`),
 * and `take()` moves the pending entries of consumers whose deadline has passed to itself (XCLAIM,
 * in a script, so one entry goes to one instance). A consumer's deadline is per instance, not per
 * entry: an instance that holds events through a long endpoint outage keeps them (XAUTOCLAIM,
 * which goes by each entry's idle time, would hand them to another instance while their holder
 * still sends them from memory).
 *
 * Entries the caller stops holding (`spill()`) stay in this instance's PEL; `take()` reads them
 * back by id. Entries in this PEL that the instance does not know (a fixed `consumer` name reused
 * after a restart, or entries written by something else) are handed out by reading the PEL.
 *
 * At least once: an entry is sent again, under its key, when its instance dies after sending it
 * and before the settle reached Redis, when an instance is cut off from Redis longer than
 * `claimAfterMs` while it still sends, and when a write whose answer was lost is repeated.
 */
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { consoleLogger, errorText, Reporter } from '../logger.js';
import {
  ClientLoadError,
  connectUrl,
  isRedisClientLike,
  linkClient,
  redactUrl,
  type RedisClientLike,
  type RedisLink,
} from './redis-client.js';
import { CLAIM, FETCH, RETIRE, WRITE, type Script } from './redis-scripts.js';
import type { OutboxEntry, OutboxStats, OutboxStore } from './types.js';
import { Fifo } from '../delivery/fifo.js';

export type { RedisClientLike } from './redis-client.js';

export interface RedisOutboxOptions {
  /**
   * A URL (`redis://[user:password@]host:port[/db]`, `rediss://` for TLS): the store connects with
   * node-redis (`@redis/client`, an optional peer dependency: install it to use a URL) and closes
   * the connection on close(). Or the user's own client (ioredis 5+, or node-redis 4+, connected):
   * used as it is, never closed (with `worker: true` only a URL can reach the delivery worker).
   */
  redis: string | RedisClientLike;
  /** Names the default stream. Needed unless `stream` is given. */
  trackingCode?: string;
  /** Default `zenovay:outbox:{trackingCode}` (the braces are a Redis Cluster hash tag). */
  stream?: string;
  /** The consumer group, default `zenovay`. */
  group?: string;
  /**
   * This instance's name in the group, default `host:pid:random` (new on every start; what a
   * dead instance left is taken over after `claimAfterMs`). Give a fixed name only if no two live
   * processes ever share it: then a restarted process gets its own pending entries back at once.
   */
  consumer?: string;
  /** Appends are refused (counted as `full`) once the stream holds this many entries; XADD trims at it (MAXLEN ~). Default 1,000,000. */
  maxLength?: number;
  /** An instance not heard of for this long is dead: its pending entries are taken over. Default 60,000 ms. */
  claimAfterMs?: number;
  /** Appends kept in memory while Redis does not answer; past it, appends are refused (`full`). Default 10,000. */
  maxBuffered?: number;
  /** open() gives up on an unreachable Redis after this long. Default 5,000 ms. */
  connectTimeoutMs?: number;
  /** close() waits this long for the last writes and settles. Default 2,000 ms. */
  closeTimeoutMs?: number;
  /** Where the store reports (the engine's reporter); the console by default. */
  reporter?: Pick<Reporter, 'info' | 'warn' | 'error'>;
  /**
   * Keys of entries this instance had spilled that are gone from the stream before take() could
   * read them back (trimmed at maxLength, Redis restarted without persistence): the caller
   * counts them as lost.
   */
  onLost?: (keys: string[]) => void;
}

/** The store's stats: the shared ones, and what only a Redis outbox has. */
export interface RedisOutboxStats extends OutboxStats {
  /** Entries gone from the stream before they were settled (trimmed, or Redis lost them). */
  lost: number;
  /** Appends not yet acknowledged by Redis (in memory, at most `maxBuffered`). */
  buffered: number;
  /** The stream's length (all instances) as last seen. */
  streamLength: number;
}

export const REDIS_OUTBOX_DEFAULTS = {
  group: 'zenovay',
  maxLength: 1_000_000,
  claimAfterMs: 60_000,
  maxBuffered: 10_000,
  connectTimeoutMs: 5_000,
  closeTimeoutMs: 2_000,
} as const;

/** Entries per write script: keeps each script run (Redis is busy meanwhile) around a millisecond. */
const WRITE_CHUNK = 500;
/** Entries one claim moves at most (the script passes their ids to XCLAIM as arguments). */
const CLAIM_MAX = 1000;
/** Ids per XACK/XDEL in one write. */
const ACK_CHUNK = 1000;
/** Retries of failed writes: from this delay, doubling, up to the maximum. */
const RETRY_MIN_MS = 50;
const RETRY_MAX_MS = 2_000;

type State = 'new' | 'opening' | 'open' | 'closing' | 'closed';

/** One event this instance knows and has not settled. */
interface Rec {
  key: string;
  /** Append order; 0 for entries taken over. */
  seq: number;
  /** The stream id, once Redis has it. */
  id: string | undefined;
  /** Kept until written. */
  entry: OutboxEntry | undefined;
  size: number;
  /** The caller does not hold it in memory: take() reads it back. */
  spilled: boolean;
  settled: boolean;
  /** In the write under way. */
  writing: boolean;
  /** Settled during its write: the acknowledgement sync() waits for is counted already. */
  reserved: boolean;
}

interface Waiter {
  appends: number;
  acks: number;
  resolve: () => void;
  reject: (error: Error) => void;
}

export function createRedisOutbox(options: RedisOutboxOptions): RedisOutbox {
  return new RedisOutbox(options);
}

export class RedisOutbox implements OutboxStore {
  readonly stream: string;
  readonly group: string;
  readonly consumer: string;
  private readonly aliveKey: string;
  private readonly maxLength: number;
  private readonly claimAfterMs: number;
  private readonly maxBuffered: number;
  private readonly connectTimeoutMs: number;
  private readonly closeTimeoutMs: number;
  private readonly reporter: Pick<Reporter, 'info' | 'warn' | 'error'>;
  private readonly label: string;

  private state: State = 'new';
  private link: RedisLink | undefined;
  private openPromise: Promise<void> | undefined;
  private closePromise: Promise<void> | undefined;

  private readonly byKey = new Map<string, Rec>();
  /** Appended, not yet sent to Redis. */
  private queue: Rec[] = [];
  /** In the write under way. */
  private inflight: Rec[] = [];
  /** Stream ids to acknowledge and delete. */
  private acks: string[] = [];
  /** Those in the write under way. */
  private inflightAcks: string[] = [];
  private readonly spilledQueue = new Fifo<Rec>();
  private spilledCount = 0;
  /** Entries in this consumer's PEL that this instance does not know (see the header). */
  private ownOld = 0;
  /** This consumer's PEL may hold entries this instance does not know: take() reads it through. */
  private scanOwn = false;
  private ownCursor = '0-0';
  private waitingOnDead = 0;
  private streamLength = 0;

  private appendSeq = 0;
  private writtenSeq = 0;
  private skippedTo = 0;
  private ackSeq = 0;
  private ackedSeq = 0;
  private waiters: Waiter[] = [];

  private writing = false;
  private beatDue = false;
  private lastBeat = 0;
  private flushHandle: NodeJS.Immediate | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private heartbeat: NodeJS.Timeout | undefined;
  private retryMs = 0;
  private nextClaimAt = 0;
  private claimMore = false;
  private takeChain: Promise<unknown> = Promise.resolve();

  private bytes = 0;
  private written = 0;
  private readCount = 0;
  private settledCount = 0;
  private corrupt = 0;
  private full = 0;
  private lost = 0;

  constructor(private readonly options: RedisOutboxOptions) {
    const { redis } = options;
    if (typeof redis === 'string') {
      if (!/^rediss?:\/\//.test(redis)) {
        throw new TypeError(
          `zenovay-express: the Redis outbox's \`redis\` must be a redis:// or rediss:// URL, or a client; got ${redactUrl(redis)}.`,
        );
      }
      this.label = redactUrl(redis);
    } else if (isRedisClientLike(redis)) {
      this.label = 'the given Redis client';
    } else {
      throw new TypeError(
        "zenovay-express: the Redis outbox's `redis` must be a redis:// URL, an ioredis client or a node-redis client.",
      );
    }
    if (options.stream === undefined && !options.trackingCode) {
      throw new TypeError(
        'zenovay-express: the Redis outbox needs a `stream` name, or the `trackingCode` that names the default one.',
      );
    }
    this.stream = options.stream ?? `zenovay:outbox:{${options.trackingCode}}`;
    this.aliveKey = `${this.stream}:alive`;
    this.group = options.group ?? REDIS_OUTBOX_DEFAULTS.group;
    this.consumer =
      options.consumer ?? `${hostname()}:${process.pid}:${randomBytes(4).toString('hex')}`;
    this.maxLength = positive(options.maxLength, REDIS_OUTBOX_DEFAULTS.maxLength, 'maxLength');
    this.claimAfterMs = positive(
      options.claimAfterMs,
      REDIS_OUTBOX_DEFAULTS.claimAfterMs,
      'claimAfterMs',
    );
    this.maxBuffered = positive(
      options.maxBuffered,
      REDIS_OUTBOX_DEFAULTS.maxBuffered,
      'maxBuffered',
    );
    this.connectTimeoutMs = positive(
      options.connectTimeoutMs,
      REDIS_OUTBOX_DEFAULTS.connectTimeoutMs,
      'connectTimeoutMs',
    );
    this.closeTimeoutMs = positive(
      options.closeTimeoutMs,
      REDIS_OUTBOX_DEFAULTS.closeTimeoutMs,
      'closeTimeoutMs',
    );
    this.reporter = options.reporter ?? new Reporter(consoleLogger);
  }

  open(): Promise<void> {
    this.openPromise ??= this.openNow().catch((error: unknown) => {
      // Nothing of a failed open is kept: it can be tried again (the engine does, later).
      this.openPromise = undefined;
      throw error;
    });
    return this.openPromise;
  }

  private async openNow(): Promise<void> {
    if (this.state !== 'new') throw new Error('zenovay-express: this Redis outbox was closed.');
    this.state = 'opening';
    const { redis } = this.options;
    try {
      const link =
        typeof redis === 'string'
          ? await connectUrl(redis, this.connectTimeoutMs, (error) => this.connectionError(error))
          : linkClient(redis);
      this.link = link;
      await withTimeout(link.send(['PING']), this.connectTimeoutMs, 'no answer to PING');
      await this.ensureGroup();
      await this.adopt();
      const survey = await this.claim(0);
      this.ownOld = survey.own;
      this.scanOwn = this.ownOld > 0;
    } catch (error) {
      const link = this.link;
      this.link = undefined;
      // Closed meanwhile stays closed; otherwise open() may be tried again.
      if (this.state === 'opening') this.state = 'new';
      await link?.close().catch(() => undefined);
      throw new Error(
        `zenovay-express: the Redis outbox cannot use ${this.label}: ${errorText(error)}.` +
          (error instanceof ClientLoadError
            ? ''
            : ' Check that Redis is running and reachable (the URL, the password, TLS), or drop the outbox option.'),
        { cause: error },
      );
    }
    if (this.state !== 'opening') return;
    this.state = 'open';
    this.lastBeat = Date.now();
    this.heartbeat = setInterval(() => this.beat(), Math.max(10, this.claimAfterMs / 3));
    this.heartbeat.unref();
  }

  append(entry: OutboxEntry): boolean {
    if (this.state !== 'open') {
      throw new Error(
        `zenovay-express: append() on a Redis outbox that is ${this.state === 'new' || this.state === 'opening' ? 'not open yet' : 'closed'}.`,
      );
    }
    if (this.byKey.has(entry.key)) return true;
    const unwritten = this.queue.length + this.inflight.length;
    if (unwritten >= this.maxBuffered || this.streamLength + unwritten >= this.maxLength) {
      this.full++;
      // The stream may have shrunk since it was last seen: look again, at most once a second.
      if (Date.now() - this.lastBeat >= 1000) this.beat(true);
      return false;
    }
    const size = entrySize(entry);
    const rec: Rec = {
      key: entry.key,
      seq: ++this.appendSeq,
      id: undefined,
      entry,
      size,
      spilled: false,
      settled: false,
      writing: false,
      reserved: false,
    };
    this.byKey.set(entry.key, rec);
    this.queue.push(rec);
    this.bytes += size;
    this.scheduleFlush();
    return true;
  }

  settle(key: string): void {
    const rec = this.byKey.get(key);
    if (rec === undefined) return;
    this.byKey.delete(key);
    this.settledCount++;
    this.bytes -= rec.size;
    rec.settled = true;
    if (rec.spilled && rec.id !== undefined) this.spilledCount--;
    if (rec.id !== undefined) this.ack(rec.id);
    else if (rec.writing) {
      // In the write under way: acknowledged when it returns (sync() from now on waits for that).
      rec.reserved = true;
      this.ackSeq++;
    }
    // Not written yet: the write skips it.
  }

  spill(key: string): void {
    const rec = this.byKey.get(key);
    if (rec === undefined || rec.spilled) return;
    rec.spilled = true;
    if (rec.id !== undefined) {
      this.spilledQueue.push(rec);
      this.spilledCount++;
    }
  }

  take(max: number): Promise<OutboxEntry[]> {
    const result = this.takeChain.then(() => this.takeNow(max));
    this.takeChain = result.catch(() => undefined);
    return result;
  }

  sync(): Promise<void> {
    if (this.state === 'closed' || this.state === 'new') return Promise.resolve();
    const appends = this.appendSeq;
    const acks = this.ackSeq;
    if (this.writtenSeq >= appends && this.ackedSeq >= acks) return Promise.resolve();
    return new Promise((resolve, reject) => {
      this.waiters.push({ appends, acks, resolve, reject });
      this.scheduleFlush();
    });
  }

  stats(): RedisOutboxStats {
    return {
      persisted: this.byKey.size,
      recovered: this.waitingOnDead + this.ownOld,
      bytes: this.bytes,
      written: this.written,
      read: this.readCount,
      settled: this.settledCount,
      corrupt: this.corrupt,
      full: this.full,
      lost: this.lost,
      buffered: this.queue.length + this.inflight.length,
      streamLength: this.streamLength,
    };
  }

  close(): Promise<void> {
    this.closePromise ??= this.closeNow();
    return this.closePromise;
  }

  private async closeNow(): Promise<void> {
    if (this.state === 'opening') await this.openPromise?.catch(() => undefined);
    if (this.state !== 'open') {
      this.state = 'closed';
      return;
    }
    this.state = 'closing';
    clearInterval(this.heartbeat);
    const deadline = Date.now() + this.closeTimeoutMs;
    const left = () => Math.max(1, deadline - Date.now());
    // A take() under way may claim entries (and refresh this consumer's deadline): let it end.
    await withTimeout(this.takeChain, left(), 'timeout').catch(() => undefined);
    const drained = await withTimeout(this.drain(), left(), 'timeout').then(
      () => true,
      () => false,
    );
    const unwritten = this.queue.filter((rec) => !rec.settled).length + this.inflight.length;
    // No write after this point: it would refresh the deadline that RETIRE ends.
    this.state = 'closed';
    if (this.flushHandle) clearImmediate(this.flushHandle);
    clearTimeout(this.retryTimer);
    this.flushHandle = undefined;
    this.retryTimer = undefined;
    if (drained) {
      // Mark this consumer dead now: what it leaves pending can be taken over at once.
      await withTimeout(this.evalScript(RETIRE, [this.consumer]), left(), 'timeout').catch(
        () => undefined,
      );
    }
    if (unwritten > 0) {
      this.reporter.warn(
        'ZENOVAY_OUTBOX_NOT_KEPT',
        `${unwritten} events could not be written to the Redis outbox (${this.label}) before close(): they are not kept.`,
      );
    }
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w.reject(new Error('zenovay-express: the Redis outbox was closed.'));
    const link = this.link;
    this.link = undefined;
    await link?.close().catch(() => undefined);
  }

  /** Writes and settles everything known now, retrying as usual. */
  private async drain(): Promise<void> {
    while (
      this.state === 'closing' &&
      (this.queue.length > 0 || this.inflight.length > 0 || this.acks.length > 0)
    ) {
      await this.sync();
      // Settles of entries that were in a write under way are queued when it returns.
      if (this.acks.length > 0 && !this.writing) this.scheduleFlush();
      await new Promise((resolve) => setImmediate(resolve));
    }
  }

  // --- writing ------------------------------------------------------------------------------

  private ack(id: string, counted = false): void {
    this.acks.push(id);
    if (!counted) this.ackSeq++;
    this.scheduleFlush();
  }

  private beat(force = false): void {
    if (this.state !== 'open') return;
    if (!force && Date.now() - this.lastBeat < this.claimAfterMs / 3 - 5) return;
    this.lastBeat = Date.now();
    this.beatDue = true;
    this.scheduleFlush();
  }

  private scheduleFlush(): void {
    if (this.flushHandle || this.writing || this.retryTimer || !this.link) return;
    if (this.state !== 'open' && this.state !== 'closing') return;
    this.flushHandle = setImmediate(() => {
      this.flushHandle = undefined;
      void this.write();
    });
  }

  private async write(): Promise<void> {
    const link = this.link;
    if (this.writing || !link) return;
    const recs: Rec[] = [];
    let taken = 0;
    while (taken < this.queue.length && recs.length < WRITE_CHUNK) {
      const rec = this.queue[taken++] as Rec;
      if (!rec.settled) recs.push(rec);
      else {
        this.skippedTo = rec.seq;
        // Settled during a write that failed: no acknowledgement will come for it.
        if (rec.reserved) this.ackedSeq++;
        rec.reserved = false;
      }
    }
    this.queue.splice(0, taken);
    const ids = this.acks.splice(0, ACK_CHUNK);
    if (recs.length === 0 && ids.length === 0 && !this.beatDue) {
      this.advance(0);
      return;
    }
    this.writing = true;
    this.beatDue = false;
    this.inflight = recs;
    this.inflightAcks = ids;
    for (const rec of recs) rec.writing = true;
    const args = [
      this.group,
      this.consumer,
      String(this.maxLength),
      String(this.claimAfterMs),
      String(ids.length),
      ...ids,
      String(recs.length),
    ];
    for (const rec of recs) {
      const entry = rec.entry as OutboxEntry;
      args.push(entry.key, entry.body, JSON.stringify(entry.headers), String(entry.acceptedAt));
    }
    let reply: unknown;
    try {
      reply = await this.evalScript(WRITE, args);
    } catch (error) {
      this.writing = false;
      this.inflight = [];
      this.inflightAcks = [];
      for (const rec of recs) rec.writing = false;
      this.queue.unshift(...recs);
      this.acks.unshift(...ids);
      this.writeFailed(error);
      return;
    }
    this.writing = false;
    this.inflight = [];
    this.inflightAcks = [];
    if (this.retryMs > 0) {
      this.reporter.info(
        'ZENOVAY_OUTBOX_REDIS_BACK',
        `writes to the Redis outbox (${this.label}) work again; the events that waited are being written.`,
      );
    }
    this.retryMs = 0;
    this.lastBeat = Date.now();
    const [added, length, foreign] = asArray(reply);
    const addedIds = asArray(added).map(String);
    this.streamLength = Number(length) || 0;
    const strangers = Number(foreign) || 0;
    if (strangers > 0) {
      this.ownOld += strangers;
      this.scanOwn = true;
    }
    recs.forEach((rec, i) => {
      const id = addedIds[i] as string;
      rec.id = id;
      rec.entry = undefined;
      rec.writing = false;
      if (rec.settled) this.ack(id, rec.reserved);
      else if (rec.spilled) {
        this.spilledQueue.push(rec);
        this.spilledCount++;
      }
    });
    this.written += recs.length;
    this.ackedSeq += ids.length;
    this.advance(recs.length > 0 ? (recs[recs.length - 1] as Rec).seq : 0);
    if (this.queue.length > 0 || this.acks.length > 0 || this.beatDue) this.scheduleFlush();
  }

  /** Records how far the appends are written and wakes the sync() calls that are satisfied. */
  private advance(lastWritten: number): void {
    this.writtenSeq = Math.max(this.writtenSeq, lastWritten, this.skippedTo);
    if (this.queue.length === 0 && this.inflight.length === 0) this.writtenSeq = this.appendSeq;
    if (this.waiters.length === 0) return;
    const waiting: Waiter[] = [];
    for (const w of this.waiters) {
      if (this.writtenSeq >= w.appends && this.ackedSeq >= w.acks) w.resolve();
      else waiting.push(w);
    }
    this.waiters = waiting;
  }

  private writeFailed(error: unknown): void {
    if (this.state !== 'open' && this.state !== 'closing') return;
    const message = errorText(error);
    if (/NOGROUP/.test(message)) void this.ensureGroup().catch(() => undefined);
    // The write may have happened with its answer lost: the retry writes the entries again, and
    // the first copies sit in this PEL under ids this instance does not know. take() finds them.
    this.scanOwn = true;
    this.reporter.warn(
      'ZENOVAY_OUTBOX_REDIS',
      `writes to the Redis outbox (${this.label}) fail: ${message}. Retrying; up to ${this.maxBuffered} events wait in memory meanwhile, more are refused (outbox full).`,
    );
    this.retryMs = Math.min(RETRY_MAX_MS, Math.max(RETRY_MIN_MS, this.retryMs * 2));
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      void this.write();
    }, this.retryMs);
    this.retryTimer.unref();
  }

  /** The connection this store made reports its errors (while reconnecting) through the reporter. */
  private connectionError(error: Error): void {
    if (this.state !== 'open') return;
    this.reporter.warn(
      'ZENOVAY_OUTBOX_REDIS',
      `the connection to the Redis outbox (${this.label}) failed: ${error.message}. Reconnecting; up to ${this.maxBuffered} events wait in memory meanwhile, more are refused (outbox full).`,
    );
  }

  private async ensureGroup(): Promise<void> {
    const link = this.link;
    if (!link) return;
    try {
      await link.send(['XGROUP', 'CREATE', this.stream, this.group, '0', 'MKSTREAM']);
    } catch (error) {
      if (!/BUSYGROUP/.test(errorText(error))) throw error;
    }
  }

  private async evalScript(script: Script, args: string[]): Promise<unknown> {
    const link = this.link;
    if (!link) throw new Error('the Redis outbox is closed');
    const keys = ['2', this.stream, this.aliveKey];
    try {
      return await link.send(['EVALSHA', script.sha, ...keys, ...args]);
    } catch (error) {
      if (!/NOSCRIPT/.test(errorText(error))) throw error;
      return link.send(['EVAL', script.source, ...keys, ...args]);
    }
  }

  // --- reading ------------------------------------------------------------------------------

  /**
   * Entries in the stream that the group never served (written by something other than this
   * store, before its group existed) go to this consumer at open, so that writes never meet them.
   */
  private async adopt(): Promise<void> {
    const link = this.link as RedisLink;
    for (;;) {
      const reply = await link.send([
        'XREADGROUP',
        'GROUP',
        this.group,
        this.consumer,
        'COUNT',
        '1000',
        'STREAMS',
        this.stream,
        '>',
      ]);
      // Counted by the survey that follows, as this consumer's own pending entries.
      if (streamEntries(reply).length === 0) return;
    }
  }

  private async claim(max: number): Promise<{ entries: RawEntry[]; own: number }> {
    const reply = asArray(
      await this.evalScript(CLAIM, [
        this.group,
        this.consumer,
        String(this.claimAfterMs),
        String(this.claimAfterMs),
        String(max),
      ]),
    );
    const [claimed, waiting, lost, own, length] = reply;
    this.waitingOnDead = Number(waiting) || 0;
    this.streamLength = Number(length) || 0;
    const gone = Number(lost) || 0;
    if (gone > 0) {
      this.lost += gone;
      this.reporter.warn(
        'ZENOVAY_OUTBOX_LOST',
        `${gone} events left by a stopped instance were gone from the Redis stream ${this.stream} (trimmed at maxLength ${this.maxLength}, or deleted) before they could be sent.`,
      );
    }
    return { entries: rawEntries(claimed), own: Number(own) || 0 };
  }

  private async takeNow(max: number): Promise<OutboxEntry[]> {
    const out: OutboxEntry[] = [];
    if (this.state !== 'open' || !(max > 0)) return out;
    try {
      const now = Date.now();
      if (now >= this.nextClaimAt || this.claimMore) {
        this.nextClaimAt = now + Math.min(15_000, Math.max(50, this.claimAfterMs / 4));
        const budget = Math.min(max, CLAIM_MAX);
        const { entries } = await this.claim(budget);
        this.claimMore = entries.length >= budget;
        for (const raw of entries) this.accept(raw, out);
      }
      if (out.length < max && this.scanOwn) await this.readOwn(max, out);
      if (out.length < max && this.spilledCount > 0) await this.readSpilled(max, out);
    } catch (error) {
      const message = errorText(error);
      if (/NOGROUP|no such key/i.test(message)) await this.ensureGroup().catch(() => undefined);
      else if (this.state === 'open') {
        this.reporter.warn(
          'ZENOVAY_OUTBOX_REDIS',
          `reading the Redis outbox (${this.label}) failed: ${message}. Trying again at the next take.`,
        );
      }
    }
    this.readCount += out.length;
    return out;
  }

  /** An entry now in this consumer's PEL: handed out unless this instance holds its key already. */
  private accept(raw: RawEntry, out: OutboxEntry[]): boolean {
    const entry = raw.fields === undefined ? undefined : parseEntry(raw.fields);
    if (entry === undefined) {
      if (raw.fields !== undefined) {
        this.corrupt++;
        this.reporter.warn(
          'ZENOVAY_OUTBOX_CORRUPT',
          `an entry of the Redis stream ${this.stream} (${raw.id}) is not an event this package wrote: it is removed.`,
        );
      }
      this.ack(raw.id);
      return false;
    }
    const known = this.byKey.get(entry.key);
    if (known !== undefined) {
      // A second copy of an event this instance holds (a repeated write): only one is kept.
      if (known.id !== raw.id) this.ack(raw.id);
      return false;
    }
    const size = entrySize(entry);
    this.byKey.set(entry.key, {
      key: entry.key,
      seq: 0,
      id: raw.id,
      entry: undefined,
      size,
      spilled: false,
      settled: false,
      writing: false,
      reserved: false,
    });
    this.bytes += size;
    out.push(entry);
    return true;
  }

  /** Entries in this consumer's PEL that this instance does not know, read from the PEL. */
  private async readOwn(max: number, out: OutboxEntry[]): Promise<void> {
    const link = this.link as RedisLink;
    for (let round = 0; round < 4 && out.length < max && this.scanOwn; round++) {
      const reply = await link.send([
        'XREADGROUP',
        'GROUP',
        this.group,
        this.consumer,
        'COUNT',
        String(Math.max(100, 2 * (max - out.length))),
        'STREAMS',
        this.stream,
        this.ownCursor,
      ]);
      const entries = rawEntries(streamEntries(reply));
      if (entries.length === 0) {
        // Read to the end: nothing unknown is left (until a write reports more).
        this.ownCursor = '0-0';
        this.ownOld = 0;
        this.scanOwn = false;
        return;
      }
      // Settled here, their acknowledgement not yet in Redis: not to be handed out again.
      const settling = new Set([...this.acks, ...this.inflightAcks]);
      for (const raw of entries) {
        this.ownCursor = raw.id;
        if (settling.has(raw.id)) continue;
        const key = raw.fields === undefined ? undefined : parseEntry(raw.fields)?.key;
        const known = key === undefined ? undefined : this.byKey.get(key);
        if (known !== undefined && known.id === raw.id) continue;
        if (this.accept(raw, out)) this.ownOld = Math.max(0, this.ownOld - 1);
        if (out.length >= max) return;
      }
    }
  }

  /** Entries the caller spilled, read back by id; those gone from the stream are lost. */
  private async readSpilled(max: number, out: OutboxEntry[]): Promise<void> {
    const batch: Rec[] = [];
    while (batch.length < max - out.length && this.spilledQueue.length > 0) {
      const rec = this.spilledQueue.shift() as Rec;
      if (!rec.settled && rec.spilled) batch.push(rec);
    }
    if (batch.length === 0) return;
    let reply: unknown[];
    try {
      reply = asArray(
        await this.evalScript(
          FETCH,
          batch.map((rec) => rec.id as string),
        ),
      );
    } catch (error) {
      this.spilledQueue.unshiftAll(batch);
      throw error;
    }
    const lostKeys: string[] = [];
    batch.forEach((rec, i) => {
      const fields = rawEntry(reply[i])?.fields;
      const entry = fields === undefined ? undefined : parseEntry(fields);
      this.spilledCount--;
      rec.spilled = false;
      if (entry === undefined) {
        this.byKey.delete(rec.key);
        this.bytes -= rec.size;
        lostKeys.push(rec.key);
        if (rec.id !== undefined) this.ack(rec.id);
      } else out.push(entry);
    });
    if (lostKeys.length > 0) {
      this.lost += lostKeys.length;
      this.reporter.warn(
        'ZENOVAY_OUTBOX_LOST',
        `${lostKeys.length} events kept in the Redis stream ${this.stream} were gone when read back (trimmed at maxLength ${this.maxLength}, or Redis lost its data).`,
      );
      try {
        this.options.onLost?.(lostKeys);
      } catch {
        // The caller's accounting must not break reading.
      }
    }
  }
}

// --- replies ------------------------------------------------------------------------------------

interface RawEntry {
  id: string;
  /** Field, value, field, value...; undefined when the entry is gone (deleted or trimmed). */
  fields: unknown[] | undefined;
}

function asArray(value: unknown): unknown[] {
  return Array.isArray(value) ? value : [];
}

const STREAM_ID = /^\d+-\d+$/;

/** An entry of a reply, or undefined when the reply holds none there (nil, or not an entry). */
function rawEntry(value: unknown): RawEntry | undefined {
  const [id, fields] = asArray(value);
  const text = typeof id === 'string' ? id : Buffer.isBuffer(id) ? id.toString() : undefined;
  if (text === undefined || !STREAM_ID.test(text)) return undefined;
  return { id: text, fields: Array.isArray(fields) ? fields : undefined };
}

function rawEntries(value: unknown): RawEntry[] {
  const out: RawEntry[] = [];
  for (const item of asArray(value)) {
    const raw = rawEntry(item);
    if (raw !== undefined) out.push(raw);
  }
  return out;
}

/**
 * The entries of an XREADGROUP reply for one stream, whatever the client made of it: RESP2
 * `[[name, entries]]`, ioredis's RESP3 map `[name, entries]`, node-redis's `{ name: entries }`
 * (or a Map).
 */
export function streamEntries(reply: unknown): unknown[] {
  if (reply === null || reply === undefined) return [];
  if (Array.isArray(reply)) {
    const first = reply[0];
    return asArray(Array.isArray(first) ? first[1] : reply[1]);
  }
  if (reply instanceof Map) return asArray([...reply.values()][0]);
  if (typeof reply === 'object') return asArray(Object.values(reply)[0]);
  return [];
}

function parseEntry(fields: unknown[]): OutboxEntry | undefined {
  let key: string | undefined;
  let body: string | undefined;
  let headers: string | undefined;
  let acceptedAt: string | undefined;
  for (let i = 0; i + 1 < fields.length; i += 2) {
    const value = String(fields[i + 1]);
    switch (String(fields[i])) {
      case 'key':
        key = value;
        break;
      case 'body':
        body = value;
        break;
      case 'headers':
        headers = value;
        break;
      case 'acceptedAt':
        acceptedAt = value;
        break;
    }
  }
  if (!key || body === undefined || headers === undefined || acceptedAt === undefined) return;
  const at = Number(acceptedAt);
  if (!Number.isFinite(at)) return;
  let parsed: unknown;
  try {
    parsed = JSON.parse(headers);
  } catch {
    return;
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return;
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(parsed)) {
    if (typeof value !== 'string') return;
    out[name] = value;
  }
  return { key, body, headers: out, acceptedAt: at };
}

function entrySize(entry: OutboxEntry): number {
  let size = entry.key.length + entry.body.length + 16;
  for (const name in entry.headers) size += name.length + (entry.headers[name]?.length ?? 0) + 6;
  return size;
}

function positive(value: number | undefined, fallback: number, name: string): number {
  if (value === undefined) return fallback;
  if (!Number.isFinite(value) || value < 1) {
    throw new TypeError(
      `zenovay-express: the Redis outbox's \`${name}\` must be a number of at least 1; got ${String(value)}.`,
    );
  }
  return Math.floor(value);
}

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${what} after ${ms} ms`)), ms);
    promise.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (error: unknown) => {
        clearTimeout(timer);
        reject(error instanceof Error ? error : new Error(String(error)));
      },
    );
  });
}
