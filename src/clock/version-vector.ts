/**
 * Version vectors (DESIGN §6): per record, one counter per node, node names mapped to
 * small integers in `sync_nodes`. A vector is a list of [node index, counter] pairs
 * sorted by index, counters ≥ 1 (a missing index means 0). Frozen once built.
 */
export type VersionVector = ReadonlyArray<readonly [number, number]>;

export type Ordering = 'equal' | 'dominates' | 'dominated' | 'concurrent';

export const EMPTY: VersionVector = Object.freeze([]);

export function counterOf(v: VersionVector, node: number): number {
  for (const [i, c] of v) {
    if (i === node) return c;
    if (i > node) break;
  }
  return 0;
}

/** A copy of `v` with `node`'s counter set (0 removes it). */
export function withCounter(v: VersionVector, node: number, counter: number): VersionVector {
  const out: Array<readonly [number, number]> = [];
  let placed = false;
  for (const e of v) {
    if (!placed && e[0] >= node) {
      if (counter > 0) out.push([node, counter]);
      placed = true;
      if (e[0] === node) continue;
    }
    out.push(e);
  }
  if (!placed && counter > 0) out.push([node, counter]);
  return out;
}

export function increment(v: VersionVector, node: number): VersionVector {
  return withCounter(v, node, counterOf(v, node) + 1);
}

/** Entry-wise maximum. */
export function merge(a: VersionVector, b: VersionVector): VersionVector {
  const out: Array<readonly [number, number]> = [];
  let i = 0;
  let j = 0;
  while (i < a.length || j < b.length) {
    const x = a[i];
    const y = b[j];
    if (y === undefined || (x !== undefined && x[0] < y[0])) {
      out.push(x!);
      i++;
    } else if (x === undefined || y[0] < x[0]) {
      out.push(y);
      j++;
    } else {
      out.push(x[1] >= y[1] ? x : y);
      i++;
      j++;
    }
  }
  return out;
}

export function compare(a: VersionVector, b: VersionVector): Ordering {
  let aBigger = false;
  let bBigger = false;
  let i = 0;
  let j = 0;
  while (i < a.length || j < b.length) {
    const x = a[i];
    const y = b[j];
    if (y === undefined || (x !== undefined && x[0] < y[0])) {
      aBigger = true;
      i++;
    } else if (x === undefined || y[0] < x[0]) {
      bBigger = true;
      j++;
    } else {
      if (x[1] > y[1]) aBigger = true;
      else if (x[1] < y[1]) bBigger = true;
      i++;
      j++;
    }
    if (aBigger && bBigger) return 'concurrent';
  }
  return aBigger ? 'dominates' : bBigger ? 'dominated' : 'equal';
}

export function equals(a: VersionVector | null, b: VersionVector | null): boolean {
  if (a === null || b === null) return a === b;
  return a.length === b.length && compare(a, b) === 'equal';
}

/** From `{nodeIndex: counter}`; zero counters are dropped. */
export function fromObject(o: Record<number, number>): VersionVector {
  return Object.entries(o)
    .map(([k, c]) => [Number(k), c] as const)
    .filter(([, c]) => c > 0)
    .sort((x, y) => x[0] - y[0]);
}

/** Human form for logs: `{1:3,2:1}`. */
export function format(v: VersionVector | null): string {
  return v === null ? 'null' : `{${v.map(([i, c]) => `${i}:${c}`).join(',')}}`;
}
