import { decode, encode } from './codec.ts';
import { compare, merge, type Ordering } from './version-vector.ts';

/**
 * Batches of encoded version vectors, packed: one byte array holding n vectors back to
 * back and n + 1 offsets (vector k is bytes [offsets[k], offsets[k + 1])). The native
 * codec takes the same form, so a batch crosses the JavaScript boundary once.
 */
export interface Packed {
  bytes: Uint8Array;
  offsets: Uint32Array;
}

/** Ordering codes of compareBatch, in both codecs. */
export const ORDERINGS: readonly Ordering[] = ['equal', 'dominates', 'dominated', 'concurrent'];

export function pack(vectors: readonly Uint8Array[]): Packed {
  const offsets = new Uint32Array(vectors.length + 1);
  let size = 0;
  for (let k = 0; k < vectors.length; k++) {
    size += vectors[k]!.length;
    offsets[k + 1] = size;
  }
  const bytes = Buffer.allocUnsafe(size);
  for (let k = 0; k < vectors.length; k++) bytes.set(vectors[k]!, offsets[k]!);
  return { bytes, offsets };
}

export function unpack(p: Packed): Buffer[] {
  const out: Buffer[] = [];
  for (let k = 0; k + 1 < p.offsets.length; k++) out.push(Buffer.from(p.bytes.subarray(p.offsets[k]!, p.offsets[k + 1]!)));
  return out;
}

function check(a: Packed, b: Packed, what: string): number {
  const n = a.offsets.length - 1;
  if (n < 0 || b.offsets.length - 1 !== n) throw new RangeError(`${what}: both sides need as many vectors`);
  return n;
}

function at(p: Packed, k: number, side: string) {
  try {
    return decode(p.bytes.subarray(p.offsets[k]!, p.offsets[k + 1]!));
  } catch (err) {
    throw new Error(`${side} vector ${k}: ${(err as Error).message}`);
  }
}

/** Compares pair k of a and b for every k: codes index ORDERINGS. */
export function compareBatch(a: Packed, b: Packed): Uint8Array {
  const n = check(a, b, 'compareBatch');
  const out = new Uint8Array(n);
  for (let k = 0; k < n; k++) out[k] = ORDERINGS.indexOf(compare(at(a, k, 'a'), at(b, k, 'b')));
  return out;
}

/** The entry-wise maximum of pair k of a and b for every k, packed. */
export function mergeBatch(a: Packed, b: Packed): Packed {
  const n = check(a, b, 'mergeBatch');
  const merged: Buffer[] = [];
  for (let k = 0; k < n; k++) merged.push(encode(merge(at(a, k, 'a'), at(b, k, 'b'))));
  return pack(merged);
}
