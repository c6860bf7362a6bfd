/**
 * A differential fuzz of the lean client's response parser against Node's own (llhttp, reached
 * through a `node:http` client). Generated responses, well-formed and malformed, are written by a
 * raw `net` server on 127.0.0.1, split at every byte boundary (a seeded sample of boundaries for
 * long cases) and at random places, each split a separate read of the client. The lean client must
 * read each response as RFC 9112 reads it (the model below, itself checked against llhttp wherever
 * llhttp accepts), or reject that request; it must never wait on a response that has ended, and
 * leaves no socket open. Every departure of llhttp from the model is declared and checked.
 */
import fc from 'fast-check';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { createLeanTransport } from '../../src/delivery/lean-transport';
import type { DeadlineTransport, Transport } from '../../src/delivery/transport';

const SEED = 20260514;
/** A request that has not settled after this long has hung (each takes a millisecond or so). */
const HANG_MS = 5000;
/** The deadline for a response the server stalls in the middle of, on purpose. */
const STALL_MS = 40;
/** Runs that between them split each response at every boundary (or a sample, when long). */
const STRIDE = 16;
/** Cuts per response in one of those runs: a response longer than STRIDE * MAX_CUTS is sampled. */
const MAX_CUTS = 16;
/** Random plans per case that cut every response into several pieces. */
const RANDOM_PLANS = 2;
/** A response up to this long is also sent one byte per read. */
const EVERY_BYTE_UP_TO = 120;
/** Cases run at once (each on its own client and connections). */
const CONCURRENCY = 4;
/** The lean client keeps this many characters of a body. */
const SNIPPET = 512;

const immediate = () => new Promise<void>((resolve) => setImmediate(resolve));
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

// ---------------------------------------------------------------------------------------------
// The model: what a response means, and what a client may do with it.

/** A response as RFC 9112 reads it. */
interface Reading {
  status: number;
  body: string;
  retryAfter: string | undefined;
}

/** What a client made of one request. */
type Outcome = Reading | { error: string };

/** One scripted response, the bytes the server writes for one request. */
interface Answer {
  kind: string;
  bytes: Buffer;
  /** The reading a conforming client gives it; null when there is none (it must be rejected). */
  meaning: Reading | null;
  /** A client must accept it (well-formed); otherwise rejecting it is as good as reading it. */
  must: boolean;
  /** The server closes the connection after writing it. */
  close: boolean;
  /** The server writes these bytes, then nothing more (and keeps the connection open). */
  stall: boolean;
  /** How llhttp departs from the model here, when it does: checked, so this table stays true. */
  llhttp: 'rejects' | 'accepts' | 'differs' | undefined;
}

interface Case {
  name: string;
  family: string;
  answers: Answer[];
  /** The answer under test (the mutated or cut one); -1 when every answer is. */
  target: number;
}

type Framing = 'length' | 'chunked' | 'close' | 'none';

/** The well-formed response a generated case starts from. */
interface Shape {
  version: '1.0' | '1.1';
  status: number;
  reason: string | null;
  headers: Array<[string, string]>;
  connection: string | null;
  framing: Framing;
  body: string;
  /** Chunk sizes, used in turn. */
  chunks: number[];
  upper: boolean;
  zeros: number;
  exts: string[];
  trailers: string[];
  interim: string[];
  lengthName: string;
  teName: string;
  te: string[];
  ows: [string, string];
  /** Where among the header fields the framing field goes. */
  at: number;
  /** A 304 that states the length of the representation it stands for. */
  notModifiedLength: boolean;
}

interface Segment {
  size: string;
  eol: string;
  data: Buffer;
  end: string;
}

/** A response taken apart, for mutations to edit before it is put together. */
interface Parts {
  prefix: string;
  interim: string;
  status: string;
  fields: string[];
  eol: string;
  /** The index in `fields` of Content-Length or Transfer-Encoding (-1 when neither). */
  framingAt: number;
  /** For chunked framing: data chunks, then the last chunk and trailer section. */
  segments: Segment[];
  last: string;
  trailers: string[];
  payload: Buffer;
  shape: Shape;
}

const CURATED: Array<[string, string]> = [
  ['Content-Type', 'application/json; charset=utf-8'],
  ['Server', 'fuzz/1.0'],
  ['Date', 'Thu, 14 May 2026 10:00:00 GMT'],
  ['X-Empty', ''],
  ['Set-Cookie', 'a=b; Path=/; HttpOnly'],
  ['X-Latin1', 'caf\xe9 \x80\xff'],
  ['Retry-After', '7'],
  ['retry-after', ' 120 \t'],
  ['Vary', 'Accept-Encoding'],
  ['Keep-Alive', 'timeout=5'],
];

const INTERIM = [
  'HTTP/1.1 100 Continue\r\n\r\n',
  'HTTP/1.1 103 Early Hints\r\nLink: </app.css>; rel=preload; as=style\r\n\r\n',
  'HTTP/1.1 102 Processing\r\n\r\n',
  'HTTP/1.1 100 \r\n\r\n',
];

const tchar = fc.constantFrom(..."abcxyzABCXYZ0129-_!#$%&'*+.^`|~".split(''));
const vchar = fc.oneof(
  fc.integer({ min: 0x21, max: 0x7e }),
  fc.integer({ min: 0x80, max: 0xff }),
  fc.constant(0x20),
  fc.constant(0x09),
);
const randomHeader = fc
  .tuple(
    fc.string({ unit: tchar, minLength: 1, maxLength: 10 }),
    fc.array(vchar, { maxLength: 20 }),
  )
  .map(([name, codes]): [string, string] => [
    `X-${name}`,
    String.fromCharCode(...codes).replace(/^[ \t]+|[ \t]+$/g, ''),
  ]);

const bodyPiece = fc.constantFrom(
  'a',
  'Z',
  '0',
  ' ',
  '{"ok":true}',
  '\r\n',
  '0\r\n\r\n',
  'HTTP/1.1 200 OK\r\n',
  'é',
  '€',
  '\u0000',
  '\t',
);
const body = fc.oneof(
  { weight: 12, arbitrary: fc.array(bodyPiece, { maxLength: 10 }).map((p) => p.join('')) },
  { weight: 1, arbitrary: fc.integer({ min: 200, max: 800 }).map((n) => 'xyz€'.repeat(n)) },
);

const shape: fc.Arbitrary<Shape> = fc
  .record({
    version: fc.constantFrom<'1.0' | '1.1'>('1.1', '1.1', '1.1', '1.0'),
    status: fc.constantFrom<number>(200, 201, 202, 204, 304, 400, 404, 413, 429, 500, 503),
    reason: fc.constantFrom<string | null>(
      null,
      '',
      'OK',
      'Whatever',
      'Too Many Requests',
      'caf\xe9 \x80\xff',
    ),
    headers: fc.array(fc.oneof(fc.constantFrom(...CURATED), randomHeader), { maxLength: 4 }),
    connection: fc.constantFrom<string | null>(
      null,
      null,
      'keep-alive',
      'Keep-Alive',
      'close',
      'Close',
      'foo, close',
    ),
    framing: fc.constantFrom<Framing>('length', 'chunked', 'close'),
    body,
    chunks: fc.array(fc.integer({ min: 1, max: 9 }), { minLength: 1, maxLength: 4 }),
    upper: fc.boolean(),
    zeros: fc.constantFrom(0, 0, 1, 3),
    exts: fc.array(
      fc.constantFrom(
        ';a',
        ';name=value',
        ';q="quoted ; value"',
        ';x=1;y=2',
        ';e=""',
        ';n="\\"e\\""',
      ),
      { maxLength: 2 },
    ),
    trailers: fc.array(fc.constantFrom('X-Checksum: abc', 'Server-Timing: db;dur=5', 'x-t:v'), {
      maxLength: 2,
    }),
    interim: fc.array(fc.constantFrom(...INTERIM), { maxLength: 2 }),
    lengthName: fc.constantFrom('Content-Length', 'content-length', 'CONTENT-LENGTH'),
    teName: fc.constantFrom('Transfer-Encoding', 'transfer-encoding', 'TRANSFER-ENCODING'),
    te: fc.constantFrom<string[]>(['chunked'], ['Chunked'], ['gzip, chunked'], ['gzip', 'chunked']),
    ows: fc.tuple(fc.constantFrom('', ' ', ' ', '  '), fc.constantFrom('', '', ' ', '  ')),
    at: fc.nat(),
    notModifiedLength: fc.boolean(),
  })
  .map((s) => {
    if (s.status === 204 || s.status === 304) s.framing = 'none';
    // A server must not send Transfer-Encoding to HTTP/1.0; that case is a mutation of its own.
    if (s.version === '1.0' && s.framing === 'chunked') s.framing = 'length';
    return s;
  });

