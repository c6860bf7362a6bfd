/**
 * What the tracker needs from delivery, whichever thread it runs on: the in-thread engine
 * (`engine.ts`) and the worker-thread client (`worker-delivery.ts`) both implement it.
 */
import type { Reporter } from '../logger.js';
import type { ConcurrencyStats } from './adaptive-limit.js';
import type { Emitter } from './events.js';
import type { OutboxTrackerStats } from '../outbox/types.js';

/** Why an event was given up after trying. */
export type FailReason = 'rejected' | 'server_error' | 'timeout' | 'network' | 'rate_limited';
/** Why an event was never sent. */
export type DropReason =
  'queue_full' | 'rate_limited' | 'closed' | 'invalid' | 'outbox_full' | 'outbox_lost';

/** Counters of a tracker. */
export interface TrackerStats {
  /** Every event handed to the tracker (invalid ones included). */
  enqueued: number;
  /** Answered 2xx by the endpoint. */
  delivered: number;
  /** Given up after trying: see `reasons.failed`. */
  failed: number;
  /** Never sent: see `reasons.dropped`. */
  dropped: number;
  /** Attempts beyond the first. */
  retries: number;
  /**
   * Waiting: for a free connection, a retry's backoff, or the end of a pause; with an outbox also
   * in it (past `maxQueueSize`, and what close() left there for the next run: `outbox.stored`).
   */
  queued: number;
  /** Being sent right now. */
  inFlight: number;
  /** What `failed` and `dropped` are made of. */
  reasons: {
    failed: Record<FailReason, number>;
    dropped: Record<DropReason, number>;
  };
  /** `'open'` while sending is paused because the endpoint is unreachable. */
  circuit: 'closed' | 'open' | 'half_open';
  /** The in-flight limit now, and the endpoint's latency as delivery sees it. */
  concurrency: ConcurrencyStats;
  /** The durable outbox, when the tracker has one (the `outbox` option). */
  outbox?: OutboxTrackerStats;
}

/** How an event ended. */
export type Outcome =
  | { kind: 'delivered' }
  | { kind: 'failed'; reason: FailReason; status?: number; message: string }
  | { kind: 'dropped'; reason: DropReason }
  /** Not sent by this process, kept in the outbox for the next one (close() with an outbox). */
  | { kind: 'stored' };

/** Hears an event's outcome, once. */
export type Settled = (outcome: Outcome) => void;

/** The forwarded visitor headers of one event (`content-type` included). */
export type EventHeaders = Record<string, string>;

export interface Delivery {
  readonly events: Emitter;
  /** Takes a serialised event; `settled` hears its outcome once. Never throws. */
  submit(body: string, headers: EventHeaders, settled?: Settled): void;
  /** Counts an event refused before it reached delivery (bad input): enqueued and dropped. */
  reject(reason: DropReason): void;
  /** Resolves when every event submitted before the call is settled. Never rejects. */
  flush(): Promise<void>;
  /** Stops intake, delivers what it can within `timeoutMs`, drops the rest, frees everything. */
  close(timeoutMs: number): Promise<void>;
  /** `enqueued = delivered + failed + dropped + queued + inFlight` at every moment. */
  stats(): TrackerStats;
}

/** The longest delay setTimeout honours (about 24.8 days); past it, it fires at once. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

export const FAIL_REASONS: readonly FailReason[] = [
  'rejected',
  'server_error',
  'timeout',
  'network',
  'rate_limited',
];
export const DROP_REASONS: readonly DropReason[] = [
  'queue_full',
  'rate_limited',
  'closed',
  'invalid',
  'outbox_full',
  'outbox_lost',
];

/**
 * flush() by order of arrival: each call waits for every event numbered up to the last one
 * handed over before it. Both deliveries number their events and keep the unsettled in order.
 */
export class ArrivalFlushes {
  private waiting: { seq: number; resolve: () => void }[] = [];

  /** Whether any flush() waits: callers skip finding the oldest open event when none does. */
  get any(): boolean {
    return this.waiting.length > 0;
  }

  /** Resolves once `release` is told that nothing up to `seq` is left. */
  wait(seq: number): Promise<void> {
    return new Promise<void>((resolve) => this.waiting.push({ seq, resolve }));
  }

  /** Call when an event settles; `firstUnsettled` is the oldest number still open (or undefined). */
  release(firstUnsettled: number | undefined): void {
    const first = firstUnsettled ?? Infinity;
    let released = 0;
    while (released < this.waiting.length && this.waiting[released]!.seq < first) {
      this.waiting[released++]!.resolve();
    }
    if (released > 0) this.waiting = this.waiting.slice(released);
  }
}

/** The warning when `maxQueueSize` events already wait, from either delivery. */
export function reportQueueFull(reporter: Reporter, maxQueueSize: number): void {
  reporter.warn(
    'ZENOVAY_QUEUE_FULL',
    `${maxQueueSize} events are already waiting to be sent; new events are dropped until ` +
      'the queue drains. The endpoint may be slow or unreachable; raise `maxQueueSize` (or `maxConcurrency`) if it is not.',
  );
}

export function emptyReasons(): TrackerStats['reasons'] {
  return {
    failed: { rejected: 0, server_error: 0, timeout: 0, network: 0, rate_limited: 0 },
    dropped: {
      queue_full: 0,
      rate_limited: 0,
      closed: 0,
      invalid: 0,
      outbox_full: 0,
      outbox_lost: 0,
    },
  };
}

export function sum(counts: Record<string, number>): number {
  let total = 0;
  for (const key in counts) total += counts[key]!;
  return total;
}
