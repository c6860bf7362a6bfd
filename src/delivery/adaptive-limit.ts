/**
 * How many requests may be in flight to the endpoint: a limit that follows the endpoint's
 * distance and health (`concurrency: 'auto'`), or a fixed one.
 *
 * A process needs about arrival rate × latency requests in flight (Little's law): 100 at
 * 1,000 events/s and 100 ms. The adaptive limit reacts to failures at once and decides growth
 * once a round: {@link ROUND_TRIPS} round trips (at least {@link MIN_ROUND_MS} and
 * {@link MIN_ANSWERS} answers), judged on the answers to the attempts sent in it.
 * - A 429: down to the floor at once (the endpoint asked for less; sending also pauses as it
 *   says).
 * - A 5xx, timeout or network error: halved at once, once per window of failures (failures of
 *   attempts sent before the last cut were answered by it), as TCP does on loss.
 * - A round whose latency is above {@link LATENCY_TOLERANCE} × the baseline (plus
 *   {@link LATENCY_SLACK_MS}): cut in proportion, at most halved. The endpoint is queueing, and
 *   more requests would only wait there.
 * - A round in which events waited for a free slot, nothing failed, and Little's law asks for
 *   more than the limit: the arrival rate (smoothed over {@link RATE_WINDOW_MS}: a burst is
 *   backlog, not rate) and the backlog over {@link DRAIN_SECONDS}, times the time an attempt
 *   held its slot (failures included), with {@link HEADROOM}. It grows towards that, at most
 *   doubling a round until the first cut and up to where it was cut, a quarter a round above;
 *   a tenth only while the latency is between calm ({@link CALM_RATIO}) and the tolerance.
 * - A round with nothing waiting that used less than half of it: down towards twice what it
 *   used, so that it follows a faster endpoint back down.
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
export const ROUND_TRIPS = 1;
export const MIN_ROUND_MS = 10;
/** A round is decided on this many answers at least (fewer when the limit is small). */
export const MIN_ANSWERS = 4;
/** The arrival rate is smoothed over about this long: a burst counts as backlog, not as rate. */
export const RATE_WINDOW_MS = 1000;
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
  /** Below it the limit doubles a round (slow start); above it, it grows by a quarter. */
  private threshold = Infinity;
  /** When the limit was last cut: failures of attempts sent before it were answered by that cut. */
  private recoveryPoint = -Infinity;

  private roundStart: number | undefined;
  /** Answers to attempts sent in this round: successes and their latency. */
  private okCount = 0;
  private rttSum = 0;
  /** Every attempt that ended in this round, whenever sent: how long each held its slot. */
  private holdCount = 0;
  private holdSum = 0;
  /** A failure (5xx, timeout, network) ended in this round: no growth. */
  private failed = false;
  private demand = false;
  private inFlightMax = 0;
  private arrivals = 0;
  /** Arrivals a second, smoothed over about a second (a burst counts as backlog, not rate). */
  private rate = 0;

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
    this.holdCount++;
    this.holdSum += rttMs;
    if (waiting > 0) this.demand = true;
    // The attempt that just ended was in flight too.
    if (inFlight + 1 > this.inFlightMax) this.inFlightMax = inFlight + 1;
    if (signal === 'throttled') {
      // The endpoint asked for less: at once, whenever the attempt was sent.
      return this.cut(now, this.floor);
    }
    if (signal === 'overload') {
      this.failed = true;
      // One cut per window of failures, as TCP cuts once per window of losses: attempts sent
      // before the last cut were answered by it.
      return sentAt >= this.recoveryPoint ? this.cut(now, this.value / 2) : false;
    }
    this.roundStart ??= sentAt;
    // Growth and the latency test judge the attempts sent in this round: those sent before it
    // tell of the limit before the last decision.
    if (sentAt < this.roundStart) return false;
    this.okCount++;
    this.rttSum += rttMs;
    // About a round trip (at least MIN_ROUND_MS), and a few answers at least. A much faster
    // answer shortens it: the endpoint is back from a slow spell.
    const latency = Math.min(this.latencyMs ?? 0, rttMs);
    const length = Math.max(MIN_ROUND_MS, latency * ROUND_TRIPS);
    const enough = this.okCount >= Math.min(MIN_ANSWERS, Math.ceil(this.value / 2));
    const elapsed = now - this.roundStart;
    return elapsed >= length && enough ? this.endRound(now, elapsed, waiting) : false;
  }

  private endRound(now: number, elapsed: number, waiting: number): boolean {
    const rtt = this.rttSum / this.okCount;
    this.latencyMs = rtt;
    // Any lower latency, or any latency at low load, is the endpoint's own.
    if (this.baseline === undefined || rtt < this.baseline || this.inFlightMax <= LOW_LOAD) {
      this.baseline = rtt;
    }
    const weight = Math.min(1, elapsed / RATE_WINDOW_MS);
    this.rate += ((this.arrivals * 1000) / Math.max(elapsed, 1) - this.rate) * weight;
    const base = this.baseline;
    const limitLatency = base * LATENCY_TOLERANCE + LATENCY_SLACK_MS;
    if (rtt > limitLatency) {
      // The endpoint is queueing: cut in proportion, at most by half.
      return this.cut(now, this.value * Math.max(0.5, limitLatency / rtt));
    }
    let next = this.value;
    if (this.demand && !this.failed) {
      // Little's law: the arrival rate, and the backlog over a few seconds, at the time an
      // attempt holds its slot (failures included).
      const hold = this.holdSum / this.holdCount / 1000;
      const need = (this.rate + waiting / DRAIN_SECONDS) * hold * HEADROOM;
      if (need > this.value) {
        const calm = rtt <= base * CALM_RATIO + LATENCY_SLACK_MS;
        const step = !calm ? 1.1 : this.value < this.threshold ? 2 : 1.25;
        next = Math.min(need, this.value * step);
      }
    } else if (!this.demand && this.inFlightMax * 2 < this.value) {
      next = Math.max(this.inFlightMax * 2, this.value * UNUSED_DECAY);
    }
    return this.set(next, now);
  }

  /** Cuts the limit to `to` now; growth comes back slowly up to where it was. */
  private cut(now: number, to: number): boolean {
    this.recoveryPoint = now;
    // Where it was before this spell of trouble: a cut at the floor leaves it.
    if (to < this.value) this.threshold = this.value;
    return this.set(Math.min(this.value, to), now);
  }

  private set(next: number, now: number): boolean {
    this.value = Math.min(this.ceiling, Math.max(this.floor, next));
    this.roundStart = now;
    this.okCount = 0;
    this.rttSum = 0;
    this.holdCount = 0;
    this.holdSum = 0;
    this.failed = false;
    this.demand = false;
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
