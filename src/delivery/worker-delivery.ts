/**
 * Delivery on a worker thread, seen from the main thread. The request thread only numbers each
 * event, appends it to the current batch (one string) and keeps it until the worker says how it
 * ended; every few (up to 50) milliseconds the batch crosses to the worker, which runs the
 * engine and the HTTP client. The main thread is the accountant: it counts what it was given and
 * how each event ended, so `stats()` stays exact and answers without asking the worker.
 *
 * A worker that dies is restarted and given back every event it had not settled, under the
 * same Idempotency-Keys (the endpoint can tell a repeat). After more than {@link MAX_CRASHES}
 * crashes in {@link CRASH_WINDOW_MS}, when no worker can start (or set itself up in
 * {@link READY_TIMEOUT_MS}), or when the worker is lost while closing, delivery moves to the main
 * thread (the in-thread engine) with the events still open. The worker is referenced only while it
 * holds events, so it keeps the process alive no longer than in-thread sockets would, and it
 * is terminated by `close()`.
 *
 * With an outbox the worker writes every event to it and says up to which number it has
 * (`persisted`): a restarted worker reads those back from the store itself, so only the newer
 * ones are given back. Events that wait in the outbox only keep a marker here, not their copy.
 */
import { randomUUID } from 'node:crypto';
import { Worker } from 'node:worker_threads';
import { errorText, type Reporter } from '../logger.js';
import {
  ArrivalFlushes,
  MAX_TIMER_MS,
  emptyReasons,
  reportQueueFull,
  sum,
  type Delivery,
  type DropReason,
  type EventHeaders,
  type Outcome,
  type Settled,
  type TrackerStats,
} from './delivery.js';
import { createLimit } from './adaptive-limit.js';
import { DeliveryEngine, type EngineOutbox } from './engine.js';
import { engineStore } from '../outbox/config.js';
import type { OutboxTrackerStats } from '../outbox/types.js';
import { Emitter, EVENT_NAMES } from './events.js';
import { Ledger } from './ledger.js';
import { connectionCap, createDefaultTransport } from './default-transport.js';
import type { QueryPolicy } from '../options.js';
import {
  buildPageview,
  pageviewParts,
  tooLargeMessage,
  type PageviewHeaders,
  type PageviewParts,
} from '../request/pageview-event.js';
import {
  CALM_DELAY_MS,
  decodeEvents,
  encodeEvent,
  encodePageview,
  HEARTBEAT_MS,
  HURRY_DELAY_MS,
  idempotencyKey,
  numberedOutboxHooks,
  OUTCOMES,
  type FromWorker,
  type ToWorker,
  type WorkerConfig,
} from './worker-protocol.js';
import { workerScript } from './worker-location.js';

/** Crashes within {@link CRASH_WINDOW_MS} that are restarted; one more moves delivery to the main thread. */
export const MAX_CRASHES = 3;
/** How long a new worker may take to set itself up before the main thread takes over. */
export const READY_TIMEOUT_MS = 10_000;
export const CRASH_WINDOW_MS = 60_000;
/**
 * A batch this large crosses at once instead of waiting: otherwise a batch waits
 * {@link CALM_DELAY_MS}, or {@link HURRY_DELAY_MS} once it holds an event someone awaits;
 * flush() and close() send at once.
 */
export const MAX_BATCH = 512;
/** How long close() waits for the worker beyond its own timeout before terminating it. */
export const CLOSE_GRACE_MS = 1000;
/**
 * A worker holding events says something at least every {@link HEARTBEAT_MS}; one silent this
 * long is stuck (a loop that never ends, say) and is replaced like a crashed one.
 */
export const STALL_MS = 5 * HEARTBEAT_MS;

export interface WorkerDeliveryOptions {
  config: Omit<WorkerConfig, 'keyPrefix' | 'calmDelayMs'>;
  reporter: Reporter;
  /** For tests: the worker's script. */
  script?: URL;
  /** For tests: {@link STALL_MS}. */
  stallMs?: number;
  /** For tests: {@link CALM_DELAY_MS}, on both threads. */
  calmDelayMs?: number;
}

