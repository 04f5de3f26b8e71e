/**
 * One-dimensional PostgreSQL arrays in the binary wire format, for the set-based statements
 * of the hot path (`unnest($1::text[], ...)`).
 *
 * node-postgres sends a Buffer parameter in binary and everything else as text. An array
 * given as a JS array becomes an array literal: every element quoted and escaped, a bytea
 * element as `\\x` and its hex. The server then parses that literal and the hex back. In
 * binary, an element is its length and its bytes, and the server copies it.
 *
 * The parameter's type comes from its cast in the statement (`$3::bytea[]`); the element
 * type written here must match it, or the server refuses the statement ("binary data has
 * array element type 23 (integer) instead of expected 20 (bigint)").
 */

const OID = { bool: 16, bytea: 17, int8: 20, int4: 23, text: 25 } as const;
const HEADER = 20; // ndim, has-null flag, element type, then the one dimension's length and lower bound

function header(buf: Buffer, oid: number, n: number, hasNull: boolean): number {
  if (n === 0) {
    buf.writeInt32BE(0, 0); // ndim 0: the empty array has no dimension
    buf.writeInt32BE(0, 4);
    buf.writeInt32BE(oid, 8);
    return 12;
  }
  buf.writeInt32BE(1, 0);
  buf.writeInt32BE(hasNull ? 1 : 0, 4);
  buf.writeInt32BE(oid, 8);
  buf.writeInt32BE(n, 12);
  buf.writeInt32BE(1, 16);
  return HEADER;
}

/**
 * The one writer: each element as its length and the bytes `put` writes (at most `maxBytes`
 * of them; `put` returns how many), null as length -1.
 */
function elements<T>(oid: number, values: ReadonlyArray<T | null>, maxBytes: (v: T) => number, put: (buf: Buffer, v: T, at: number) => number): Buffer {
  let size = HEADER;
  let hasNull = false;
  for (const v of values) {
    if (v === null) hasNull = true;
    else size += maxBytes(v);
    size += 4;
  }
  const buf = Buffer.allocUnsafe(size);
  let at = header(buf, oid, values.length, hasNull);
  for (const v of values) {
    if (v === null) {
      buf.writeInt32BE(-1, at);
      at += 4;
      continue;
    }
    const len = put(buf, v, at + 4);
    buf.writeInt32BE(len, at);
    at += 4 + len;
  }
  return buf.subarray(0, at);
}

/** `text[]`: each string as its UTF-8 bytes (at most 3 a UTF-16 unit; the buffer is cut to what was written). */
export const textArray = (values: ReadonlyArray<string | null>): Buffer =>
  elements(OID.text, values, (v) => v.length * 3, (buf, v, at) => (v.length === 0 ? 0 : buf.write(v, at, 'utf8')));

/** `bytea[]`: each Buffer as it is. */
export const byteaArray = (values: ReadonlyArray<Uint8Array | null>): Buffer =>
  elements(OID.bytea, values, (v) => v.length, (buf, v, at) => {
    buf.set(v, at);
    return v.length;
  });

/** `bigint[]` (int8): numbers must be safe integers. */
export const int8Array = (values: ReadonlyArray<bigint | number | null>): Buffer =>
  elements(OID.int8, values, () => 8, (buf, v, at) => buf.writeBigInt64BE(typeof v === 'bigint' ? v : BigInt(v), at) - at);

/** `int[]` (int4). */
export const int4Array = (values: ReadonlyArray<number | null>): Buffer => elements(OID.int4, values, () => 4, (buf, v, at) => buf.writeInt32BE(v, at) - at);

/** `bool[]`. */
export const boolArray = (values: ReadonlyArray<boolean | null>): Buffer => elements(OID.bool, values, () => 1, (buf, v, at) => buf.writeUInt8(v ? 1 : 0, at) - at);

/** `0..n-1` as `int[]`: the ordinals the set-based statements return their outcomes by. */
export const ordinals = (n: number): Buffer => int4Array(Array.from({ length: n }, (_, i) => i));
