/**
 * The delivery worker (built as `dist/delivery-worker.js`): runs the same engine as in-thread
 * delivery, with the package's keep-alive HTTP client, off the request thread. It takes batches
 * of events and reports back in batches (see CALM_DELAY_MS): which events settled and how, the
 * counters the main thread cannot know, the log lines and the events the main thread listens to.
 */
import { parentPort, workerData, type MessagePort } from 'node:worker_threads';
import { errorText, Reporter, type ReportLevel } from '../logger.js';
import { lowerThreadPriority } from './thread-priority.js';
import { DeliveryEngine, OUTBOX_TAKE_MS } from './engine.js';
import type { OutboxTrackerStats } from '../outbox/types.js';
import { EVENT_NAMES, type TrackerEventName, type TrackerEvents } from './events.js';
import { createDefaultTransport } from './default-transport.js';
import type { QueryPolicy } from '../options.js';
import { buildPageview, tooLargeMessage } from '../request/pageview-event.js';
import type { EventHeaders } from './delivery.js';
import { engineStore } from '../outbox/config.js';
import {
  decodeEvents,
  HEARTBEAT_MS,
  HURRY_DELAY_MS,
  idempotencyKey,
  numberedOutboxHooks,
  outcomeCode,
  type FromWorker,
  type ToWorker,
  type WorkerConfig,
} from './worker-protocol.js';

if (!parentPort)
  throw new Error('zenovay-express: the delivery worker runs only as a worker thread.');
const port: MessagePort = parentPort;
const config = workerData as WorkerConfig;

let settled: number[] = [];
let emitted: [TrackerEventName, TrackerEvents[TrackerEventName]][] = [];
let logs: [ReportLevel, string, string][] = [];
let scheduled = false;
let timer: NodeJS.Timeout | undefined;
/** Whether a message went out since the last heartbeat tick. */
let spoke = false;
const listened = new Set<TrackerEventName>();
/** The query policies of the pageviews this worker builds, by number. */
const policies: QueryPolicy[] = [];
const INVALID = outcomeCode({ kind: 'dropped', reason: 'invalid' });

/** Throttled here too, once a minute per code, so that a flood never crosses the thread. */
class ForwardingReporter extends Reporter {
  protected override write(level: ReportLevel, code: string, message: string): void {
    logs.push([level, code, message]);
    schedule();
  }
}
const reporter = new ForwardingReporter({});

// With an outbox: what the main thread, which keeps the accounts, needs to hear besides outcomes.
/** Numbers of events that now wait in the outbox only. */
let spilled: number[] = [];
/** Outcome codes of events that an earlier run or another instance left. */
let recovered: number[] = [];
/** How many of those this worker took into delivery. */
let taken = 0;
/** The last event number handed to the engine. */
let lastSeq = 0;

const outbox = config.outbox
  ? {
      ...engineStore(config.outbox, reporter, config.keyPrefix, (keys) => engine.outboxLost(keys)),
      ...numberedOutboxHooks(
        config.keyPrefix,
        // One of this tracker's own, left by a delivery worker that crashed: the main thread knows it.
        (seq) => (outcome) => settle(seq, outcomeCode(outcome)),
        () => {
          taken++;
          return (outcome) => {
            recovered.push(outcomeCode(outcome));
            schedule();
          };
        },
        (seq) => spilled.push(seq),
      ),
    }
  : undefined;

const engine = new DeliveryEngine({
  ...config,
  transport: createDefaultTransport(config),
  reporter,
  outbox,
});

// The main thread hears the outbox's state as soon as it is known, events or not, and its figures
// (written, read, the rates, what was lost) within about a second of a change, idle or not.
void engine.outboxOpened?.then(() => schedule());
/** The outbox's figures as last reported. */
let reportedOutbox = '';
if (outbox) {
  setInterval(() => {
    const figures = outboxFigures(engine.stats().outbox!);
    if (figures !== reportedOutbox) schedule();
  }, OUTBOX_TAKE_MS).unref();
}

function outboxFigures(s: OutboxTrackerStats): string {
  return [
    s.state,
    s.persisted,
    s.spilled,
    s.recovered,
    s.written,
    s.read,
    s.writtenPerSecond,
    s.readPerSecond,
    s.bytes,
    s.full,
    s.lost,
    s.corrupt,
  ].join();
}

function settle(seq: number, code: number): void {
  settled.push(seq, code);
  schedule();
}