export class WorkerDelivery implements Delivery {
  readonly events: Emitter;
  private worker: Worker | undefined;
  /** The in-thread engine, once the worker could not be used. */
  private inline: DeliveryEngine | undefined;
  /**
   * Events handed over and not yet settled, by number, in order of arrival: encoded, and with
   * whoever waits for the outcome (trackEvent's promise; pageviews have no one).
   */
  private readonly open: Ledger<OpenEvent>;
  private nextSeq = 1;
  private batch = '';
  private batchCount = 0;
  private batchTimer: NodeJS.Timeout | undefined;
  /** Whether the batch holds an event someone awaits (then it crosses sooner). */
  private batchHurry = false;
  private readonly calmDelayMs: number;
  /** Whether the worker keeps the process alive (only while it holds events). */
  private referenced = false;
  private started = false;
  private readonly crashes: number[] = [];
  /** Whether any worker has set itself up: until then a failure means none can. */
  private everReady = false;
  private readonly keyPrefix = randomUUID().slice(0, 24);
  /** At most this many events open at once: the worker's queue and its connections. */
  private readonly bound: number;
  private closing: Promise<void> | undefined;
  /** Set as close() begins (before `closing` holds its promise). */
  private closingNow = false;
  private workerClosed: (() => void) | undefined;
  private readonly flushes = new ArrivalFlushes();
  /** When the worker last said something, or was last given events while it had none. */
  private heardAt = 0;
  /** Checks, while the worker holds events, that it still speaks (see {@link STALL_MS}). */
  private watchdog: NodeJS.Timeout | undefined;
  /** Whether the live worker has set itself up. */
  private workerReady = false;
  /** Whether the live worker was terminated for its silence. */
  private stalled = false;
  private readonly stallMs: number;
  /** The query policies of unbuilt pageviews, numbered in order of first use. */
  private readonly policies: QueryPolicy[] = [];
  private readonly policyIds = new Map<QueryPolicy, number>();

  private enqueued = 0;
  private delivered = 0;
  private stored = 0;
  private readonly reasons = emptyReasons();
  /** Retries of workers that are gone; the live one's are added. */
  private pastRetries = 0;
  private workerRetries = 0;
  private workerInFlight = 0;
  /** Events that earlier runs or other instances left, taken in by workers that are gone / the live one. */
  private pastTaken = 0;
  private workerTaken = 0;
  /** Every event numbered up to this one is in the outbox (or settled), as the worker said. */
  private persisted = 0;
  /** The outbox as of the worker's last report. */
  private outboxStats: OutboxTrackerStats | undefined;
  private circuit: TrackerStats['circuit'] = 'closed';
  /** The worker's in-flight limit as of its last report. */
  private concurrency: TrackerStats['concurrency'];

  constructor(private readonly options: WorkerDeliveryOptions) {
    // With an outbox, events past the worker's memory wait in the store and only a marker stays
    // here; the store's own bound (maxBytes, maxLength) drops what it cannot take.
    this.bound = options.config.outbox
      ? Infinity
      : options.config.maxQueueSize + connectionCap(options.config);
    this.concurrency = startingLimit(options.config);
    this.open = new Ledger();
    this.stallMs = options.stallMs ?? STALL_MS;
    this.calmDelayMs = options.calmDelayMs ?? CALM_DELAY_MS;
    this.events = new Emitter((name, listened) => this.post({ t: 'listen', name, listened }));
    // The worker starts with the first event: a tracker that never sends costs no thread. With an
    // outbox it starts at once, to send what an earlier run left.
    if (options.config.outbox) {
      this.outboxStats = startingOutbox(options.config.outbox.kind);
      this.started = true;
      this.startWorker();
    }
  }

  /** Where events are sent from: `'worker'`, or `'main'` after the worker could not be used. */
  get thread(): 'worker' | 'main' {
    return this.inline ? 'main' : 'worker';
  }

  submit(body: string, headers: EventHeaders, settled?: Settled): void {
    const seq = this.accept(settled);
    if (seq === 0) return;
    const encoded = encodeEvent(seq, body, headers);
    this.open.add(seq, settled === undefined ? encoded : { encoded, settled });
    if (this.inline) this.submitInline(seq, body, headers);
    else this.toBatch(encoded, settled !== undefined);
    this.held();
  }