const hasToken = (value: string | null, token: string) =>
  value !== null && value.split(',').some((t) => t.trim().toLowerCase() === token);

function render(s: Shape): Parts {
  const fields = s.headers.map(([name, value]) => `${name}: ${value}`);
  const bodyBytes = Buffer.from(s.body, 'utf8');
  const [before, after] = s.ows;
  const parts: Parts = {
    prefix: '',
    interim: s.interim.join(''),
    status: `HTTP/${s.version} ${s.status}${s.reason === null ? '' : ` ${s.reason}`}`,
    fields,
    eol: '\r\n',
    framingAt: -1,
    segments: [],
    last: '',
    trailers: [],
    payload: Buffer.alloc(0),
    shape: s,
  };
  const insert = (line: string) => {
    const at = s.at % (fields.length + 1);
    fields.splice(at, 0, line);
    parts.framingAt = at;
  };
  switch (s.framing) {
    case 'length':
      insert(`${s.lengthName}:${before}${bodyBytes.length}${after}`);
      parts.payload = bodyBytes;
      break;
    case 'chunked': {
      insert(`${s.teName}:${before}${s.te[0]}${after}`);
      for (const more of s.te.slice(1))
        fields.splice(parts.framingAt + 1, 0, `${s.teName}: ${more}`);
      let at = 0;
      for (let i = 0; at < bodyBytes.length; i++) {
        const n = Math.min(s.chunks[i % s.chunks.length] as number, bodyBytes.length - at);
        const hex = n.toString(16);
        parts.segments.push({
          size: '0'.repeat(s.zeros) + (s.upper ? hex.toUpperCase() : hex) + (s.exts[i % 2] ?? ''),
          eol: '\r\n',
          data: bodyBytes.subarray(at, at + n),
          end: '\r\n',
        });
        at += n;
      }
      parts.last = `${'0'.repeat(s.zeros)}0${s.exts[0] ?? ''}\r\n`;
      parts.trailers = s.trailers.map((t) => `${t}\r\n`);
      break;
    }
    case 'close':
      parts.payload = bodyBytes;
      break;
    case 'none':
      if (s.status === 304 && s.notModifiedLength) insert(`${s.lengthName}: 1234`);
      break;
  }
  if (s.connection !== null) fields.push(`Connection: ${s.connection}`);
  return parts;
}

function chunkedPayload(parts: Parts): Buffer {
  const pieces: Buffer[] = [];
  for (const seg of parts.segments) {
    pieces.push(
      Buffer.from(seg.size + seg.eol, 'latin1'),
      seg.data,
      Buffer.from(seg.end, 'latin1'),
    );
  }
  pieces.push(Buffer.from(parts.last + parts.trailers.join('') + '\r\n', 'latin1'));
  return Buffer.concat(pieces);
}

function bytesOf(parts: Parts): Buffer {
  const head =
    parts.prefix +
    parts.interim +
    parts.status +
    parts.eol +
    parts.fields.map((f) => f + parts.eol).join('') +
    parts.eol;
  const payload = parts.shape.framing === 'chunked' ? chunkedPayload(parts) : parts.payload;
  return Buffer.concat([Buffer.from(head, 'latin1'), payload]);
}

/** The RFC reading of a well-formed shape. */
function meaningOf(s: Shape): Reading {
  const retry = s.headers.find(([name]) => name.toLowerCase() === 'retry-after');
  return {
    status: s.status,
    body: s.framing === 'none' ? '' : s.body,
    retryAfter: retry === undefined ? undefined : retry[1].replace(/^[ \t]+|[ \t]+$/g, ''),
  };
}

function closes(s: Shape): boolean {
  return (
    s.framing === 'close' ||
    hasToken(s.connection, 'close') ||
    (s.version === '1.0' && !hasToken(s.connection, 'keep-alive'))
  );
}

/** What a mutation may change of an answer besides its bytes. */
type Verdict = Pick<Answer, 'meaning' | 'must' | 'close' | 'stall' | 'llhttp'>;

interface Mutation {
  family: string;
  kind: string;
  /** Makes the shape one the mutation applies to. */
  prepare?: (s: Shape) => void;
  apply: (parts: Parts, verdict: Verdict) => void;
}

/** No valid reading: the client must reject. The server closes, so a wrong reading cannot wait. */
function never(v: Verdict): void {
  v.meaning = null;
  v.must = false;
  v.close = true;
}

/** A valid reading exists, but a client may reject instead. */
function may(v: Verdict, llhttp?: Answer['llhttp']): void {
  v.must = false;
  v.llhttp = llhttp;
}

const withBody = (s: Shape) => {
  if (s.status === 204 || s.status === 304) s.status = 200;
  if (s.body.length === 0) s.body = 'body';
  s.version = '1.1';
};
const lengthFramed = (s: Shape) => {
  withBody(s);
  s.framing = 'length';
};
const chunkFramed = (s: Shape) => {
  withBody(s);
  s.framing = 'chunked';
  s.te = ['chunked'];
};
/** The payload as a close-delimited body: raw bytes, read until the server closes. */
const untilClose = (parts: Parts, v: Verdict) => {
  parts.payload = chunkedPayload(parts);
  parts.shape = { ...parts.shape, framing: 'close' };
  v.meaning = { ...(v.meaning as Reading), body: parts.payload.toString('utf8') };
  v.close = true;
};
const lengthValue = (parts: Parts, value: string) => {
  parts.fields[parts.framingAt] = `${parts.shape.lengthName}: ${value}`;
};
const teValue = (parts: Parts, value: string) => {
  parts.fields[parts.framingAt] = `${parts.shape.teName}: ${value}`;
};
const bodyLength = (parts: Parts) => parts.payload.length;

const MUTATIONS: Mutation[] = [];
function mutation(
  family: string,
  kind: string,
  prepare: Mutation['prepare'],
  apply: Mutation['apply'],
): void {
  MUTATIONS.push({ family, kind, prepare, apply });
}

