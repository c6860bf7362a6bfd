/**
 * How many requests may be in flight to the endpoint: a limit that follows the endpoint's
 * distance and health (`concurrency: 'auto'`), or a fixed one.
 *
 * A process needs about arrival rate × latency requests in flight (Little's law): 100 at
 * 1,000 events/s and 100 ms. The adaptive limit is decided once a round, a round being
 * {@link ROUND_TRIPS} round trips (at least {@link MIN_ROUND_MS}), from the answers to the attempts sent in it:
 * - a 429: down to the floor (the endpoint asked for less; sending also pauses as it says);
 * - 5xx, timeouts, network errors: halved (as TCP does on loss);
 * - latency above {@link LATENCY_TOLERANCE} × the baseline (plus {@link LATENCY_SLACK_MS}): cut
 *   in proportion, at most halved: the endpoint is queueing, and more requests would only wait
 *   there;
 * - otherwise, while events waited for a free slot and the limit is below what Little's law
 *   asks for the round's arrival rate and backlog (with {@link HEADROOM}): up to that, and at
 *   least doubled until the first cut (slow start), when the latency is near the baseline
 *   ({@link CALM_RATIO}); by a tenth with the latency between calm and the tolerance. Events
 *   that waited for a burst while the limit covers the rate change nothing;
 * - otherwise, when the round used less than half of it: down towards twice what it used, so
 *   that it follows a faster endpoint back down.
 * The baseline is the endpoint's latency without our load. It falls at once with any round's
 * latency, and rises only with a round that had few requests in flight ({@link LOW_LOAD}): a
 * far or slow endpoint is then told from one that queues our own requests (whose latency is low
 * again at low load), and the limit does not ratchet up on its own queueing. Against an endpoint
 * that slows down for everyone, the limit is cut until it is low, then grows again to what the
 * new latency needs.
 * Ideas from TCP congestion control (slow start, multiplicative decrease), TCP Vegas and
 * Netflix's concurrency-limits (a latency baseline against the current latency).
 */

/** The adaptive limit never goes below this (nor above the ceiling, if the ceiling is lower). */
export const LIMIT_FLOOR = 4;
/** Where the adaptive limit starts: the fixed default of earlier versions. */
export const LIMIT_START = 10;
/** A round lasts this many round trips, and at least {@link MIN_ROUND_MS}. */
export const ROUND_TRIPS = 1.5;
export const MIN_ROUND_MS = 10;
/** Latency above this many times the baseline (plus the slack) means the endpoint queues. */
export const LATENCY_TOLERANCE = 2;
/** Latency up to this many times the baseline (plus the slack) is calm: growth to the need. */
export const CALM_RATIO = 1.25;
/** Rounds with at most this many requests in flight measure the endpoint without our load. */
export const LOW_LOAD = LIMIT_START;
/** Absolute slack on the latency test, so that jitter on a near endpoint is not taken for queueing. */
export const LATENCY_SLACK_MS = 20;
/** A round that used less than half of the limit takes it down by this factor (at most). */
export const UNUSED_DECAY = 0.8;
/** Room above what Little's law asks, for bursts and variance. */
export const HEADROOM = 1.5;
/** Seconds in which the limit means to clear a backlog, on top of the arrival rate. */
export const DRAIN_SECONDS = 2;

/** How one attempt ended, as far as the limit cares. */
export type AttemptSignal = 'ok' | 'overload' | 'throttled';

/** What the limit shows in `stats()`. */
export interface ConcurrencyStats {
  /** `true` for `concurrency: 'auto'`. */
  adaptive: boolean;
  /** Requests that may be in flight now. */
  limit: number;
  /** Mean latency of the last round's answers, in ms; undefined before the first. */
  latencyMs: number | undefined;
  /** The baseline latency the adaptive limit compares with, in ms; undefined before the first. */
  baselineMs: number | undefined;
}

export interface ConcurrencyLimit {
  /** Requests that may be in flight now. */
  readonly current: number;
  /** An event arrived (new or a retry), for the arrival rate. */
  arrived(): void;
  /**
   * An attempt ended `rttMs` after it started. `waiting`: events waiting for a slot now;
   * `inFlight`: attempts in flight now. Returns true when the limit changed.
   */
  sample(
    now: number,
    rttMs: number,
    signal: AttemptSignal,
    waiting: number,
    inFlight: number,
  ): boolean;
  stats(): ConcurrencyStats;
}

/** `concurrency: <number>`: the limit the app chose, whatever happens. */
export class FixedLimit implements ConcurrencyLimit {
  private latencyMs: number | undefined;

  constructor(readonly current: number) {}

  arrived(): void {}

  sample(_now: number, rttMs: number, signal: AttemptSignal): boolean {
    if (signal === 'ok') {
      this.latencyMs = this.latencyMs === undefined ? rttMs : this.latencyMs * 0.9 + rttMs * 0.1;
    }
    return false;
  }

  stats(): ConcurrencyStats {
    return {
      adaptive: false,
      limit: this.current,
      latencyMs: round(this.latencyMs),
      baselineMs: undefined,
    };
  }
}

