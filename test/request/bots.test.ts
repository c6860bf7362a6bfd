/**
 * The two bot rules: pageviews (isbot as it is) and `req.track` (crawlers, not HTTP client
 * libraries), the latter derived from isbot's own pattern list.
 */
import { isbot, isbotPatterns, list } from 'isbot';
import {
  createTrackBotTest,
  HTTP_CLIENT_USER_AGENTS,
  isBotRequest,
  isBotUserAgent,
  isTrackBotRequest,
  isTrackBotUserAgent,
  trackBotCacheSize,
} from '../../src/request/bots';

/** What HTTP client libraries send by default, as captured or documented. */
const HTTP_CLIENTS: Array<[string, string]> = [
  ['okhttp', 'okhttp/4.12.0'],
  ['okhttp 5', 'okhttp/5.0.0-alpha.14'],
  ['an Android app naming itself before okhttp', 'MyShop/3.2.1 okhttp/4.12.0'],
  ['axios', 'axios/1.7.9'],
  ['node-fetch 2', 'node-fetch/1.0 (+https://github.com/bitinn/node-fetch)'],
  ['node-fetch 3', 'node-fetch'],
  ["undici's fetch", 'undici'],
  ["Node's fetch", 'node'],
  ['curl', 'curl/7.88.1'],
  ['python-requests', 'python-requests/2.34.2'],
  ['Python urllib', 'Python-urllib/3.11'],
  ['aiohttp', 'Python/3.11 aiohttp/3.9.5'],
  ['Go', 'Go-http-client/1.1'],
  ['Go over HTTP/2', 'Go-http-client/2.0'],
  ['Java HttpURLConnection', 'Java/17.0.15'],
  ['Apache HttpClient 4', 'Apache-HttpClient/4.5.14 (Java/1.8.0_392)'],
  ['got', 'got (https://github.com/sindresorhus/got)'],
  ['Guzzle 6', 'GuzzleHttp/6.5.5 curl/7.29.0 PHP/7.4.33'],
];

const CRAWLERS: Array<[string, string]> = [
  ['Googlebot', 'Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)'],
  [
    'Googlebot smartphone',
    'Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.6478.126 Mobile Safari/537.36 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)',
  ],
  ['bingbot', 'Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)'],
  [
    'headless Chrome',
    'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/126.0.0.0 Safari/537.36',
  ],
  // Caught by isbot only through patterns that HTTP clients match too (`http`, `.com`): the
  // reason those patterns still count outside a client's own product token.
  [
    'Yahoo! Slurp',
    'Mozilla/5.0 (compatible; Yahoo! Slurp; http://help.yahoo.com/help/us/ysearch/slurp)',
  ],
  ['Scrapy', 'Scrapy/2.11.2 (+https://scrapy.org)'],
  ['Qwant', 'Mozilla/5.0 (compatible; Qwantify/2.2w; +https://www.qwant.com/)/*'],
  [
    'a crawler naming itself before its library',
    'Fetcher/1.0 (+https://fetcher.example) okhttp/4.12.0',
  ],
  ['a crawler naming itself after its library', 'python-requests/2.32.3 ExampleBot/1.0'],
  ['wget', 'Wget/1.21.3'],
  ['Postman', 'PostmanRuntime/7.39.0'],
];

const BROWSERS = [
  'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36',
  'Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1',
  'Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0',
  // An Android app's WebView and a Flutter app's own client: people, by both rules.
  'Mozilla/5.0 (Linux; Android 14; Pixel 8 Build/UQ1A.240205.004; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/126.0.6478.71 Mobile Safari/537.36',
  'Dart/3.4 (dart:io)',
];

