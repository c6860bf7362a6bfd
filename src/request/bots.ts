/**
 * Is this user agent a bot? Two answers from isbot's pattern list, each remembered per user agent
 * in a bounded cache so a busy site pays for each string once; a missing or empty user agent is
 * a bot for both.
 *
 * - Pageviews: isbot as it is. A library fetching HTML is not a person reading a page.
 * - `req.track`: crawlers, not HTTP client libraries. The app called `req.track` on purpose, and
 *   a purchase posted by an Android app (okhttp) or another backend (axios, Go, curl) counts.
 */
import { createIsbotFromList, isbot, list } from 'isbot';

const CACHE_LIMIT = 1000;
const MAX_CACHED_LENGTH = 512;
const cache = new Map<string, boolean>();
const trackCache = new Map<string, boolean>();

function remember(into: Map<string, boolean>, userAgent: string, verdict: boolean): void {
  // Odd, very long strings are rare and would crowd out the common ones.
  if (userAgent.length > MAX_CACHED_LENGTH) return;
  if (into.size >= CACHE_LIMIT) into.delete(into.keys().next().value as string);
  into.set(userAgent, verdict);
}

function isMissing(userAgent: string | undefined): boolean {
  return userAgent === undefined || userAgent.trim() === '';
}

/** The pageview rule: isbot's verdict. */
export function isBotUserAgent(userAgent: string | undefined): boolean {
  // The hot path (every page request): as it was before the `req.track` rule came.
  if (userAgent === undefined || userAgent.trim() === '') return true;
  const known = cache.get(userAgent);
  if (known !== undefined) return known;
  const verdict = isbot(userAgent);
  remember(cache, userAgent, verdict);
  return verdict;
}

/**
 * The default `User-Agent` of HTTP client libraries that apps and backends post events with
 * (current and still common versions). The `req.track` rule is derived from them: isbot's
 * patterns that match any of these are the ones that catch HTTP clients.
 *
 * Left out on purpose, so they stay bots: crawler frameworks (Scrapy), headless browsers, wget (a
 * downloader with a recursive crawl mode) and API test tools (Postman, Insomnia, HTTPie).
 */
export const HTTP_CLIENT_USER_AGENTS: readonly string[] = [
  // Android apps (OkHttp, and Retrofit on it).
  'okhttp/4.12.0',
  'okhttp/3.14.9',
  // JavaScript: axios, node-fetch 2 and 3, undici, the runtimes' own fetch, got, old superagent.
  'axios/1.7.9',
  'axios/0.21.4',
  'node-fetch/1.0 (+https://github.com/bitinn/node-fetch)',
  'node-fetch',
  'undici',
  'node',
  'Bun/1.1.20',
  'Deno/1.45.2',
  'got (https://github.com/sindresorhus/got)',
  'node-superagent/3.8.3',
  'curl/8.5.0',
  // Python: requests, the standard library, urllib3, httpx, aiohttp.
  'python-requests/2.32.3',
  'Python-urllib/3.12',
  'python-urllib3/2.2.1',
  'python-httpx/0.27.0',
  'Python/3.12 aiohttp/3.9.5',
  // Go's net/http.
  'Go-http-client/1.1',
  'Go-http-client/2.0',
  // JVM: HttpURLConnection, java.net.http, Apache HttpClient, Spring's WebClient.
  'Java/17.0.15',
  'Java-http-client/17.0.15',
  'Apache-HttpClient/5.3.1 (Java/17.0.15)',
  'ReactorNetty/1.1.20',
  // Flutter apps.
  'Dart/3.4 (dart:io)',
  // Ruby: Net::HTTP, Faraday, rest-client.
  'Ruby',
  'Faraday v2.10.0',
  'rest-client/2.1.0 (linux-gnu x86_64) ruby/3.2.2p53',
  // PHP and .NET.
  'GuzzleHttp/7',
  'RestSharp/111.4.0.0',
];

/**
 * The `req.track` bot test, built from a pattern list (isbot's `list`) and sample HTTP-client
 * user agents (exported for tests; the middleware uses {@link isTrackBotUserAgent}).
 *
 * The patterns that match no sample are crawler signals (`bot`, `google`, `headless`, ...) and
 * decide as they are. The others (`http`, `java`, `.com`, a bare `name/version`, ...) also
 * catch crawlers that name no such signal (`Yahoo! Slurp; http://...`, `Scrapy/2.11
 * (+https://scrapy.org)`): dropping them outright loses over a fifth of the crawlers in isbot's
 * own test fixtures. So they still count, except where they match only inside an HTTP client's
 * product token (`okhttp/4.12.0`, `Apache-HttpClient/5.3.1 (Java/17.0.15)`, with its comment).
 * The client product names come from the samples too.
 */
