/**
 * What is worth another try, and when: pure functions, so the arithmetic is tested alone.
 */

/** How an attempt ended, as far as retrying is concerned. */
export type AttemptResult =
  | { kind: 'delivered' }
  /** A 4xx other than 408 and 429: the same request will never succeed. */
  | { kind: 'permanent'; status: number }
  /** 429: the endpoint asks us to slow down; `retryAfterMs` when it said for how long. */
  | { kind: 'throttled'; retryAfterMs: number | undefined }
  /** 408, 5xx (but 501 and 505): the endpoint had a problem; try again later. */
  | { kind: 'server_error'; status: number }
  /** No answer in time. */
  | { kind: 'timeout' }
  /** Refused, reset, unreachable. */
  | { kind: 'network'; message: string };

/** Longest pause a `Retry-After` may impose. */
export const MAX_RETRY_AFTER_MS = 5 * 60_000;

/** The result of every 2xx: one object, not one per event. */
const DELIVERED: AttemptResult = Object.freeze({ kind: 'delivered' });

/** Classifies a status the endpoint answered; `now` (default: the clock) dates a `Retry-After`. */
export function classifyStatus(
  status: number,
  retryAfter: string | undefined,
  now?: number,
): AttemptResult {
  if (status >= 200 && status < 300) return DELIVERED;
  if (status === 429) {
    return { kind: 'throttled', retryAfterMs: parseRetryAfter(retryAfter, now ?? Date.now()) };
  }
  if (status === 408 || (status >= 500 && status !== 501 && status !== 505)) {
    return { kind: 'server_error', status };
  }
  return { kind: 'permanent', status };
}

/**
 * `Retry-After` in milliseconds from now: delta-seconds or an HTTP date, capped at
 * {@link MAX_RETRY_AFTER_MS}; undefined when absent or unreadable.
 */
export function parseRetryAfter(value: string | undefined, now: number): number | undefined {
  if (value === undefined) return undefined;
  const text = value.trim();
  let ms: number;
  if (/^\d+$/.test(text)) {
    ms = Number(text) * 1000;
  } else {
    const date = Date.parse(text);
    if (Number.isNaN(date)) return undefined;
    ms = date - now;
  }
  return Math.min(Math.max(ms, 0), MAX_RETRY_AFTER_MS);
}

/**
 * Exponential backoff with full jitter: a random wait between 0 and
 * `min(maxDelay, baseDelay * 2^retry)`, where `retry` counts from 0. `random` is in [0, 1).
 */
export function backoffDelay(
  retry: number,
  baseDelay: number,
  maxDelay: number,
  random: () => number = Math.random,
): number {
  const ceiling = Math.min(maxDelay, baseDelay * 2 ** Math.min(retry, 30));
  return Math.floor(random() * ceiling);
}
