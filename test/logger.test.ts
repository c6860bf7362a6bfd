import { Reporter, REPEAT_INTERVAL_MS } from '../src/logger';

test('each code is reported once per interval; debug is not throttled', () => {
  let now = 0;
  const lines: string[] = [];
  const reporter = new Reporter(
    { warn: (m) => lines.push(`W ${m}`), debug: (m) => lines.push(`D ${m}`) },
    () => now,
  );
  reporter.warn('ZENOVAY_X', 'same');
  reporter.warn('ZENOVAY_X', 'same');
  reporter.warn('ZENOVAY_X', 'other');
  reporter.warn('ZENOVAY_Y', 'another code');
  reporter.debug('a');
  reporter.debug('a');
  now += REPEAT_INTERVAL_MS - 1;
  reporter.warn('ZENOVAY_X', 'same');
  now += 1;
  reporter.warn('ZENOVAY_X', 'same');
  expect(lines).toEqual([
    'W [zenovay] ZENOVAY_X: same',
    'W [zenovay] ZENOVAY_Y: another code',
    'D [zenovay] a',
    'D [zenovay] a',
    'W [zenovay] ZENOVAY_X: same',
  ]);
  expect(reporter.debugEnabled).toBe(true);
});

test('a throwing logger is contained', () => {
  const reporter = new Reporter({
    error: () => {
      throw new Error('logger down');
    },
  });
  expect(() => reporter.error('ZENOVAY_Y', 'x')).not.toThrow();
  expect(reporter.debugEnabled).toBe(false);
});
