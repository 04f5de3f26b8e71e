import { createHash, createPublicKey, sign, verify, type KeyObject } from 'node:crypto';

/**
 * Checkpoints as the transparency-log ecosystem writes them, so that an auditor can check
 * the audit log with tooling that is not ours:
 * - c2sp.org/signed-note: a text ending in a newline, a blank line, then signature lines
 *   `— <key name> base64(4-byte key ID ‖ signature)`; the key ID is the first 4 bytes of
 *   SHA-256(key name ‖ 0x0A ‖ signature type ‖ public key); type 0x01 is Ed25519 over the text;
 * - c2sp.org/tlog-checkpoint: the text is the origin line, the tree size in decimal and the
 *   base64 root;
 * - c2sp.org/tlog-cosignature: a witness's type 0x04 signature, Ed25519 over
 *   `cosignature/v1\ntime <t>\n` ‖ the checkpoint text, carrying the 8-byte timestamp
 *   before the signature.
 * The JSON checkpoint (signing.ts) stays; the note is signed beside it, with the same key.
 */
export const ED25519 = 0x01;
export const COSIGNATURE_V1 = 0x04;

/** Where notes get their names: the origin of log L is `${originPrefix}${L}`. */
export interface NoteIdentity {
  originPrefix: string;
  keyName: string;
}

export const DEFAULT_ORIGIN_PREFIX = 'worker-sync.local/audit/';

/** The key name of an origin prefix: the prefix without its trailing slash. */
export const keyNameOf = (originPrefix: string): string => originPrefix.replace(/\/+$/, '');

/** Whether a string holds an ASCII control character (signed notes allow none but the newline that ends a line). */
export function hasControl(s: string): boolean {
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) < 0x20) return true;
  return false;
}

/** Why a key name cannot be used, or null (signed-note: non-empty, no spaces, no '+'). */
export function badKeyName(name: string): string | null {
  if (name.length === 0) return 'it is empty';
  if (/[\s+]/u.test(name)) return 'it holds a space or a "+"';
  return hasControl(name) ? 'it holds a control character' : null;
}

/** The 32 raw bytes of an Ed25519 public key. */
export function rawEd25519(publicKey: KeyObject): Buffer {
  const jwk = publicKey.export({ format: 'jwk' });
  if (jwk.crv !== 'Ed25519' || typeof jwk.x !== 'string') throw new Error('not an Ed25519 public key');
  return Buffer.from(jwk.x, 'base64url');
}

export function ed25519FromRaw(raw: Buffer): KeyObject {
  return createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: raw.toString('base64url') }, format: 'jwk' });
}

export function keyId(name: string, type: number, raw: Buffer): Buffer {
  return createHash('sha256').update(name, 'utf8').update(Buffer.from([0x0a, type])).update(raw).digest().subarray(0, 4);
}

/** The verifier key: `<name>+<8 hex digits of the key ID>+<base64(type ‖ public key)>`. */
export function verifierKey(name: string, publicKey: KeyObject, type = ED25519): string {
  const raw = rawEd25519(publicKey);
  return `${name}+${keyId(name, type, raw).toString('hex')}+${Buffer.concat([Buffer.from([type]), raw]).toString('base64')}`;
}

export interface Verifier {
  name: string;
  id: Buffer;
  type: number;
  key: KeyObject;
}

export function parseVerifierKey(vkey: string): Verifier {
  const m = /^([^+\s]+)\+([0-9a-f]{8})\+([A-Za-z0-9+/=]+)$/.exec(vkey.trim());
  if (!m) throw new Error('a verifier key is <name>+<8 hex digits>+<base64 key>');
  const bytes = Buffer.from(m[3]!, 'base64');
  if (bytes.length !== 33 || (bytes[0] !== ED25519 && bytes[0] !== COSIGNATURE_V1)) throw new Error('only Ed25519 verifier keys (type 0x01 or 0x04) are supported');
  const raw = bytes.subarray(1);
  const id = keyId(m[1]!, bytes[0]!, raw);
  if (id.toString('hex') !== m[2]) throw new Error(`the key ID ${m[2]} is not the hash of the name and key (${id.toString('hex')})`);
  return { name: m[1]!, id, type: bytes[0]!, key: ed25519FromRaw(raw) };
}

