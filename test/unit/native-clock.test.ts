import { describe, expect, it } from 'vitest';
import { compare, merge, type VersionVector } from '../../src/clock/version-vector.ts';
import { ORDERINGS, pack, unpack } from '../../src/clock/batch.ts';
import { loadNative, selectCodec, typescriptCodec, type ClockCodec } from '../../src/clock/clock-codec.ts';

/**
 * The native codec (native/clock.cc, built by `npm install`) against the TypeScript
 * reference, by property: identical bytes, round trips, compares, merges and rejections
 * (DESIGN §6, issue 4). The addon must have built: CI sets WORKER_SYNC_REQUIRE_NATIVE=1.
 */
const loaded = loadNative();
const native = loaded instanceof Error ? undefined : loaded;
const ts = typescriptCodec;

// xorshift128+, seeded: every run draws the same vectors
function rng(seed: number) {
  let a = BigInt(seed) | 1n;
  let b = 0x9e3779b97f4a7c15n;
  const mask = (1n << 64n) - 1n;
  return () => {
    let x = a;
    const y = b;
    a = y;
    x ^= (x << 23n) & mask;
    b = x ^ y ^ (x >> 17n) ^ (y >> 26n);
    return Number(((b + y) & mask) >> 11n) / 2 ** 53;
  };
}

/** Sparse indexes (gaps from 1 to 2^40), counters from 1 to 2^53 - 1 with every LEB128 length, 0 to 12 entries. */
function vectors(n: number, seed: number): VersionVector[] {
  const r = rng(seed);
  const big = (bits: number) => Math.max(1, Math.floor(r() * 2 ** Math.ceil(r() * bits)));
  const out: VersionVector[] = [];
  for (let k = 0; k < n; k++) {
    const len = Math.floor(r() * 13);
    const v: Array<[number, number]> = [];
    let index = r() < 0.3 ? 0 : Math.floor(r() * 8);
    for (let e = 0; e < len; e++) {
      if (e > 0) index += r() < 0.7 ? 1 + Math.floor(r() * 3) : big(40);
      if (index > Number.MAX_SAFE_INTEGER) break;
      v.push([index, Math.min(Number.MAX_SAFE_INTEGER, big(53))]);
    }
    out.push(v);
  }
  return out;
}

const outcome = (c: ClockCodec, buf: Uint8Array): { ok: VersionVector } | { rejected: true } => {
  try {
    return { ok: c.decode(buf) };
  } catch {
    return { rejected: true };
  }
};

