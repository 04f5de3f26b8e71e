import { describe, expect, it } from 'vitest';
import { hlcCounter, hlcFormat, hlcMs, hlcOf, hlcReceive, hlcTick } from '../../src/clock/hlc.ts';

describe('hybrid logical clock', () => {
  it('packs 48-bit milliseconds and a 16-bit counter, ordered like time', () => {
    const h = hlcOf(1_796_013_361_000, 7);
    expect([hlcMs(h), hlcCounter(h)]).toEqual([1_796_013_361_000, 7]);
    expect(hlcOf(1000, 65535) < hlcOf(1001, 0)).toBe(true);
    expect(hlcFormat(hlcOf(0, 3))).toBe('1970-01-01T00:00:00.000Z+3');
  });

  it('a repeated wall time moves the counter, never repeats a value', () => {
    let h = hlcTick(0n, 5000);
    const seen = [h];
    for (let k = 0; k < 5; k++) seen.push((h = hlcTick(h, 5000)));
    expect(seen.map(hlcCounter)).toEqual([0, 1, 2, 3, 4, 5]);
    expect(new Set(seen).size).toBe(seen.length);
    expect(hlcTick(h, 5001)).toBe(hlcOf(5001)); // the wall moves on: counter back to 0
  });

  it('a wall clock running behind (skew) never takes the clock backwards', () => {
    const ahead = hlcOf(10_000, 2);
    const next = hlcTick(ahead, 9_000); // this node's clock is a second behind
    expect(next > ahead).toBe(true);
    expect(hlcMs(next)).toBe(10_000);
    // receiving an event from a node whose clock is far behind, or far ahead
    expect(hlcReceive(ahead, hlcOf(1_000))).toBe(ahead + 1n);
    expect(hlcReceive(ahead, hlcOf(50_000))).toBe(hlcOf(50_000, 1));
  });

  it('a full counter carries into the next millisecond', () => {
    expect(hlcTick(hlcOf(7, 65535), 7)).toBe(hlcOf(8, 0));
  });
});
