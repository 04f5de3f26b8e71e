import { createHash, hash } from 'node:crypto';
import { nativeHash } from './native-hash.ts';

/**
 * Merkle trees as RFC 6962 (Certificate Transparency) defines them (DESIGN §7):
 *   leaf hash  = SHA-256(0x00 ‖ leaf bytes)
 *   node hash  = SHA-256(0x01 ‖ left ‖ right)
 *   MTH({})    = SHA-256("")
 *   MTH(D[n])  = node(MTH(D[0:k]), MTH(D[k:n])), k the largest power of two below n.
 * A log appends leaves; its frontier (the roots of the perfect subtrees that make up the
 * tree, largest first) is all that is needed to append more and to compute the root, so
 * the writer keeps O(log n) hashes per log and hashes only the batch it appends.
 */
export type Hash = Buffer;

const LEAF = Buffer.from([0x00]);

export const EMPTY_ROOT: Hash = createHash('sha256').digest();

export function leafHash(bytes: Uint8Array): Hash {
  return createHash('sha256').update(LEAF).update(bytes).digest();
}

const scratch = Buffer.alloc(65, 0x01); // 0x01 ‖ left ‖ right, reused: hashing is synchronous

/** node:crypto's interior node: the reference for the native one. */
export function nodeHashJs(left: Hash, right: Hash): Hash {
  left.copy(scratch, 1);
  right.copy(scratch, 33);
  return hash('sha256', scratch, 'buffer');
}

const native = nativeHash;

export const nodeHash: (left: Hash, right: Hash) => Hash = native
  ? (left, right) => {
    const out = Buffer.allocUnsafe(32); // a slice of Buffer's pool: no allocation of its own
    native.node(left, right, out);
    return out;
  }
  : nodeHashJs;

/** The compact state of a tree of `size` leaves: one root per set bit of `size`, largest subtree first. */
export interface Frontier {
  size: number;
  roots: Hash[];
}

export const emptyFrontier = (): Frontier => ({ size: 0, roots: [] });

/** Appends leaf hashes; returns a new frontier. */
export function append(f: Frontier, leaves: readonly Hash[]): Frontier {
  const roots = [...f.roots];
  let size = f.size;
  for (const leaf of leaves) {
    let h = leaf;
    // merge while the lowest subtree is as big as the new one (trailing set bits of size)
    for (let s = size; s & 1; s >>= 1) h = nodeHash(roots.pop()!, h);
    roots.push(h);
    size++;
  }
  return { size, roots };
}

/** Appends one leaf hash to the frontier in place (the verifier's loop). */
export function appendOne(f: Frontier, leaf: Hash): void {
  let h = leaf;
  for (let s = f.size; s & 1; s >>= 1) h = nodeHash(f.roots.pop()!, h);
  f.roots.push(h);
  f.size++;
}

/**
 * A frontier kept by level, for appending many leaves at once (the verifier, one call per
 * COPY chunk): slot l holds the root of the perfect subtree of 2^l leaves while bit l of
 * size is set. With the native addon a whole chunk is one call (native/hash.cc,
 * appendLeaves); without it, the same loop runs on nodeHashJs. Same trees as Frontier.
 */
export class LevelFrontier {
  size = 0;
  private readonly levels = Buffer.alloc(64 * 32);

  /** `useNative` false runs the TypeScript loop even where the addon loaded (the tests hold both to the same roots). */
  constructor(private readonly useNative = native !== undefined) {}

  /** Appends the 32-byte leaf hashes packed in `leaves`; returns the root at each tree size in `stops` (ascending, within the appended sizes). */
  append(leaves: Buffer, stops: readonly number[]): Hash[] {
    const out = Buffer.allocUnsafe(32 * stops.length);
    if (this.useNative && native) {
      native.appendLeaves(this.levels, this.size, leaves, Float64Array.from(stops), out);
      this.size += leaves.length / 32;
    } else {
      let stop = 0;
      for (let i = 0; i < leaves.length; i += 32) {
        let h: Hash = leaves.subarray(i, i + 32);
        let l = 0;
        for (; Math.floor(this.size / 2 ** l) % 2 === 1; l++) h = nodeHashJs(this.levels.subarray(32 * l, 32 * l + 32), h);
        h.copy(this.levels, 32 * l);
        this.size++;
        while (stop < stops.length && stops[stop] === this.size) this.root().copy(out, 32 * stop++);
      }
      if (stop !== stops.length) throw new RangeError('LevelFrontier.append: a stop lies outside the appended sizes or out of order');
    }
    return stops.map((_, j) => out.subarray(32 * j, 32 * j + 32));
  }

  /** MTH of the tree so far. */
  root(): Hash {
    if (this.size === 0) return EMPTY_ROOT;
    let r: Hash | null = null;
    for (let l = 0; l < 64; l++) {
      if (Math.floor(this.size / 2 ** l) % 2 === 0) continue;
      const slot = this.levels.subarray(32 * l, 32 * l + 32);
      r = r === null ? Buffer.from(slot) : nodeHashJs(slot, r);
    }
    return r!;
  }
}

/** MTH of the tree the frontier describes. */
export function rootOf(f: Frontier): Hash {
  if (f.roots.length === 0) return EMPTY_ROOT;
  let r = f.roots[f.roots.length - 1]!;
  for (let i = f.roots.length - 2; i >= 0; i--) r = nodeHash(f.roots[i]!, r);
  return r;
}

