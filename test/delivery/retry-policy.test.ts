import {
  backoffDelay,
  classifyStatus,
  MAX_RETRY_AFTER_MS,
  parseRetryAfter,
} from '../../src/delivery/retry-policy';
import { RateGuard } from '../../src/delivery/rate-guard';

test.each([
  [200, 'delivered'],
  [202, 'delivered'],
  [204, 'delivered'],
  [400, 'permanent'],
  [401, 'permanent'],
  [404, 'permanent'],
  [413, 'permanent'],
  [408, 'server_error'],
  [429, 'throttled'],
  [500, 'server_error'],
  [501, 'permanent'],
  [502, 'server_error'],
  [503, 'server_error'],
  [504, 'server_error'],
  [505, 'permanent'],
  [599, 'server_error'],
  [302, 'permanent'],
])('status %d is %s', (status, kind) => {
  expect(classifyStatus(status, undefined, 0).kind).toBe(kind);
});

describe('parseRetryAfter', () => {
  const now = Date.parse('2026-11-28T12:00:00Z');
  test.each<[string | undefined, number | undefined]>([
    [undefined, undefined],
    ['', undefined],
    ['soon', undefined],
    ['0', 0],
    ['7', 7000],
    [' 12 ', 12_000],
    ['86400', MAX_RETRY_AFTER_MS],
    ['Sat, 28 Nov 2026 12:00:30 GMT', 30_000],
    ['Sat, 28 Nov 2026 11:59:00 GMT', 0],
    ['Sun, 29 Nov 2026 12:00:00 GMT', MAX_RETRY_AFTER_MS],
  ])('%j is %j ms', (value, expected) => {
    expect(parseRetryAfter(value, now)).toBe(expected);
  });

  test('a 429 carries the parsed pause', () => {
    expect(classifyStatus(429, '3', now)).toEqual({ kind: 'throttled', retryAfterMs: 3000 });
  });
});

describe('backoffDelay (full jitter)', () => {
  test('the ceiling doubles per retry up to the cap', () => {
    const top = () => 0.999999;
    expect([0, 1, 2, 3, 4, 10, 60].map((r) => backoffDelay(r, 500, 30_000, top))).toEqual([
      499, 999, 1999, 3999, 7999, 29_999, 29_999,
    ]);
  });
  test('the wait is random between 0 and the ceiling', () => {
    expect(backoffDelay(2, 500, 30_000, () => 0)).toBe(0);
    expect(backoffDelay(2, 500, 30_000, () => 0.5)).toBe(1000);
  });
});

describe('RateGuard', () => {
  test('60 per 10 s per key, a new window resets the burst', () => {
    let now = 0;
    const guard = new RateGuard(undefined, 100, () => now);
    const first = Array.from({ length: 61 }, () => guard.allow('1.1.1.1'));
    expect(first.filter(Boolean)).toHaveLength(60);
    expect(first[60]).toBe(false);
    expect(guard.allow('2.2.2.2')).toBe(true);
    now += 10_000;
    expect(guard.allow('1.1.1.1')).toBe(true);
  });

  test('5,000 per hour per key', () => {
    let now = 0;
    const guard = new RateGuard(undefined, 100, () => now);
    let allowed = 0;
    for (let i = 0; i < 6000; i++) {
      if (i % 60 === 0) now += 10_000; // stay under the burst limit
      if (guard.allow('1.1.1.1')) allowed++;
    }
    expect(allowed).toBe(5000);
  });

  test('memory stays bounded however many IPs arrive', () => {
    const guard = new RateGuard(undefined, 1000);
    for (let i = 0; i < 50_000; i++)
      guard.allow(`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`);
    expect(guard.size).toBe(1000);
  });
});
