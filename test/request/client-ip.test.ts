import type { IncomingMessage } from 'node:http';
import { normalizeIp, resolveClientIp } from '../../src/request/client-ip';
import { compileTrust } from '../../src/request/trust';

const req = (peer: string | undefined, xff?: string) =>
  ({
    headers: xff === undefined ? {} : { 'x-forwarded-for': xff },
    socket: { remoteAddress: peer },
    connection: { remoteAddress: peer },
  }) as unknown as IncomingMessage;

test.each([
  ['::ffff:203.0.113.5', '203.0.113.5'],
  ['203.0.113.5', '203.0.113.5'],
  ['  2001:db8::1 ', '2001:db8::1'],
  ['[2001:db8::1]', '2001:db8::1'],
  ['::1', '::1'],
  ['not-an-ip', undefined],
  ['1.2.3.4, 5.6.7.8', undefined],
  ['', undefined],
  [undefined, undefined],
])('normalizeIp(%j) is %j', (input, expected) => {
  expect(normalizeIp(input)).toBe(expected);
});

test.each<
  [
    string,
    Parameters<typeof compileTrust>[0],
    string | undefined,
    string | undefined,
    string | undefined,
  ]
>([
  ['no proxy: the peer, whatever the header says', false, '127.0.0.1', '203.0.113.9', '127.0.0.1'],
  [
    'trusted loopback proxy: the client it saw',
    'loopback',
    '127.0.0.1',
    '203.0.113.9',
    '203.0.113.9',
  ],
  [
    'loopback trusted but the peer is not loopback',
    'loopback',
    '198.51.100.7',
    '203.0.113.9',
    '198.51.100.7',
  ],
  ['one hop trusted: the right-most entry', 1, '10.0.0.2', '6.6.6.6, 203.0.113.9', '203.0.113.9'],
  ['trust everything: the left-most entry', true, '10.0.0.2', '6.6.6.6, 203.0.113.9', '6.6.6.6'],
  ['a mapped peer address is normalised', false, '::ffff:192.0.2.1', undefined, '192.0.2.1'],
  ['no socket address', false, undefined, undefined, undefined],
])('resolveClientIp: %s', (_what, trust, peer, xff, expected) => {
  expect(resolveClientIp(req(peer, xff), compileTrust(trust))).toBe(expected);
});
