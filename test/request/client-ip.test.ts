import {
  anonymizeIp,
  ipFromHeader,
  isPrivateIp,
  normalizeIp,
  resolveClientIp,
} from '../../src/request/client-ip';
import { compileTrust } from '../../src/request/trust';

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
  expect(resolveClientIp(peer, xff, compileTrust(trust))).toBe(expected);
});

test.each([
  ['203.0.113.77', '203.0.113.0'],
  ['10.1.2.3', '10.1.2.0'],
  ['2001:db8:85a3:8d3:1319:8a2e:370:7348', '2001:db8:85a3::'],
  ['2001:0db8:0000::1', '2001:db8:0::'],
  ['::1', '0:0:0::'],
  ['::ffff:1.2.3.4', '0:0:0::'],
  ['fe80::1%eth0', 'fe80:0:0::'],
])('anonymizeIp(%j) is %j', (ip, expected) => {
  expect(anonymizeIp(ip)).toBe(expected);
});

test.each([
  ['203.0.113.7', '203.0.113.7'],
  ['203.0.113.7, 10.0.0.1', '203.0.113.7'],
  [['2001:db8::1'], '2001:db8::1'],
  ['unknown', undefined],
  [undefined, undefined],
])('ipFromHeader(%j) is %j', (value, expected) => {
  expect(ipFromHeader(value)).toBe(expected);
});

test.each([
  ['127.0.0.1', true],
  ['::1', true],
  ['10.0.0.8', true],
  ['192.168.1.1', true],
  ['172.16.5.4', true],
  ['fd00::1', true],
  ['169.254.1.1', true],
  ['203.0.113.9', false],
  ['2001:db8::1', false],
])('isPrivateIp(%j) is %s', (ip, expected) => {
  expect(isPrivateIp(ip)).toBe(expected);
});