/** The checkpoint body (the note text): origin, size, base64 root, each ending in a newline. */
export function checkpointText(origin: string, size: number, root: Buffer): string {
  if (origin.length === 0 || hasControl(origin)) throw new Error(`not a checkpoint origin: ${JSON.stringify(origin)}`);
  return `${origin}\n${size}\n${root.toString('base64')}\n`;
}

export interface SignatureLine {
  name: string;
  id: Buffer;
  /** the bytes after the key ID */
  sig: Buffer;
  line: string;
}

export function signatureLine(name: string, id: Buffer, sig: Buffer): string {
  return `\u2014 ${name} ${Buffer.concat([id, sig]).toString('base64')}\n`;
}

/** A signed note: the text, a blank line, one signature line by `privateKey` under `name`. */
export function signNote(text: string, name: string, privateKey: KeyObject): string {
  const raw = rawEd25519(createPublicKey(privateKey));
  return `${text}\n${signatureLine(name, keyId(name, ED25519, raw), sign(null, Buffer.from(text, 'utf8'), privateKey))}`;
}

/** Splits a note at its last blank line into the text and its signature lines. */
export function parseNote(note: string): { text: string; signatures: SignatureLine[] } {
  if (!note.endsWith('\n')) throw new Error('a note ends with a newline');
  const cut = note.lastIndexOf('\n\n');
  if (cut < 0) throw new Error('a note has a blank line before its signatures');
  const text = note.slice(0, cut + 1);
  const signatures: SignatureLine[] = [];
  for (const line of note.slice(cut + 2, -1).split('\n')) {
    const m = /^\u2014 (\S+) ([A-Za-z0-9+/=]+)$/u.exec(line);
    if (!m) throw new Error(`not a signature line: ${JSON.stringify(line)}`);
    const bytes = Buffer.from(m[2]!, 'base64');
    if (bytes.length < 5) throw new Error('a signature is at least a key ID and one byte');
    signatures.push({ name: m[1]!, id: bytes.subarray(0, 4), sig: bytes.subarray(4), line: `${line}\n` });
  }
  if (signatures.length === 0) throw new Error('a note has at least one signature');
  return { text, signatures };
}

/** The message a v1 cosignature signs. */
export const cosignedMessage = (text: string, timestamp: number): Buffer => Buffer.from(`cosignature/v1\ntime ${timestamp}\n${text}`, 'utf8');

/** Whether a signature line is `v`'s and verifies over `text` (for a cosignature: returns its timestamp). */
export function checkSignature(v: Verifier, text: string, s: SignatureLine): { ok: boolean; timestamp?: number } {
  if (s.name !== v.name || !s.id.equals(v.id)) return { ok: false };
  if (v.type === ED25519) return { ok: s.sig.length === 64 && verify(null, Buffer.from(text, 'utf8'), v.key, s.sig) };
  if (s.sig.length !== 72) return { ok: false };
  const timestamp = Number(s.sig.readBigUInt64BE(0));
  return { ok: verify(null, cosignedMessage(text, timestamp), v.key, s.sig.subarray(8)), timestamp };
}

/** The parsed body of a checkpoint note. */
export function parseCheckpointText(text: string): { origin: string; size: number; root: Buffer } {
  const lines = text.split('\n');
  if (lines.length < 4 || lines.at(-1) !== '') throw new Error('a checkpoint is an origin, a size and a root, each on its own line');
  const [origin, size, root] = lines as [string, string, string];
  if (!/^(0|[1-9]\d*)$/.test(size)) throw new Error(`not a tree size: ${size}`);
  const r = Buffer.from(root, 'base64');
  if (r.length !== 32 || r.toString('base64') !== root) throw new Error(`not a base64 SHA-256 root: ${root}`);
  return { origin, size: Number(size), root: r };
}
