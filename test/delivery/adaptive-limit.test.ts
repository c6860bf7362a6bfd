/**
 * The in-flight limit on its own, driven by a small discrete-time simulation of an endpoint at a
 * distance (1 ms steps, no timers): what it converges to, and how it follows latency and failures.
 */
import {
  AdaptiveLimit,
  FixedLimit,
  LIMIT_FLOOR,
  LOW_LOAD,
  LIMIT_START,
  type AttemptSignal,
  type ConcurrencyLimit,
} from '../../src/delivery/adaptive-limit';

interface Scenario {
  /** Events arriving per second at time t (ms). */
  rate: (t: number) => number;
  /** Milliseconds until the endpoint answers a request sent at time t with `open` in flight. */
  latency: (t: number, open: number) => number;
  /** How the endpoint answers a request sent at time t. */
  answer?: (t: number) => AttemptSignal;
  /** Simulated milliseconds. */
  duration: number;
  /** Events that may wait; beyond it they are dropped. */
  queueBound?: number;
  /** How long a failed attempt takes (a timeout), instead of `latency`. */
  failAfter?: number;
}

interface Result {
  delivered: number;
  dropped: number;
  arrived: number;
  /** Time of the last answer, ms. */
  lastAnswer: number;
  /** Time of the last arrival, ms. */
  lastArrival: number;
  /** Most requests in flight at once. */
  maxInFlight: number;
  /** The limit at each full second. */
  limits: number[];
  /** The limit every 10 ms. */
  trace: number[];
}

/** Runs the scenario, then keeps answering (no new arrivals) until nothing is left. */
function simulate(limit: ConcurrencyLimit, scenario: Scenario): Result {
  const { rate, latency, duration, answer = () => 'ok', queueBound = 10_000, failAfter } = scenario;
  let waiting = 0;
  let credit = 0;
  // In flight: [answer time, sent time, signal]
  let flight: [number, number, AttemptSignal][] = [];
  const result: Result = {
    delivered: 0,
    dropped: 0,
    arrived: 0,
    lastAnswer: 0,
    lastArrival: 0,
    maxInFlight: 0,
    limits: [],
    trace: [],
  };
  for (let t = 0; t < duration + 120_000; t++) {
    // As the engine does: an event starts at once when there is room, else it waits.
    const pump = () => {
      while (waiting > 0 && flight.length < limit.current) {
        waiting--;
        const signal = answer(t);
        const takes =
          signal === 'overload' && failAfter !== undefined
            ? failAfter
            : latency(t, flight.length + 1);
        flight.push([t + takes, t, signal]);
      }
    };
    if (t < duration) {
      credit += rate(t) / 1000;
      while (credit >= 1) {
        credit -= 1;
        result.arrived++;
        result.lastArrival = t;
        if (waiting >= queueBound) {
          result.dropped++;
        } else {
          waiting++;
          limit.arrived();
          pump();
        }
      }
    } else if (waiting === 0 && flight.length === 0) {
      break;
    }
    const done = flight.filter(([at]) => at <= t);
    if (done.length > 0) {
      flight = flight.filter(([at]) => at > t);
      for (const [, sent, signal] of done) {
        if (signal === 'ok') {
          result.delivered++;
          result.lastAnswer = t;
        } else {
          // Retried: it waits again.
          waiting++;
          limit.arrived();
        }
        limit.sample(t, t - sent, signal, waiting, flight.length);
        pump();
      }
    }
    result.maxInFlight = Math.max(result.maxInFlight, flight.length);
    if (t % 1000 === 999) result.limits.push(limit.current);
    if (t % 10 === 9) result.trace.push(limit.current);
  }
  return result;
}

const steady = (value: number) => () => value;

test('starts at the old fixed default and stays put when nothing waits (a near endpoint)', () => {
  const limit = new AdaptiveLimit(256);
  expect(limit.current).toBe(LIMIT_START);
  const run = simulate(limit, { rate: steady(200), latency: steady(1), duration: 5000 });
  expect(run.delivered).toBe(run.arrived);
  expect(Math.max(...run.limits)).toBeLessThanOrEqual(LIMIT_START);
});

test.each([
  { rate: 1000, latencyMs: 100, duration: 10_000 },
  { rate: 300, latencyMs: 300, duration: 10_000 },
  { rate: 50, latencyMs: 2000, duration: 20_000 },
  { rate: 3000, latencyMs: 50, duration: 10_000 },
])(
  'keeps up with $rate events/s at $latencyMs ms: everything delivered, soon after the last',
  ({ rate, latencyMs, duration }) => {
    const run = simulate(new AdaptiveLimit(256), {
      rate: steady(rate),
      latency: steady(latencyMs),
      duration,
    });
    expect(run.dropped).toBe(0);
    expect(run.delivered).toBe(run.arrived);
    // Little's law: rate × latency in flight; the limit grows to it but not far past it.
    expect(run.lastAnswer - run.lastArrival).toBeLessThan(Math.max(5000, latencyMs * 5));
    expect(run.maxInFlight).toBeGreaterThanOrEqual((rate * latencyMs) / 1000);
    expect(run.limits.at(-1)).toBeLessThanOrEqual(256);
  },
);