  /**
   * A middleware pageview, handed over unbuilt: the worker applies the query policy, writes its
   * JSON and cleans its headers, so the request thread only passes strings it has read already.
   * `origin` is a checked one (`siteUrl`, or the request's); `ip` is normalised.
   */
  submitPageview(
    policy: QueryPolicy,
    origin: string,
    target: string,
    ip: string | undefined,
    headers: PageviewHeaders,
  ): void {
    if (this.inline === undefined) {
      const encoded = encodePageview(
        this.nextSeq,
        this.policyId(policy),
        origin,
        target,
        ip,
        headers,
      );
      if (encoded !== undefined) {
        const seq = this.accept(undefined);
        if (seq === 0) return;
        this.open.add(seq, encoded);
        // The first event starts the worker; if none could start, delivery is now in-thread.
        if (this.inline) this.submitDecoded(encoded);
        else this.toBatch(encoded, false);
        this.held();
        return;
      }
    }
    // On the main thread for good, or a part that cannot cross as a line: built here.
    const built = buildPageview(
      pageviewParts(origin, target, ip, headers),
      policy,
      this.options.config.anonymizeIp,
    );
    if ('tooLarge' in built) {
      this.options.reporter.warn(
        'ZENOVAY_INVALID_EVENT',
        tooLargeMessage('a pageview', built.tooLarge),
      );
      this.reject('invalid');
      return;
    }
    this.submit(built.body, built.headers);
  }

  /** Counts an event in: its number, or 0 when it was dropped at once. */
  private accept(settled: Settled | undefined): number {
    this.enqueued++;
    if (this.closing) {
      this.dropHere('closed', settled);
      return 0;
    }
    if (this.open.size >= this.bound) {
      reportQueueFull(this.options.reporter, this.options.config.maxQueueSize);
      this.dropHere('queue_full', settled);
      return 0;
    }
    if (!this.started) {
      this.started = true;
      this.startWorker();
    }
    return this.nextSeq++;
  }

  /** Adds an encoded event to the batch that crosses next; `awaited` when someone waits for it. */
  private toBatch(encoded: string, awaited: boolean): void {
    this.batch += encoded;
    const hurryNow = awaited && !this.batchHurry;
    if (awaited) this.batchHurry = true;
    if (++this.batchCount >= MAX_BATCH) {
      this.sendBatch();
    } else if (hurryNow) {
      if (this.batchTimer !== undefined) clearTimeout(this.batchTimer);
      this.batchTimer = setTimeout(this.sendBatch, HURRY_DELAY_MS);
    } else {
      this.batchTimer ??= setTimeout(this.sendBatch, this.calmDelayMs);
    }
  }

  /** After an event is open: the worker holds events, and keeps the process alive. */
  private held(): void {
    if (!this.referenced) {
      // The worker had nothing to do, so it had nothing to say: its silence counts from now.
      this.heardAt = Date.now();
      this.updateRef();
    }
  }

  /** The number of a query policy, told to the worker the first time. */
  private policyId(policy: QueryPolicy): number {
    let id = this.policyIds.get(policy);
    if (id === undefined) {
      id = this.policies.push(policy) - 1;
      this.policyIds.set(policy, id);
      this.post({ t: 'policy', id, policy });
    }
    return id;
  }

  reject(reason: DropReason): void {
    this.enqueued++;
    this.dropHere(reason, undefined);
  }

  flush(): Promise<void> {
    if (this.open.size === 0) return Promise.resolve();
    // Someone waits now: the worker reports soon instead of gathering outcomes.
    if (this.batchCount > 0) {
      this.batchHurry = true;
      this.sendBatch();
    } else {
      this.post({ t: 'hurry' });
    }
    return this.flushes.wait(this.nextSeq - 1);
  }

  close(timeoutMs: number): Promise<void> {
    if (this.closing === undefined) {
      this.closingNow = true;
      this.closing = this.shutDown(timeoutMs);
    }
    return this.closing;
  }

