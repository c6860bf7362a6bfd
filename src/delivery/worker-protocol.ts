/**
 * What the main thread and the delivery worker say to each other. Events cross in batches, one
 * message every few (up to 50) milliseconds, encoded as one string: cloning one string costs a
 * fraction of cloning an object per event, and that cost is paid on the request thread.
 */
import type { EngineOptions, EngineOutbox } from './engine.js';
import {
  DROP_REASONS,
  FAIL_REASONS,
  type EventHeaders,
  type Outcome,
  type Settled,
  type TrackerStats,
} from './delivery.js';
import type { TrackerEventName, TrackerEvents } from './events.js';
import type { ReportLevel } from '../logger.js';
import type { QueryPolicy } from '../options.js';
import type { OutboxConfig } from '../outbox/config.js';
import type { OutboxTrackerStats } from '../outbox/types.js';
import { text, type PageviewHeaders, type PageviewParts } from '../request/pageview-event.js';

/** The engine's settings, as the worker receives them (functions cannot cross threads). */
export type WorkerConfig = Omit<EngineOptions, 'transport' | 'reporter' | 'random' | 'outbox'> & {
  /** The first 24 characters of each Idempotency-Key; the event's number makes the rest. */
  keyPrefix: string;
  /** How long the worker gathers outcomes while nobody waits ({@link CALM_DELAY_MS}). */
  calmDelayMs: number;
  /** Pageviews the worker builds forward an anonymised IP. */
  anonymizeIp: boolean;
  /** The proxy's URL (credentials included) when the endpoint is reached through one. */
  proxy?: string | undefined;
  /** The durable outbox (never with a Redis client object: it cannot cross). */
  outbox?: OutboxConfig | undefined;
  /** Nice steps the worker's thread lowers itself by (thread-priority.ts). */
  workerNice: number;
};

export type ToWorker =
  /**
   * Events, as encoded by {@link encodeEvent} and {@link encodePageview}; `hurry` when someone
   * waits for one of them (a trackEvent promise, flush()).
   */
  | { t: 'events'; data: string; hurry: boolean }
  /** flush() waits: report soon, until nothing is left to send. */
  | { t: 'hurry' }
  /** The query policy that pageviews numbered `id` are built with; sent before the first. */
  | { t: 'policy'; id: number; policy: QueryPolicy }
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
      concurrency: TrackerStats['concurrency'];
      emitted: [TrackerEventName, TrackerEvents[TrackerEventName]][];
      /** Reports of the worker's engine, throttled again by the main thread's reporter. */
      logs: [ReportLevel, string, string][];
      /** With an outbox: the numbers of events now waiting in it only (the main thread frees their copy). */
      spilled?: number[];
      /** With an outbox: outcome codes of events an earlier run or another instance left. */
      recovered?: number[];
      /** With an outbox: how many such events this worker has taken into delivery (a total). */
      taken?: number;
      /** With an outbox: every event numbered up to this one is in the outbox or settled. */
      persisted?: number;
      outbox?: OutboxTrackerStats;
    }
  | { t: 'closed' }
  /** The worker is set up: from now on a crash is worth a restart. */
  | { t: 'ready' }
  /** Nothing to report, but the worker holds events and its event loop runs. */
  | { t: 'alive' };

/** While it holds events, the worker says something at least this often. */
export const HEARTBEAT_MS = 1000;

/**
 * How long events nobody waits for (the middleware's pageviews) gather before they cross, and
 * outcomes before the worker reports them. Every message wakes the thread that gets it, and a
 * wake-up costs the request thread more than reading a few dozen events: at 2,000 pageviews/s
 * in `bench/request-cost.mjs`, 50 ms instead of 5 ms cut the main thread's cost per request
 * from about 18 to 10.5 µs.
 */
export const CALM_DELAY_MS = 50;
/**
 * The same while someone waits: a trackEvent promise (an app may await it before answering)
 * or flush(). Both threads switch to it, the worker until it has nothing left to send.
 */
export const HURRY_DELAY_MS = 5;

/** Every outcome, numbered: the code that crosses the thread boundary. */
export const OUTCOMES: readonly Outcome[] = Object.freeze([
  { kind: 'delivered' },
  ...FAIL_REASONS.map((reason): Outcome => ({
    kind: 'failed',
    reason,
    message: `the event failed (${reason}) in the delivery worker`,
  })),
  ...DROP_REASONS.map((reason): Outcome => ({ kind: 'dropped', reason })),
  { kind: 'stored' },
]);

