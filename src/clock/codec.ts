import type { VersionVector } from './version-vector.ts';

/**
 * Version vector codec, format 1 (DESIGN §6). Canonical: exactly one byte string per
 * vector, so equal versions compare equal as bytes in every database.
 *
 *   byte 0x01                      format
 *   uLEB128 count                  number of entries
 *   count × (uLEB128 delta, uLEB128 counter)
 *       delta: the first is the node index itself, later ones are index - previous ≥ 1
 *       counter ≥ 1 (zero entries are omitted)
 *
 * Decoders reject overlong LEB128, unsorted or duplicate indexes (a delta of 0 after the
 * first), zero counters, counts that overrun the buffer, and trailing bytes.
 * Three nodes with counters under 128 take 8 bytes: 01 03 (i c)(d c)(d c).
 * Values stay within 2^53 (JavaScript's exact integers).
 */
export const FORMAT_1 = 0x01;
const MAX_SAFE = Number.MAX_SAFE_INTEGER;

export class CodecError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CodecError';
  }
}

function lebSize(n: number): number {
  let size = 1;
  while (n >= 0x80) {
    n = Math.floor(n / 0x80);
    size++;
  }
  return size;
}

function writeLeb(buf: Buffer, pos: number, n: number): number {
  while (n >= 0x80) {
    buf[pos++] = (n % 0x80) | 0x80;
    n = Math.floor(n / 0x80);
  }
  buf[pos++] = n;
  return pos;
}

export function encode(v: VersionVector): Buffer {
  let size = 1 + lebSize(v.length);
  let prev = -1;
  for (const [i, c] of v) {
    if (!Number.isInteger(i) || i < 0 || i <= prev) throw new CodecError(`node indexes must be ascending integers ≥ 0 (got ${i} after ${prev})`);
    if (!Number.isInteger(c) || c < 1 || c > MAX_SAFE) throw new CodecError(`counter of node ${i} must be an integer ≥ 1 (got ${c})`);
    size += lebSize(prev < 0 ? i : i - prev) + lebSize(c);
    prev = i;
  }
  const buf = Buffer.allocUnsafe(size);
  buf[0] = FORMAT_1;
  let pos = writeLeb(buf, 1, v.length);
  prev = -1;
  for (const [i, c] of v) {
    pos = writeLeb(buf, pos, prev < 0 ? i : i - prev);
    pos = writeLeb(buf, pos, c);
    prev = i;
  }
  return buf;
}

/** Reads one uLEB128 at `pos`; returns [value, next position]. */
function readLeb(buf: Uint8Array, pos: number): [number, number] {
  let value = 0;
  let scale = 1;
  const start = pos;
  for (;;) {
    if (pos >= buf.length) throw new CodecError(`truncated LEB128 at byte ${start}`);
    const b = buf[pos++]!;
    value += (b & 0x7f) * scale;
    if (value > MAX_SAFE) throw new CodecError(`LEB128 at byte ${start} exceeds 2^53`);
    if ((b & 0x80) === 0) {
      if (b === 0 && pos - start > 1) throw new CodecError(`overlong LEB128 at byte ${start}`);
      return [value, pos];
    }
    scale *= 0x80;
  }
}

export function decode(buf: Uint8Array): VersionVector {
  if (buf.length === 0) throw new CodecError('empty buffer');
  if (buf[0] !== FORMAT_1) throw new CodecError(`unknown format byte 0x${buf[0]!.toString(16).padStart(2, '0')}`);
  const [count, start] = readLeb(buf, 1);
  let pos = start;
  // Each entry takes at least two bytes: a count beyond that cannot be honest.
  if (count > (buf.length - pos) / 2) throw new CodecError(`count ${count} overruns the buffer`);
  const out: Array<readonly [number, number]> = new Array(count);
  let index = -1;
  for (let k = 0; k < count; k++) {
    let delta: number;
    let counter: number;
    [delta, pos] = readLeb(buf, pos);
    if (k > 0 && delta === 0) throw new CodecError(`entry ${k}: duplicate or unsorted node index`);
    index = k === 0 ? delta : index + delta;
    if (index > MAX_SAFE) throw new CodecError(`entry ${k}: node index exceeds 2^53`);
    [counter, pos] = readLeb(buf, pos);
    if (counter === 0) throw new CodecError(`entry ${k}: zero counter`);
    out[k] = [index, counter];
  }
  if (pos !== buf.length) throw new CodecError(`${buf.length - pos} trailing byte(s)`);
  return out;
}