  stats(): TrackerStats {
    const failed = sum(this.reasons.failed);
    const dropped = sum(this.reasons.dropped);
    const enqueued = this.enqueued + this.pastTaken + this.workerTaken;
    const unsettled = enqueued - this.delivered - failed - dropped;
    // What still waits in this process (not what close() left in the outbox).
    const here = unsettled - this.stored;
    const live = this.inline?.stats();
    // The worker's split is as of its last report (at most CALM_DELAY_MS old). Events on their
    // way to it count as waiting up to maxQueueSize and as in flight beyond, so that neither count
    // ever passes its bound (the main thread holds at most maxQueueSize + concurrency).
    const reported = live ? live.inFlight : this.workerInFlight;
    const inFlight = Math.min(
      here,
      Math.max(reported, here - this.options.config.maxQueueSize - this.spilledNow(live)),
    );
    const stats: TrackerStats = {
      enqueued,
      delivered: this.delivered,
      failed,
      dropped,
      retries: this.pastRetries + (live ? live.retries : this.workerRetries),
      queued: unsettled - inFlight,
      inFlight,
      reasons: {
        failed: { ...this.reasons.failed },
        dropped: { ...this.reasons.dropped },
      },
      circuit: live ? live.circuit : this.circuit,
      concurrency: live ? live.concurrency : { ...this.concurrency },
    };
    const outbox = live ? live.outbox : this.outboxStats;
    if (outbox) stats.outbox = { ...outbox, stored: this.stored };
    return stats;
  }

  /** Events that wait in the outbox only, as last heard. */
  private spilledNow(live: TrackerStats | undefined): number {
    return (live ? live.outbox : this.outboxStats)?.spilled ?? 0;
  }

  // ---- the worker -----------------------------------------------------------------------

  private startWorker(): void {
    let worker: Worker;
    try {
      const { config } = this.options;
      const start = (execArgv: string[] | undefined): Worker =>
        new Worker(this.options.script ?? workerScript(), {
          name: 'zenovay-delivery',
          workerData: {
            ...config,
            keyPrefix: this.keyPrefix,
            calmDelayMs: this.calmDelayMs,
          } satisfies WorkerConfig,
          stdout: false,
          stderr: false,
          execArgv,
        });
      const execArgv = workerExecArgv(process.execArgv);
      try {
        worker = start(execArgv);
      } catch (error) {
        // A flag given explicitly that a worker refuses (a V8 or per-process one, which Node
        // leaves out itself when the worker inherits): none then; the worker needs none.
        if (execArgv === undefined || (error as { code?: unknown }).code !== INVALID_EXEC_ARGV) {
          throw error;
        }
        worker = start([]);
      }
    } catch (error) {
      this.useMainThread(`no worker thread could start (${errorText(error)})`);
      return;
    }
    this.worker = worker;
    let failure: unknown;
    this.workerReady = this.stalled = false;
    worker.on('message', (message: FromWorker) => {
      this.heardAt = Date.now();
      if (message.t === 'ready') {
        this.workerReady = this.everReady = true;
        clearTimeout(readyTimer);
      } else if (message.t !== 'alive') this.onMessage(message);
    });
    worker.on('error', (error) => (failure = error));
    worker.once('exit', (code) => {
      if (this.worker !== worker) return;
      this.worker = undefined;
      this.workerClosed?.();
      clearTimeout(readyTimer);
      const why = this.stalled
        ? `stopped answering for ${this.stallMs} ms and was terminated`
        : `exited with code ${code}${failure ? `: ${errorText(failure)}` : ''}`;
      try {
        // If no worker ever got going, none will (a bundler left its script out, say); and a
        // worker lost while closing leaves its events to the main thread for the time left.
        if (!this.everReady) {
          this.useMainThread(`the delivery worker could not start (it ${why})`);
        } else if (this.closingNow) {
          this.useMainThread(`the delivery worker ${why} while closing`);
        } else {
          this.onCrash(why);
        }
      } catch (error) {
        // Never into the app: whatever failed, the main thread takes the events.
        this.useMainThread(`restarting the delivery worker failed (${errorText(error)})`);
      }
    });
    // A worker that loads but never sets itself up would hold its events forever.
    const readyTimer = setTimeout(() => {
      if (this.worker !== worker || this.workerReady) return;
      this.worker = undefined;
      this.workerClosed?.();
      void worker.terminate();
      this.useMainThread(`the delivery worker did not start within ${READY_TIMEOUT_MS} ms`);
    }, READY_TIMEOUT_MS);
    readyTimer.unref();
    this.heardAt = Date.now();
    this.policies.forEach((policy, id) => this.post({ t: 'policy', id, policy }));
    for (const name of EVENT_NAMES) {
      if (this.events.listened(name)) this.post({ t: 'listen', name, listened: true });
    }
    // After the listeners: adding a 'message' listener references the worker again.
    this.referenced = true;
    this.updateRef();
  }