describe('req.track rule', () => {
  test.each(HTTP_CLIENTS)('%s is a bot for pageviews, not for req.track', (_name, ua) => {
    expect(isBotUserAgent(ua)).toBe(true);
    expect(isTrackBotUserAgent(ua)).toBe(false);
  });

  test.each(CRAWLERS)('%s is a bot for both', (_name, ua) => {
    expect(isBotUserAgent(ua)).toBe(true);
    expect(isTrackBotUserAgent(ua)).toBe(true);
  });

  test.each(BROWSERS)('a person is a bot for neither: %s', (ua) => {
    expect(isBotUserAgent(ua)).toBe(false);
    expect(isTrackBotUserAgent(ua)).toBe(false);
  });

  test.each([
    ['missing', undefined],
    ['empty', ''],
    ['blank', '   '],
  ])('a %s user agent is a bot for both', (_what, ua) => {
    expect(isBotUserAgent(ua)).toBe(true);
    expect(isTrackBotUserAgent(ua)).toBe(true);
  });

  test('every sample HTTP client passes, and the samples do catch isbot patterns', () => {
    for (const ua of HTTP_CLIENT_USER_AGENTS)
      expect([ua, isTrackBotUserAgent(ua)]).toEqual([ua, false]);
    // Most samples are bots to isbot: without them the rule would not be tested at all.
    const flagged = HTTP_CLIENT_USER_AGENTS.filter((ua) => isbot(ua));
    expect(flagged.length).toBeGreaterThan(HTTP_CLIENT_USER_AGENTS.length - 3);
  });

  test('stays current with the list: a new pattern for a client is left out, one for a crawler is not', () => {
    const okhttp = 'okhttp/4.12.0';
    const crawler = 'Mozilla/5.0 (compatible; Fetchy/1.0)';
    // A list without the patterns of today that catch either one.
    const base = list.filter(
      (p) => !isbotPatterns(okhttp).includes(p) && !isbotPatterns(crawler).includes(p),
    );
    expect(createTrackBotTest(base, HTTP_CLIENT_USER_AGENTS)(okhttp)).toBe(false);
    expect(createTrackBotTest(base, HTTP_CLIENT_USER_AGENTS)(crawler)).toBe(false);

    const grown = createTrackBotTest([...base, 'okhttp', 'fetchy'], HTTP_CLIENT_USER_AGENTS);
    expect(grown(okhttp)).toBe(false);
    expect(grown(crawler)).toBe(true);
  });

  test('a pattern that catches clients still counts outside their product token', () => {
    const test = createTrackBotTest(['http'], ['okhttp/4.12.0']);
    expect(test('okhttp/4.12.0')).toBe(false);
    expect(test('MyShop/3.2.1 (Android 14) okhttp/4.12.0')).toBe(false);
    expect(test('Indexer/1.0 (+http://indexer.example)')).toBe(true);
    expect(test('okhttp/4.12.0 Indexer/1.0 (+http://indexer.example)')).toBe(true);
    // Not the name inside another word or as another product's version.
    expect(test('myokhttp/1.0')).toBe(true);
    expect(test('Go-http-client/1.1')).toBe(true);
  });

  test('with no samples, the rule is the pattern list', () => {
    const test = createTrackBotTest(['bot', 'http'], []);
    expect(test('okhttp/4.12.0')).toBe(true);
    expect(test('Mozilla/5.0 (X11; Linux x86_64)')).toBe(false);
  });

  test("the app's isBot gets each rule's verdict and decides", () => {
    const seen: Array<[string | undefined, boolean]> = [];
    const spy = (ua: string | undefined, verdict: boolean) => {
      seen.push([ua, verdict]);
      return verdict;
    };
    expect(isBotRequest('okhttp/4.12.0', spy)).toBe(true);
    expect(isTrackBotRequest('okhttp/4.12.0', spy)).toBe(false);
    expect(seen).toEqual([
      ['okhttp/4.12.0', true],
      ['okhttp/4.12.0', false],
    ]);
    expect(isTrackBotRequest('okhttp/4.12.0', () => true)).toBe(true);
    expect(isTrackBotRequest(CRAWLERS[0]![1], () => false)).toBe(false);
  });

  test('verdicts are cached in a bounded cache', () => {
    for (let i = 0; i < 1500; i++) isTrackBotUserAgent(`okhttp/4.${i}.0`);
    expect(trackBotCacheSize()).toBeLessThanOrEqual(1000);
    expect(trackBotCacheSize()).toBeGreaterThan(0);
    expect(isTrackBotUserAgent('okhttp/4.1499.0')).toBe(false);
    expect(isTrackBotUserAgent('Mozilla/5.0 (compatible; bingbot/2.0)')).toBe(true);
  });
});
