/** The statistics the bench reports (bench/run.mjs, bench/main-thread-turns.mjs). */

/** The median of `xs` (the mean of the middle two for an even count). */
export function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/**
 * A 95 % interval of the median of `xs`, free of any assumption on their distribution: the
 * order statistics k and n - k + 1, with k = (n + 1) / 2 - 0.98 √n rounded down (the normal
 * approximation of the binomial); the whole range when there are too few values for that (fewer
 * than 6, whose range holds the median less surely than 95 %).
 */
export function medianInterval(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const k = Math.floor((s.length + 1) / 2 - 0.98 * Math.sqrt(s.length));
  return k < 1 ? [s[0], s.at(-1)] : [s[k - 1], s[s.length - k]];
}