  /** What a worker that is gone had counted, kept; its circuit, closed for listeners too. */
  private forgetWorker(): void {
    this.pastRetries += this.workerRetries;
    this.workerRetries = 0;
    this.workerInFlight = 0;
    this.pastTaken += this.workerTaken;
    this.workerTaken = 0;
    if (this.outboxStats) this.outboxStats = { ...this.outboxStats, state: 'opening' };
    if (this.circuit !== 'closed') this.events.emit('circuit', { state: 'closed', failures: 0 });
    this.circuit = 'closed';
    this.concurrency = startingLimit(this.options.config);
  }

  private onCrash(why: string): void {
    this.forgetWorker();
    const now = Date.now();
    this.crashes.push(now);
    while (this.crashes.length > 0 && now - this.crashes[0]! > CRASH_WINDOW_MS)
      this.crashes.shift();
    if (this.crashes.length > MAX_CRASHES) {
      this.useMainThread(
        `the delivery worker ${why}, ${this.crashes.length} times within a minute`,
      );
      return;
    }
    this.options.reporter.warn(
      'ZENOVAY_WORKER_RESTARTED',
      `the delivery worker ${why}; it was restarted and given back its ${this.open.size} unsettled events ` +
        '(under the same Idempotency-Keys, so the endpoint can tell repeats).',
    );
    this.startWorker();
    this.resend();
  }

  /** Moves delivery to the main thread for good, with every open event. */
  private useMainThread(why: string): void {
    if (this.inline) return;
    this.forgetWorker();
    this.options.reporter.error(
      'ZENOVAY_WORKER_FAILED',
      `${why}; events are now sent from the main thread (in-thread delivery), which costs the ` +
        'request thread more but loses nothing.',
    );
    this.batch = '';
    this.batchCount = 0;
    this.watch(false);
    const inline = new DeliveryEngine({
      ...this.options.config,
      transport: createDefaultTransport(this.options.config),
      reporter: this.options.reporter,
      outbox: this.inlineOutbox(),
    });
    for (const name of EVENT_NAMES) {
      inline.events.on(name, (payload) => this.events.emit(name, payload as never));
    }
    this.inline = inline;
    if (this.batchTimer !== undefined) clearTimeout(this.batchTimer);
    this.batchTimer = undefined;
    // What the outbox has, the in-thread engine reads back from it.
    for (const [seq, event] of this.open.entries()) {
      if (seq > this.persisted) this.submitDecoded(encodedOf(event));
    }
  }

  /** The outbox for in-thread delivery, opened again by this thread. */
  private inlineOutbox(): EngineOutbox | undefined {
    const config = this.options.config.outbox;
    if (config === undefined) return undefined;
    return {
      ...engineStore(config, this.options.reporter, this.keyPrefix, (keys) =>
        this.inline?.outboxLost(keys),
      ),
      ...numberedOutboxHooks(
        this.keyPrefix,
        (seq) => (outcome) => this.settle(seq, outcome),
        () => {
          this.pastTaken++;
          return (outcome) => this.count(outcome);
        },
        (seq) => this.spilledHere(seq),
      ),
    };
  }

  /** An event now waits in the outbox only: its copy here is no longer needed. */
  private spilledHere(seq: number): void {
    const event = this.open.peek(seq);
    if (event === undefined) return;
    this.open.replace(
      seq,
      typeof event === 'string' ? '' : { encoded: '', settled: event.settled },
    );
  }

  private submitInline(seq: number, body: string, headers: EventHeaders): void {
    this.inline!.submit(
      body,
      headers,
      (outcome) => this.settle(seq, outcome),
      idempotencyKey(this.keyPrefix, seq),
    );
  }

  /** Open events, encoded, to the in-thread engine. */
  private submitDecoded(encoded: string): void {
    decodeEvents(
      encoded,
      (seq, body, headers) => this.submitInline(seq, body, headers),
      (seq, parts, policy) => this.buildInline(seq, parts, policy),
    );
  }

