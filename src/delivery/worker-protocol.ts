/**
 * What the main thread and the delivery worker say to each other. Events cross in batches, one
 * message every few milliseconds, encoded as one string: cloning one string costs a fraction of
 * cloning an object per event, and that cost is paid on the request thread.
 */
import type { EngineOptions } from './engine.js';
import {
  DROP_REASONS,
  FAIL_REASONS,
  type EventHeaders,
  type Outcome,
  type TrackerStats,
} from './delivery.js';
import type { TrackerEventName, TrackerEvents } from './events.js';
import type { ReportLevel } from '../logger.js';

/** The engine's settings, as the worker receives them (functions cannot cross threads). */
export type WorkerConfig = Omit<EngineOptions, 'transport' | 'reporter' | 'random'> & {
  /** The first 24 characters of each Idempotency-Key; the event's number makes the rest. */
  keyPrefix: string;
};

export type ToWorker =
  /** Events, as encoded by {@link encodeEvent}. */
  | { t: 'events'; data: string }
  /** The main thread gained or lost listeners of an event name: forward it or stop. */
  | { t: 'listen'; name: TrackerEventName; listened: boolean }
  /** Close the engine within `timeoutMs`, report, then answer `closed`. */
  | { t: 'close'; timeoutMs: number };

export type FromWorker =
  | {
      t: 'report';
      /** Pairs of (event number, outcome code). */
      settled: number[];
      retries: number;
      inFlight: number;
      circuit: TrackerStats['circuit'];
      emitted: [TrackerEventName, TrackerEvents[TrackerEventName]][];
      /** Reports of the worker's engine, throttled again by the main thread's reporter. */
      logs: [ReportLevel, string, string][];
    }
  | { t: 'closed' }
  /** The worker is set up: from now on a crash is worth a restart. */
  | { t: 'ready' }
  /** Nothing to report, but the worker holds events and its event loop runs. */
  | { t: 'alive' };

/** While it holds events, the worker says something at least this often. */
export const HEARTBEAT_MS = 1000;

/** Every outcome, numbered: the code that crosses the thread boundary. */
export const OUTCOMES: readonly Outcome[] = Object.freeze([
  { kind: 'delivered' },
  ...FAIL_REASONS.map((reason): Outcome => ({
    kind: 'failed',
    reason,
    message: `the event failed (${reason}) in the delivery worker`,
  })),
  ...DROP_REASONS.map((reason): Outcome => ({ kind: 'dropped', reason })),
]);

export function outcomeCode(outcome: Outcome): number {
  if (outcome.kind === 'delivered') return 0;
  if (outcome.kind === 'failed') return 1 + FAIL_REASONS.indexOf(outcome.reason);
  return 1 + FAIL_REASONS.length + DROP_REASONS.indexOf(outcome.reason);
}

/**
 * The headers an event may carry besides `content-type`, in a fixed order. Their values never
 * hold a line break (they are sanitised as header values), and JSON never holds a raw one.
 */
const FORWARDED = [
  'user-agent',
  'x-forwarded-for',
  'sec-ch-ua',
  'sec-ch-ua-mobile',
  'sec-ch-ua-platform',
] as const;
const FIELDS = 2 + FORWARDED.length;

/** One event as `seq\nbody\n` and one line per forwarded header (empty when absent). */
export function encodeEvent(seq: number, body: string, headers: EventHeaders): string {
  return (
    `${seq}\n${body}\n${headers['user-agent'] ?? ''}\n${headers['x-forwarded-for'] ?? ''}\n` +
    `${headers['sec-ch-ua'] ?? ''}\n${headers['sec-ch-ua-mobile'] ?? ''}\n` +
    `${headers['sec-ch-ua-platform'] ?? ''}\n`
  );
}

/** Calls `each` for every event of a batch made by {@link encodeEvent}. */
export function decodeEvents(
  data: string,
  each: (seq: number, body: string, headers: EventHeaders) => void,
): void {
  const fields = data.split('\n');
  for (let i = 0; i + FIELDS <= fields.length; i += FIELDS) {
    const headers: EventHeaders = { 'content-type': 'application/json' };
    for (let h = 0; h < FORWARDED.length; h++) {
      const value = fields[i + 2 + h]!;
      if (value !== '') headers[FORWARDED[h]!] = value;
    }
    each(Number(fields[i]), fields[i + 1]!, headers);
  }
}

/** The Idempotency-Key of event `seq`: a UUID whose last 12 hex digits are the number. */
export function idempotencyKey(prefix: string, seq: number): string {
  return prefix + seq.toString(16).padStart(12, '0');
}
