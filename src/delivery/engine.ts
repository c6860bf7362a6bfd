/**
 * The delivery engine: owns every event's fate from the moment it is accepted. A bounded wait,
 * a concurrency limit (p-queue), a timeout per request, and exact accounting: at every moment
 * `enqueued = delivered + failed + dropped + queued + inFlight`.
 */
import PQueue from 'p-queue';
import type { Reporter } from '../logger.js';
import type { Transport, TransportResponse } from './transport.js';

/** Why an event was given up after trying. */
export type FailReason = 'rejected' | 'server_error' | 'timeout' | 'network';
/** Why an event was never sent. */
export type DropReason = 'queue_full' | 'closed' | 'invalid';

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
  /** Waiting for a free connection. */
  queued: number;
  /** Being sent right now. */
  inFlight: number;
  /** What `failed` and `dropped` are made of. */
  reasons: {
    failed: Record<FailReason, number>;
    dropped: Record<DropReason, number>;
  };
}

export interface EngineOptions {
  endpoint: string;
  concurrency: number;
  maxQueueSize: number;
  timeoutMs: number;
  transport: Transport;
  reporter: Reporter;
}

interface Job {
  headers: Record<string, string>;
  body: string;
  started: boolean;
  resolve: (delivered: boolean) => void;
  done: Promise<boolean>;
}

type Outcome =
  | { kind: 'delivered' }
  | { kind: 'failed'; reason: FailReason }
  | { kind: 'dropped'; reason: DropReason };

export class DeliveryEngine {
  private readonly queue: PQueue;
  private readonly pending = new Set<Job>();
  private readonly shutdown = new AbortController();
  private closing: Promise<void> | undefined;

  private enqueued = 0;
  private delivered = 0;
  private retries = 0;
  private waiting = 0;
  private inFlight = 0;
  private readonly failed: Record<FailReason, number> = {
    rejected: 0,
    server_error: 0,
    timeout: 0,
    network: 0,
  };
  private readonly dropped: Record<DropReason, number> = { queue_full: 0, closed: 0, invalid: 0 };

  constructor(private readonly options: EngineOptions) {
    this.queue = new PQueue({ concurrency: options.concurrency });
  }

  /** True once `close()` was called: new events are dropped. */
  get closed(): boolean {
    return this.closing !== undefined;
  }

  /** Accepts a serialised event. Never rejects: true once the endpoint answered 2xx. */
  submit(body: string, headers: Record<string, string>): Promise<boolean> {
    this.enqueued++;
    if (this.closing) return this.settleNow({ kind: 'dropped', reason: 'closed' });
    const { maxQueueSize, concurrency } = this.options;
    if (this.waiting >= maxQueueSize && this.waiting + this.inFlight >= concurrency) {
      this.options.reporter.warn(
        'ZENOVAY_QUEUE_FULL',
        `${maxQueueSize} events are already waiting to be sent; new events are dropped until the ` +
          'queue drains. The endpoint may be slow or unreachable; raise `maxQueueSize` or `concurrency` if it is not.',
      );
      return this.settleNow({ kind: 'dropped', reason: 'queue_full' });
    }

    let resolve!: (delivered: boolean) => void;
    const done = new Promise<boolean>((r) => (resolve = r));
    const job: Job = { headers, body, started: false, resolve, done };
    this.pending.add(job);
    this.waiting++;
    // The queue's own promise is not used: a cleared job would leave it pending forever.
    this.queue.add(() => this.run(job)).catch(() => undefined);
    return done;
  }

  /** Counts an event that never reached the queue (bad input): enqueued and dropped at once. */
  reject(reason: DropReason): Promise<boolean> {
    this.enqueued++;
    return this.settleNow({ kind: 'dropped', reason });
  }

  /** Resolves when every event accepted before the call is settled. Never rejects. */
  async flush(): Promise<void> {
    await Promise.all(Array.from(this.pending, (job) => job.done));
  }

  /**
   * Stops intake, delivers what is waiting and in flight, and at `timeoutMs` drops what is left
   * (reason `closed`); then releases the transport's sockets. Idempotent.
   */
  close(timeoutMs: number): Promise<void> {
    this.closing ??= this.shutDown(timeoutMs);
    return this.closing;
  }

