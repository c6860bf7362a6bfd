/**
 * The endpoint's documented limits, per IP: 60 requests per 10 s, 5,000 per hour. The guard
 * counts per visitor IP and refuses what the endpoint would refuse anyway. Its memory is bounded:
 * past `maxTracked` IPs, the least recently seen is forgotten.
 */

export interface RateWindow {
  limit: number;
  windowMs: number;
}

export const ENDPOINT_LIMITS: readonly RateWindow[] = [
  { limit: 60, windowMs: 10_000 },
  { limit: 5000, windowMs: 3_600_000 },
];

interface Counter {
  /** Start of the current window, and the count in it, per limit (same order as limits). */
  starts: number[];
  counts: number[];
}

export class RateGuard {
  private readonly counters = new Map<string, Counter>();

  constructor(
    private readonly limits: readonly RateWindow[] = ENDPOINT_LIMITS,
    private readonly maxTracked = 10_000,
    private readonly now: () => number = Date.now,
  ) {}

  /** Counts one request for `key` and says whether it is within every limit. */
  allow(key: string): boolean {
    const now = this.now();
    let counter = this.counters.get(key);
    if (counter) {
      this.counters.delete(key); // re-inserted below: the Map's order is recency
    } else {
      counter = { starts: this.limits.map(() => now), counts: this.limits.map(() => 0) };
      if (this.counters.size >= this.maxTracked) {
        this.counters.delete(this.counters.keys().next().value as string);
      }
    }
    this.counters.set(key, counter);

    let allowed = true;
    for (let i = 0; i < this.limits.length; i++) {
      const { limit, windowMs } = this.limits[i]!;
      if (now - counter.starts[i]! >= windowMs) {
        counter.starts[i] = now;
        counter.counts[i] = 0;
      }
      if (counter.counts[i]! >= limit) allowed = false;
    }
    if (allowed) for (let i = 0; i < this.limits.length; i++) counter.counts[i]!++;
    return allowed;
  }

  /** How many IPs are tracked now. */
  get size(): number {
    return this.counters.size;
  }
}
