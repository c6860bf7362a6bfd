/**
 * The delivery engine: owns every event's fate from the moment it is accepted. A bounded wait,
 * a concurrency limit (p-queue), a timeout per attempt, retries with backoff, pauses for 429s,
 * a circuit for outages, the endpoint's per-IP limits, and exact accounting: at every moment
 * `enqueued = delivered + failed + dropped + queued + inFlight`.
 *
 * With an outbox (a store, see src/outbox/), every accepted event is written to it before it
 * waits, and settled in it once the endpoint has answered for it. Past `maxQueueSize` events wait
 * on disk only ("spilled": a small record stays here, the body does not) and are read back as room
 * frees up; events an earlier run left are read back too. A transient failure never gives an event
 * up: past `maxRetries` it waits `maxRetryDelay` and tries again. close() leaves what it could not
 * deliver in the store (`outbox.stored`, still counted as queued: it waits there).
 */
import { randomUUID } from 'node:crypto';
import PQueue from 'p-queue';
import { performance } from 'node:perf_hooks';
import { errorText, type Reporter } from '../logger.js';
import { createLimit, type AttemptSignal, type ConcurrencyLimit } from './adaptive-limit.js';
import { Emitter } from './events.js';
import { Fifo } from './fifo.js';
import { Ledger } from './ledger.js';
import { RateGuard } from './rate-guard.js';
import { backoffDelay, classifyStatus, type AttemptResult } from './retry-policy.js';
import type { DeadlineTransport, Transport } from './transport.js';
import type { PostTransport } from './lean-transport.js';
import type { OutboxEntry, OutboxStore, OutboxTrackerStats } from '../outbox/types.js';
import {
  ArrivalFlushes,
  emptyReasons,
  reportQueueFull,
  sum,
  type Delivery,
  type DropReason,
  type EventHeaders,
  type FailReason,
  type Outcome,
  type Settled,
  type TrackerStats,
} from './delivery.js';

export type { DropReason, FailReason, TrackerStats } from './delivery.js';

export interface EngineOptions {
  /** `{host}/e/{trackingCode}` */
  endpoint: string;
  /** A fixed limit of requests in flight, or `'auto'`: adapted between a floor and `maxConcurrency`. */
  concurrency: number | 'auto';
  /** The adaptive limit's ceiling. */
  maxConcurrency: number;
  maxQueueSize: number;
  timeoutMs: number;
  maxRetries: number;
  retryDelayMs: number;
  maxRetryDelayMs: number;
  visitorRateLimit: boolean;
  globalRateLimit: { limit: number; interval: number } | undefined;
  transport: Transport;
  reporter: Reporter;
  /** For tests: the jitter source. */
  random?: () => number;
  /** The durable outbox: the engine opens it, writes to it, and closes it after itself. */
  outbox?: EngineOutbox;
}

export interface EngineOutbox {
  store: OutboxStore;
  kind: OutboxTrackerStats['store'];
  /**
   * Called for each event read back from the store that this engine did not accept itself (an
   * earlier run's, another instance's; its key says whose): returns who hears its outcome.
   */
  admitted?: (key: string) => Settled | undefined;
  /** Hears that an event accepted here now waits in the store only (its caller may free its copy). */
  spilled?: (key: string) => void;
}

/** How often the engine reads back from the outbox while it has room (and Redis takes over). */
export const OUTBOX_TAKE_MS = 1000;
/**
 * An outbox that could not be opened is tried again after this long, then twice as long each
 * time up to {@link OUTBOX_REOPEN_MAX_MS}: a directory whose lock the process before this one
 * still holds in an overlapping deploy, or a Redis that starts after the app.
 */
export const OUTBOX_REOPEN_FIRST_MS = 1000;
export const OUTBOX_REOPEN_MAX_MS = 60_000;
/** At most this many entries read back at once. */
const TAKE_BATCH = 512;

/** Consecutive connection failures (refused, reset, timed out) that open the circuit. */
export const CIRCUIT_THRESHOLD = 5;
/** First pause of an open circuit; doubles with each failed probe up to the maximum. */
export const CIRCUIT_BASE_MS = 1000;
export const CIRCUIT_MAX_MS = 60_000;
/** An event that meets this many 429s fails (they do not use up its retries). */
export const MAX_THROTTLES = 10;

type JobState = 'queued' | 'retry_wait' | 'in_flight' | 'spilled' | 'settled';

interface Job {
  /** Order of arrival: flush() waits for the jobs that arrived before it. */
  seq: number;
  /** The Idempotency-Key: given, or made at the first attempt (a waiting event needs none). */
  id: string | undefined;
  /** The forwarded visitor headers, shared, never copied while the event waits. */
  headers: EventHeaders;
  /** Empty while spilled: the outbox has it. */
  body: string;
  state: JobState;
  retriesUsed: number;
  throttles: number;
  timer: NodeJS.Timeout | undefined;
  settled: Settled | undefined;
}

/**
 * A p-queue task that sends waiting events one after another, one in flight at a time, while the
 * queue runs, the limit leaves it room and events wait (see `pump`).
 */
interface Runner {
  /** The event in flight, and when its attempt started (performance.now()). */
  job: Job | undefined;
  started: number;
  /** Ends the task: p-queue frees its slot. */
  end: () => void;
  /** Goes on after an attempt through `run` (transports other than the built-in client). */
  resume: () => void;
}

