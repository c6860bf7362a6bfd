/**
 * Property-based tests: the request-context functions take anything a visitor can send and
 * never throw; what they forward is always one valid IP or nothing. Seeded, so a failure replays.
 */
import { isIP } from 'node:net';
import type { IncomingMessage } from 'node:http';
import type { TLSSocket } from 'node:tls';
import fc from 'fast-check';
import proxyaddr from 'proxy-addr';
import { resolveAnalyticsOptions } from '../../src/options';
import { RequestContext } from '../../src/request/context';
import {
  anonymizeIp,
  ipFromHeader,
  normalizeIp,
  resolveClientIp,
} from '../../src/request/client-ip';
import { forwardedHeaders, headerValue } from '../../src/request/forwarded-headers';
import {
  applyQueryPolicy,
  parsedReferrer,
  referrerUrl,
  requestTarget,
} from '../../src/request/page-url';
import { requestSkipReason } from '../../src/request/pageview-rules';
import { compileTrust } from '../../src/request/trust';
import { pageviewJson } from '../../src/request/pageview-event';

const params = { seed: 20261128, numRuns: 500 };
const config = resolveAnalyticsOptions({ trackingCode: 'x', logger: false });
const trusts = [false, true, 'loopback', 1, 2].map((t) => compileTrust(t as never));

/** Strings a visitor could put in a header: anything Latin-1, plus IP-looking text. */
const headerText = fc.oneof(
  fc.string({ unit: fc.integer({ min: 0x20, max: 0xff }).map((c) => String.fromCharCode(c)) }),
  fc.ipV4(),
  fc.ipV6(),
  fc.array(fc.oneof(fc.ipV4(), fc.ipV6(), fc.string()), { maxLength: 4 }).map((a) => a.join(', ')),
);
const anyText = fc.string({ unit: 'binary' });
const peer = fc.option(
  fc.oneof(
    fc.ipV4(),
    fc.ipV6(),
    fc.ipV4().map((ip) => `::ffff:${ip}`),
  ),
  { nil: undefined },
);

function fakeReq(
  headers: Record<string, string>,
  remoteAddress: string | undefined,
  url: string,
): IncomingMessage {
  return {
    method: 'GET',
    url,
    headers,
    socket: { remoteAddress, encrypted: false },
    connection: { remoteAddress },
  } as unknown as IncomingMessage;
}

const oneIpOrNothing = (ip: string | undefined) => ip === undefined || isIP(ip) !== 0;

test('client IP: one valid IP or nothing, whatever the headers and trust', () => {
  fc.assert(
    fc.property(headerText, headerText, peer, fc.nat(trusts.length - 1), (xff, real, addr, t) => {
      const req = fakeReq({ 'x-forwarded-for': xff, 'x-real-ip': real }, addr, '/');
      const ip = resolveClientIp(addr, xff, trusts[t]!);
      expect(oneIpOrNothing(ip)).toBe(true);
      // The same answer as proxy-addr, which Express's req.ip uses.
      if (addr !== undefined) expect(ip).toBe(normalizeIp(proxyaddr(req, trusts[t]!)));
      expect(oneIpOrNothing(ipFromHeader(real))).toBe(true);
      expect(oneIpOrNothing(normalizeIp(xff))).toBe(true);
      if (ip !== undefined) expect(isIP(anonymizeIp(ip))).not.toBe(0);
    }),
    params,
  );
});

test('forwarded headers: only allowed names, values Node accepts, at most one IP', () => {
  const allowed = new Set([
    'content-type',
    'user-agent',
    'x-forwarded-for',
    'sec-ch-ua',
    'sec-ch-ua-mobile',
    'sec-ch-ua-platform',
  ]);
  fc.assert(
    fc.property(anyText, anyText, anyText, fc.boolean(), (ua, ip, hint, anonymize) => {
      const headers = forwardedHeaders(ua, ip, { 'sec-ch-ua': hint }, anonymize);
      for (const [name, value] of Object.entries(headers)) {
        expect(allowed.has(name)).toBe(true);
        expect(value).not.toMatch(/[^\t\x20-\x7e\x80-\xff]/);
      }
      expect(oneIpOrNothing(headers['x-forwarded-for'])).toBe(true);
      expect(headerValue(ua, 10)?.length ?? 0).toBeLessThanOrEqual(10);
    }),
    params,
  );
});

test('a header value is cleaned exactly as remove-invalid, trim, cap (the fast path included)', () => {
  const reference = (value: string, max: number) => {
    const clean = value
      .replace(/[^\t\x20-\x7e\x80-\xff]/g, '')
      .trim()
      .slice(0, max);
    return clean === '' ? undefined : clean;
  };
  const latin1 = fc.string({
    unit: fc.oneof(
      fc.constantFrom(' ', '\t', '\u00a0', '\u0085', '\n', '\u0000', '\u00ff', '\u2028'),
      fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)),
    ),
  });
  fc.assert(
    fc.property(fc.oneof(latin1, anyText), fc.integer({ min: 1, max: 40 }), (value, max) => {
      expect(headerValue(value, max)).toBe(reference(value, max));
    }),
    params,
  );
});