test.each([
  // 1,000 events/s near by: 1.5 in flight; waiting for a moment at each burst is no reason to grow.
  { perBurst: 50, latencyMs: 1, most: LIMIT_START },
  // 300 events/s at 300 ms: 90 in flight, 135 with headroom; not the ceiling.
  { perBurst: 15, latencyMs: 300, most: 200 },
])(
  '$perBurst events every 50 ms (batches reaching the worker) at $latencyMs ms: the limit stays near what the rate needs',
  ({ perBurst, latencyMs, most }) => {
    const run = simulate(new AdaptiveLimit(256), {
      rate: (t) => (t % 50 === 0 ? perBurst * 1000 : 0),
      latency: steady(latencyMs),
      duration: 10_000,
    });
    expect(run.delivered).toBe(run.arrived);
    expect(Math.max(...run.limits)).toBeLessThanOrEqual(most);
  },
);

test('a fixed limit of 10 carries only 10 / latency: the defect the adaptive limit removes', () => {
  const run = simulate(new FixedLimit(10), {
    rate: steady(1000),
    latency: steady(100),
    duration: 10_000,
    queueBound: 2000,
  });
  // 100 events/s get through; the other 900/s wait until the queue bound drops them.
  expect(run.dropped).toBeGreaterThan(0);
  expect(run.maxInFlight).toBe(10);
});

test('never passes its ceiling, and respects a ceiling below the floor and the start', () => {
  const high = simulate(new AdaptiveLimit(64), {
    rate: steady(3000),
    latency: steady(300),
    duration: 3000,
  });
  expect(high.maxInFlight).toBe(64);
  const tiny = new AdaptiveLimit(2);
  expect(tiny.current).toBe(2);
  expect(tiny.floor).toBe(2);
  const run = simulate(tiny, { rate: steady(100), latency: steady(10), duration: 1000 });
  expect(run.maxInFlight).toBeLessThanOrEqual(2);
});

test('a 429 storm takes it to the floor at once; it grows back at most doubling a round', () => {
  // 1,000 events/s at 100 ms; every attempt sent between 3.0 and 3.5 s is answered 429 (and
  // retried).
  const storm = (t: number): AttemptSignal => (t >= 3000 && t < 3500 ? 'throttled' : 'ok');
  const run = simulate(new AdaptiveLimit(256), {
    rate: steady(1000),
    latency: steady(100),
    answer: storm,
    duration: 8000,
  });
  const at = (ms: number) => run.trace[ms / 10 - 1]!;
  expect(at(3000)).toBeGreaterThan(100);
  // The first 429 answers at 3.1 s: the floor right away, and while the storm's answers come.
  expect(at(3110)).toBe(LIMIT_FLOOR);
  expect(Math.max(...run.trace.slice(311, 360))).toBe(LIMIT_FLOOR);
  // Then at most doubling a round trip, not straight back to what 1,000/s needs.
  expect(at(3700)).toBeLessThanOrEqual(LIMIT_FLOOR * 4);
  expect(at(4500)).toBeGreaterThan(100);
  expect(run.delivered).toBe(run.arrived);
});

test('5xx and timeouts halve it once a round, not once an answer', () => {
  const limit = new AdaptiveLimit(256);
  simulate(limit, { rate: steady(1000), latency: steady(100), duration: 3000 });
  const before = limit.current;
  // Fifty failures in one round (their answers 1 ms apart, the round about 100 ms long)...
  let changes = 0;
  for (let i = 0; i < 50; i++) {
    if (limit.sample(100_000 + i, 100, 'overload', 100, 50)) changes++;
  }
  // ...then the round ends with one more.
  if (limit.sample(100_200, 100, 'overload', 100, 50)) changes++;
  expect(changes).toBeLessThanOrEqual(2);
  expect(limit.current).toBeGreaterThanOrEqual(Math.floor(before / 4));
  expect(limit.current).toBeLessThan(before);
});