const noop = () => undefined;
/** A spilled event's headers: the outbox has the real ones. */
const NO_HEADERS: EventHeaders = Object.freeze({}) as EventHeaders;
/** The outcome of every delivered event: one object, not one per event. */
const DELIVERED: Outcome = Object.freeze({ kind: 'delivered' });

export class DeliveryEngine implements Delivery {
  readonly events = new Emitter();
  private readonly queue: PQueue;
  /** Unsettled jobs by number, in order of arrival. */
  private readonly pending = new Ledger<Job>();
  private seq = 0;
  private readonly flushes = new ArrivalFlushes();
  private readonly shutdown = new AbortController();
  /** Events waiting for the queue: new ones, and retries (which go first). */
  private readonly backlog = new Fifo<Job>();
  private readonly retryBacklog = new Fifo<Job>();
  /** The controllers of the attempts in flight, so that close() can abort them. */
  private readonly attempts = new Set<AbortController>();
  private readonly guard: RateGuard | undefined;
  /** How many requests may be in flight: adaptive (`'auto'`) or fixed. */
  private readonly limit: ConcurrencyLimit;
  private readonly random: () => number;
  private closing: Promise<void> | undefined;
  /** The built-in client's `sendWithin`: a deadline instead of an AbortController per attempt. */
  private readonly sendWithin: DeadlineTransport['sendWithin'] | undefined;
  /** The built-in client, for `post`: the same, without a promise per attempt (runners use it). */
  private readonly postClient: PostTransport | undefined;
  /**
   * Whether p-queue runs runners (see `pump`) rather than one task per event. Not with
   * `globalRateLimit`: p-queue's interval cap counts tasks, so there each event stays a task.
   */
  private readonly runners: boolean;
  /** Runners started and not ended, idle ones included. */
  private active = 0;
  /** Runners with nothing to send (or paused), each holding its slot until an event comes. */
  private readonly idleRunners: Runner[] = [];

  private enqueued = 0;
  private delivered = 0;
  private retries = 0;
  private waiting = 0;
  private inFlight = 0;
  private readonly reasons = emptyReasons();
  private readonly failed = this.reasons.failed;
  private readonly dropped = this.reasons.dropped;

  /** Set while sending is paused because the endpoint answered 429. */
  private throttleTimer: NodeJS.Timeout | undefined;
  private circuit: 'closed' | 'open' | 'half_open' = 'closed';
  private connectionFailures = 0;
  private circuitOpenings = 0;
  private circuitTimer: NodeJS.Timeout | undefined;

  /** The outbox once it is open; undefined before, and for good when it could not be opened. */
  private store: OutboxStore | undefined;
  private storeState: OutboxTrackerStats['state'] = 'opening';
  private storeOpening: Promise<void> | undefined;
  /** Events waiting in the outbox only, by key: light jobs (no body, no headers). */
  private readonly spilledJobs = new Map<string, Job>();
  /** Whether the store may hold entries an earlier run left that were not read back yet. */
  private recoveredLeft = false;
  private taking = false;
  private takeTimer: NodeJS.Timeout | undefined;
  /** The next try at an outbox that could not be opened, and the wait before the one after. */
  private reopenTimer: NodeJS.Timeout | undefined;
  private reopenDelayMs = OUTBOX_REOPEN_FIRST_MS;
  private stored = 0;
  private taken = 0;
  /** Events past the memory bound that wait for the outbox to open (state `spilled`, body kept). */
  private parked = 0;
  private readonly rates = { at: 0, written: 0, read: 0, writtenPerSecond: 0, readPerSecond: 0 };

  constructor(private readonly options: EngineOptions) {
    const rate = options.globalRateLimit;
    this.limit = createLimit(options.concurrency, options.maxConcurrency);
    this.queue = new PQueue({
      concurrency: this.limit.current,
      ...(rate ? { intervalCap: rate.limit, interval: rate.interval } : {}),
    });
    this.guard = options.visitorRateLimit ? new RateGuard() : undefined;
    const transport = options.transport as Transport & Partial<PostTransport>;
    this.sendWithin =
      typeof transport.sendWithin === 'function' ? transport.sendWithin.bind(transport) : undefined;
    // Called as a method, not bound: a bound function is a call the optimiser cannot inline.
    this.postClient =
      this.sendWithin !== undefined && typeof transport.post === 'function'
        ? (transport as PostTransport)
        : undefined;
    this.runners = rate === undefined;
    this.random = options.random ?? Math.random;
    if (options.outbox) this.openOutbox(options.outbox);
  }