// Status lines.
for (const line of [
  'HTTP/1.1 20 OK',
  'HTTP/1.1 2000 OK',
  'HTTP/1.1 OK',
  'HTTP/2 200',
  'HTTP/1.1  200 OK',
  'http/1.1 200 OK',
  'HTTP/1.1 2O0 OK',
  'HTTP/1.1 200OK',
  'ICY 200 OK',
  'HTTP/1.1\t200 OK',
  'HTTP/1.2 200 OK',
  'HTTP/1.1 -20 OK',
  'HTTP/1. 200 OK',
  '',
  'HTTP/1.1 200 O\nK',
]) {
  mutation('status line', `status line ${JSON.stringify(line)}`, undefined, (parts, v) => {
    parts.status = line;
    never(v);
  });
}
mutation('status line', '101 never asked for', undefined, (parts, v) => {
  parts.status = 'HTTP/1.1 101 Switching Protocols';
  parts.fields.push('Upgrade: websocket');
  never(v);
  v.llhttp = 'accepts';
});
mutation('status line', 'NUL before the status line', undefined, (parts, v) => {
  parts.prefix = '\x00';
  never(v);
});
mutation('status line', 'an empty line before the status line', undefined, (parts, v) => {
  parts.prefix = '\r\n';
  may(v);
});
for (const [kind, reason] of [
  ['NUL in the reason phrase', 'O\x00K'],
  ['bare CR in the reason phrase', 'O\rK'],
] as const) {
  mutation('status line', kind, undefined, (parts, v) => {
    parts.status = `HTTP/1.1 ${parts.shape.status} ${reason}`;
    may(v, reason.includes('\r') ? 'rejects' : undefined);
  });
}
for (const status of [99, 999]) {
  mutation('status line', `status ${String(status).padStart(3, '0')}`, undefined, (parts, v) => {
    parts.status = `HTTP/1.1 ${String(status).padStart(3, '0')} Odd`;
    may(v);
    v.meaning = { ...(v.meaning as Reading), status };
  });
}

// Content-Length.
const invalidLengths: Array<[string, (n: number) => string]> = [
  ['digits then a letter', (n) => `${n}x`],
  ['a letter then digits', (n) => `x${n}`],
  ['a decimal point', (n) => `${n}.0`],
  ['two numbers', (n) => `${n} ${n}`],
  ['a sign', (n) => `+${n}`],
  ['negative', (n) => `-${n}`],
  ['empty', () => ''],
  ['hex', (n) => `0x${n.toString(16)}`],
  ['twenty digits', () => '9'.repeat(20)],
  ['a trailing VT', (n) => `${n}\v`],
  ['a leading FF', (n) => `\f${n}`],
  ['a trailing NBSP', (n) => `${n}\xa0`],
  ['a trailing comma', (n) => `${n},`],
  ['NUL inside', (n) => `${n}\x00${n}`],
];
for (const [kind, value] of invalidLengths) {
  mutation('Content-Length', `Content-Length ${kind}`, lengthFramed, (parts, v) => {
    lengthValue(parts, value(bodyLength(parts)));
    never(v);
  });
}
// OWS is spaces and tabs (RFC 9110 5.6.3); llhttp refuses tabs here.
mutation('Content-Length', 'Content-Length with tabs around', lengthFramed, (parts, v) => {
  lengthValue(parts, `\t${bodyLength(parts)}\t`);
  v.llhttp = 'rejects';
});
for (const [kind, value, llhttp] of [
  ['a trailing NUL', (n: number) => `${n}\x00`, 'rejects'],
  ['a trailing bare CR', (n: number) => `${n}\r`, 'rejects'],
  ['a list of one value', (n: number) => `${n}, ${n}`, 'rejects'],
  ['a list without spaces', (n: number) => `${n},${n}`, 'rejects'],
] as const) {
  mutation('Content-Length', `Content-Length ${kind}`, lengthFramed, (parts, v) => {
    lengthValue(parts, value(bodyLength(parts)));
    may(v, llhttp);
  });
}
mutation('Content-Length', 'Content-Length twice, same value', lengthFramed, (parts, v) => {
  parts.fields.push(`Content-Length: ${bodyLength(parts)}`);
  may(v, 'rejects');
});
mutation('Content-Length', 'Content-Length twice, different values', lengthFramed, (parts, v) => {
  parts.fields.push(`Content-Length: ${bodyLength(parts) + 1}`);
  never(v);
});
mutation('Content-Length', 'Content-Length list, different values', lengthFramed, (parts, v) => {
  lengthValue(parts, `${bodyLength(parts)}, ${bodyLength(parts) + 1}`);
  never(v);
});
mutation(
  'Content-Length',
  'Content-Length on a 204',
  (s) => {
    s.status = 204;
    s.framing = 'none';
  },
  (parts, v) => {
    parts.fields.push('Content-Length: 5');
    may(v);
  },
);

// Transfer-Encoding.
mutation('Transfer-Encoding', 'Transfer-Encoding with Content-Length', chunkFramed, (parts, v) => {
  parts.fields.push(`Content-Length: ${parts.shape.body.length}`);
  may(v, 'rejects');
});
for (const te of ['gzip', 'chunked, gzip', 'identity', 'xchunked', 'chunkedx', 'deflate']) {
  mutation(
    'Transfer-Encoding',
    `Transfer-Encoding: ${te} (until close)`,
    chunkFramed,
    (parts, v) => {
      teValue(parts, te);
      untilClose(parts, v);
    },
  );
}
mutation('Transfer-Encoding', 'Transfer-Encoding: chunked, then gzip', chunkFramed, (parts, v) => {
  teValue(parts, 'chunked');
  parts.fields.splice(parts.framingAt + 1, 0, 'Transfer-Encoding: gzip');
  untilClose(parts, v);
});
mutation(
  'Transfer-Encoding',
  'Transfer-Encoding: gzip with Content-Length',
  chunkFramed,
  (parts, v) => {
    teValue(parts, 'gzip');
    parts.fields.push('Content-Length: 3');
    untilClose(parts, v);
    may(v, 'rejects');
  },
);
mutation('Transfer-Encoding', 'Transfer-Encoding: chunked, chunked', chunkFramed, (parts, v) => {
  teValue(parts, 'chunked, chunked');
  may(v);
});
mutation('Transfer-Encoding', 'Transfer-Encoding on HTTP/1.0', chunkFramed, (parts, v) => {
  parts.status = parts.status.replace('HTTP/1.1', 'HTTP/1.0');
  may(v);
  v.close = true;
});
// RFC 9110 5.6.1.2: a recipient ignores empty list elements; llhttp does not at the end of a line.
mutation(
  'Transfer-Encoding',
  'Transfer-Encoding: chunked, (empty element)',
  chunkFramed,
  (parts, v) => {
    teValue(parts, 'chunked, ');
    v.close = true;
    v.llhttp = 'differs';
  },
);
mutation('Transfer-Encoding', 'Transfer-Encoding: chunked,,', chunkFramed, (parts, v) => {
  teValue(parts, 'chunked,,');
  v.close = true;
  v.llhttp = 'differs';
});
mutation(
  'Transfer-Encoding',
  'Transfer-Encoding: chunked, then an empty field',
  chunkFramed,
  (parts) => {
    teValue(parts, 'chunked');
    parts.fields.splice(parts.framingAt + 1, 0, 'Transfer-Encoding: ');
  },
);

