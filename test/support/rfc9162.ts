import { createHash, createPublicKey, verify, type KeyObject } from 'node:crypto';

/*
 * Verifiers written in the tests straight from the standards, so the project's proofs and
 * notes are checked by code that is not the project's: RFC 9162 §2.1.3.2 (inclusion) and
 * §2.1.4.2 (consistency), and the C2SP signed-note and tlog-cosignature formats.
 */
export const sha256 = (...parts: Buffer[]): Buffer => createHash('sha256').update(Buffer.concat(parts)).digest();
const node = (l: Buffer, r: Buffer) => sha256(Buffer.from([1]), l, r);
const half = (n: number) => Math.floor(n / 2);

export function rfcInclusion(leafIndex: number, treeSize: number, leafHash: Buffer, path: Buffer[], root: Buffer): boolean {
  if (leafIndex >= treeSize) return false;
  let fn = leafIndex;
  let sn = treeSize - 1;
  let r = leafHash;
  for (const p of path) {
    if (sn === 0) return false;
    if (fn % 2 === 1 || fn === sn) {
      r = node(p, r);
      while (fn % 2 === 0 && fn !== 0) { fn = half(fn); sn = half(sn); }
    } else {
      r = node(r, p);
    }
    fn = half(fn);
    sn = half(sn);
  }
  return sn === 0 && r.equals(root);
}

export function rfcConsistency(first: number, second: number, firstHash: Buffer, secondHash: Buffer, proof: Buffer[]): boolean {
  if (first === second) return proof.length === 0 && firstHash.equals(secondHash);
  if (first === 0 || first > second || proof.length === 0) return false;
  const path = [...proof];
  if (Number.isInteger(Math.log2(first))) path.unshift(firstHash);
  let fn = first - 1;
  let sn = second - 1;
  while (fn % 2 === 1) { fn = half(fn); sn = half(sn); }
  let fr = path[0]!;
  let sr = path[0]!;
  for (const c of path.slice(1)) {
    if (sn === 0) return false;
    if (fn % 2 === 1 || fn === sn) {
      fr = node(c, fr);
      sr = node(c, sr);
      while (fn % 2 === 0 && fn !== 0) { fn = half(fn); sn = half(sn); }
    } else {
      sr = node(sr, c);
    }
    fn = half(fn);
    sn = half(sn);
  }
  return fr.equals(firstHash) && sr.equals(secondHash) && sn === 0;
}

/** MTH by its definition (RFC 9162 §2.1.1). */
export function mth(leaves: Buffer[]): Buffer {
  if (leaves.length === 0) return sha256();
  if (leaves.length === 1) return leaves[0]!;
  let k = 1;
  while (k * 2 < leaves.length) k *= 2;
  return node(mth(leaves.slice(0, k)), mth(leaves.slice(k)));
}

export interface VKey { name: string; id: Buffer; type: number; raw: Buffer; key: KeyObject }

export const ed25519Key = (raw: Buffer): KeyObject => createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: raw.toString('base64url') }, format: 'jwk' });
export const rawOf = (k: KeyObject): Buffer => Buffer.from(k.export({ format: 'jwk' }).x!, 'base64url');
export const keyIdOf = (name: string, type: number, raw: Buffer): Buffer => sha256(Buffer.from(`${name}\n`), Buffer.from([type]), raw).subarray(0, 4);

/** `<name>+<hex key ID>+<base64(type ‖ key)>`, checked. */
export function parseVKey(vkey: string): VKey {
  // name and key ID hold no '+'; the base64 key may
  const [name, hex, ...rest] = vkey.trim().split('+');
  const b64 = rest.join('+');
  const bytes = Buffer.from(b64, 'base64');
  const raw = bytes.subarray(1);
  const id = keyIdOf(name!, bytes[0]!, raw);
  if (id.toString('hex') !== hex) throw new Error('vkey: key ID mismatch');
  return { name: name!, id, type: bytes[0]!, raw, key: ed25519Key(raw) };
}

/** A signed note's text and signature lines. */
export function splitNote(note: string): { text: string; sigs: Array<{ name: string; bytes: Buffer }> } {
  const cut = note.lastIndexOf('\n\n');
  const text = note.slice(0, cut + 1);
  const sigs = note.slice(cut + 2).split('\n').filter((l) => l.length > 0).map((l) => {
    const [dash, name, b64] = l.split(' ');
    if (dash !== '\u2014') throw new Error(`not a signature line: ${l}`);
    return { name: name!, bytes: Buffer.from(b64!, 'base64') };
  });
  return { text, sigs };
}

/** Whether some line is a valid Ed25519 (0x01) signature of `v` over the text, or a valid v1 cosignature (0x04). */
export function noteSignedBy(note: string, v: VKey): boolean {
  const { text, sigs } = splitNote(note);
  return sigs.some((s) => {
    if (s.name !== v.name || !s.bytes.subarray(0, 4).equals(v.id)) return false;
    if (v.type === 0x01) return verify(null, Buffer.from(text), v.key, s.bytes.subarray(4));
    const t = s.bytes.readBigUInt64BE(4);
    return verify(null, Buffer.from(`cosignature/v1\ntime ${t}\n${text}`), v.key, s.bytes.subarray(12));
  });
}

export function checkpointOf(text: string): { origin: string; size: number; root: Buffer } {
  const [origin, size, root] = text.split('\n');
  return { origin: origin!, size: Number(size), root: Buffer.from(root!, 'base64') };
}