test('a fifth of the attempts time out (5 s) while the rest answer in 50 ms: the timeouts are seen and cut it', () => {
  const limit = new AdaptiveLimit(256);
  let n = 0;
  const run = simulate(limit, {
    rate: steady(400),
    latency: steady(50),
    answer: () => (n++ % 5 === 4 ? 'overload' : 'ok'),
    failAfter: 5000,
    duration: 12_000,
    queueBound: 100_000,
  });
  // Before the first timeout answers (5 s) it grows with the backlog the hung attempts leave;
  // from then on each window of timeouts halves it (a round with a failure never grows it), and
  // it never reaches the ceiling however long the backlog.
  const grown = Math.max(...run.trace.slice(0, 490));
  expect(grown).toBeGreaterThan(LIMIT_START);
  expect(Math.min(...run.trace.slice(500, 600))).toBeLessThan(grown);
  const cuts = run.trace.filter((value, i) => i > 0 && value < run.trace[i - 1]!).length;
  expect(cuts).toBeGreaterThanOrEqual(10);
  expect(Math.max(...run.trace)).toBeLessThan(256);
});

test('a black-holed endpoint (every attempt times out) brings it down to the floor', () => {
  const limit = new AdaptiveLimit(256);
  simulate(limit, { rate: steady(1000), latency: steady(100), duration: 3000 });
  let t = 200_000;
  for (let round = 0; round < 12; round++) {
    for (let i = 0; i < 20; i++) limit.sample((t += 5), 5000, 'overload', 1000, 20);
    t += 5000;
  }
  expect(limit.current).toBe(LIMIT_FLOOR);
});

test('latency that jumps from 50 ms to 3 s and back: the limit follows both ways', () => {
  const limit = new AdaptiveLimit(256);
  const jump = (t: number) => (t >= 10_000 && t < 40_000 ? 3000 : 50);
  const run = simulate(limit, { rate: steady(60), latency: jump, duration: 60_000 });
  const at = (second: number) => run.limits[second - 1]!;
  // At 50 ms, 60 events/s need 3 in flight: the limit stays low.
  expect(at(9)).toBeLessThanOrEqual(LIMIT_START);
  // At 3 s they need 180. Few were in flight when the latency rose, so it is the endpoint's own
  // latency (not our queueing): the baseline follows, and the limit grows to the need.
  expect(Math.max(...run.limits.slice(10, 40))).toBeGreaterThanOrEqual(180);
  // Back at 50 ms it comes down again.
  expect(at(60)).toBeLessThanOrEqual(LIMIT_START * 2);
  expect(run.dropped).toBe(0);
  expect(run.delivered).toBe(run.arrived);
});

test('an endpoint that slows down for everyone while many are in flight: cut first, then grown to the new need', () => {
  const limit = new AdaptiveLimit(256);
  const slower = (t: number) => (t >= 5000 ? 400 : 100);
  const run = simulate(limit, { rate: steady(300), latency: slower, duration: 20_000 });
  const before = run.limits[4]!;
  // 300/s at 100 ms: 30 in flight, 45 with headroom.
  expect(before).toBeGreaterThan(LOW_LOAD);
  // Four times the latency with many in flight reads as queueing: cut...
  expect(Math.min(...run.limits.slice(5, 10))).toBeLessThan(before);
  // ...until few are in flight and the latency is still high: the endpoint's own, so it grows to
  // what 300/s at 400 ms needs (120).
  expect(Math.max(...run.limits.slice(8, 20))).toBeGreaterThanOrEqual(120);
  expect(run.dropped).toBe(0);
  expect(run.delivered).toBe(run.arrived);
});

test('latency that climbs with its own load (an endpoint that queues) stops the growth', () => {
  // The endpoint answers in 50 ms up to 20 requests at once; each one more adds 5 ms to all, so
  // it serves at most about 200 a second however many are sent.
  const queueing = (_t: number, open: number): number => 50 + Math.max(0, open - 20) * 5;
  const run = simulate(new AdaptiveLimit(256), {
    rate: steady(1000),
    latency: queueing,
    duration: 5000,
    queueBound: 100_000,
  });
  // Without the latency test it would sit at the ceiling: 256 in flight, 1,230 ms each. With it,
  // the limit stays where the latency is at most about twice the endpoint's own.
  const settled = run.limits.slice(2, 5);
  expect(Math.max(...settled)).toBeLessThan(60);
  expect(Math.min(...settled)).toBeGreaterThanOrEqual(LIMIT_FLOOR);
});

test('stats show the limit, the latency and the baseline', () => {
  const limit = new AdaptiveLimit(128);
  expect(limit.stats()).toEqual({
    adaptive: true,
    limit: LIMIT_START,
    latencyMs: undefined,
    baselineMs: undefined,
  });
  simulate(limit, { rate: steady(500), latency: steady(80), duration: 2000 });
  const stats = limit.stats();
  expect(stats.latencyMs).toBeCloseTo(80, 0);
  expect(stats.baselineMs).toBeCloseTo(80, 0);
  expect(stats.limit).toBe(limit.current);
  const fixed = new FixedLimit(7);
  fixed.sample(0, 40, 'ok');
  expect(fixed.stats()).toEqual({
    adaptive: false,
    limit: 7,
    latencyMs: 40,
    baselineMs: undefined,
  });
});