// Chunked framing.
const badSizes: Array<[string, (hex: string) => string]> = [
  ['letters', () => 'zz'],
  ['empty', () => ''],
  ['a space', () => ' '],
  ['negative', (h) => `-${h}`],
  ['0x', (h) => `0x${h}`],
  ['two numbers', (h) => `${h} ${h}`],
  ['a sign', (h) => `+${h}`],
  ['fifteen digits', () => 'fffffffffffffff'],
  ['an extension only', () => ';a=b'],
];
for (const [kind, size] of badSizes) {
  mutation('chunked', `chunk size ${kind}`, chunkFramed, (parts, v) => {
    const seg = parts.segments[0] as Segment;
    seg.size = size(seg.data.length.toString(16));
    never(v);
  });
}
for (const delta of [1, -1]) {
  mutation(
    'chunked',
    `chunk size ${delta > 0 ? 'one more' : 'one less'} than the data`,
    chunkFramed,
    (parts, v) => {
      const seg = parts.segments[0] as Segment;
      if (delta < 0 && seg.data.length < 2) seg.data = Buffer.from('ab');
      seg.size = (seg.data.length + delta).toString(16);
      never(v);
    },
  );
}
mutation('chunked', 'chunk size line ends in a bare CR', chunkFramed, (parts, v) => {
  (parts.segments[0] as Segment).eol = '\rx';
  never(v);
});
mutation('chunked', 'chunk size line ends in a bare LF', chunkFramed, (parts, v) => {
  (parts.segments[0] as Segment).eol = '\n';
  may(v, 'rejects');
});
for (const [kind, end, ok] of [
  ['other bytes', 'xx', false],
  ['nothing', '', false],
  ['a bare CR', '\r', false],
  ['a bare LF', '\n', true],
] as const) {
  mutation('chunked', `chunk data followed by ${kind}`, chunkFramed, (parts, v) => {
    (parts.segments[0] as Segment).end = end;
    if (ok) may(v, 'rejects');
    else never(v);
  });
}
for (const ext of [';a\x01b', ';a\x00', ';a=\x7f', ';a=b\rc']) {
  mutation('chunked', `chunk extension ${JSON.stringify(ext)}`, chunkFramed, (parts, v) => {
    (parts.segments[0] as Segment).size += ext;
    never(v);
  });
}
for (const ext of [' ;a=b', '\t;a', '; a = b']) {
  mutation(
    'chunked',
    `chunk extension with whitespace ${JSON.stringify(ext)}`,
    chunkFramed,
    (parts, v) => {
      (parts.segments[0] as Segment).size += ext;
      v.llhttp = 'rejects';
    },
  );
}
mutation('chunked', 'a last chunk with fourteen zeros', chunkFramed, (parts, v) => {
  parts.last = '00000000000000\r\n';
  may(v);
});
for (const [kind, trailer] of [
  ['without a colon', 'bad trailer\r\n'],
  ['folded', 'X-T: a\r\n b\r\n'],
  ['ending in a bare LF', 'X-T: a\n'],
] as const) {
  mutation('chunked', `a trailer ${kind}`, chunkFramed, (parts, v) => {
    parts.trailers.push(trailer);
    may(v, 'rejects');
  });
}

// Obsolete line folding.
mutation('obs-fold', 'a folded field', undefined, (parts, v) => {
  parts.fields.push('X-Folded: first', '   second');
  v.llhttp = 'rejects';
});
mutation('obs-fold', 'a folded Retry-After', undefined, (parts, v) => {
  parts.fields = parts.fields.filter((f) => !/^retry-after:/i.test(f));
  parts.fields.push('Retry-After: 1', '\t2');
  v.meaning = { ...(v.meaning as Reading), retryAfter: '1 2' };
  v.llhttp = 'rejects';
});
mutation('obs-fold', 'a folded Content-Length, two numbers', lengthFramed, (parts, v) => {
  lengthValue(parts, `${bodyLength(parts)}\r\n ${bodyLength(parts)}`);
  never(v);
});
mutation('obs-fold', 'a Content-Length whose value is folded', lengthFramed, (parts, v) => {
  lengthValue(parts, `\r\n ${bodyLength(parts)}`);
  may(v, 'rejects');
});
mutation('obs-fold', 'a folded Transfer-Encoding: gzip / chunked', chunkFramed, (parts, v) => {
  teValue(parts, 'gzip\r\n chunked');
  // "gzip chunked" after unfolding: not a list that ends in chunked.
  untilClose(parts, v);
  may(v, 'rejects');
});
mutation('obs-fold', 'a Transfer-Encoding whose value is folded', chunkFramed, (parts, v) => {
  teValue(parts, '\r\n chunked');
  may(v, 'rejects');
  v.close = true;
});
for (const line of [' X-Leading: a', ' Content-Length: 999', ' Transfer-Encoding: chunked']) {
  mutation(
    'obs-fold',
    `a first field line starting with whitespace ${JSON.stringify(line)}`,
    lengthFramed,
    (parts, v) => {
      parts.fields.unshift(line);
      may(v, 'rejects');
    },
  );
}

// NUL, CR and LF where they do not belong.
for (const [kind, line] of [
  ['NUL in a field value', 'X-Nul: a\x00b'],
  ['bare CR in a field value', 'X-Cr: a\rb'],
  ['bare CR then a Content-Length in a field value', 'X-Cr: a\rContent-Length: 1'],
  ['VT in a field value', 'X-Vt: a\vb'],
] as const) {
  mutation('control characters', kind, lengthFramed, (parts, v) => {
    parts.fields.push(line);
    may(v, 'rejects');
  });
}
for (const [kind, line] of [
  ['NUL in a field name', 'X-N\x00ul: a'],
  ['bare CR in a field name', 'X-C\rr: a'],
  ['a space before the colon', 'X-Space : a'],
  ['no colon', 'X-No-Colon'],
] as const) {
  mutation('control characters', kind, undefined, (parts, v) => {
    parts.fields.push(line);
    never(v);
  });
}
for (const [kind, te] of [
  ['NUL', 'chunked\x00'],
  ['bare CR', 'chunked\r'],
] as const) {
  // RFC 9110 5.5: reject, or read the character as SP (which leaves "chunked").
  mutation('control characters', `Transfer-Encoding ending in ${kind}`, chunkFramed, (parts, v) => {
    teValue(parts, te);
    may(v, 'rejects');
  });
}
for (const [kind, te] of [
  ['VT', 'chunked\v'],
  ['DEL', 'chunked\x7f'],
  ['a control character inside', 'chun\x01ked'],
] as const) {
  mutation('control characters', `Transfer-Encoding with ${kind}`, chunkFramed, (parts, v) => {
    teValue(parts, te);
    never(v);
    // The server keeps the connection open: reading until it closes would hang.
    v.close = false;
  });
}
mutation('control characters', 'bare LF line ends in the head', undefined, (parts, v) => {
  parts.eol = '\n';
  may(v, 'rejects');
});

// Sizes.
for (const size of [8000, 16_000, 16_384, 16_385, 20_000, 70_000]) {
  mutation('sizes', `a header section of ${size} bytes`, undefined, (parts, v) => {
    const payload = parts.shape.framing === 'chunked' ? chunkedPayload(parts) : parts.payload;
    const head = bytesOf(parts).length - payload.length - parts.interim.length;
    parts.fields.push(
      `X-Filler: ${'f'.repeat(Math.max(1, size - head - 'X-Filler: \r\n'.length))}`,
    );
    // Node counts its 16 KiB limit its own way: near it, either may refuse.
    if (size > 8192) may(v, size > 17_000 ? 'rejects' : undefined);
  });
}
mutation('sizes', '300 header fields', undefined, (parts) => {
  for (let i = 0; i < 300; i++) parts.fields.push(`X-Field-${i}: ${i}`);
});
mutation('sizes', '40 interim responses', undefined, (parts) => {
  parts.interim = INTERIM[0]!.repeat(40);
});
mutation('sizes', 'a reason phrase of 20 KiB', undefined, (parts, v) => {
  parts.status = `HTTP/1.1 ${parts.shape.status} ${'r'.repeat(20 * 1024)}`;
  may(v, 'rejects');
});
mutation('sizes', 'a chunk extension of 20 KiB', chunkFramed, (parts, v) => {
  (parts.segments[0] as Segment).size += `;x=${'e'.repeat(20 * 1024)}`;
  may(v);
});
mutation('sizes', 'a trailer section of 20 KiB', chunkFramed, (parts, v) => {
  parts.trailers.push(`X-Big: ${'t'.repeat(20 * 1024)}\r\n`);
  may(v, 'rejects');
});
mutation(
  'sizes',
  'a body of 100 KiB',
  (s) => {
    withBody(s);
    s.body = 'b'.repeat(100 * 1024);
  },
  () => undefined,
);