  /**
   * Takes a serialised event; `settled` hears its outcome once (possibly right away). `id` is
   * its Idempotency-Key when the caller has one (the worker's, stable across restarts).
   */
  submit(body: string, headers: EventHeaders, settled?: Settled, id?: string): void {
    this.enqueued++;
    if (this.closing) return this.dropNow('closed', settled);
    const ip = headers['x-forwarded-for'];
    if (this.guard && ip !== undefined && !this.guard.allow(ip)) {
      this.options.reporter.warn(
        'ZENOVAY_RATE_LIMITED',
        `a visitor IP passed the endpoint's limit (60 events per 10 s, 5,000 per hour); its events ` +
          'are dropped until the window ends, as the endpoint would refuse them.',
      );
      return this.dropNow('rate_limited', settled);
    }
    const store = this.store;
    const full = this.waiting >= this.options.maxQueueSize && !this.startsRightAway();
    // While the outbox opens, up to another maxQueueSize events wait for it in memory.
    const park = full && store === undefined && this.parked < this.parkRoom();
    if (full && store === undefined && !park) {
      this.reportQueueFull();
      return this.dropNow('queue_full', settled);
    }
    const job: Job = {
      seq: 0,
      id,
      headers,
      body,
      state: 'queued',
      retriesUsed: 0,
      throttles: 0,
      timer: undefined,
      settled,
    };
    if (store !== undefined) {
      const kept = this.keep(job, store);
      if (kept === 'full') {
        this.reportOutboxFull();
        return this.dropNow('outbox_full', settled);
      }
      if (full && kept === 'failed') {
        this.reportQueueFull();
        return this.dropNow('queue_full', settled);
      }
    }
    job.seq = ++this.seq;
    this.pending.add(job.seq, job);
    if (park) {
      job.id ??= randomUUID();
      job.state = 'spilled';
      this.spilledJobs.set(job.id, job);
      this.parked++;
      return;
    }
    // Past the memory bound, it waits in the outbox only, and is read back as room frees up.
    if (full) return this.spill(job, store!);
    this.waiting++;
    this.enqueue(job, 0);
  }

  /** How many events may wait for the outbox to open beyond the memory bound. */
  private parkRoom(): number {
    return this.options.outbox && this.storeState === 'opening' ? this.options.maxQueueSize : 0;
  }

  reject(reason: DropReason): void {
    this.enqueued++;
    this.dropNow(reason, undefined);
  }

  flush(): Promise<void> {
    if (this.pending.size === 0) return Promise.resolve();
    return this.flushes.wait(this.seq);
  }

  /**
   * Stops intake, delivers what is waiting and in flight (retries without waiting out their
   * backoff, one probe through an open circuit), and at `timeoutMs` drops what is left (reason
   * `closed`); then releases the transport's sockets and every timer. Idempotent.
   */
  close(timeoutMs: number): Promise<void> {
    this.closing ??= this.shutDown(timeoutMs);
    return this.closing;
  }

  stats(): TrackerStats {
    const stats: TrackerStats = {
      enqueued: this.enqueued,
      delivered: this.delivered,
      failed: sum(this.failed),
      dropped: sum(this.dropped),
      retries: this.retries,
      queued: this.waiting + this.spilledJobs.size + this.stored,
      inFlight: this.inFlight,
      reasons: { failed: { ...this.failed }, dropped: { ...this.dropped } },
      circuit: this.circuit,
      concurrency: this.limit.stats(),
    };
    if (this.options.outbox) stats.outbox = this.outboxStats(this.options.outbox);
    return stats;
  }

  /**
   * The store lost these events (a damaged record; Redis trimmed or lost them) while they waited
   * in it only: they are dropped, reason `outbox_lost`.
   */
  outboxLost(keys: string[]): void {
    for (const key of keys) {
      const job = this.spilledJobs.get(key);
      if (job !== undefined) this.settle(job, { kind: 'dropped', reason: 'outbox_lost' });
    }
  }

  /** Settles (never rejects) once the outbox is open or found unavailable; undefined without one. */
  get outboxOpened(): Promise<void> | undefined {
    return this.storeOpening;
  }

  /** The outbox's state, whether it is open (events are written to it). */
  get outboxState(): OutboxTrackerStats['state'] | undefined {
    return this.options.outbox ? this.storeState : undefined;
  }

  // ---- the life of a job -------------------------------------------------------------------

  /**
   * Waiting events stay in our own compact lists (retries first); p-queue is handed only as many
   * as it can start, so a full queue costs one small object per event and nothing more.
   */
  private enqueue(job: Job, priority: number): void {
    job.state = 'queued';
    this.limit.arrived();
    (priority > 0 ? this.retryBacklog : this.backlog).push(job);
    this.pump();
  }

  /**
   * Hands p-queue what it can start. With a global rate limit, one task per event. Otherwise
   * runners, one task per slot: each sends waiting events one after another (retries first),
   * one in flight at a time. With nothing to send, or while the queue is paused (a 429, an open
   * circuit), a runner waits idle, keeping its slot, and the next event wakes it; it ends when the
   * limit falls below the runners (p-queue's concurrency: the adaptive limit, one probe while
   * the circuit is half open), and at close. p-queue still decides how many run, but its cost per
   * task (a promise, an id, a record, events) is paid per runner, not per event, and the built-in
   * client answers a runner by callback (`post`), not by a promise. In `bench/request-cost.mjs`
   * (5,000 pageviews/s) the delivery worker's CPU per event went from about 70 µs with a task per
   * event to about 50 µs; runners that ended whenever nothing waited, instead of waiting idle,
   * were restarted for nearly every event at the limit this load reaches, at about 62 µs.
   */
  private pump(): void {
    const q = this.queue;
    if (this.runners) {
      while (!q.isPaused && this.backlog.length + this.retryBacklog.length > 0) {
        const runner = this.idleRunners.pop();
        if (runner !== undefined) this.next(runner);
        // The queue's own promise is not used: a cleared runner would leave it pending forever.
        else if (this.active + q.size < q.concurrency) q.add(this.startRunner).catch(noop);
        else return;
      }
      return;
    }
    while (q.size < q.concurrency) {
      const job = this.nextJob();
      if (job === undefined) return;
      q.add(() => this.run(job)).catch(noop);
    }
  }