  /** An unbuilt pageview the worker had, built here. */
  private buildInline(seq: number, parts: PageviewParts, policy: number): void {
    const built = buildPageview(parts, this.policies[policy]!, this.options.config.anonymizeIp);
    if ('tooLarge' in built) {
      this.options.reporter.warn(
        'ZENOVAY_INVALID_EVENT',
        tooLargeMessage('a pageview', built.tooLarge),
      );
      this.settle(seq, { kind: 'dropped', reason: 'invalid' });
      this.events.emit('drop', { reason: 'invalid' });
      return;
    }
    this.submitInline(seq, built.body, built.headers);
  }

  /** Gives a new worker every open event, in order, in batches of the usual size. */
  private resend(): void {
    this.batch = '';
    this.batchCount = 0;
    // Whoever waited before the crash still waits.
    const hurry = this.batchHurry || this.flushes.any;
    this.batchHurry = false;
    let data = '';
    let count = 0;
    let awaited = false;
    for (const [seq, event] of this.open.entries()) {
      // A new worker reads what the outbox has from the store itself.
      if (seq <= this.persisted) continue;
      data += encodedOf(event);
      awaited ||= typeof event !== 'string';
      if (++count === MAX_BATCH) {
        this.post({ t: 'events', data, hurry: hurry || awaited });
        data = '';
        count = 0;
        awaited = false;
      }
    }
    if (count > 0) this.post({ t: 'events', data, hurry: hurry || awaited });
  }

  private readonly sendBatch = (): void => {
    if (this.batchTimer !== undefined) {
      clearTimeout(this.batchTimer);
      this.batchTimer = undefined;
    }
    if (this.batchCount === 0) return;
    const data = this.batch;
    const hurry = this.batchHurry;
    this.batch = '';
    this.batchCount = 0;
    this.batchHurry = false;
    this.post({ t: 'events', data, hurry });
  };

  private post(message: ToWorker): void {
    if (!this.inline) this.worker?.postMessage(message);
  }

  private onMessage(message: Exclude<FromWorker, { t: 'ready' | 'alive' }>): void {
    if (message.t === 'closed') {
      // Done: its 'exit' (which Node may emit in the same turn) is no crash.
      this.worker = undefined;
      this.workerClosed?.();
      return;
    }
    const { settled } = message;
    for (let i = 0; i + 1 < settled.length; i += 2) {
      this.settle(settled[i]!, OUTCOMES[settled[i + 1]!]!);
    }
    if (message.outbox) {
      for (const seq of message.spilled!) this.spilledHere(seq);
      for (const code of message.recovered!) this.count(OUTCOMES[code]!);
      this.workerTaken = message.taken!;
      this.persisted = Math.max(this.persisted, message.persisted!);
      this.outboxStats = message.outbox;
    }
    this.workerRetries = message.retries;
    this.workerInFlight = message.inFlight;
    this.circuit = message.circuit;
    this.concurrency = message.concurrency;
    for (const [name, payload] of message.emitted) this.events.emit(name, payload as never);
    // The main thread's reporter throttles again: one minute per code across threads and restarts.
    for (const [level, code, text] of message.logs) this.options.reporter[level](code, text);
  }

  // ---- accounting -----------------------------------------------------------------------

  private settle(seq: number, outcome: Outcome): void {
    const event = this.open.take(seq);
    if (event === undefined) return; // settled already (a repeat after a restart)
    this.count(outcome);
    if (this.flushes.any) this.flushes.release(this.open.first());
    if (this.open.size === 0) this.updateRef();
    if (typeof event === 'string') return;
    const { settled } = event;
    try {
      settled(outcome);
    } catch {
      // The caller's bookkeeping must not break ours.
    }
  }

  private count(outcome: Outcome): void {
    if (outcome.kind === 'delivered') this.delivered++;
    else if (outcome.kind === 'failed') this.reasons.failed[outcome.reason]++;
    else if (outcome.kind === 'stored') this.stored++;
    else this.reasons.dropped[outcome.reason]++;
  }

  private dropHere(reason: DropReason, settled: Settled | undefined): void {
    const outcome: Outcome = { kind: 'dropped', reason };
    this.count(outcome);
    this.events.emit('drop', { reason });
    settled?.(outcome);
  }

  /** The worker, and its watchdog, keep the process alive only while it holds events. */
  private updateRef(): void {
    const worker = this.worker;
    if (!worker) return;
    const wanted = this.open.size > 0 || this.closingNow;
    this.watch(wanted);
    if (wanted === this.referenced) return;
    this.referenced = wanted;
    if (wanted) worker.ref();
    else worker.unref();
  }