// Interim responses.
for (const [kind, interim, ok, llhttp] of [
  ['with Content-Length', 'HTTP/1.1 100 Continue\r\nContent-Length: 5\r\n\r\n', true, undefined],
  [
    'with Transfer-Encoding',
    'HTTP/1.1 103 Early Hints\r\nTransfer-Encoding: chunked\r\n\r\n',
    true,
    undefined,
  ],
  [
    'with a bad Content-Length',
    'HTTP/1.1 100 Continue\r\nContent-Length: abc\r\n\r\n',
    false,
    'rejects',
  ],
  ['on HTTP/1.0', 'HTTP/1.0 100 Continue\r\n\r\n', false, 'rejects'],
] as const) {
  mutation('interim', `an interim response ${kind}`, undefined, (parts, v) => {
    parts.interim = interim;
    if (!ok) may(v, llhttp);
  });
}

const MUTATION_FAMILIES = [...new Set(MUTATIONS.map((m) => m.family))];

/** A response cut short: the server closes (truncated) or goes quiet (stalled). */
function cut(a: Answer, at: number, stall: boolean): Answer {
  const n = 1 + Math.floor(at * (a.bytes.length - 1));
  return {
    ...a,
    kind: `${stall ? 'stalled' : 'truncated'} (${a.kind})`,
    bytes: a.bytes.subarray(0, n),
    meaning: null,
    must: false,
    close: !stall,
    stall,
    llhttp: undefined,
  };
}

function build(s: Shape, m: Mutation | undefined): Answer {
  const sh = structuredClone(s);
  m?.prepare?.(sh);
  const parts = render(sh);
  const verdict: Verdict = {
    meaning: meaningOf(sh),
    must: true,
    close: closes(sh),
    stall: false,
    llhttp: undefined,
  };
  m?.apply(parts, verdict);
  return { kind: m?.kind ?? 'valid', bytes: bytesOf(parts), ...verdict };
}

// ---------------------------------------------------------------------------------------------
// The cases: fast-check, fixed seed.

const VALID_CASES = 64;
const PER_MUTATION = 2;
const CUT_CASES = 32;

function sample<T>(arb: fc.Arbitrary<T>, numRuns: number, salt: number): T[] {
  return fc.sample(arb, { seed: SEED + salt, numRuns });
}

const neighbours = fc.array(shape, { maxLength: 1 });

function validCases(): Case[] {
  return sample(fc.array(shape, { minLength: 1, maxLength: 4 }), VALID_CASES, 1).map(
    (shapes, i) => ({
      name: `valid #${i}`,
      family: 'valid',
      answers: shapes.map((s) => build(s, undefined)),
      target: -1,
    }),
  );
}

function mutatedCases(): Case[] {
  const cases: Case[] = [];
  MUTATIONS.forEach((m, j) => {
    const drawn = sample(fc.tuple(neighbours, shape, neighbours), PER_MUTATION, 100 + j);
    drawn.forEach(([before, s, after], i) => {
      cases.push({
        name: `${m.kind} #${i}`,
        family: m.family,
        answers: [
          ...before.map((b) => build(b, undefined)),
          build(s, m),
          ...after.map((b) => build(b, undefined)),
        ],
        target: before.length,
      });
    });
  });
  return cases;
}

function cutCases(stall: boolean): Case[] {
  const arb = fc.tuple(
    neighbours,
    shape,
    fc.double({ min: 0, max: 1, noNaN: true, maxExcluded: true }),
  );
  return sample(arb, stall ? CUT_CASES / 4 : CUT_CASES, stall ? 3 : 2).map(([before, s, at], i) => {
    const sh = s.framing === 'close' ? { ...s, framing: 'length' as const } : s;
    return {
      name: `${stall ? 'stalled' : 'truncated'} #${i}`,
      family: stall ? 'stalled' : 'truncated',
      answers: [...before.map((b) => build(b, undefined)), cut(build(sh, undefined), at, stall)],
      target: before.length,
    };
  });
}

/** A run of a case: for each answer, where to split it. */
type Plan = number[][];

/**
 * The runs of a case, each over the whole sequence: in one piece; STRIDE runs that between them
 * split every response at each of its byte boundaries (run i at the boundaries whose index is i
 * modulo STRIDE, so each piece is STRIDE bytes or more; a seeded sample of boundaries for a long
 * response); once into single bytes (short responses); and at random places.
 */
function plans(c: Case, salt: number): Plan[] {
  const lengths = c.answers.map((a) => a.bytes.length);
  const whole: Plan = lengths.map(() => []);
  const fractions = fc.array(fc.double({ min: 0, max: 1, noNaN: true }), {
    minLength: 1,
    maxLength: 6,
  });
  const random = sample(fc.tuple(...lengths.map(() => fractions)), RANDOM_PLANS, salt).map(
    (drawn): Plan =>
      lengths.map((n, k) =>
        [...new Set((drawn[k] as number[]).map((f) => Math.floor(f * n)))]
          .filter((b) => b > 0 && b < n)
          .sort((x, y) => x - y),
      ),
  );
  // A stalled case waits out a deadline on every run: random splits only.
  if (c.answers.some((a) => a.stall)) return [whole, ...random];
  const boundaries = lengths.map((n, k) => {
    if (n - 1 <= STRIDE * MAX_CUTS) return Array.from({ length: n - 1 }, (_, i) => i + 1);
    const some = sample(fc.integer({ min: 1, max: n - 1 }), STRIDE * MAX_CUTS, salt + k + 1);
    return [...new Set(some)].sort((x, y) => x - y);
  });
  const strided = Array.from({ length: STRIDE }, (_, i): Plan =>
    boundaries.map((all) => all.filter((_, j) => j % STRIDE === i)),
  );
  const bytes: Plan = lengths.map((n) =>
    n <= EVERY_BYTE_UP_TO ? Array.from({ length: n - 1 }, (_, i) => i + 1) : [],
  );
  return [whole, ...strided, bytes, ...random];
}

// ---------------------------------------------------------------------------------------------
// The server: each run has a script, named in the request path. The n-th request of a run, on
// whichever connection it arrives, gets answer n, written in the pieces of the run's plan; the
// next piece goes out only once the client has read the previous one, so each is a read of its
// own.

/** Client sockets that have not closed yet (lean's, through the `net.connect` spy, and Node's). */
const clients = new Set<net.Socket>();

function track(socket: net.Socket): void {
  if (clients.has(socket)) return;
  clients.add(socket);
  socket.once('close', () => clients.delete(socket));
}

class Script {
  answers: Answer[] = [];
  cuts: number[][] = [];
  next = 0;
  /** Requests beyond the script (a client that sent more than it was asked to). */
  surplus = 0;
  /** The connections that carried a request in this run. */
  readonly used = new Set<net.Socket>();
  /** Every connection that carried a request of this script, until it closes. */
  readonly open = new Set<net.Socket>();
  onClosed: (() => void) | undefined;

  begin(answers: Answer[], cuts: number[][]): void {
    this.answers = answers;
    this.cuts = cuts;
    this.next = 0;
    this.surplus = 0;
    this.used.clear();
  }
}