  /** The next event to send, retries first; undefined when none waits. */
  private nextJob(): Job | undefined {
    for (;;) {
      const job = this.retryBacklog.shift() ?? this.backlog.shift();
      if (job === undefined || job.state === 'queued') return job;
      // Settled while it waited (close): skipped.
    }
  }

  /** A runner's task (see `pump`): resolves when the runner ends. */
  private readonly startRunner = (): Promise<void> =>
    new Promise<void>((end) => {
      // Started late by p-queue, after a cut of the limit: not needed any more.
      if (this.active >= this.queue.concurrency) return end();
      this.active++;
      const runner: Runner = {
        job: undefined,
        started: 0,
        end,
        resume: () => this.next(runner),
      };
      this.next(runner);
    });

  /** Starts the runner's next attempt; or the runner waits idle, or ends (see `pump`). */
  private next(runner: Runner): void {
    const q = this.queue;
    runner.job = undefined;
    if (this.active > q.concurrency) return this.endRunner(runner);
    const job = q.isPaused ? undefined : this.nextJob();
    if (job === undefined) {
      // Closing, nothing new comes but retries, which start runners of their own.
      if (this.closing && !q.isPaused) return this.endRunner(runner);
      this.idleRunners.push(runner);
      return;
    }
    runner.job = job;
    const client = this.postClient;
    if (client === undefined) {
      void this.run(job).then(runner.resume, runner.resume);
      return;
    }
    this.begin(job);
    runner.started = performance.now();
    // The built-in client keeps the deadline itself, and close() ends what is in flight.
    client.post(
      this.options.endpoint,
      job.headers,
      job.id!,
      job.body,
      this.options.timeoutMs,
      this.answered,
      runner,
    );
  }

  /** Ends a runner: p-queue frees its slot. */
  private endRunner(runner: Runner): void {
    this.active--;
    runner.end();
  }

  /** Ends idle runners beyond the limit (all of them at close): their slots go back. */
  private trimRunners(limit: number): void {
    while (this.active > limit && this.idleRunners.length > 0) {
      this.endRunner(this.idleRunners.pop()!);
    }
  }

  /** The built-in client's answer to a runner's attempt (see `next`). */
  private readonly answered = (
    runner: Runner,
    error: unknown,
    status: number,
    retryAfter: string | undefined,
    body: string,
  ): void => {
    const job = runner.job!;
    try {
      if (error === undefined) {
        const result = classifyStatus(status, retryAfter);
        this.finish(job, result, body.slice(0, 200), runner.started);
      } else {
        this.finish(job, this.classifyError(error), '', runner.started);
      }
    } catch {
      // As a task's rejection would be: the runner goes on.
    }
    this.next(runner);
  };

  /** An event leaves the wait for the wire. */
  private begin(job: Job): void {
    job.state = 'in_flight';
    job.id ??= randomUUID();
    this.waiting--;
    this.inFlight++;
  }

  private startsRightAway(): boolean {
    const q = this.queue;
    return (
      !q.isPaused &&
      q.size === 0 &&
      this.backlog.length === 0 &&
      this.retryBacklog.length === 0 &&
      (this.runners ? this.active - this.idleRunners.length : q.pending) < q.concurrency &&
      !q.isRateLimited
    );
  }