export function createTrackBotTest(
  patterns: readonly string[],
  clientUserAgents: readonly string[],
): (userAgent: string) => boolean {
  const crawlerSignals: string[] = [];
  const clientPatterns: RegExp[] = [];
  for (const source of patterns) {
    const pattern = new RegExp(source, 'i');
    if (clientUserAgents.some((ua) => pattern.test(ua))) {
      clientPatterns.push(new RegExp(source, 'gi'));
    } else {
      crawlerSignals.push(source);
    }
  }
  const isCrawler = crawlerSignals.length > 0 ? createIsbotFromList(crawlerSignals) : () => false;
  const clientToken = clientTokenPattern(clientUserAgents);

  return (userAgent) => {
    if (isCrawler(userAgent)) return true;
    if (clientPatterns.length === 0) return false;
    const spans: Array<readonly [number, number]> = [];
    for (const m of userAgent.matchAll(clientToken)) spans.push([m.index, m.index + m[0].length]);
    for (const pattern of clientPatterns) {
      for (const m of userAgent.matchAll(pattern)) {
        const start = m.index;
        const end = start + m[0].length;
        if (!spans.some(([from, to]) => start >= from && end <= to)) return true;
      }
    }
    return false;
  };
}

/**
 * Matches a client library's product token in a user agent: its name (one of the samples'
 * names: the first word, and every `name/version` outside a comment), an optional version
 * (`/4.12.0`, ` v2.10.0`) and the comments that follow it (`(Java/17.0.15)`).
 */
function clientTokenPattern(clientUserAgents: readonly string[]): RegExp {
  const names = new Set<string>();
  for (const ua of clientUserAgents) {
    const words = ua
      .replace(/\([^()]*\)/g, ' ')
      .trim()
      .split(/\s+/);
    words.forEach((word, i) => {
      const m = /^([A-Za-z][\w.-]*)(\/|$)/.exec(word);
      if (m !== null && (i === 0 || m[2] === '/')) names.add(m[1]!.toLowerCase());
    });
  }
  // Longest first, so that `node-fetch` is not read as `node`.
  const alternatives = [...names]
    .sort((a, b) => b.length - a.length)
    .map((name) => name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'))
    .join('|');
  if (alternatives === '') return /(?!)/g;
  return new RegExp(
    `(?<![\\w.-])(?:${alternatives})(?=[/\\s(]|$)(?:/[^\\s()]*|\\s+v?\\d[^\\s()]*)?(?:\\s*\\([^()]*\\))*`,
    'gi',
  );
}

/** Built on first use: a site whose handlers never call `req.track` on a bot never pays for it. */
let trackBotTest: ((userAgent: string) => boolean) | undefined;

/**
 * The `req.track` rule: a bot by isbot, unless only HTTP client libraries made it one. Never a
 * bot where isbot says a person (that answer comes from the pageview cache, so the visitors who
 * are people cost nothing more).
 */
export function isTrackBotUserAgent(userAgent: string | undefined): boolean {
  if (!isBotUserAgent(userAgent)) return false;
  if (isMissing(userAgent)) return true;
  const known = trackCache.get(userAgent!);
  if (known !== undefined) return known;
  trackBotTest ??= createTrackBotTest(list, HTTP_CLIENT_USER_AGENTS);
  const verdict = trackBotTest(userAgent!);
  remember(trackCache, userAgent!, verdict);
  return verdict;
}

/** How many user agents are cached now (for tests of the bound). */
export function botCacheSize(): number {
  return cache.size;
}

/** How many user agents the `req.track` rule has cached now (for tests of the bound). */
export function trackBotCacheSize(): number {
  return trackCache.size;
}

/**
 * Your own bot test: gets the user agent and the rule's verdict (isbot's for pageviews; for
 * `req.track`, isbot's without HTTP client libraries), returns the final one.
 */
export type BotTest = (userAgent: string | undefined, isbotVerdict: boolean) => boolean;

/** The pageview verdict: isbot (cached), then the app's `isBot` option when given. */
export function isBotRequest(userAgent: string | undefined, custom: BotTest | undefined): boolean {
  const verdict = isBotUserAgent(userAgent);
  return custom ? custom(userAgent, verdict) === true : verdict;
}

/** The `req.track` verdict: crawlers, not HTTP clients (cached), then the app's `isBot`. */
export function isTrackBotRequest(
  userAgent: string | undefined,
  custom: BotTest | undefined,
): boolean {
  const verdict = isTrackBotUserAgent(userAgent);
  return custom ? custom(userAgent, verdict) === true : verdict;
}
