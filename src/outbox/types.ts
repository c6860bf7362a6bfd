/**
 * The durable outbox's vocabulary: what a store keeps of an accepted event, what every store (a
 * directory, Redis) offers the delivery engine, and what a tracker's stats show of it.
 */
/** One accepted event as an outbox keeps it until the endpoint has answered for it. */
export interface OutboxEntry {
  /** The event's Idempotency-Key: unique, the same on every retry and after recovery. */
  key: string;
  /** The JSON body, serialised. */
  body: string;
  /** The forwarded headers (lower-case names), content-type included. */
  headers: Record<string, string>;
  /** Date.now() when the tracker accepted it. */
  acceptedAt: number;
}

export interface OutboxStats {
  /** Entries kept and not settled now (this instance's view). */
  persisted: number;
  /** Entries found at open() (left by an earlier process) and not yet handed out by take(). */
  recovered: number;
  /** Bytes on disk / in the stream (approximate for Redis). */
  bytes: number;
  /** Totals since open. */
  written: number;
  read: number;
  settled: number;
  /** Records skipped at recovery because torn or corrupt (directory store). */
  corrupt: number;
  /** Appends refused because the store was past maxBytes / maxLength. */
  full: number;
  /** Entries gone from the store before they were settled (Redis: trimmed or lost). */
  lost?: number;
}

export interface OutboxStore {
  /** Takes ownership (the directory's lock; the Redis consumer), scans what is left. Rejects with a clear Error when it cannot (locked by another process: the message names the holder's pid and host; unreachable Redis). */
  open(): Promise<void>;
  /**
   * Keeps an accepted event. Synchronous and cheap (buffered); durable per the sync policy.
   * Returns false when the store is full (past maxBytes): the caller drops the event as `outbox_full`.
   * Throws only on misuse (not open, closed).
   */
  append(entry: OutboxEntry): boolean;
  /** The endpoint answered for this event (delivered, or failed for good): it is never recovered again. Idempotent; unknown keys are ignored. */
  settle(key: string): void;
  /**
   * Up to `max` unsettled entries that this instance has not handed out yet, oldest first:
   * recovered ones (and, for Redis, ones a dead instance left pending past the claim timeout),
   * then ones appended by this instance that the caller asked to be kept on disk only (see spill()).
   * Resolves [] when there are none.
   */
  take(max: number): Promise<OutboxEntry[]>;
  /**
   * Marks an appended entry as not held in memory by the caller any more (its memory queue was
   * full): take() will hand it out again later. (Directory: it stays on disk; Redis: it stays in the stream.)
   */
  spill(key: string): void;
  /** Makes everything appended so far durable now (fsync / Redis ack of the write). */
  sync(): Promise<void>;
  stats(): OutboxStats;
  /** Syncs, releases the lock / connection, clears every timer. Entries not settled stay for the next open(). Idempotent. */
  close(): Promise<void>;
}

/** What `stats().outbox` shows of a tracker's outbox. */
export interface OutboxTrackerStats {
  store: 'directory' | 'redis';
  /**
   * `'opening'` until the store is ready (events meanwhile wait in memory and are written once it
   * is), `'open'`, `'unavailable'` when it could not be opened (the log says why; delivery goes on
   * from memory only), `'closed'`.
   */
  state: 'opening' | 'open' | 'unavailable' | 'closed';
  /** Events in the outbox that no answer has settled yet (this instance's view). */
  persisted: number;
  /** Of this tracker's own events, those waiting on disk only (past `maxQueueSize`): counted in `queued`. */
  spilled: number;
  /** Found at start (left by an earlier run) and not yet taken into delivery. */
  recovered: number;
  /** Events taken into delivery that an earlier run or another instance left: counted in `enqueued`. */
  taken: number;
  /**
   * Events close() left in the outbox for the next run (or another instance) to send: still
   * counted in `queued`, since they still wait, in the outbox.
   */
  stored: number;
  /** Entries written to and read back from the store since start. */
  written: number;
  read: number;
  /** The same over about the last second. */
  writtenPerSecond: number;
  readPerSecond: number;
  /** Bytes on disk / in the stream (approximate for Redis). */
  bytes: number;
  /** Torn or damaged records skipped at recovery (directory). */
  corrupt: number;
  /** Appends refused because the store was full; each is a drop with reason `outbox_full`. */
  full: number;
  /** Entries gone from the store before they were settled (Redis trimmed or lost them). */
  lost: number;
}