  /**
   * One attempt, as a promise: a task of its own (globalRateLimit), or a runner's attempt on a
   * transport without `post`.
   */
  private async run(job: Job): Promise<void> {
    if (job.state !== 'queued') return; // settled while it waited (close)
    this.begin(job);
    let result: AttemptResult;
    let snippet = '';
    const request = {
      url: this.options.endpoint,
      headers: { ...job.headers, 'idempotency-key': job.id! },
      body: job.body,
    };
    const within = this.sendWithin;
    const started = performance.now();
    if (within !== undefined) {
      // The built-in client keeps the deadline itself, and close() ends what is in flight.
      try {
        const response = await within(request, this.options.timeoutMs);
        snippet = (response.body ?? '').slice(0, 200);
        result = classifyStatus(response.status, response.retryAfter);
      } catch (error) {
        result = this.classifyError(error);
      }
      this.finish(job, result, snippet, started);
      return;
    }
    // One controller per attempt, aborted by its own timer or by close(): AbortSignal.timeout()
    // combined with AbortSignal.any() can be collected before it fires on Node 20.
    const controller = new AbortController();
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      controller.abort();
    }, this.options.timeoutMs);
    this.attempts.add(controller);
    try {
      const response = await untilAborted(
        this.options.transport.send(request, controller.signal),
        controller.signal,
      );
      snippet = (response.body ?? '').slice(0, 200);
      result = classifyStatus(response.status, response.retryAfter);
    } catch (error) {
      result = timedOut ? { kind: 'timeout' } : this.classifyError(error);
    } finally {
      clearTimeout(timer);
      this.attempts.delete(controller);
    }
    this.finish(job, result, snippet, started);
  }

  private finish(job: Job, result: AttemptResult, snippet: string, started: number): void {
    this.inFlight--;
    if (this.shutdown.signal.aborted && result.kind !== 'delivered') {
      this.settle(job, this.leftover());
    } else {
      this.adjustLimit(result, started);
      this.handle(job, result, snippet);
    }
    this.pump();
    if (this.spilledJobs.size > 0 || this.recoveredLeft) this.refill();
  }

  /** Tells the in-flight limit how the attempt went; applies a new limit at once. */
  private adjustLimit(result: AttemptResult, started: number): void {
    const now = performance.now();
    const q = this.queue;
    // Events waiting for a slot: with runners, p-queue holds runners, not events.
    const waiting = this.backlog.length + this.retryBacklog.length + (this.runners ? 0 : q.size);
    if (this.limit.sample(now, now - started, signalOf(result), waiting, this.inFlight)) {
      if (this.circuit !== 'half_open') {
        q.concurrency = this.limit.current;
        this.trimRunners(q.concurrency);
      }
    }
  }

  private handle(job: Job, result: AttemptResult, snippet: string): void {
    const body = snippet ? ` (${snippet})` : '';
    switch (result.kind) {
      case 'delivered':
        this.connectionSucceeded();
        this.settle(job, DELIVERED);
        return;
      case 'permanent': {
        this.connectionSucceeded();
        const hint =
          result.status === 404
            ? ' A 404 most likely means the tracking code is wrong: check `trackingCode` / ZENOVAY_TRACKING_CODE.'
            : '';
        const message = `the tracking endpoint refused an event with ${result.status}${body}.${hint}`;
        this.options.reporter.error(`ZENOVAY_HTTP_${result.status}`, message);
        this.settle(job, { kind: 'failed', reason: 'rejected', status: result.status, message });
        return;
      }
      case 'throttled': {
        this.connectionSucceeded();
        job.throttles++;
        const message = `the tracking endpoint answered 429 (too many requests)${body}.`;
        if (job.throttles >= MAX_THROTTLES && !this.store) {
          this.options.reporter.warn(
            'ZENOVAY_HTTP_429',
            `${message} An event met it ${MAX_THROTTLES} times and was given up.`,
          );
          this.settle(job, { kind: 'failed', reason: 'rate_limited', status: 429, message });
          return;
        }
        const pauseMs =
          result.retryAfterMs ??
          backoffDelay(
            job.throttles - 1,
            this.options.retryDelayMs,
            this.options.maxRetryDelayMs,
            this.random,
          );
        this.options.reporter.warn(
          'ZENOVAY_HTTP_429',
          `${message} Sending pauses for ${pauseMs} ms.`,
        );
        this.pauseForThrottle(pauseMs);
        this.requeue(job, 0, 'rate_limited');
        return;
      }
      case 'server_error': {
        const message = `the tracking endpoint answered ${result.status}${body}.`;
        this.options.reporter.warn(`ZENOVAY_HTTP_${result.status}`, message);
        this.retryOrFail(job, 'server_error', message, result.status);
        return;
      }
      case 'timeout': {
        this.connectionFailed();
        const message = `the tracking endpoint did not answer within ${this.options.timeoutMs} ms.`;
        this.options.reporter.warn('ZENOVAY_TIMEOUT', message);
        this.retryOrFail(job, 'timeout', message);
        return;
      }
      case 'network': {
        this.connectionFailed();
        const message = `could not reach the tracking endpoint ${this.options.endpoint}: ${result.message}`;
        this.options.reporter.warn('ZENOVAY_NETWORK', message);
        this.retryOrFail(job, 'network', message);
      }
    }
  }

  private retryOrFail(job: Job, reason: FailReason, message: string, status?: number): void {
    if (job.retriesUsed >= this.options.maxRetries) {
      if (this.store === undefined) {
        this.settle(job, { kind: 'failed', reason, message, ...(status ? { status } : {}) });
      } else if (this.closing) {
        this.settle(job, { kind: 'stored' });
      } else {
        // The outbox keeps it: it is never given up for a failure that may pass, only slowed.
        const max = this.options.maxRetryDelayMs;
        this.requeue(job, Math.floor(max / 2 + (this.random() * max) / 2), reason);
      }
      return;
    }
    const delay = this.closing
      ? 0
      : backoffDelay(
          job.retriesUsed,
          this.options.retryDelayMs,
          this.options.maxRetryDelayMs,
          this.random,
        );
    job.retriesUsed++;
    this.requeue(job, delay, reason);
  }

  /** Puts a job back to wait (after `delay` ms), within the queue's bound. */
  private requeue(job: Job, delay: number, reason: FailReason): void {
    if (this.waiting >= this.options.maxQueueSize) {
      if (this.store !== undefined && job.id !== undefined) {
        if (this.closing) this.settle(job, { kind: 'stored' });
        else this.spill(job, this.store);
        return;
      }
      this.reportQueueFull();
      this.settle(job, { kind: 'dropped', reason: 'queue_full' });
      return;
    }
    this.retries++;
    this.waiting++;
    this.events.emit('retry', {
      reason,
      attempt: job.retriesUsed + job.throttles + 1,
      delayMs: delay,
      id: job.id ?? '',
    });
    if (delay <= 0) {
      this.enqueue(job, 1);
      return;
    }
    job.state = 'retry_wait';
    job.timer = setTimeout(() => {
      job.timer = undefined;
      this.enqueue(job, 1);
    }, delay);
  }

  private classifyError(error: unknown): AttemptResult {
    const name = (error as { name?: string } | null)?.name;
    if (name === 'TimeoutError') return { kind: 'timeout' };
    const message = (error as { message?: string } | null)?.message ?? String(error);
    return { kind: 'network', message };
  }

  private dropNow(reason: DropReason, settled: Settled | undefined): void {
    this.dropped[reason]++;
    this.events.emit('drop', { reason });
    settled?.({ kind: 'dropped', reason });
  }

  private settle(job: Job, outcome: Outcome): void {
    if (job.state === 'settled') return;
    if (job.state === 'spilled') this.spilledJobs.delete(job.id!);
    job.state = 'settled';
    this.pending.take(job.seq);
    // The endpoint has answered for it: the outbox forgets it (a `stored` one stays there).
    if (this.store !== undefined && job.id !== undefined && outcome.kind !== 'stored') {
      this.store.settle(job.id);
    }
    if (outcome.kind === 'delivered') {
      this.delivered++;
    } else if (outcome.kind === 'stored') {
      this.stored++;
    } else if (outcome.kind === 'failed') {
      this.failed[outcome.reason]++;
      this.events.emit('error', {
        reason: outcome.reason,
        message: outcome.message,
        id: job.id ?? '',
        ...(outcome.status ? { status: outcome.status } : {}),
      });
    } else {
      this.dropped[outcome.reason]++;
      this.events.emit('drop', { reason: outcome.reason, id: job.id });
    }
    if (this.flushes.any) this.flushes.release(this.pending.first());
    try {
      job.settled?.(outcome);
    } catch {
      // The caller's bookkeeping must not break the engine's.
    }
  }

  private reportQueueFull(): void {
    reportQueueFull(this.options.reporter, this.options.maxQueueSize);
  }

  private reportOutboxFull(): void {
    this.options.reporter.warn(
      'ZENOVAY_OUTBOX_FULL',
      'the outbox is full (past its maxBytes / maxLength, or it cannot write): new events are ' +
        'dropped (reason `outbox_full`) until events in it are delivered.',
    );
  }

  /** How an event still here at the close timeout ends: kept in the outbox, or dropped. */
  private leftover(): Outcome {
    return this.store ? { kind: 'stored' } : { kind: 'dropped', reason: 'closed' };
  }

  // ---- the outbox -------------------------------------------------------------------------

  private openOutbox(outbox: EngineOutbox): void {
    this.storeOpening = outbox.store.open().then(
      () => {
        if (this.storeState === 'unavailable') {
          this.options.reporter.info(
            'ZENOVAY_OUTBOX_OPEN',
            'the outbox could be opened on a later try: events are kept in it again, and what ' +
              'waited in memory meanwhile is written to it now.',
          );
        }
        this.store = outbox.store;
        this.storeState = 'open';
        this.parked = 0;
        // What was accepted while it opened is written now; what waited past the bound for it
        // goes to the outbox only.
        for (const [, job] of this.pending.entries()) {
          if (job.state === 'settled') continue;
          const kept = this.keep(job, outbox.store);
          if (job.state !== 'spilled') continue;
          if (kept === 'kept') this.spill(job, outbox.store);
          else
            this.settle(job, {
              kind: 'dropped',
              reason: kept === 'full' ? 'outbox_full' : 'queue_full',
            });
        }
        this.recoveredLeft = outbox.store.stats().recovered > 0;
        if (!this.closing) {
          this.takeTimer = setInterval(() => this.refill(), OUTBOX_TAKE_MS);
          this.takeTimer.unref();
        }
        this.refill();
      },
      (error: unknown) => {
        if (this.storeState === 'unavailable') {
          // A later try: said once already.
          this.options.reporter.debug(
            `the outbox could not be opened again: ${sentence(errorText(error))}`,
          );
        } else {
          this.storeState = 'unavailable';
          this.parked = 0;
          for (const [, job] of this.pending.entries()) {
            if (job.state === 'spilled') {
              this.reportQueueFull();
              this.settle(job, { kind: 'dropped', reason: 'queue_full' });
            }
          }
          this.options.reporter.error(
            'ZENOVAY_OUTBOX_UNAVAILABLE',
            `the outbox could not be opened: ${sentence(errorText(error))} Events are kept in memory only ` +
              '(as without an outbox) until it can be: it is tried again after 1 s, then twice as long ' +
              'each time, at most every minute.',
          );
        }
        if (this.closing) return;
        this.reopenTimer = setTimeout(() => {
          this.reopenTimer = undefined;
          if (!this.closing) this.openOutbox(outbox);
        }, this.reopenDelayMs);
        this.reopenTimer.unref();
        this.reopenDelayMs = Math.min(this.reopenDelayMs * 2, OUTBOX_REOPEN_MAX_MS);
      },
    );
  }

  /** Writes a job to the outbox; `'failed'` when the store refused it for a reason other than room. */
  private keep(job: Job, store: OutboxStore): 'kept' | 'full' | 'failed' {
    job.id ??= randomUUID();
    const entry: OutboxEntry = {
      key: job.id,
      body: job.body,
      headers: job.headers,
      acceptedAt: Date.now(),
    };
    try {
      return store.append(entry) ? 'kept' : 'full';
    } catch (error) {
      this.options.reporter.error(
        'ZENOVAY_OUTBOX_ERROR',
        `the outbox refused an event: ${sentence(errorText(error))} It is kept in memory only.`,
      );
      return 'failed';
    }
  }

  /** Leaves a job to the outbox only: it keeps its place in the accounts, not its body. */
  private spill(job: Job, store: OutboxStore): void {
    job.state = 'spilled';
    job.body = '';
    job.headers = NO_HEADERS;
    store.spill(job.id!);
    this.spilledJobs.set(job.id!, job);
    this.options.outbox?.spilled?.(job.id!);
  }

  /**
   * Reads events back from the outbox while there is room in memory. While closing, only for
   * this tracker's own events that wait there (close() delivers those it can): what others left
   * stays for the next run.
   */
  private refill(): void {
    const store = this.store;
    if (store === undefined || this.taking || this.shutdown.signal.aborted) return;
    if (this.closing && this.spilledJobs.size === 0) return;
    // Room for at least one, even with `maxQueueSize: 0` (everything would wait on disk for good).
    const bound = Math.max(1, this.options.maxQueueSize);
    const room = bound - this.waiting;
    // Read back in batches, not one event at a time: wait for room for a good part of one.
    if (room <= 0 || room < Math.min(64, Math.ceil(bound / 4))) return;
    const max = Math.min(TAKE_BATCH, room);
    this.taking = true;
    store.take(max).then(
      (entries) => {
        this.taking = false;
        for (const entry of entries) this.admit(entry);
        if (entries.length < max) this.recoveredLeft = false;
        this.pump();
        if (entries.length === max) this.refill();
      },
      (error: unknown) => {
        this.taking = false;
        if (this.shutdown.signal.aborted) return;
        this.options.reporter.warn(
          'ZENOVAY_OUTBOX_ERROR',
          `reading events back from the outbox failed: ${sentence(errorText(error))} It is tried again.`,
        );
      },
    );
  }

  /** An event read back from the outbox: one of ours that waited there, or one left by others. */
  private admit(entry: OutboxEntry): void {
    if (this.shutdown.signal.aborted) return; // it stays in the outbox for the next run
    const own = this.spilledJobs.get(entry.key);
    if (own === undefined && this.closing) return; // another run's: it stays for the next one
    if (own !== undefined) {
      this.spilledJobs.delete(entry.key);
      own.body = entry.body;
      own.headers = entry.headers;
      this.waiting++;
      this.enqueue(own, 0);
      return;
    }
    this.enqueued++;
    this.taken++;
    const settled = this.options.outbox?.admitted?.(entry.key);
    const job: Job = {
      seq: ++this.seq,
      id: entry.key,
      headers: entry.headers,
      body: entry.body,
      state: 'queued',
      retriesUsed: 0,
      throttles: 0,
      timer: undefined,
      settled,
    };
    this.pending.add(job.seq, job);
    this.waiting++;
    // Older than anything accepted since: it goes first.
    this.enqueue(job, 1);
  }

  private outboxStats(outbox: EngineOutbox): OutboxTrackerStats {
    const s = outbox.store.stats();
    const now = performance.now();
    const rates = this.rates;
    const elapsed = now - rates.at;
    if (elapsed >= 1000) {
      if (rates.at > 0) {
        rates.writtenPerSecond = Math.round(((s.written - rates.written) * 1000) / elapsed);
        rates.readPerSecond = Math.round(((s.read - rates.read) * 1000) / elapsed);
      }
      rates.at = now;
      rates.written = s.written;
      rates.read = s.read;
    }
    return {
      store: outbox.kind,
      state: this.storeState,
      persisted: s.persisted,
      spilled: this.spilledJobs.size,
      recovered: s.recovered,
      taken: this.taken,
      stored: this.stored,
      written: s.written,
      read: s.read,
      writtenPerSecond: rates.writtenPerSecond,
      readPerSecond: rates.readPerSecond,
      bytes: s.bytes,
      corrupt: s.corrupt,
      full: s.full,
      lost: s.lost ?? 0,
    };
  }

  // ---- pauses: 429s and the circuit -------------------------------------------------------

  private pauseForThrottle(ms: number): void {
    if (this.throttleTimer) clearTimeout(this.throttleTimer);
    this.throttleTimer = setTimeout(() => {
      this.throttleTimer = undefined;
      this.updateGate();
    }, ms);
    this.updateGate();
  }

  private connectionFailed(): void {
    this.connectionFailures++;
    if (
      this.circuit === 'half_open' ||
      (this.circuit === 'closed' && this.connectionFailures >= CIRCUIT_THRESHOLD)
    ) {
      this.openCircuit();
    }
  }

  private connectionSucceeded(): void {
    this.connectionFailures = 0;
    if (this.circuit === 'closed') return;
    this.circuit = 'closed';
    this.circuitOpenings = 0;
    if (this.circuitTimer) clearTimeout(this.circuitTimer);
    this.circuitTimer = undefined;
    this.options.reporter.info(
      'ZENOVAY_CIRCUIT_CLOSED',
      'the tracking endpoint answers again; sending resumed.',
    );
    this.events.emit('circuit', { state: 'closed', failures: 0 });
    this.updateGate();
  }

  private openCircuit(): void {
    const retryInMs = this.closing
      ? 0
      : Math.min(CIRCUIT_MAX_MS, CIRCUIT_BASE_MS * 2 ** this.circuitOpenings);
    this.circuitOpenings++;
    const wasClosed = this.circuit === 'closed';
    this.circuit = 'open';
    if (wasClosed) {
      this.options.reporter.warn(
        'ZENOVAY_CIRCUIT_OPEN',
        `${this.connectionFailures} attempts in a row could not reach the tracking endpoint; sending ` +
          `pauses and probes again with backoff. Events wait in the queue (up to maxQueueSize).`,
      );
      this.events.emit('circuit', { state: 'open', failures: this.connectionFailures, retryInMs });
    }
    if (this.circuitTimer) clearTimeout(this.circuitTimer);
    this.circuitTimer = setTimeout(() => {
      this.circuitTimer = undefined;
      this.circuit = 'half_open';
      this.updateGate();
    }, retryInMs);
    this.updateGate();
  }

  /** Pauses or runs the queue, with one request at a time while the circuit probes. */
  private updateGate(): void {
    const paused = this.throttleTimer !== undefined || this.circuit === 'open';
    const concurrency = this.circuit === 'half_open' ? 1 : this.limit.current;
    if (this.queue.concurrency !== concurrency) this.queue.concurrency = concurrency;
    this.trimRunners(concurrency);
    if (paused) this.queue.pause();
    else this.queue.start();
    this.pump();
  }

  // ---- shutdown ---------------------------------------------------------------------------

  private async shutDown(timeoutMs: number): Promise<void> {
    // Last chance: retries go now, and an open circuit gets its probe.
    for (const [, job] of this.pending.entries()) {
      if (job.state === 'retry_wait') {
        clearTimeout(job.timer);
        job.timer = undefined;
        this.enqueue(job, 1);
      }
    }
    if (this.circuit === 'open') {
      if (this.circuitTimer) clearTimeout(this.circuitTimer);
      this.circuitTimer = undefined;
      this.circuit = 'half_open';
      this.updateGate();
    }

    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(resolve, timeoutMs, 'timeout');
    });
    const result = await Promise.race([this.flush().then(() => 'drained' as const), timedOut]);
    clearTimeout(timer);
    if (result === 'timeout') {
      this.queue.clear();
      this.backlog.clear();
      this.retryBacklog.clear();
      const leftover = this.leftover();
      for (const [, job] of this.pending.entries()) {
        if (job.state === 'queued' || job.state === 'retry_wait') {
          clearTimeout(job.timer);
          this.waiting--;
          this.settle(job, leftover);
        } else if (job.state === 'spilled') {
          this.settle(job, leftover);
        }
      }
      this.shutdown.abort();
      for (const controller of this.attempts) controller.abort();
      // The built-in client has no controllers to abort: closing it ends its requests.
      if (this.sendWithin !== undefined) await this.options.transport.close?.();
      await this.flush();
    }
    if (this.throttleTimer) clearTimeout(this.throttleTimer);
    if (this.circuitTimer) clearTimeout(this.circuitTimer);
    this.throttleTimer = undefined;
    this.circuitTimer = undefined;
    this.trimRunners(0);
    await this.options.transport.close?.();
    await this.closeOutbox();
  }

  /** After the engine: what is not settled stays in the store for the next open. */
  private async closeOutbox(): Promise<void> {
    const outbox = this.options.outbox;
    if (outbox === undefined) return;
    clearTimeout(this.reopenTimer);
    this.reopenTimer = undefined;
    await this.storeOpening;
    clearInterval(this.takeTimer);
    this.takeTimer = undefined;
    if (this.store === undefined) return;
    try {
      await this.store.close();
    } catch (error) {
      this.options.reporter.error(
        'ZENOVAY_OUTBOX_ERROR',
        `closing the outbox failed: ${sentence(errorText(error))}`,
      );
    }
    this.storeState = 'closed';
  }
}

/** Text that ends a sentence. */
function sentence(text: string): string {
  return /[.!?]$/.test(text) ? text : `${text}.`;
}

/** What an attempt's result says about the endpoint's load. */
function signalOf(result: AttemptResult): AttemptSignal {
  switch (result.kind) {
    case 'delivered':
    case 'permanent':
      return 'ok';
    case 'throttled':
      return 'throttled';
    default:
      return 'overload';
  }
}

/**
 * The transport's answer, or a rejection as soon as `signal` aborts: a transport that ignores its
 * signal cannot hold an attempt (or close()) past the timeout.
 */
function untilAborted<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(new Error('aborted'));
    signal.addEventListener('abort', onAbort, { once: true });
    Promise.resolve(promise).then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(error);
      },
    );
  });
}
