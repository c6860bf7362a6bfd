/**
 * The directory outbox's record format: length-prefixed, checksummed records in append-only
 * segment files.
 *
 * ```
 * offset  size  field
 * 0       2     magic: 0xFE 0x4F (0xFE never occurs in UTF-8 text, so JSON bodies cannot fake it)
 * 2       4     CRC-32 (zlib's, little-endian) of every byte from offset 6 to the record's end
 * 6       1     type: 1 = an entry, 2 = a settle mark (the entry with this key is done)
 * 7       1     flags: 0 (reserved)
 * 8       4     payload length, little-endian
 * 12      n     payload
 * ```
 * Entry payload: key length (u16 LE), key (UTF-8), acceptedAt (f64 LE), headers length (u32 LE),
 * headers (UTF-8), body (UTF-8, the rest). The headers are `name NUL value NUL` pairs (HTTP forbids
 * NUL in both), or JSON (flag bit 0) when a name or value holds a NUL after all; the pairs cost a
 * quarter of what JSON.stringify does. Settle payload: the key (UTF-8).
 *
 * The checksum covers the type and the length too, so a damaged length is caught; the magic lets
 * a reader find the next record after damage (see {@link findNextRecord}).
 */
import { crc32 } from 'node:zlib';
import type { OutboxEntry } from './types.js';

export const MAGIC_0 = 0xfe;
export const MAGIC_1 = 0x4f;
export const HEADER_BYTES = 12;
export const TYPE_ENTRY = 1;
export const TYPE_SETTLE = 2;
/** The largest payload a reader accepts (events are at most 32 KB of JSON; headers are small). */
export const MAX_PAYLOAD_BYTES = 4 * 1024 * 1024;
/** Keys are Idempotency-Keys (UUIDs); the length field has 16 bits. */
export const MAX_KEY_BYTES = 0xffff;

/** The entry's flag bit: its headers are JSON (not NUL-separated pairs). */
export const FLAG_JSON_HEADERS = 1;

/**
 * The headers as written: NUL-separated pairs, or undefined when a name or value holds a NUL (then
 * JSON is written instead).
 */
export function headerPairs(headers: Record<string, string>): string | undefined {
  let text = '';
  for (const name of Object.keys(headers)) {
    const value = String(headers[name]);
    if (name.includes('\0') || value.includes('\0')) return undefined;
    text += name + '\0' + value + '\0';
  }
  return text;
}

/** Bytes an entry record can take at most (UTF-16 units encode to at most 3 UTF-8 bytes each). */
export function entryRecordBound(entry: OutboxEntry, headersText: string): number {
  return HEADER_BYTES + 2 + 8 + 4 + 3 * (entry.key.length + headersText.length + entry.body.length);
}

/** Bytes a settle record can take at most. */
export function settleRecordBound(key: string): number {
  return HEADER_BYTES + 3 * key.length;
}

/**
 * Writes an entry record at `offset`; the caller guarantees {@link entryRecordBound} bytes of
 * room. Returns the record's length.
 */
export function writeEntryRecord(
  buf: Buffer,
  offset: number,
  entry: OutboxEntry,
  headersText: string,
  flags: number,
): number {
  let p = offset + HEADER_BYTES;
  const keyBytes = buf.write(entry.key, p + 2);
  if (keyBytes > MAX_KEY_BYTES) throw new RangeError('outbox: a key longer than 65535 bytes');
  buf.writeUInt16LE(keyBytes, p);
  p += 2 + keyBytes;
  buf.writeDoubleLE(entry.acceptedAt, p);
  p += 8;
  const headerBytes = buf.write(headersText, p + 4);
  buf.writeUInt32LE(headerBytes, p);
  p += 4 + headerBytes;
  p += buf.write(entry.body, p);
  return seal(buf, offset, TYPE_ENTRY, p - offset - HEADER_BYTES, flags);
}

/** Writes a settle record at `offset` ({@link settleRecordBound} bytes of room). */
export function writeSettleRecord(buf: Buffer, offset: number, key: string): number {
  const n = buf.write(key, offset + HEADER_BYTES);
  return seal(buf, offset, TYPE_SETTLE, n, 0);
}