  /**
   * Starts or stops the watchdog. A worker stuck with events (alive, but its event loop never
   * comes back) would hold them forever: one silent for {@link STALL_MS} is terminated, and its
   * 'exit' restarts it or moves delivery to the main thread.
   */
  private watch(on: boolean): void {
    if (!on) {
      clearInterval(this.watchdog);
      this.watchdog = undefined;
      return;
    }
    if (this.watchdog !== undefined) return;
    const period = Math.max(10, this.stallMs / 4);
    let tickedAt = Date.now();
    this.watchdog = setInterval(() => {
      const now = Date.now();
      // A late tick means this thread was busy: the worker's messages may be waiting unread.
      const late = now - tickedAt > 2 * period;
      tickedAt = now;
      const worker = this.worker;
      if (late || !worker || !this.workerReady || now - this.heardAt <= this.stallMs) return;
      this.stalled = true;
      void worker.terminate();
    }, period);
    this.watchdog.unref();
  }

  // ---- shutdown -------------------------------------------------------------------------

  private async shutDown(timeoutMs: number): Promise<void> {
    this.sendBatch();
    const deadline = Date.now() + timeoutMs;
    const worker = this.worker;
    if (worker) {
      this.updateRef();
      let timer: NodeJS.Timeout | undefined;
      await new Promise<void>((resolve) => {
        this.workerClosed = resolve;
        timer = setTimeout(resolve, Math.min(timeoutMs + CLOSE_GRACE_MS, MAX_TIMER_MS));
        this.post({ t: 'close', timeoutMs });
      });
      clearTimeout(timer);
      this.worker = undefined;
      this.watch(false);
      await worker.terminate();
    }
    // In-thread delivery, from the start or since a worker that could not start gave it its events.
    if (this.inline) await this.inline.close(Math.max(0, deadline - Date.now()));
    // What no one reported on (a worker that hung while closing) did not get out; what the
    // outbox has stays there for the next run.
    for (const [seq] of this.open.entries()) {
      if (seq <= this.persisted) {
        this.settle(seq, { kind: 'stored' });
        continue;
      }
      this.settle(seq, { kind: 'dropped', reason: 'closed' });
      this.events.emit('drop', { reason: 'closed', id: idempotencyKey(this.keyPrefix, seq) });
    }
  }
}

const INVALID_EXEC_ARGV = 'ERR_WORKER_INVALID_EXEC_ARGV';

/**
 * The worker's Node flags: undefined, so that it inherits the process's as Node does (leaving out
 * V8 and per-process flags such as `--max-old-space-size`, which a worker refuses when given
 * them), unless the process has `--input-type`: a process started with
 * `node --input-type=module -e ...` passes it on, and a worker given a script file refuses it and
 * does not start. Then the process's flags without it.
 */
export function workerExecArgv(execArgv: readonly string[]): string[] | undefined {
  if (!execArgv.some((arg) => arg === '--input-type' || arg.startsWith('--input-type='))) {
    return undefined;
  }
  const out: string[] = [];
  for (let i = 0; i < execArgv.length; i++) {
    const arg = execArgv[i]!;
    if (arg === '--input-type')
      i++; // its value is the next argument
    else if (!arg.startsWith('--input-type=')) out.push(arg);
  }
  return out;
}

/** An open event: encoded, with the callback of whoever waits for it. */
type OpenEvent = string | { encoded: string; settled: Settled };

function encodedOf(event: OpenEvent): string {
  return typeof event === 'string' ? event : event.encoded;
}

/** The outbox's stats before the worker has said anything. */
function startingOutbox(kind: OutboxTrackerStats['store']): OutboxTrackerStats {
  return {
    store: kind,
    state: 'opening',
    persisted: 0,
    spilled: 0,
    recovered: 0,
    taken: 0,
    stored: 0,
    written: 0,
    read: 0,
    writtenPerSecond: 0,
    readPerSecond: 0,
    bytes: 0,
    corrupt: 0,
    full: 0,
    lost: 0,
  };
}

/** A new engine's limit, before it has said anything. */
function startingLimit(config: {
  concurrency: number | 'auto';
  maxConcurrency: number;
}): TrackerStats['concurrency'] {
  return createLimit(config.concurrency, config.maxConcurrency).stats();
}
