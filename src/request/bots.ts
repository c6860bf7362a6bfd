/**
 * Is this user agent a bot? isbot's answer, with a missing or empty user agent counted as a bot,
 * remembered per user agent in a bounded cache so a busy site pays for each string once.
 */
import { isbot } from 'isbot';

const CACHE_LIMIT = 1000;
const MAX_CACHED_LENGTH = 512;
const cache = new Map<string, boolean>();

export function isBotUserAgent(userAgent: string | undefined): boolean {
  if (userAgent === undefined || userAgent.trim() === '') return true;
  const known = cache.get(userAgent);
  if (known !== undefined) return known;
  const verdict = isbot(userAgent);
  // Odd, very long strings are rare and would crowd out the common ones.
  if (userAgent.length <= MAX_CACHED_LENGTH) {
    if (cache.size >= CACHE_LIMIT) cache.delete(cache.keys().next().value as string);
    cache.set(userAgent, verdict);
  }
  return verdict;
}

/** How many user agents are cached now (for tests of the bound). */
export function botCacheSize(): number {
  return cache.size;
}

/** Your own bot test: gets the user agent and isbot's verdict, returns the final one. */
export type BotTest = (userAgent: string | undefined, isbotVerdict: boolean) => boolean;

/** The middleware's bot verdict: isbot (cached), then the app's `isBot` option when given. */
export function isBotRequest(userAgent: string | undefined, custom: BotTest | undefined): boolean {
  const verdict = isBotUserAgent(userAgent);
  return custom ? custom(userAgent, verdict) === true : verdict;
}