for (const name of EVENT_NAMES) {
  engine.events.on(name, (payload: TrackerEvents[typeof name]) => {
    if (listened.has(name)) emitted.push([name, payload]);
    schedule();
  });
}

/**
 * Reports go out at most every `calmDelayMs` (CALM_DELAY_MS by default), or {@link HURRY_DELAY_MS}
 * while someone waits: the main thread wakes up for each one, so fewer, fuller reports cost it
 * less. At once when many events settled.
 */
const REPORT_SOON = 1024;
/** Someone waits (a trackEvent promise, flush()): report soon until nothing is left to send. */
let hurry = false;
/** When the scheduled report is due, and the delay it was scheduled with. */
let dueAt = 0;
let dueDelay = 0;

function schedule(): void {
  if (settled.length >= REPORT_SOON * 2) {
    report();
    return;
  }
  const delay = hurry ? HURRY_DELAY_MS : config.calmDelayMs;
  // Scheduled earlier with no longer a delay: due no later than now + delay (no clock read, as
  // each settled event calls this).
  if (scheduled && dueDelay <= delay) return;
  const due = Date.now() + delay;
  if (scheduled && dueAt <= due) return;
  clearTimeout(timer);
  scheduled = true;
  dueAt = due;
  dueDelay = delay;
  timer = setTimeout(report, delay);
}

function report(): void {
  scheduled = false;
  clearTimeout(timer);
  const stats = engine.stats();
  if (stats.queued + stats.inFlight === 0) hurry = false;
  const message: FromWorker = {
    t: 'report',
    settled,
    retries: stats.retries,
    inFlight: stats.inFlight,
    circuit: stats.circuit,
    concurrency: stats.concurrency,
    emitted,
    logs,
  };
  if (outbox) {
    message.spilled = spilled;
    message.recovered = recovered;
    message.taken = taken;
    message.persisted = engine.outboxState === 'open' ? lastSeq : 0;
    message.outbox = stats.outbox!;
    reportedOutbox = outboxFigures(stats.outbox!);
    spilled = [];
    recovered = [];
  }
  settled = [];
  emitted = [];
  logs = [];
  spoke = true;
  port.postMessage(message);
}

// The main thread takes a worker that holds events and says nothing for long to be stuck.
setInterval(() => {
  if (!spoke) {
    const { queued, inFlight } = engine.stats();
    if (queued + inFlight > 0) port.postMessage({ t: 'alive' } satisfies FromWorker);
  }
  spoke = false;
}, HEARTBEAT_MS).unref();

// Yield the CPU to the threads that serve requests when every core is busy (option workerNice).
const priority = lowerThreadPriority(config.workerNice);
if (priority.kind === 'failed') {
  reporter.warn(
    'ZENOVAY_WORKER_PRIORITY',
    `the delivery worker could not lower its priority (workerNice ${config.workerNice}); it runs at the process's: ${errorText(priority.error)}`,
  );
}

port.postMessage({ t: 'ready' } satisfies FromWorker);

function submit(seq: number, body: string, headers: EventHeaders): void {
  lastSeq = seq;
  engine.submit(
    body,
    headers,
    (outcome) => settle(seq, outcomeCode(outcome)),
    idempotencyKey(config.keyPrefix, seq),
  );
}

port.on('message', (message: ToWorker) => {
  switch (message.t) {
    case 'hurry':
      hurry = true;
      schedule();
      return;
    case 'events':
      decodeEvents(message.data, submit, (seq, parts, policy) => {
        const built = buildPageview(parts, policies[policy]!, config.anonymizeIp);
        if ('tooLarge' in built) {
          // Counted where the main thread counts it: settled as dropped (invalid).
          reporter.warn('ZENOVAY_INVALID_EVENT', tooLargeMessage('a pageview', built.tooLarge));
          if (listened.has('drop')) emitted.push(['drop', { reason: 'invalid' }]);
          settled.push(seq, INVALID);
          lastSeq = seq;
          return;
        }
        submit(seq, built.body, built.headers);
      });
      // After the events: a report made while they were read may have found nothing to send.
      if (message.hurry) hurry = true;
      schedule();
      return;
    case 'policy':
      policies[message.id] = message.policy;
      return;
    case 'listen':
      if (message.listened) listened.add(message.name);
      else listened.delete(message.name);
      return;
    case 'close':
      void engine.close(message.timeoutMs).then(() => {
        report();
        port.postMessage({ t: 'closed' } satisfies FromWorker);
        port.close();
      });
  }
});
