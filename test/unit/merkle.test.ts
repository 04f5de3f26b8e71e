import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { append, EMPTY_ROOT, emptyFrontier, inclusionProof, leafHash, LevelFrontier, nodeHash, rootOf, treeRoot, verifyInclusion } from '../../src/audit/merkle.ts';
import { nativeHash } from '../../src/audit/native-hash.ts';

const hex = (b: Buffer) => b.toString('hex');

describe('RFC 6962 Merkle trees', () => {
  it('hashes as the RFC says (domain-separated leaves and nodes, the empty tree)', () => {
    expect(hex(EMPTY_ROOT)).toBe('e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
    expect(hex(leafHash(Buffer.alloc(0)))).toBe('6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d');
    expect(leafHash(Buffer.from('a'))).toEqual(createHash('sha256').update(Buffer.from([0, 0x61])).digest());
    const l = leafHash(Buffer.from('l'));
    const r = leafHash(Buffer.from('r'));
    expect(nodeHash(l, r)).toEqual(createHash('sha256').update(Buffer.concat([Buffer.from([1]), l, r])).digest());
    // three leaves: node(node(a, b), c), not node(a, node(b, c))
    const [a, b, c] = ['a', 'b', 'c'].map((s) => leafHash(Buffer.from(s)));
    expect(treeRoot([a!, b!, c!])).toEqual(nodeHash(nodeHash(a!, b!), c!));
  });

  it('the frontier gives the same root as the recursive definition, appended one by one or in batches', () => {
    const leaves = Array.from({ length: 300 }, (_, i) => leafHash(Buffer.from(`leaf ${i}`)));
    let one = emptyFrontier();
    let batched = emptyFrontier();
    for (let n = 1; n <= leaves.length; n++) {
      one = append(one, [leaves[n - 1]!]);
      expect(rootOf(one)).toEqual(treeRoot(leaves.slice(0, n)));
      expect(one.roots).toHaveLength(n.toString(2).split('1').length - 1);
    }
    for (let i = 0; i < leaves.length; i += 37) batched = append(batched, leaves.slice(i, i + 37));
    expect(rootOf(batched)).toEqual(rootOf(one));
    expect(batched.size).toBe(300);
  });

  for (const useNative of [true, false]) {
    it(`the verifier's level frontier (${useNative ? 'native' : 'TypeScript'}) gives the recursive root at every requested size, in chunks of any length`, () => {
      if (useNative) expect(nativeHash).toBeDefined();
      const leaves = Array.from({ length: 1100 }, (_, i) => leafHash(Buffer.from(`leaf ${i}`)));
      const tree = new LevelFrontier(useNative);
      expect(tree.root()).toEqual(EMPTY_ROOT);
      const chunks = [1, 1, 2, 4, 8, 3, 64, 0, 129, 500, 388];
      let at = 0;
      for (const len of chunks) {
        // every size in the chunk for small ones, powers of two and some others for the large
        const stops = Array.from({ length: len }, (_, i) => at + i + 1).filter((s) => len < 10 || (s & (s - 1)) === 0 || s % 97 === 0 || s === at + len);
        const roots = tree.append(Buffer.concat(leaves.slice(at, at + len)), stops);
        stops.forEach((s, j) => expect(roots[j], `size ${s}`).toEqual(treeRoot(leaves.slice(0, s))));
        at += len;
        expect(tree.size).toBe(at);
        expect(tree.root()).toEqual(treeRoot(leaves.slice(0, at)));
      }
      expect(at).toBe(1100);
      expect(() => tree.append(Buffer.concat(leaves.slice(0, 2)), [1103])).toThrow(RangeError);
    });
  }

  it('proves every leaf of every tree up to 70 leaves, and refuses a wrong leaf, index, size or root', () => {
    const leaves = Array.from({ length: 70 }, (_, i) => leafHash(Buffer.from(`x${i}`)));
    for (let n = 1; n <= 70; n++) {
      const root = treeRoot(leaves.slice(0, n));
      for (let i = 0; i < n; i++) {
        const proof = inclusionProof(leaves.slice(0, n), i);
        expect(verifyInclusion(leaves[i]!, i, n, proof, root)).toBe(true);
        if (n > 1) {
          expect(verifyInclusion(leaves[(i + 1) % n]!, i, n, proof, root)).toBe(false);
          expect(verifyInclusion(leaves[i]!, (i + 1) % n, n, proof, root)).toBe(false);
        }
      }
    }
    // a proof from the tree of 70 does not prove the leaf in the tree of 71 (a signed checkpoint binds root and size)
    const proof = inclusionProof(leaves, 5);
    const bigger = [...leaves, leafHash(Buffer.from('x70'))];
    expect(verifyInclusion(leaves[5]!, 5, 71, proof, treeRoot(bigger))).toBe(false);
    expect(verifyInclusion(leaves[5]!, 5, 71, inclusionProof(bigger, 5), treeRoot(bigger))).toBe(true);
    expect(verifyInclusion(leaves[5]!, 5, 70, proof, EMPTY_ROOT)).toBe(false);
  });
});