function seal(buf: Buffer, offset: number, type: number, payloadBytes: number, flags: number) {
  if (payloadBytes > MAX_PAYLOAD_BYTES) {
    throw new RangeError(
      `outbox: a record of ${payloadBytes} bytes (at most ${MAX_PAYLOAD_BYTES})`,
    );
  }
  buf[offset] = MAGIC_0;
  buf[offset + 1] = MAGIC_1;
  buf[offset + 6] = type;
  buf[offset + 7] = flags;
  buf.writeUInt32LE(payloadBytes, offset + 8);
  const end = offset + HEADER_BYTES + payloadBytes;
  buf.writeUInt32LE(crc32(buf.subarray(offset + 6, end)), offset + 2);
  return end - offset;
}

/** What a reader finds at an offset. */
export type Probe =
  /** A whole record whose checksum holds. */
  | { ok: true; type: number; flags: number; payloadBytes: number }
  /** Not a record: damaged, or cut short by the end of the data (`torn`). */
  | { ok: false; torn: boolean };

const TORN: Probe = { ok: false, torn: true };
const BAD: Probe = { ok: false, torn: false };

/** Checks the record at `offset` of `buf[0, end)`. */
export function probeRecord(buf: Buffer, offset: number, end: number): Probe {
  if (end - offset < HEADER_BYTES) {
    // Too short for a header: torn if what is there is a header's beginning.
    if (buf[offset] !== MAGIC_0) return BAD;
    if (end - offset > 1 && buf[offset + 1] !== MAGIC_1) return BAD;
    return TORN;
  }
  if (buf[offset] !== MAGIC_0 || buf[offset + 1] !== MAGIC_1) return BAD;
  const payloadBytes = buf.readUInt32LE(offset + 8);
  if (payloadBytes > MAX_PAYLOAD_BYTES) return BAD;
  const recordEnd = offset + HEADER_BYTES + payloadBytes;
  if (recordEnd > end) return TORN;
  if (crc32(buf.subarray(offset + 6, recordEnd)) !== buf.readUInt32LE(offset + 2)) return BAD;
  return { ok: true, type: buf[offset + 6]!, flags: buf[offset + 7]!, payloadBytes };
}

/**
 * The offset of the first whole, valid record after damage at `from`, or -1. Every later magic is
 * tried in order (the damaged header's own length is not trusted: it may point past good records).
 * A false match needs the magic and a matching CRC-32.
 */
export function findNextRecord(buf: Buffer, from: number, end: number): number {
  let at = from + 1;
  while (at < end) {
    const found = buf.indexOf(MAGIC_0, at);
    if (found < 0 || found >= end) return -1;
    if (probeRecord(buf, found, end).ok) return found;
    at = found + 1;
  }
  return -1;
}

/** The key of a valid record (entry or settle), or undefined when the payload does not hold one. */
export function recordKey(
  buf: Buffer,
  offset: number,
  type: number,
  payloadBytes: number,
): string | undefined {
  const p = offset + HEADER_BYTES;
  if (type === TYPE_SETTLE) return buf.toString('utf8', p, p + payloadBytes);
  if (payloadBytes < 14) return undefined;
  const keyBytes = buf.readUInt16LE(p);
  if (2 + keyBytes + 12 > payloadBytes) return undefined;
  return buf.toString('utf8', p + 2, p + 2 + keyBytes);
}

/** The entry in a valid entry record; throws when its payload is malformed. */
export function decodeEntry(
  buf: Buffer,
  offset: number,
  payloadBytes: number,
  flags: number,
): OutboxEntry {
  const start = offset + HEADER_BYTES;
  const end = start + payloadBytes;
  let p = start;
  const keyBytes = buf.readUInt16LE(p);
  p += 2;
  const key = buf.toString('utf8', p, p + keyBytes);
  p += keyBytes;
  const acceptedAt = buf.readDoubleLE(p);
  p += 8;
  const headerBytes = buf.readUInt32LE(p);
  p += 4;
  if (p + headerBytes > end) throw new RangeError('outbox: malformed entry record');
  const text = buf.toString('utf8', p, p + headerBytes);
  p += headerBytes;
  let headers: Record<string, string>;
  if (flags & FLAG_JSON_HEADERS) {
    headers = JSON.parse(text) as Record<string, string>;
  } else {
    headers = {};
    const parts = text.split('\0');
    for (let i = 0; i + 1 < parts.length; i += 2) headers[parts[i]!] = parts[i + 1]!;
  }
  const body = buf.toString('utf8', p, end);
  return { key, body, headers, acceptedAt };
}