/** `concurrency: 'auto'`: see the file's comment. */
export class AdaptiveLimit implements ConcurrencyLimit {
  readonly floor: number;
  readonly ceiling: number;
  private value: number;
  current: number;
  private slowStart = true;

  private roundStart: number | undefined;
  private okCount = 0;
  private rttSum = 0;
  private overload = false;
  private throttled = false;
  private demand = false;
  private waitingMax = 0;
  private inFlightMax = 0;
  private arrivals = 0;

  private latencyMs: number | undefined;
  private baseline: number | undefined;

  constructor(ceiling: number) {
    this.ceiling = ceiling;
    this.floor = Math.min(LIMIT_FLOOR, ceiling);
    this.value = Math.min(LIMIT_START, ceiling);
    this.current = this.value;
  }

  get baselineMs(): number | undefined {
    return this.baseline;
  }

  arrived(): void {
    this.arrivals++;
  }

  sample(
    now: number,
    rttMs: number,
    signal: AttemptSignal,
    waiting: number,
    inFlight: number,
  ): boolean {
    const sentAt = now - rttMs;
    this.roundStart ??= sentAt;
    // An attempt sent before the round began tells of the limit before the last decision: one
    // decision a round trip, as TCP cuts its window once per window of losses.
    if (sentAt < this.roundStart) return false;
    if (signal === 'ok') {
      this.okCount++;
      this.rttSum += rttMs;
    } else if (signal === 'throttled') {
      this.throttled = true;
    } else {
      this.overload = true;
    }
    if (waiting > 0) this.demand = true;
    if (waiting > this.waitingMax) this.waitingMax = waiting;
    // The attempt that just ended was in flight too.
    if (inFlight + 1 > this.inFlightMax) this.inFlightMax = inFlight + 1;
    // Half a round trip more than one: the answers to the attempts sent early in the round are
    // in. A much faster answer shortens the round: the endpoint came back from a slow spell.
    const latency = Math.min(this.latencyMs ?? 0, signal === 'ok' ? rttMs : Infinity);
    const length = Math.max(MIN_ROUND_MS, latency * ROUND_TRIPS);
    const elapsed = now - this.roundStart;
    return elapsed >= length ? this.endRound(now, elapsed) : false;
  }

  private endRound(now: number, elapsed: number): boolean {
    const rtt = this.okCount > 0 ? this.rttSum / this.okCount : undefined;
    if (rtt !== undefined) {
      this.latencyMs = rtt;
      // Any lower latency, or any latency at low load, is the endpoint's own.
      if (this.baseline === undefined || rtt < this.baseline || this.inFlightMax <= LOW_LOAD) {
        this.baseline = rtt;
      }
    }
    const base = this.baseline ?? 0;
    const latency = rtt ?? this.latencyMs ?? 0;
    let next = this.value;
    if (this.throttled) {
      next = this.floor;
      this.slowStart = false;
    } else if (this.overload) {
      next = this.value / 2;
      this.slowStart = false;
    } else if (latency > base * LATENCY_TOLERANCE + LATENCY_SLACK_MS) {
      next = this.value * Math.max(0.5, (base * LATENCY_TOLERANCE + LATENCY_SLACK_MS) / latency);
      this.slowStart = false;
    } else if (this.demand) {
      // Little's law: the round's arrivals and backlog, at the round's latency.
      const perSecond = (this.arrivals * 1000) / Math.max(elapsed, 1);
      const need = (perSecond + this.waitingMax / DRAIN_SECONDS) * (latency / 1000) * HEADROOM;
      if (need <= this.value) {
        // Events waited for a burst, not for want of room: the limit covers the rate.
        this.slowStart = false;
      } else if (latency > base * CALM_RATIO + LATENCY_SLACK_MS) {
        next = this.value * 1.1;
      } else {
        next = this.slowStart ? Math.max(this.value * 2, need) : need;
      }
    } else if (this.inFlightMax * 2 < this.value) {
      next = Math.max(this.inFlightMax * 2, this.value * UNUSED_DECAY);
    }
    this.value = Math.min(this.ceiling, Math.max(this.floor, next));
    this.roundStart = now;
    this.okCount = 0;
    this.rttSum = 0;
    this.overload = false;
    this.throttled = false;
    this.demand = false;
    this.waitingMax = 0;
    this.inFlightMax = 0;
    this.arrivals = 0;
    const current = Math.round(this.value);
    if (current === this.current) return false;
    this.current = current;
    return true;
  }

  stats(): ConcurrencyStats {
    return {
      adaptive: true,
      limit: this.current,
      latencyMs: round(this.latencyMs),
      baselineMs: round(this.baselineMs),
    };
  }
}

function round(ms: number | undefined): number | undefined {
  return ms === undefined ? undefined : Math.round(ms * 10) / 10;
}

export function createLimit(concurrency: number | 'auto', ceiling: number): ConcurrencyLimit {
  return concurrency === 'auto' ? new AdaptiveLimit(ceiling) : new FixedLimit(concurrency);
}
