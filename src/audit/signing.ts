import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify, type KeyObject } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type pg from 'pg';
import { checkpointText, DEFAULT_ORIGIN_PREFIX, keyNameOf, signNote, verifierKey, type NoteIdentity } from './note.ts';

/**
 * Ed25519 signing of audit checkpoints (DESIGN §7). The private key is a PKCS#8 PEM file
 * named by AUDIT_SIGNING_KEY_FILE. Its public key is recorded in `audit_keys`, but a
 * verifier trusts only the keys pinned in its own keys file (`audit public-key` prints the
 * entry to pin), never the table alone.
 */
export interface SigningKey {
  keyId: string;
  privateKey: KeyObject;
  publicPem: string;
  /** How its C2SP notes are named (AUDIT_ORIGIN_PREFIX, AUDIT_NOTE_KEY_NAME). */
  note: NoteIdentity;
}

export const DEFAULT_NOTE_IDENTITY: NoteIdentity = { originPrefix: DEFAULT_ORIGIN_PREFIX, keyName: keyNameOf(DEFAULT_ORIGIN_PREFIX) };

/** The C2SP verifier key of a signing key: what an auditor's tooling pins. */
export const noteVerifierKey = (key: SigningKey): string => verifierKey(key.note.keyName, createPublicKey(key.privateKey));

export interface PinnedKey {
  key_id: string;
  public_key: string;
}

/** The key id: the first 16 hex digits of SHA-256 over the public key's SPKI DER. */
export function keyIdOf(publicKey: KeyObject): string {
  return createHash('sha256').update(publicKey.export({ type: 'spki', format: 'der' })).digest('hex').slice(0, 16);
}

export function loadSigningKey(file: string, note: NoteIdentity = DEFAULT_NOTE_IDENTITY): SigningKey {
  const privateKey = createPrivateKey(readFileSync(file));
  if (privateKey.asymmetricKeyType !== 'ed25519') throw new Error(`${file}: not an Ed25519 private key (${privateKey.asymmetricKeyType})`);
  const publicKey = createPublicKey(privateKey);
  return { keyId: keyIdOf(publicKey), privateKey, publicPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(), note };
}

/** Writes a new Ed25519 private key (PEM, mode 0600) to `file`. */
export function generateSigningKey(file: string, note: NoteIdentity = DEFAULT_NOTE_IDENTITY): SigningKey {
  const { privateKey } = generateKeyPairSync('ed25519');
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
  chmodSync(file, 0o600);
  return loadSigningKey(file, note);
}

/** The configured key, or (for development only, and said so) one generated under .local. */
export function signingKeyFor(file: string | undefined, devFile: string, warn: (msg: string) => void, note: NoteIdentity = DEFAULT_NOTE_IDENTITY): SigningKey {
  if (file) return loadSigningKey(file, note);
  if (!existsSync(devFile)) {
    warn(`AUDIT_SIGNING_KEY_FILE is not set: generating a development signing key at ${devFile}; production must mount its own`);
    return generateSigningKey(devFile, note);
  }
  warn(`AUDIT_SIGNING_KEY_FILE is not set: signing with the development key at ${devFile}`);
  return loadSigningKey(devFile, note);
}

export async function registerKey(db: pg.Pool, key: SigningKey): Promise<void> {
  await db.query(`INSERT INTO audit_keys (key_id, public_key) VALUES ($1, $2) ON CONFLICT (key_id) DO NOTHING`, [key.keyId, key.publicPem]);
}

/** An audit_checkpoints row as node-postgres returns it (the writer's publisher and the verifier read it). */
export interface CheckpointRow {
  log_id: string;
  tree_size: string;
  root: Buffer;
  prev_hash: Buffer | null;
  signed_at: Date;
  key_id: string;
  signature: Buffer;
  checkpoint_hash: Buffer;
  note?: string | null;
}

export interface CheckpointBody {
  logId: string;
  treeSize: number;
  root: Buffer;
  prevHash: Buffer | null;
  signedAt: string;
  keyId: string;
}

/** The signed message of a checkpoint, format 1: one field a line, hashes in hex. */
export function checkpointMessage(c: CheckpointBody): Buffer {
  return Buffer.from(['worker-sync audit checkpoint v1', c.logId, String(c.treeSize), c.root.toString('hex'), c.prevHash?.toString('hex') ?? '-', c.signedAt, c.keyId].join('\n'), 'utf8');
}

/** The hash that chains checkpoints: SHA-256 of the message and its signature. */
export function checkpointHash(message: Buffer, signature: Buffer): Buffer {
  return createHash('sha256').update(message).update(signature).digest();
}

/** Signs a checkpoint twice with one key: the JSON form's message, and the C2SP note of the same size and root. */
export function signCheckpoint(key: SigningKey, c: Omit<CheckpointBody, 'keyId'>): { body: CheckpointBody; signature: Buffer; hash: Buffer; note: string } {
  const body = { ...c, keyId: key.keyId };
  const message = checkpointMessage(body);
  const signature = sign(null, message, key.privateKey);
  const note = signNote(checkpointText(`${key.note.originPrefix}${c.logId}`, c.treeSize, c.root), key.note.keyName, key.privateKey);
  return { body, signature, hash: checkpointHash(message, signature), note };
}

export function verifyCheckpoint(publicKey: string | KeyObject, body: CheckpointBody, signature: Buffer): boolean {
  try {
    return verify(null, checkpointMessage(body), typeof publicKey === 'string' ? createPublicKey(publicKey) : publicKey, signature);
  } catch {
    return false;
  }
}

/** A pinned-keys file: {"keys": [{"key_id", "public_key"}]}. */
export function readPinnedKeys(file: string): Map<string, string> {
  const doc = JSON.parse(readFileSync(file, 'utf8')) as { keys?: PinnedKey[] };
  if (!Array.isArray(doc.keys)) throw new Error(`${file}: expected {"keys": [{"key_id", "public_key"}]}`);
  const out = new Map<string, string>();
  for (const k of doc.keys) {
    const id = keyIdOf(createPublicKey(k.public_key));
    if (id !== k.key_id) throw new Error(`${file}: key_id ${k.key_id} does not match its public key (${id})`);
    out.set(k.key_id, k.public_key);
  }
  return out;
}