interface ServerConn {
  socket: net.Socket;
  script: Script | undefined;
  input: Buffer;
  written: number;
  ended: boolean;
  peer: net.Socket | undefined;
  queue: Promise<void>;
}

class FuzzServer {
  private readonly server = net.createServer((socket) => this.accept(socket));
  private readonly scripts = new Map<string, Script>();
  private readonly sockets = new Set<net.Socket>();
  origin = '';
  port = 0;
  /** Pieces known to have been read on their own, and those it could not be sure of. */
  readonly splits = { exact: 0, unsure: 0 };

  async listen(): Promise<void> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.port = (this.server.address() as net.AddressInfo).port;
    this.origin = `http://127.0.0.1:${this.port}`;
  }

  script(id: string): Script {
    let script = this.scripts.get(id);
    if (script === undefined) {
      script = new Script();
      this.scripts.set(id, script);
    }
    return script;
  }

  /**
   * Once the client is closed: waits for every connection of the script to close, forgets the
   * script, and returns how many connections had to be forced (none, when the client closed them).
   */
  async finish(id: string): Promise<number> {
    const script = this.script(id);
    this.scripts.delete(id);
    if (script.open.size > 0) {
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer);
          script.onClosed = undefined;
          resolve();
        };
        const timer = setTimeout(done, 2000);
        script.onClosed = () => {
          if (script.open.size === 0) done();
        };
      });
    }
    const left = script.open.size;
    for (const socket of script.open) socket.destroy();
    return left;
  }

  /** Server-side connections still open, over all scripts. */
  get connections(): number {
    return this.sockets.size;
  }

  /** The client ends of a script's connections (by port) that are still open. */
  clientsOf(id: string): net.Socket[] {
    const ports = new Set([...this.script(id).open].map((s) => s.remotePort));
    return [...clients].filter((c) => !c.destroyed && ports.has(c.localPort));
  }

  close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }

  private accept(socket: net.Socket): void {
    this.sockets.add(socket);
    socket.setNoDelay(true);
    socket.on('error', () => undefined);
    const conn: ServerConn = {
      socket,
      script: undefined,
      input: Buffer.alloc(0),
      written: 0,
      ended: false,
      peer: undefined,
      queue: Promise.resolve(),
    };
    socket.on('close', () => {
      this.sockets.delete(socket);
      conn.script?.open.delete(socket);
      conn.script?.onClosed?.();
    });
    socket.on('data', (chunk: Buffer) => {
      conn.input = Buffer.concat([conn.input, chunk]);
      for (;;) {
        const end = conn.input.indexOf('\r\n\r\n');
        if (end === -1) return;
        const head = conn.input.toString('latin1', 0, end);
        const length = Number(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1] ?? 0);
        if (conn.input.length < end + 4 + length) return;
        conn.input = conn.input.subarray(end + 4 + length);
        const id = /^POST \/e\/(\S+) /.exec(head)?.[1] ?? '';
        if (conn.script === undefined) {
          conn.script = this.script(id);
          conn.script.open.add(socket);
        }
        const script = conn.script;
        conn.queue = conn.queue.then(() => this.answer(conn, script));
      }
    });
  }

  private async answer(conn: ServerConn, script: Script): Promise<void> {
    // A request on a connection this server has closed is never answered (nor counted).
    if (conn.ended || conn.socket.destroyed) return;
    const k = script.next++;
    script.used.add(conn.socket);
    const answer = script.answers[k];
    if (answer === undefined) {
      script.surplus++;
      conn.socket.destroy();
      return;
    }
    const { bytes } = answer;
    let from = 0;
    for (const to of [...(script.cuts[k] ?? []), bytes.length]) {
      if (conn.socket.destroyed) return;
      conn.socket.write(bytes.subarray(from, to));
      conn.written += to - from;
      from = to;
      if (to < bytes.length && !(await this.delivered(conn))) return;
    }
    if (answer.close) {
      conn.ended = true;
      conn.socket.end();
    }
  }

  /** Waits until the client has read everything written so far; false once it has hung up. */
  private async delivered(conn: ServerConn): Promise<boolean> {
    // The live client socket at the other end (a closed one may have had the same port). Until
    // it has connected on its side it has no port: look again a little later.
    for (let i = 0; conn.peer === undefined && i < 200; i++) {
      conn.peer = [...clients].find((c) => !c.destroyed && c.localPort === conn.socket.remotePort);
      if (conn.peer === undefined) await (i < 100 ? immediate() : sleep(1));
    }
    const peer = conn.peer;
    if (peer === undefined) {
      this.splits.unsure++;
      return true;
    }
    if (peer.destroyed) return false;
    if (peer.bytesRead < conn.written) {
      await readUpTo(peer, conn.written);
      if (peer.destroyed) return false;
      if (peer.bytesRead < conn.written) {
        this.splits.unsure++;
        return true;
      }
    }
    this.splits.exact++;
    return true;
  }
}

/** Resolves once `socket` has read `bytes` in all (or closed, or 5 s passed: counted unsure). */
function readUpTo(socket: net.Socket, bytes: number): Promise<void> {
  return new Promise((resolve) => {
    // A listener after the client's own: when it runs, the client has handled the bytes.
    const onData = () => {
      if (socket.bytesRead >= bytes) done();
    };
    const done = () => {
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('close', done);
      resolve();
    };
    const timer = setTimeout(done, 5000);
    socket.on('data', onData);
    socket.on('close', done);
  });
}

// ---------------------------------------------------------------------------------------------
// The two clients.

const REQUEST_BODY = '{"type":"pageview","url":"https://shop.example/"}';

interface Run {
  outcomes: Outcome[];
  /** Connections that carried the run's requests. */
  connections: number;
  surplus: number;
}

function failure(error: unknown): Outcome {
  const e = error as { code?: unknown; name?: unknown; message?: unknown };
  const what = e.name === 'TimeoutError' ? 'TimeoutError' : (e.code ?? e.name ?? e.message);
  return { error: String(what) };
}

/** One run on the lean client: the answers' requests in turn, until one fails. */
async function viaLean(
  t: Transport & DeadlineTransport,
  id: string,
  answers: Answer[],
  cuts: number[][],
  deadline = HANG_MS,
): Promise<Run> {
  const script = server.script(id);
  script.begin(answers, cuts);
  const outcomes: Outcome[] = [];
  for (const answer of answers) {
    const outcome = await t
      .sendWithin(
        {
          url: `${server.origin}/e/${id}`,
          headers: { 'content-type': 'application/json' },
          body: REQUEST_BODY,
        },
        answer.stall ? STALL_MS : deadline,
      )
      .then(
        (r): Outcome => ({ status: r.status, body: r.body ?? '', retryAfter: r.retryAfter }),
        failure,
      );
    outcomes.push(outcome);
    if ('error' in outcome) break;
  }
  return { outcomes, connections: script.used.size, surplus: script.surplus };
}

function nodeSend(agent: http.Agent, path: string, timeoutMs: number) {
  return new Promise<{ outcome: Outcome; socket: net.Socket | undefined }>((resolve) => {
    let socket: net.Socket | undefined;
    let done = false;
    const finish = (outcome: Outcome) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      resolve({ outcome, socket });
    };
    const req = http.request(
      {
        host: '127.0.0.1',
        port: server.port,
        method: 'POST',
        path,
        agent,
        headers: {
          'content-type': 'application/json',
          'content-length': String(Buffer.byteLength(REQUEST_BODY)),
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => {
          const retry = res.headers['retry-after'];
          finish({
            status: res.statusCode ?? 0,
            body: Buffer.concat(chunks).toString('utf8').slice(0, SNIPPET),
            retryAfter: Array.isArray(retry) ? retry[0] : retry,
          });
        });
        res.on('error', (error) => finish(failure(error)));
        res.on('close', () => finish({ error: 'aborted' }));
      },
    );
    req.on('socket', (s: net.Socket) => {
      socket = s;
      track(s);
    });
    req.on('error', (error) => finish(failure(error)));
    const timer = setTimeout(() => {
      req.destroy();
      finish({ error: 'TimeoutError' });
    }, timeoutMs);
    req.end(REQUEST_BODY);
  });
}

