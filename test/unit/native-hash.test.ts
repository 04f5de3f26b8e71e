import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { nativeHash, nativeHashNote } from '../../src/audit/native-hash.ts';
import { encodeFields, leafHashOf, payloadHash } from '../../src/audit/leaf.ts';
import { nodeHashJs } from '../../src/audit/merkle.ts';

/** The native SHA-256 batch (native/hash.cc) against node:crypto's, which is the reference. */
describe('native hashing', () => {
  it('is built and loaded (npm ci builds it; CI requires it)', () => {
    expect(nativeHash, nativeHashNote ?? '').toBeDefined();
  });

  it('gives the leaf and payload hashes of leaf format 2 for every row of a chunk, and skips rows without a payload', () => {
    const parts: Buffer[] = [];
    const spans: number[] = [];
    let at = 0;
    const expected: Array<[Buffer, Buffer] | null> = [];
    for (let i = 0; i < 300; i++) {
      const meta = encodeFields(Array.from({ length: 15 }, (_, k) => (k === i % 15 ? null : randomBytes(i % 40).toString('hex'))));
      const payload = i % 17 === 0 ? null : encodeFields([randomBytes(i * 7 % 3000).toString('base64'), null, 'ë'.repeat(i % 5)]);
      const gap = randomBytes(i % 3);
      parts.push(gap, meta, payload ?? Buffer.alloc(0));
      at += gap.length;
      spans.push(at, at + meta.length, payload ? at + meta.length : -1, payload ? at + meta.length + payload.length : -1);
      at += meta.length + (payload?.length ?? 0);
      expected.push(payload ? [leafHashOf(meta, payloadHash(payload)), payloadHash(payload)] : null);
    }
    const buf = Buffer.concat(parts);
    const out = Buffer.alloc(300 * 64);
    nativeHash!.leafHashes(buf, Int32Array.from(spans), out);
    expected.forEach((e, i) => {
      if (e === null) expect(out.subarray(64 * i, 64 * i + 64).equals(Buffer.alloc(64))).toBe(true);
      else expect([out.subarray(64 * i, 64 * i + 32), out.subarray(64 * i + 32, 64 * i + 64)]).toEqual(e);
    });
  });

  it('refuses spans outside the buffer instead of reading past it', () => {
    expect(() => nativeHash!.leafHashes(Buffer.alloc(10), Int32Array.from([0, 5, 5, 11]), Buffer.alloc(64))).toThrow(RangeError);
    expect(() => nativeHash!.leafHashes(Buffer.alloc(10), Int32Array.from([0, 5]), Buffer.alloc(64))).toThrow(RangeError);
    expect(() => nativeHash!.leafHashes(Buffer.alloc(10), Uint8Array.from([0, 5, 5, 9]) as unknown as Int32Array, Buffer.alloc(64))).toThrow(TypeError);
  });

  it('gives RFC 6962 interior nodes', () => {
    for (let i = 0; i < 50; i++) {
      const l = randomBytes(32);
      const r = randomBytes(32);
      const out = Buffer.alloc(32);
      nativeHash!.node(l, r, out);
      expect(out).toEqual(nodeHashJs(l, r));
    }
    expect(() => nativeHash!.node(Buffer.alloc(31), Buffer.alloc(32), Buffer.alloc(32))).toThrow(RangeError);
  });
});