  stats(): TrackerStats {
    const failed = sum(this.failed);
    const dropped = sum(this.dropped);
    return {
      enqueued: this.enqueued,
      delivered: this.delivered,
      failed,
      dropped,
      retries: this.retries,
      queued: this.waiting,
      inFlight: this.inFlight,
      reasons: { failed: { ...this.failed }, dropped: { ...this.dropped } },
    };
  }

  private async shutDown(timeoutMs: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(resolve, timeoutMs, 'timeout');
    });
    const result = await Promise.race([this.flush().then(() => 'drained' as const), timedOut]);
    clearTimeout(timer);
    if (result === 'timeout') {
      this.queue.clear();
      for (const job of this.pending) {
        if (!job.started) {
          this.waiting--;
          this.settle(job, { kind: 'dropped', reason: 'closed' });
        }
      }
      this.shutdown.abort();
      await this.flush();
    }
    await this.options.transport.close?.();
  }

  private async run(job: Job): Promise<void> {
    job.started = true;
    this.waiting--;
    this.inFlight++;
    let outcome: Outcome;
    try {
      const signal = AbortSignal.any([
        AbortSignal.timeout(this.options.timeoutMs),
        this.shutdown.signal,
      ]);
      const response = await this.options.transport.send(
        { url: this.options.endpoint, headers: job.headers, body: job.body },
        signal,
      );
      outcome = this.judge(response);
    } catch (error) {
      outcome = this.judgeError(error);
    }
    this.inFlight--;
    this.settle(job, outcome);
  }

  private judge(response: TransportResponse): Outcome {
    const { status } = response;
    if (status >= 200 && status < 300) return { kind: 'delivered' };
    const body = (response.body ?? '').slice(0, 200);
    if (status === 429 || status >= 500) {
      this.options.reporter.warn(
        `ZENOVAY_HTTP_${status}`,
        `the tracking endpoint answered ${status}${body ? ` (${body})` : ''}; the event was not recorded.`,
      );
      return { kind: 'failed', reason: 'server_error' };
    }
    const hint =
      status === 404
        ? ' A 404 most likely means the tracking code is wrong: check `trackingCode` / ZENOVAY_TRACKING_CODE.'
        : '';
    this.options.reporter.error(
      `ZENOVAY_HTTP_${status}`,
      `the tracking endpoint refused an event with ${status}${body ? ` (${body})` : ''}.${hint}`,
    );
    return { kind: 'failed', reason: 'rejected' };
  }

  private judgeError(error: unknown): Outcome {
    if (this.shutdown.signal.aborted) return { kind: 'dropped', reason: 'closed' };
    const name = (error as { name?: string } | null)?.name;
    if (name === 'TimeoutError' || name === 'AbortError') {
      this.options.reporter.warn(
        'ZENOVAY_TIMEOUT',
        `the tracking endpoint did not answer within ${this.options.timeoutMs} ms; the event was given up.`,
      );
      return { kind: 'failed', reason: 'timeout' };
    }
    const message = (error as { message?: string } | null)?.message ?? String(error);
    this.options.reporter.warn(
      'ZENOVAY_NETWORK',
      `could not reach the tracking endpoint ${this.options.endpoint}: ${message}`,
    );
    return { kind: 'failed', reason: 'network' };
  }

  private settleNow(outcome: Outcome): Promise<boolean> {
    this.count(outcome);
    return Promise.resolve(false);
  }

  private settle(job: Job, outcome: Outcome): void {
    this.pending.delete(job);
    this.count(outcome);
    job.resolve(outcome.kind === 'delivered');
  }

  private count(outcome: Outcome): void {
    if (outcome.kind === 'delivered') this.delivered++;
    else if (outcome.kind === 'failed') this.failed[outcome.reason]++;
    else this.dropped[outcome.reason]++;
  }
}

function sum(counts: Record<string, number>): number {
  let total = 0;
  for (const key in counts) total += counts[key]!;
  return total;
}
