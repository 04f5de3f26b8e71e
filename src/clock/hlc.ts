/**
 * Hybrid logical clock (DESIGN §6): 48-bit milliseconds and a 16-bit counter in one
 * 64-bit value, so it orders like a timestamp but never runs backwards and never repeats
 * when wall clocks are skewed or stand still. LWW compares these values.
 */
const COUNTER_BITS = 16n;
const COUNTER_MASK = (1n << COUNTER_BITS) - 1n;

export function hlcOf(ms: number, counter = 0): bigint {
  return (BigInt(Math.max(0, Math.trunc(ms))) << COUNTER_BITS) | (BigInt(counter) & COUNTER_MASK);
}

export const hlcMs = (h: bigint): number => Number(h >> COUNTER_BITS);
export const hlcCounter = (h: bigint): number => Number(h & COUNTER_MASK);

/**
 * The clock after an event that happened at wall time `wallMs`, following `last`:
 * the wall time if it is ahead, else the same millisecond with the counter moved on. A
 * full counter carries into the next millisecond, so the value still grows.
 */
export function hlcTick(last: bigint, wallMs: number): bigint {
  const wall = hlcOf(wallMs);
  return wall > last ? wall : last + 1n;
}

/**
 * The clock after receiving `remote` (an event's source commit time, or another
 * replica's clock) at local state `last`: greater than both, whatever the skew.
 */
export function hlcReceive(last: bigint, remote: bigint): bigint {
  return (remote > last ? remote : last) + 1n;
}

export function hlcFormat(h: bigint): string {
  return `${new Date(hlcMs(h)).toISOString()}+${hlcCounter(h)}`;
}