/** The case on Node's client, in one piece: llhttp's verdict. */
async function viaNode(c: Case, index: number): Promise<Run> {
  const id = `${c.family.replace(/\W+/g, '-')}-${index}-node`;
  const script = server.script(id);
  script.begin(
    c.answers,
    c.answers.map(() => []),
  );
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const outcomes: Outcome[] = [];
  for (const answer of c.answers) {
    const { outcome, socket } = await nodeSend(
      agent,
      `/e/${id}`,
      answer.stall ? STALL_MS : HANG_MS,
    );
    outcomes.push(outcome);
    if ('error' in outcome) break;
    // Node does not retry a request on a kept-alive socket the server has just closed: let it
    // see the close first.
    if (answer.close && socket !== undefined) {
      for (let i = 0; i < 200 && !socket.destroyed; i++) await immediate();
    }
  }
  agent.destroy();
  await server.finish(id);
  return { outcomes, connections: script.used.size, surplus: script.surplus };
}

// ---------------------------------------------------------------------------------------------
// The checks.

function reads(outcome: Outcome, meaning: Reading): boolean {
  return (
    !('error' in outcome) &&
    outcome.status === meaning.status &&
    outcome.body === meaning.body.slice(0, SNIPPET) &&
    outcome.retryAfter === meaning.retryAfter
  );
}

const show = (x: unknown) =>
  JSON.stringify(x, (_k, v: unknown) =>
    typeof v === 'string' && v.length > 300 ? `${v.slice(0, 300)}…(${v.length})` : v,
  );

/** What is wrong with a run of the lean client, if anything. */
function leanProblems(answers: Answer[], run: Run, valid: boolean): string[] {
  const problems: string[] = [];
  for (const [i, outcome] of run.outcomes.entries()) {
    const answer = answers[i] as Answer;
    if ('error' in outcome) {
      if (answer.stall) {
        if (outcome.error !== 'TimeoutError')
          problems.push(`stalled answer ${i}: ${outcome.error}`);
      } else if (outcome.error === 'TimeoutError') {
        problems.push(`answer ${i} (${answer.kind}): hung until the deadline`);
      } else if (answer.must) {
        problems.push(
          `answer ${i} (${answer.kind}) is well-formed, but rejected: ${outcome.error}`,
        );
      }
      break;
    }
    if (answer.meaning === null) {
      problems.push(
        `answer ${i} (${answer.kind}) has no valid reading, but read as ${show(outcome)}`,
      );
      break;
    }
    if (!reads(outcome, answer.meaning)) {
      problems.push(
        `answer ${i} (${answer.kind}) read as ${show(outcome)}, not ${show(answer.meaning)}`,
      );
      break;
    }
  }
  if (run.surplus > 0) problems.push(`${run.surplus} request(s) beyond the script`);
  if (valid && run.outcomes.every((o) => !('error' in o))) {
    // Keep-alive: a new connection only after an answer that closed the last one.
    const most = 1 + answers.slice(0, -1).filter((a) => a.close).length;
    if (run.connections !== most) {
      problems.push(`${run.connections} connections, where keep-alive needs ${most}`);
    }
  }
  return problems;
}

/** Where llhttp departs from the model without that being declared (a model to correct). */
function nodeProblems(c: Case, run: Run): string[] {
  const problems: string[] = [];
  for (const [i, outcome] of run.outcomes.entries()) {
    const answer = c.answers[i] as Answer;
    const declared = answer.llhttp;
    const what = `answer ${i} (${answer.kind})`;
    if ('error' in outcome) {
      if (answer.stall) break;
      if (outcome.error === 'TimeoutError') problems.push(`llhttp hung on ${what}`);
      else if (answer.must && declared !== 'rejects') {
        problems.push(`llhttp rejects ${what}: ${outcome.error}`);
      }
      break;
    }
    if (declared === 'rejects') problems.push(`llhttp accepts ${what}, declared to reject`);
    if (answer.meaning === null) {
      if (declared !== 'accepts') problems.push(`llhttp accepts ${what}: ${show(outcome)}`);
    } else if (reads(outcome, answer.meaning)) {
      if (declared === 'differs') problems.push(`llhttp reads ${what} as the model does`);
    } else if (declared !== 'differs') {
      problems.push(`llhttp reads ${what} as ${show(outcome)}, not ${show(answer.meaning)}`);
    }
  }
  return problems;
}

// ---------------------------------------------------------------------------------------------

interface Tally {
  cases: number;
  responses: number;
  runs: number;
  splits: number;
  bytes: number;
  /** For the answer under test: accepted or rejected at least once, by each client. */
  leanAccepted: number;
  leanRejected: number;
  nodeAccepted: number;
  nodeRejected: number;
  /** Milliseconds of wall clock and of CPU (this process, both clients and the server). */
  ms: number;
  cpuMs: number;
}
const tallies = new Map<string, Tally>();
const verdicts = new Map<string, { lean: Set<string>; node: Set<string> }>();

const server = new FuzzServer();
const realConnect = net.connect;

/** TCP sockets of the process before this file's (Jest in band runs other files in it first). */
let socketsBefore = 0;
const tcpSockets = () =>
  process.getActiveResourcesInfo().filter((r) => r === 'TCPSocketWrap').length;

beforeAll(async () => {
  socketsBefore = tcpSockets();
  await server.listen();
  // Lets the server find the lean client's end of each connection (to tell when it has read).
  jest.spyOn(net, 'connect').mockImplementation(((...args: unknown[]) => {
    const socket = (realConnect as (...a: unknown[]) => net.Socket)(...args);
    track(socket);
    return socket;
  }) as typeof net.connect);
});

afterAll(async () => {
  jest.restoreAllMocks();
  await server.close();
  if (process.env.FUZZ_REPORT) {
    const report = {
      tallies: Object.fromEntries(tallies),
      splits: server.splits,
      verdicts: Object.fromEntries(
        [...verdicts].map(([k, v]) => [k, { lean: [...v.lean], node: [...v.node] }]),
      ),
    };
    fs.writeFileSync(process.env.FUZZ_REPORT, JSON.stringify(report, null, 1));
  }
});

function verdictOf(run: Run, at: number): string {
  const outcome = run.outcomes[at];
  if (outcome === undefined) return 'not reached';
  return 'error' in outcome ? `rejects (${outcome.error})` : 'accepts';
}

