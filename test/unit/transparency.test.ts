import { createPublicKey, generateKeyPairSync, sign, verify } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { append, consistencyProof, emptyFrontier, frontierRanges, inclusionProof, treeRoot, verifyConsistency, verifyInclusion } from '../../src/audit/merkle.ts';
import { mth, rfcConsistency, rfcInclusion, sha256 } from '../support/rfc9162.ts';
import { checkpointText, checkSignature, cosignedMessage, parseCheckpointText, parseNote, parseVerifierKey, signNote, verifierKey } from '../../src/audit/note.ts';

/*
 * The project's proofs and notes, checked by code written here from the standards
 * (RFC 9162 §2.1.3.2 and §2.1.4.2; C2SP signed-note, tlog-checkpoint, tlog-cosignature),
 * not by the project's own verifiers.
 */
const leaf = (i: number) => sha256(Buffer.from([0]), Buffer.from(`leaf ${i}`));
const sha = sha256;

const N = 70;
const leaves = Array.from({ length: N }, (_, i) => leaf(i));

describe('RFC 9162 proofs, checked by the RFC verifiers of test/support/rfc9162.ts', () => {
  it('inclusion: every leaf of every tree up to 70, the last leaf and powers of two among them', () => {
    for (let n = 1; n <= N; n++) {
      const root = mth(leaves.slice(0, n));
      for (let i = 0; i < n; i++) {
        const path = inclusionProof(leaves.slice(0, n), i);
        expect(rfcInclusion(i, n, leaves[i]!, path, root), `leaf ${i} of ${n}`).toBe(true);
        expect(rfcInclusion(i, n, leaf(1000), path, root)).toBe(false);
      }
    }
  });

  it('consistency: every pair of sizes up to 70, from the leaves and from a stored frontier', () => {
    for (let n = 1; n <= N; n++) {
      const second = mth(leaves.slice(0, n));
      for (let m = 1; m <= n; m++) {
        const first = mth(leaves.slice(0, m));
        const fromLeaves = consistencyProof(m, n, (lo, hi) => treeRoot(leaves, lo, hi));
        expect(rfcConsistency(m, n, first, second, fromLeaves), `${m} -> ${n}`).toBe(true);
        // the witness path: the frontier signed at m and only the leaves after it
        const f = append(emptyFrontier(), leaves.slice(0, m));
        expect(consistencyProof(m, n, frontierRanges(f, leaves.slice(m, n)))).toEqual(fromLeaves);
        if (m < n) expect(rfcConsistency(m, n, first, mth(leaves.slice(0, n - 1).concat([leaf(999)])), fromLeaves), `${m} -> ${n} against another tree`).toBe(false);
      }
    }
  });

  it("the project's own verifiers (audit prove, audit consistency) accept what the RFC's do and refuse tampered proofs", () => {
    for (let n = 1; n <= 40; n++) {
      const second = treeRoot(leaves, 0, n);
      for (let m = 1; m <= n; m++) {
        const first = treeRoot(leaves, 0, m);
        const proof = consistencyProof(m, n, (lo, hi) => treeRoot(leaves, lo, hi));
        expect(verifyConsistency(m, n, first, second, proof), `${m} -> ${n}`).toBe(true);
        if (m === n) continue;
        expect(verifyConsistency(m, n, first, leaf(999), proof)).toBe(false);
        expect(verifyConsistency(m, n, leaf(999), second, proof)).toBe(false);
        if (proof.length > 0) {
          const bad = [...proof];
          bad[bad.length - 1] = leaf(998);
          expect(verifyConsistency(m, n, first, second, bad)).toBe(false);
          expect(verifyConsistency(m, n, first, second, proof.slice(1))).toBe(false);
        }
      }
      for (let i = 0; i < n; i++) {
        const path = inclusionProof(leaves.slice(0, n), i);
        expect(verifyInclusion(leaves[i]!, i, n, path, second)).toBe(true);
        expect(verifyInclusion(leaf(996), i, n, path, second)).toBe(false);
        if (path.length > 0) expect(verifyInclusion(leaves[i]!, i, n, [leaf(997), ...path.slice(1)], second)).toBe(false);
      }
    }
  });

  it('consistency edge cases: sizes 1 and 2, powers of two, a first size at a subtree boundary', () => {
    const p = (m: number, n: number) => consistencyProof(m, n, (lo, hi) => treeRoot(leaves, lo, hi));
    expect(p(1, 1)).toEqual([]);
    expect(p(1, 2)).toEqual([leaves[1]]);
    expect(p(2, 4)).toEqual([treeRoot(leaves, 2, 4)]);
    expect(p(4, 8)).toEqual([treeRoot(leaves, 4, 8)]);
    // RFC 9162 §2.1.5's example tree of 7 leaves: from 3 and from 4
    expect(p(3, 7)).toEqual([leaves[2], leaves[3], treeRoot(leaves, 0, 2), treeRoot(leaves, 4, 7)]);
    expect(p(4, 7)).toEqual([treeRoot(leaves, 4, 7)]);
    expect(p(6, 7)).toEqual([treeRoot(leaves, 4, 6), leaves[6], treeRoot(leaves, 0, 4)]);
    expect(() => p(8, 7)).toThrow(RangeError);
  });
});

