import { describe, expect, it } from 'vitest';
import { WindowRatio } from '../../src/metrics.ts';

/** conflict_rate's window (metrics.ts): conflicts per synced change over the last 5 minutes, from cumulative counters. */
describe('WindowRatio', () => {
  it('covers the time since start until the window is full, then only the window', () => {
    const w = new WindowRatio(300_000, 0);
    expect(w.sample(10_000, 0, 0)).toBe(0); // nothing synced: 0, not NaN
    expect(w.sample(60_000, 5, 100)).toBe(0.05);
    expect(w.sample(200_000, 5, 1000)).toBe(0.005);
    // at 400 s the base is the last sample at or before 100 s (60 s: 5 of 100)
    expect(w.sample(400_000, 25, 1100)).toBe(20 / 1000);
    // at 700 s the base moves to 400 s: 10 conflicts in 100 changes since
    expect(w.sample(700_000, 35, 1200)).toBe(0.1);
  });

  it('keeps few samples however often it is asked', () => {
    const w = new WindowRatio(1000, 0);
    for (let t = 1; t <= 100_000; t += 10) w.sample(t, t, t * 10);
    expect(w.sample(100_001, 100_001, 1_000_010)).toBeCloseTo(0.1);
    expect((w as unknown as { samples: unknown[] }).samples.length).toBeLessThan(110);
  });
});