async function fuzzCase(c: Case, index: number, tally: Tally): Promise<string[]> {
  const problems: string[] = [];
  const bytes = () => show(c.answers.map((a) => a.bytes.toString('latin1')));
  const target = Math.max(c.target, 0);
  const seen = verdicts.get(c.answers[target]!.kind) ?? { lean: new Set(), node: new Set() };
  verdicts.set(c.answers[target]!.kind, seen);
  tally.cases++;
  tally.responses += c.answers.length;
  tally.bytes += c.answers.reduce((n, a) => n + a.bytes.length, 0);

  const node = await viaNode(c, index);
  seen.node.add(verdictOf(node, target));
  if (verdictOf(node, target).startsWith('rejects')) tally.nodeRejected++;
  else tally.nodeAccepted++;
  for (const p of nodeProblems(c, node)) problems.push(`${c.name}: ${p}\n    bytes ${bytes()}`);

  // One client for all the runs of a case: a run starts on the connection the last one kept.
  const id = `${c.family.replace(/\W+/g, '-')}-${index}`;
  const t = createLeanTransport({ maxSockets: 1 }) as Transport & DeadlineTransport;
  let accepted = false;
  let rejected = false;
  for (const plan of plans(c, index * 1000)) {
    tally.runs++;
    tally.splits += plan.reduce((n, cuts) => n + cuts.length, 0);
    const run = await viaLean(t, id, c.answers, plan);
    const verdict = verdictOf(run, target);
    seen.lean.add(verdict);
    accepted ||= verdict === 'accepts';
    rejected ||= verdict.startsWith('rejects');
    const found = leanProblems(c.answers, run, c.family === 'valid');
    // Where the reads happen to split must not change the verdict.
    if (accepted && rejected) found.push('accepted at some splits, rejected at others');
    if (found.length > 0) {
      problems.push(`${c.name}, cuts ${show(plan)}: ${found.join('; ')}\n    bytes ${bytes()}`);
      break;
    }
  }
  if (accepted) tally.leanAccepted++;
  if (rejected) tally.leanRejected++;
  // close() leaves nothing open: the client's sockets are destroyed at once, and the server sees
  // every connection close.
  const before = server.clientsOf(id).length;
  void t.close?.();
  const after = server.clientsOf(id).length;
  const forced = await server.finish(id);
  if (after + forced > 0) {
    problems.push(
      `${c.name}: after close(), ${after} of ${before} client socket(s) open, ${forced} server`,
    );
  }
  return problems;
}

/** Runs the cases, a few at a time, and expects no problem. */
async function fuzz(family: string, cases: Case[]): Promise<void> {
  const tally: Tally = {
    cases: 0,
    responses: 0,
    runs: 0,
    splits: 0,
    bytes: 0,
    leanAccepted: 0,
    leanRejected: 0,
    nodeAccepted: 0,
    nodeRejected: 0,
    ms: 0,
    cpuMs: 0,
  };
  tallies.set(family, tally);
  const started = performance.now();
  const cpu = process.cpuUsage();
  const only = process.env.FUZZ_ONLY;
  const queue = [...cases.entries()].filter(([, c]) => only === undefined || c.name.includes(only));
  const problems: string[] = [];
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      for (
        let next = queue.shift();
        next !== undefined && problems.length < 12;
        next = queue.shift()
      ) {
        problems.push(...(await fuzzCase(next[1], next[0], tally)));
      }
    }),
  );
  tally.ms = Math.round(performance.now() - started);
  const used = process.cpuUsage(cpu);
  tally.cpuMs = Math.round((used.user + used.system) / 1000);
  expect(problems).toEqual([]);
}

describe('the lean client reads responses as RFC 9112 and llhttp do, split anywhere', () => {
  test('well-formed responses and keep-alive sequences', async () => {
    await fuzz('valid', validCases());
  }, 60_000);

  const mutated = mutatedCases();
  test.each(MUTATION_FAMILIES)(
    'malformed: %s',
    async (family) => {
      await fuzz(
        family,
        mutated.filter((c) => c.family === family),
      );
    },
    60_000,
  );

  test('truncated responses (the server closes): rejected', async () => {
    await fuzz('truncated', cutCases(false));
  }, 60_000);

  test('stalled responses (the server goes quiet): the deadline ends them', async () => {
    await fuzz('stalled', cutCases(true));
  }, 60_000);

  test('every piece of a split was a read of its own; no socket is left open', async () => {
    const runs = [...tallies.values()].reduce((n, t) => n + t.runs, 0);
    if (runs > 0) expect(server.splits.exact).toBeGreaterThan(0);
    expect(server.splits.unsure).toBe(0);
    expect([...clients].filter((s) => !s.destroyed)).toEqual([]);
    expect(server.connections).toBe(0);
    // No more than before this file: a socket an earlier file left may close meanwhile.
    for (let i = 0; i < 100 && tcpSockets() > socketsBefore; i++) await sleep(10);
    expect(tcpSockets()).toBeLessThanOrEqual(socketsBefore);
  });
});

/** An answer for the tests below: its bytes, what it means (null: it must be rejected). */
function scripted(bytes: string, meaning: Reading | null): Answer {
  return {
    kind: 'regression',
    bytes: Buffer.from(bytes, 'latin1'),
    meaning,
    must: meaning !== null,
    close: false,
    stall: false,
    llhttp: undefined,
  };
}

const NEXT = scripted('HTTP/1.1 202 Accepted\r\nContent-Length: 4\r\n\r\nnext', {
  status: 202,
  body: 'next',
  retryAfter: undefined,
});

/**
 * What the fuzz found, one response each, on a kept-alive connection: each of these failed
 * before the fix named (read wrongly, or waited for a close that never came).
 */
describe('found by the fuzz', () => {
  const chunkedOk = '2\r\nok\r\n0\r\n\r\n';
  const ok: Reading = { status: 200, body: 'ok', retryAfter: undefined };
  test.each([
    // Content-Length was trimmed with String#trim, which also drops VT, FF and NBSP.
    ['Content-Length: 2 and a VT', 'Content-Length: 2\v\r\n\r\nok', null],
    ['Content-Length: a FF and 2', 'Content-Length: \f2\r\n\r\nok', null],
    ['Content-Length: 2 and a NBSP', 'Content-Length: 2\xa0\r\n\r\nok', null],
    // Transfer-Encoding with a control character read as not chunked: until a close.
    [
      'Transfer-Encoding: chunked and a NUL',
      `Transfer-Encoding: chunked\x00\r\n\r\n${chunkedOk}`,
      null,
    ],
    [
      'Transfer-Encoding: chunked and a bare CR',
      `Transfer-Encoding: chunked\r\r\n\r\n${chunkedOk}`,
      null,
    ],
    [
      'Transfer-Encoding: chunked and a VT',
      `Transfer-Encoding: chunked\v\r\n\r\n${chunkedOk}`,
      null,
    ],
    // A folded Transfer-Encoding was joined as a list: gzip, chunked.
    [
      'Transfer-Encoding: gzip, folded: chunked',
      `Transfer-Encoding: gzip\r\n chunked\r\n\r\n${chunkedOk}`,
      null,
    ],
    // An empty list element after chunked hid it: read until a close.
    [
      'Transfer-Encoding: chunked, (an empty element)',
      `Transfer-Encoding: chunked, \r\n\r\n${chunkedOk}`,
      ok,
    ],
    [
      'Transfer-Encoding: chunked, then an empty field',
      `Transfer-Encoding: chunked\r\nTransfer-Encoding:\r\n\r\n${chunkedOk}`,
      ok,
    ],
  ])('%s', async (_what, rest, meaning) => {
    const t = createLeanTransport({ maxSockets: 1 }) as Transport & DeadlineTransport;
    const id = `found-${_what.replace(/\W+/g, '-')}`;
    const answer = scripted(`HTTP/1.1 200 OK\r\n${rest}`, meaning);
    const run = await viaLean(t, id, [answer, NEXT], [[], []], 1000);
    void t.close?.();
    await server.finish(id);
    if (meaning === null) {
      expect(run.outcomes).toEqual([{ error: 'ERR_MALFORMED_RESPONSE' }]);
    } else {
      // Read, and the next answer on the same connection too: the first one ended where it did.
      expect(run.outcomes).toEqual([meaning, NEXT.meaning]);
      expect(run.connections).toBe(1);
    }
  });
});