export function outcomeCode(outcome: Outcome): number {
  if (outcome.kind === 'delivered') return 0;
  if (outcome.kind === 'failed') return 1 + FAIL_REASONS.indexOf(outcome.reason);
  if (outcome.kind === 'stored') return 1 + FAIL_REASONS.length + DROP_REASONS.length;
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

/**
 * One event as `seq\nbody\n` and one line per forwarded header (empty when absent).
 *
 * Encodings are joined from an array, not added piece by piece: `a + b` makes a chain of
 * pieces that postMessage must copy into one string on the request thread, and a batch of
 * such chains cost about 1 µs an event there (`node --cpu-prof`); a join writes it once.
 */
export function encodeEvent(seq: number, body: string, headers: EventHeaders): string {
  return [
    seq,
    body,
    headers['user-agent'] ?? '',
    headers['x-forwarded-for'] ?? '',
    headers['sec-ch-ua'] ?? '',
    headers['sec-ch-ua-mobile'] ?? '',
    headers['sec-ch-ua-platform'] ?? '',
    '',
  ].join('\n');
}

/** Lines of a pageview the worker builds: `p` and its number, its policy, then its parts. */
const PAGEVIEW_FIELDS = 10;

/**
 * A middleware pageview, unbuilt: `p<seq>`, the number of its query policy, then the
 * {@link PageviewParts} one a line, in their order. Undefined when a part holds a line break
 * (an app can put anything in a request): such a pageview is built before it crosses.
 */
export function encodePageview(
  seq: number,
  policy: number,
  origin: string,
  target: string,
  ip: string | undefined,
  headers: PageviewHeaders,
): string | undefined {
  const referer = text(headers.referer);
  const userAgent = text(headers['user-agent']);
  const ua = text(headers['sec-ch-ua']);
  const mobile = text(headers['sec-ch-ua-mobile']);
  const platform = text(headers['sec-ch-ua-platform']);
  const ipText = ip ?? '';
  if (
    origin.includes('\n') ||
    target.includes('\n') ||
    ipText.includes('\n') ||
    referer.includes('\n') ||
    userAgent.includes('\n') ||
    ua.includes('\n') ||
    mobile.includes('\n') ||
    platform.includes('\n')
  ) {
    return undefined;
  }
  return [
    `p${seq}`,
    policy,
    origin,
    target,
    ipText,
    referer,
    userAgent,
    ua,
    mobile,
    platform,
    '',
  ].join('\n');
}

/**
 * Goes through a batch made by {@link encodeEvent} and {@link encodePageview}: `event` gets each
 * built event, `pageview` the parts of each unbuilt pageview and the number of its policy.
 */
export function decodeEvents(
  data: string,
  event: (seq: number, body: string, headers: EventHeaders) => void,
  pageview: (seq: number, parts: PageviewParts, policy: number) => void,
): void {
  const fields = data.split('\n');
  let i = 0;
  while (i < fields.length - 1) {
    const first = fields[i]!;
    if (first.startsWith('p')) {
      if (i + PAGEVIEW_FIELDS > fields.length) return;
      const parts: PageviewParts = {
        origin: fields[i + 2]!,
        target: fields[i + 3]!,
        ip: fields[i + 4]!,
        referer: fields[i + 5]!,
        userAgent: fields[i + 6]!,
        secChUa: fields[i + 7]!,
        secChUaMobile: fields[i + 8]!,
        secChUaPlatform: fields[i + 9]!,
      };
      pageview(Number(first.slice(1)), parts, Number(fields[i + 1]));
      i += PAGEVIEW_FIELDS;
      continue;
    }
    if (i + FIELDS > fields.length) return;
    const headers: EventHeaders = { 'content-type': 'application/json' };
    for (let h = 0; h < FORWARDED.length; h++) {
      const value = fields[i + 2 + h]!;
      if (value !== '') headers[FORWARDED[h]!] = value;
    }
    event(Number(first), fields[i + 1]!, headers);
    i += FIELDS;
  }
}

/** The Idempotency-Key of event `seq`: a UUID whose last 12 hex digits are the number. */
export function idempotencyKey(prefix: string, seq: number): string {
  return prefix + seq.toString(16).padStart(12, '0');
}

/**
 * The outbox hooks of a delivery whose events are numbered under `prefix`: an event read back
 * under such a key is one of this tracker's own (`own` gives who hears it, by number); any other
 * was left by an earlier run or another instance (`other` gives who hears it); `spilled` hears the
 * numbers of own events that now wait in the store only.
 */
export function numberedOutboxHooks(
  prefix: string,
  own: (seq: number) => Settled,
  other: () => Settled,
  spilled: (seq: number) => void,
): Pick<EngineOutbox, 'admitted' | 'spilled'> {
  return {
    admitted(key) {
      const seq = keySeq(prefix, key);
      return seq === undefined ? other() : own(seq);
    },
    spilled(key) {
      const seq = keySeq(prefix, key);
      if (seq !== undefined) spilled(seq);
    },
  };
}

/** The number in a key made by {@link idempotencyKey} with `prefix`; undefined for anyone else's. */
export function keySeq(prefix: string, key: string): number | undefined {
  if (key.length !== prefix.length + 12 || !key.startsWith(prefix)) return undefined;
  const seq = parseInt(key.slice(prefix.length), 16);
  return Number.isSafeInteger(seq) && seq > 0 ? seq : undefined;
}
