import { createHash, hash } from 'node:crypto';

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

export function nodeHash(left: Hash, right: Hash): Hash {
  left.copy(scratch, 1);
  right.copy(scratch, 33);
  return hash('sha256', scratch, 'buffer');
}

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
  let fn = index;
  let sn = size - 1;
  let r = leaf;
  for (const p of proof) {
    if (sn === 0) return false;
    if (fn & 1 || fn === sn) {
      r = nodeHash(p, r);
      if (!(fn & 1)) {
        while (fn !== 0 && !(fn & 1)) {
          fn >>= 1;
          sn >>= 1;
        }
      }
    } else {
      r = nodeHash(r, p);
    }
    fn >>= 1;
    sn >>= 1;
  }
  return sn === 0 && r.equals(root);
}
