/**
 * Conservation under a seeded mix of faults: every event is delivered, or failed or dropped with
 * a reason; stats add up at every moment; no event is recorded twice unless the collector really
 * lost its response; no unhandled rejection. Runs the built package in a child process.
 */
import { execFileSync } from 'node:child_process';
import path from 'node:path';

interface Findings {
  stats: {
    enqueued: number;
    delivered: number;
    failed: number;
    dropped: number;
    queued: number;
    inFlight: number;
    retries: number;
    reasons: { failed: Record<string, number>; dropped: Record<string, number> };
  };
  trueResults: number;
  falseResults: number;
  distinctRecorded: number;
  unexplainedDuplicates: number;
  unbalanced: number;
  faults: Record<string, number>;
  problems: string[];
  crashed?: string;
}

const script = path.join(__dirname, '../fixtures/conservation.cjs');

test.each([
  [1, 'worker'],
  [2, 'worker'],
  [3, 'main'],
])(
  'seed %d: 3,000 events through a faulty endpoint all add up (delivery on the %s thread)',
  (seed, thread) => {
    const out = execFileSync(process.execPath, [script, String(seed), '3000', thread], {
      encoding: 'utf8',
      timeout: 60_000,
    });
    const f = JSON.parse(out) as Findings;
    expect(f.crashed).toBeUndefined();
    expect(f.problems).toEqual([]);
    expect(f.unbalanced).toBe(0);
    const s = f.stats;
    expect(s.enqueued).toBe(3000);
    expect(s.queued + s.inFlight).toBe(0);
    expect(s.delivered + s.failed + s.dropped).toBe(3000);
    expect(f.trueResults).toBe(s.delivered);
    expect(f.falseResults).toBe(s.failed + s.dropped);
    expect(s.failed).toBe(Object.values(s.reasons.failed).reduce((a, b) => a + b, 0));
    expect(s.dropped).toBe(Object.values(s.reasons.dropped).reduce((a, b) => a + b, 0));
    // Every delivered event is at the collector; the only duplicates are explained ones.
    expect(f.distinctRecorded).toBeGreaterThanOrEqual(s.delivered);
    expect(f.unexplainedDuplicates).toBe(0);
    // The mix really exercised the faults and the retries.
    for (const fault of ['500', '503', '429', '408', '400', 'reset', 'late', 'hang']) {
      expect(f.faults[fault]).toBeGreaterThan(10);
    }
    expect(s.retries).toBeGreaterThan(500);
    expect(s.reasons.failed.rejected).toBeGreaterThan(0);
  },
);