test('URLs, referrers and rules never throw on any request', () => {
  fc.assert(
    fc.property(
      headerText,
      anyText,
      headerText,
      headerText,
      peer,
      (host, url, referer, ua, addr) => {
        const headers = {
          host,
          referer,
          'user-agent': ua,
          'x-forwarded-host': host,
          'x-forwarded-proto': ua,
        };
        const req = fakeReq(headers, addr, url);
        const context = new RequestContext(
          req,
          req.headers,
          req.socket as TLSSocket,
          requestTarget(req),
          config,
          () => Promise.resolve(false),
        );
        const target = context.target;
        expect(target.startsWith('/')).toBe(true);
        const page = context.url;
        if (page !== undefined) expect(() => new URL(page)).not.toThrow();
        const ref = context.referrer;
        if (ref !== undefined) expect(ref).toMatch(/^https?:\/\//);
        expect(oneIpOrNothing(context.ip)).toBe(true);
        expect(typeof context.isBot).toBe('boolean');
        expect(() =>
          requestSkipReason('GET', target.split('?')[0]!, headers, context, config),
        ).not.toThrow();
      },
    ),
    params,
  );
});

test('a referrer reads the same with or without the URL parser (the fast path)', () => {
  const part = (...options: string[]) => fc.constantFrom(...options);
  const referrer = fc
    .tuple(
      part('http://', 'https://', 'HTTP://', 'ftp://', 'https:/', ' https://'),
      fc.oneof(
        fc.domain(),
        part('a.example', 'A.example', '1.2.3', 'x.0x7f', '192.168.0.1', 'xn--abc.example'),
        part('a..b', 'a.example.', 'user:pw@a.example', '[::1]', 'a_b.example', 'a.123'),
      ),
      part('', ':80', ':443', ':8080', ':0', ':0443', ':99999', ':65535', ':'),
      fc.oneof(
        fc.webPath(),
        part('', '/', '/a/./b', '/a/../b', '/%2e/x', '/a%2Eb', "/it's", '/a b', '/a\\b', '/%zz'),
      ),
      fc.oneof(
        part('', '?'),
        fc.webQueryParameters().map((q) => `?${q}`),
        part("?a='x'", '?a=<b>', '?utm_source=x&q=1', '?utm_x=%41+b', '?a=1?b'),
      ),
      part('', '#', '#frag', '#a b', "#'"),
    )
    .map((pieces) => pieces.join(''));
  const policies = [config.queryPolicy, { kind: 'all' } as const, { kind: 'none' } as const];
  fc.assert(
    fc.property(referrer, fc.constantFrom(...policies), (header, policy) => {
      expect(referrerUrl(header, policy)).toBe(parsedReferrer(header, policy));
    }),
    { ...params, numRuns: 3000 },
  );
});

test('the query policy keeps exactly the parameters a form decoder would name', () => {
  const name = fc.oneof(
    fc.constantFrom('utm_source', 'utm_', 'utm%5Fid', 'utm+x', 'token', 'ref', '', '%zz', 'a=b'),
    fc.string({ maxLength: 6 }),
  );
  const value = fc.oneof(
    fc.constantFrom('', 'a+b', '%20', 'x=y', '%zz'),
    fc.string({ maxLength: 6 }),
  );
  const query = fc
    .array(fc.tuple(name, value, fc.boolean()), { maxLength: 6 })
    .map((params) =>
      params.map(([n, v, bare]) => (bare ? n : `${n}=${v}`).replace(/[&#]/g, '')).join('&'),
    );
  const policy = resolveAnalyticsOptions({
    trackingCode: 'x',
    queryParams: ['ref', 'utm_*'],
  }).queryPolicy;
  fc.assert(
    fc.property(query, (search) => {
      const kept = applyQueryPolicy(`/p?${search}`, policy);
      const expected = [...new URLSearchParams(search)].filter(
        ([n]) => n === 'ref' || n.startsWith('utm_'),
      );
      const q = kept.indexOf('?');
      expect(q === -1 ? [] : [...new URLSearchParams(kept.slice(q + 1))]).toEqual(expected);
    }),
    params,
  );
});

test('the default query policy keeps nothing but utm_* parameters', () => {
  fc.assert(
    fc.property(
      fc.webPath(),
      fc.dictionary(fc.string({ minLength: 1 }), fc.string()),
      (path, query) => {
        const search = new URLSearchParams(query).toString();
        const kept = applyQueryPolicy(`/${path.replace(/^\//, '')}?${search}`, config.queryPolicy);
        const q = kept.indexOf('?');
        const names = q === -1 ? [] : [...new URLSearchParams(kept.slice(q + 1)).keys()];
        expect(names.every((n) => n.startsWith('utm_'))).toBe(true);
        const ref = referrerUrl(`https://a.example/x?${search}`, config.queryPolicy);
        expect(ref).toBeDefined();
        expect([...new URL(ref!).searchParams.keys()].every((n) => n.startsWith('utm_'))).toBe(
          true,
        );
      },
    ),
    params,
  );
});

test("a pageview's body is exactly JSON.stringify's text (the direct path included)", () => {
  // Any UTF-16 unit, lone surrogates, quotes, back-slashes and control characters included.
  const unit = fc.oneof(
    fc.constantFrom('"', '\\', '\n', '\u0000', '\u001f', '\u2028', '\ud800', '\udc00', 'é'),
    fc.integer({ min: 0, max: 0xffff }).map((code) => String.fromCharCode(code)),
    fc.constantFrom('a', '/', '?', '=', '&', '%'),
  );
  const text = fc.oneof(
    fc.string({ unit }),
    fc.webUrl({ withQueryParameters: true }),
    fc.string({ unit: 'binary' }),
  );
  fc.assert(
    fc.property(text, fc.option(text, { nil: undefined }), (url, referrer) => {
      const expected =
        referrer === undefined
          ? JSON.stringify({ type: 'pageview', url })
          : JSON.stringify({ type: 'pageview', url, referrer });
      expect(pageviewJson(url, referrer)).toBe(expected);
    }),
    { ...params, numRuns: 3000 },
  );
});
