import { describe, expect, it } from 'vitest';
import { compare, counterOf, EMPTY, fromObject, increment, merge, withCounter, type VersionVector } from '../../src/clock/version-vector.ts';
import { CodecError, decode, encode } from '../../src/clock/codec.ts';

const v = fromObject;

describe('version vector', () => {
  it('compares: equal, dominates, dominated, concurrent', () => {
    expect(compare(v({ 1: 2, 2: 1 }), v({ 1: 2, 2: 1 }))).toBe('equal');
    expect(compare(EMPTY, EMPTY)).toBe('equal');
    expect(compare(v({ 1: 3, 2: 1 }), v({ 1: 2, 2: 1 }))).toBe('dominates');
    expect(compare(v({ 1: 1, 3: 1 }), v({ 1: 1 }))).toBe('dominates');
    expect(compare(v({ 1: 1 }), v({ 1: 1, 3: 1 }))).toBe('dominated');
    expect(compare(EMPTY, v({ 5: 1 }))).toBe('dominated');
    expect(compare(v({ 1: 2 }), v({ 2: 1 }))).toBe('concurrent');
    expect(compare(v({ 1: 2, 2: 1 }), v({ 1: 1, 2: 2 }))).toBe('concurrent');
  });

  it('merges entry-wise and increments one node', () => {
    expect(merge(v({ 1: 2, 3: 1 }), v({ 1: 1, 2: 5 }))).toEqual(v({ 1: 2, 2: 5, 3: 1 }));
    expect(increment(v({ 1: 2 }), 2)).toEqual(v({ 1: 2, 2: 1 }));
    expect(increment(v({ 1: 2 }), 1)).toEqual(v({ 1: 3 }));
    expect(withCounter(v({ 1: 2, 2: 3 }), 1, 0)).toEqual(v({ 2: 3 }));
    expect(counterOf(v({ 1: 2, 4: 7 }), 4)).toBe(7);
    expect(counterOf(v({ 1: 2, 4: 7 }), 3)).toBe(0);
  });
});

describe('codec format 1', () => {
  it('writes the documented bytes', () => {
    expect(encode(v({ 1: 1, 2: 1, 3: 1 })).toString('hex')).toBe('010301010101' + '0101');
    expect(encode(v({ 1: 1, 2: 1, 3: 1 }))).toHaveLength(8);
    expect(encode(EMPTY).toString('hex')).toBe('0100');
    expect(encode(v({ 0: 300 })).toString('hex')).toBe('0101' + '00' + 'ac02');
    expect(encode(v({ 200: 1, 1000: 2 })).toString('hex')).toBe('0102' + 'c801' + '01' + 'a006' + '02');
  });

  it('round-trips random vectors, sparse indexes and multi-byte counters', () => {
    let seed = 42;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    for (let n = 0; n < 10_000; n++) {
      const o: Record<number, number> = {};
      const entries = Math.floor(rnd() * 6);
      for (let k = 0; k < entries; k++) {
        const idx = rnd() < 0.8 ? Math.floor(rnd() * 8) : Math.floor(rnd() * 100_000);
        o[idx] = rnd() < 0.7 ? 1 + Math.floor(rnd() * 127) : 1 + Math.floor(rnd() * 2 ** 40);
      }
      const vec: VersionVector = fromObject(o);
      const bytes = encode(vec);
      expect(decode(bytes)).toEqual(vec);
      expect(encode(decode(bytes)).equals(bytes)).toBe(true);
    }
  });

  const bad: Array<[string, string, RegExp]> = [
    ['empty', '', /empty/],
    ['unknown format', '020100', /format/],
    ['overlong LEB128 count', '01800000', /overlong/],
    ['overlong LEB128 counter', '0101018100', /overlong/],
    ['duplicate index', '010201010001', /duplicate or unsorted/],
    ['zero counter', '01010100', /zero counter/],
    ['count overrunning the buffer', '01050101', /overruns/],
    ['truncated entry', '0102010101', /truncated|overruns/],
    ['truncated LEB128', '010101ff', /truncated/],
    ['trailing bytes', '0101010100', /trailing/],
  ];
  for (const [what, hex, message] of bad) {
    it(`rejects ${what}`, () => {
      expect(() => decode(Buffer.from(hex, 'hex'))).toThrow(CodecError);
      expect(() => decode(Buffer.from(hex, 'hex'))).toThrow(message);
    });
  }

  it('refuses to encode what it could not decode', () => {
    expect(() => encode([[2, 1], [1, 1]])).toThrow(CodecError);
    expect(() => encode([[1, 0]])).toThrow(CodecError);
  });
});