describe('native clock codec', () => {
  it('is built and loads (WORKER_SYNC_NATIVE=0 forces the TypeScript one)', () => {
    expect(loaded instanceof Error ? loaded.message : 'loaded').toBe('loaded');
    const forced = selectCodec({ WORKER_SYNC_NATIVE: '0' });
    expect(Object.values(forced.uses)).toEqual(['typescript', 'typescript', 'typescript', 'typescript']);
    expect(Object.values(selectCodec({ WORKER_SYNC_NATIVE: '1' }).uses)).toEqual(['native', 'native', 'native', 'native']);
  });

  it('encodes 100,000 random vectors to identical bytes, and both decode them back', () => {
    const vs = vectors(100_000, 7);
    let multiByte = 0;
    for (const v of vs) {
      const a = ts.encode(v);
      const b = native!.encode(v);
      if (!a.equals(b)) expect(b.toString('hex')).toBe(a.toString('hex'));
      if (a.length > 2 + 2 * v.length) multiByte++;
      const back = native!.decode(a);
      if (back.length !== v.length || back.some(([i, c], k) => i !== v[k]![0] || c !== v[k]![1])) expect(back).toEqual(v);
      expect(ts.decode(b).length).toBe(v.length);
    }
    expect(multiByte).toBeGreaterThan(50_000); // the generator does reach long LEB128s
  });

  it('compares and merges 100,000 pairs as the reference does, in batches', () => {
    const left = vectors(100_000, 11);
    // the right side shares most entries with the left, so every ordering occurs
    const r = rng(13);
    const right = left.map((v) => {
      const w = v.map(([i, c]) => [i, r() < 0.25 ? Math.max(1, c + (r() < 0.5 ? -1 : 1)) : c] as [number, number]).filter(() => r() > 0.1);
      return r() < 0.2 ? v : w;
    });
    const seen = new Set<string>();
    for (let start = 0; start < left.length; start += 1000) {
      const a = pack(left.slice(start, start + 1000).map(ts.encode));
      const b = pack(right.slice(start, start + 1000).map(ts.encode));
      const codes = native!.compareBatch(a, b);
      expect(Buffer.from(codes).equals(Buffer.from(ts.compareBatch(a, b)))).toBe(true);
      codes.forEach((c, k) => {
        seen.add(ORDERINGS[c]!);
        if (ORDERINGS[c] !== compare(left[start + k]!, right[start + k]!)) expect(ORDERINGS[c]).toBe(compare(left[start + k]!, right[start + k]!));
      });
      const m = native!.mergeBatch(a, b);
      const mt = ts.mergeBatch(a, b);
      expect(Buffer.from(m.bytes).equals(Buffer.from(mt.bytes))).toBe(true);
      expect([...m.offsets]).toEqual([...mt.offsets]);
      unpack(m).forEach((bytes, k) => {
        if (!bytes.equals(ts.encode(merge(left[start + k]!, right[start + k]!)))) expect(ts.decode(bytes)).toEqual(merge(left[start + k]!, right[start + k]!));
      });
    }
    expect([...seen].sort()).toEqual(['concurrent', 'dominated', 'dominates', 'equal']);
  });

  it('rejects overlong, unsorted, duplicate, zero-counter, truncated and trailing-byte buffers, both of them', () => {
    const bad: Record<string, string> = {
      'empty': '',
      'unknown format': '020100',
      'overlong count': '01800100' + '01',
      'overlong counter': '0101' + '01' + '8100',
      'overlong index': '0101' + '8000' + '01',
      'unsorted (zero delta)': '0102' + '0101' + '0001',
      'duplicate index': '0102' + '0501' + '0002',
      'zero counter': '0101' + '0100',
      'truncated LEB128': '0101' + '01' + '81',
      'truncated entry': '0102' + '0101' + '01',
      'count overruns the buffer': '0105' + '0101',
      'trailing byte': '0101' + '0101' + '00',
      'counter beyond 2^53': '0101' + '01' + 'ffffffffffffffff7f',
      'index beyond 2^53': '0102' + 'feffffffffffff0f01' + '0501',
    };
    for (const [what, hex] of Object.entries(bad)) {
      const buf = Buffer.from(hex, 'hex');
      expect({ what, ts: outcome(ts, buf) }).toEqual({ what, ts: { rejected: true } });
      expect({ what, native: outcome(native!, buf) }).toEqual({ what, native: { rejected: true } });
      // in a batch too, naming the vector
      expect(() => native!.compareBatch(pack([ts.encode([[1, 1]]), buf]), pack([ts.encode([]), ts.encode([])]))).toThrow(/a vector 1: /);
    }
    expect(() => native!.encode([[2, 1], [1, 1]] as never)).toThrow(/ascending/);
    expect(() => native!.encode([[1, 0]] as never)).toThrow(/counters/);
    expect(() => native!.compareBatch({ bytes: new Uint8Array(2), offsets: new Uint32Array([0, 5]) }, pack([ts.encode([])]))).toThrow(/offsets/);
  });

  it('agrees with the reference on 50,000 random and mutated buffers, without a crash', () => {
    const r = rng(99);
    const valid = vectors(5000, 5).map(ts.encode);
    for (let k = 0; k < 50_000; k++) {
      let buf: Buffer;
      if (k % 2 === 0) {
        buf = Buffer.from(valid[k % valid.length]!);
        const flips = 1 + Math.floor(r() * 3);
        for (let f = 0; f < flips && buf.length > 0; f++) buf[Math.floor(r() * buf.length)] = Math.floor(r() * 256);
        if (r() < 0.2) buf = buf.subarray(0, Math.floor(r() * buf.length));
      } else {
        buf = Buffer.from(Array.from({ length: Math.floor(r() * 12) }, () => (r() < 0.5 ? 1 : Math.floor(r() * 256))));
      }
      const a = outcome(ts, buf);
      const b = outcome(native!, buf);
      if (JSON.stringify(a) !== JSON.stringify(b)) expect({ hex: buf.toString('hex'), native: b }).toEqual({ hex: buf.toString('hex'), native: a });
    }
  });
});