/** MTH over a list of leaf hashes, by the RFC's recursive definition (the reference the verifier uses). */
export function treeRoot(leaves: readonly Hash[], lo = 0, hi = leaves.length): Hash {
  const n = hi - lo;
  if (n === 0) return EMPTY_ROOT;
  if (n === 1) return leaves[lo]!;
  const k = largestPowerOfTwoBelow(n);
  return nodeHash(treeRoot(leaves, lo, lo + k), treeRoot(leaves, lo + k, hi));
}

function largestPowerOfTwoBelow(n: number): number {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}

/** The audit path of leaf `index` in the tree of `leaves` (RFC 6962 §2.1.1), bottom up. */
export function inclusionProof(leaves: readonly Hash[], index: number, lo = 0, hi = leaves.length): Hash[] {
  const n = hi - lo;
  if (index < 0 || index >= n) throw new RangeError(`leaf ${index} is not in a tree of ${n}`);
  if (n === 1) return [];
  const k = largestPowerOfTwoBelow(n);
  return index < k
    ? [...inclusionProof(leaves, index, lo, lo + k), treeRoot(leaves, lo + k, hi)]
    : [...inclusionProof(leaves, index - k, lo + k, hi), treeRoot(leaves, lo, lo + k)];
}

/** Checks an audit path (RFC 9162 §2.1.3.2): does `leaf` sit at `index` of the tree of `size` with `root`? */
export function verifyInclusion(leaf: Hash, index: number, size: number, proof: readonly Hash[], root: Hash): boolean {
  if (index < 0 || index >= size) return false;
  // plain arithmetic, not 32-bit bit operators: sizes may pass 2^31
  const odd = (x: number) => x % 2 === 1;
  const half = (x: number) => Math.floor(x / 2);
  let fn = index;
  let sn = size - 1;
  let r = leaf;
  for (const p of proof) {
    if (sn === 0) return false;
    if (odd(fn) || fn === sn) {
      r = nodeHash(p, r);
      while (fn !== 0 && !odd(fn)) {
        fn = half(fn);
        sn = half(sn);
      }
    } else {
      r = nodeHash(r, p);
    }
    fn = half(fn);
    sn = half(sn);
  }
  return sn === 0 && r.equals(root);
}

/** MTH(D[lo:hi]) of some tree, however the caller has it. */
export type RangeHash = (lo: number, hi: number) => Hash;

/**
 * The consistency proof from size m to size n (RFC 9162 §2.1.4.1, SUBPROOF), asking
 * `mth` only for ranges that are roots of the size-m frontier or lie in [m, n): the
 * writer's side can answer from a stored frontier and the leaves appended since.
 */
export function consistencyProof(m: number, n: number, mth: RangeHash): Hash[] {
  if (!Number.isInteger(m) || !Number.isInteger(n) || m < 0 || m > n) throw new RangeError(`no consistency proof from size ${m} to ${n}`);
  const out: Hash[] = [];
  if (m === 0 || m === n) return out;
  const sub = (size: number, lo: number, hi: number, complete: boolean): void => {
    if (size === hi - lo) {
      if (!complete) out.push(mth(lo, hi));
      return;
    }
    const k = largestPowerOfTwoBelow(hi - lo);
    if (size <= k) {
      sub(size, lo, lo + k, complete);
      out.push(mth(lo + k, hi));
    } else {
      sub(size - k, lo + k, hi, false);
      out.push(mth(lo, lo + k));
    }
  };
  sub(m, 0, n, true);
  return out;
}

/** A RangeHash over the frontier of size `old.size` and the leaves appended after it (index old.size onwards). */
export function frontierRanges(old: Frontier, appended: readonly Hash[]): RangeHash {
  const roots = new Map<string, Hash>();
  let start = 0;
  for (let bit = 2 ** Math.floor(Math.log2(Math.max(1, old.size))), i = 0; bit >= 1; bit /= 2) {
    if (Math.floor(old.size / bit) % 2 === 0) continue;
    roots.set(`${start}:${start + bit}`, old.roots[i++]!);
    start += bit;
  }
  return (lo, hi) => {
    const root = roots.get(`${lo}:${hi}`);
    if (root) return root;
    if (lo < old.size || hi - old.size > appended.length) throw new RangeError(`range ${lo}-${hi} is neither a root of the size-${old.size} frontier nor in the ${appended.length} leaves after it`);
    return treeRoot(appended, lo - old.size, hi - old.size);
  };
}

/** Checks a consistency proof (RFC 9162 §2.1.4.2): is the tree of size m with root r1 a prefix of the one of size n with root r2? */
export function verifyConsistency(m: number, n: number, r1: Hash, r2: Hash, proof: readonly Hash[]): boolean {
  if (m > n || m < 0) return false;
  if (m === n) return proof.length === 0 && r1.equals(r2);
  if (m === 0) return proof.length === 0;
  const odd = (x: number) => x % 2 === 1;
  const half = (x: number) => Math.floor(x / 2);
  const path = [...proof];
  if (Number.isInteger(Math.log2(m))) path.unshift(r1); // m a power of two: the first node is the old root itself
  let fn = m - 1;
  let sn = n - 1;
  while (odd(fn)) {
    fn = half(fn);
    sn = half(sn);
  }
  if (path.length === 0) return false;
  let fr = path[0]!;
  let sr = path[0]!;
  for (const c of path.slice(1)) {
    if (sn === 0) return false;
    if (odd(fn) || fn === sn) {
      fr = nodeHash(c, fr);
      sr = nodeHash(c, sr);
      while (!odd(fn) && fn !== 0) {
        fn = half(fn);
        sn = half(sn);
      }
    } else {
      sr = nodeHash(sr, c);
    }
    fn = half(fn);
    sn = half(sn);
  }
  return fr.equals(r1) && sr.equals(r2) && sn === 0;
}