describe('C2SP notes, checked from the specifications', () => {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const raw = Buffer.from(publicKey.export({ format: 'jwk' }).x!, 'base64url');
  const name = 'audit.example/log';
  const root = leaves[5]!;
  const text = checkpointText('audit.example/log/group:customers:0', 6, root);

  it('a checkpoint is the origin, the decimal size and the base64 root', () => {
    expect(text).toBe(`audit.example/log/group:customers:0\n6\n${root.toString('base64')}\n`);
    expect(parseCheckpointText(text)).toEqual({ origin: 'audit.example/log/group:customers:0', size: 6, root });
  });

  it('a signed note verifies with a verifier key built from the spec alone', () => {
    const note = signNote(text, name, privateKey);
    const vkey = verifierKey(name, publicKey);
    // vkey: name + hex(key ID) + base64(0x01 || key); key ID = SHA-256(name || \n || 0x01 || key)[:4]
    const id = sha(Buffer.from(`${name}\n`), Buffer.from([0x01]), raw).subarray(0, 4);
    expect(vkey).toBe(`${name}+${id.toString('hex')}+${Buffer.concat([Buffer.from([1]), raw]).toString('base64')}`);
    // the note: text, a blank line, '— name base64(id || sig)'
    expect(note.startsWith(`${text}\n\u2014 ${name} `)).toBe(true);
    const sig = Buffer.from(note.slice(text.length + 1).trim().split(' ')[2]!, 'base64');
    expect(sig.subarray(0, 4)).toEqual(id);
    expect(verify(null, Buffer.from(text), publicKey, sig.subarray(4))).toBe(true);
    expect(verify(null, Buffer.from(text.replace('\n6\n', '\n7\n')), publicKey, sig.subarray(4))).toBe(false);
    // and the project's parser agrees
    const parsed = parseNote(note);
    expect(parsed.text).toBe(text);
    expect(checkSignature(parseVerifierKey(vkey), parsed.text, parsed.signatures[0]!).ok).toBe(true);
  });

  it('a v1 cosignature: 8-byte timestamp then Ed25519 over "cosignature/v1\\ntime T\\n" and the text', () => {
    const w = generateKeyPairSync('ed25519');
    const wname = 'witness.example/w1';
    const t = 1_790_000_000;
    const ts = Buffer.alloc(8);
    ts.writeBigUInt64BE(BigInt(t));
    const msg = Buffer.from(`cosignature/v1\ntime ${t}\n${text}`);
    expect(cosignedMessage(text, t)).toEqual(msg);
    const wraw = Buffer.from(w.publicKey.export({ format: 'jwk' }).x!, 'base64url');
    const id = sha(Buffer.from(`${wname}\n`), Buffer.from([0x04]), wraw).subarray(0, 4);
    const line = `\u2014 ${wname} ${Buffer.concat([id, ts, sign(null, msg, w.privateKey)]).toString('base64')}\n`;
    const v = parseVerifierKey(verifierKey(wname, createPublicKey(w.privateKey), 0x04));
    const s = parseNote(`${signNote(text, name, privateKey)}${line}`).signatures[1]!;
    expect(checkSignature(v, text, s)).toEqual({ ok: true, timestamp: t });
    expect(checkSignature(v, text.replace('\n6\n', '\n5\n'), s).ok).toBe(false);
  });

  it('refuses key names with spaces or "+", and verifier keys whose ID does not match', () => {
    const vkey = verifierKey(name, publicKey);
    expect(() => parseVerifierKey(vkey.replace(/\+[0-9a-f]{8}\+/, '+00000000+'))).toThrow(/key ID/);
    expect(() => parseVerifierKey(`a b+${vkey.split('+').slice(1).join('+')}`)).toThrow();
  });
});
