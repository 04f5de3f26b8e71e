import type pg from 'pg';
import { LevelFrontier } from './merkle.ts';
import { decodeFields, encodeFields, leafHashOf, payloadHash, streamLeafChunks, type LeafRow } from './leaf.ts';
import { adminLogId, groupLogRegex, prunedThrough } from './admin-log.ts';
import { checkpointHash, checkpointMessage, verifyCheckpoint, type CheckpointBody, type CheckpointRow } from './signing.ts';
import type { PublishedCheckpoint } from './audit-service.ts';
import { checkSignature, ED25519, keyId, parseCheckpointText, parseNote, rawEd25519, type Verifier } from './note.ts';
import { createPublicKey, type KeyObject } from 'node:crypto';

/**
 * Verification of the signed audit log (DESIGN §7). Per log it streams the rows in seq
 * order, recomputes every leaf from the row's columns (leaf.ts) and the Merkle root at
 * every checkpoint, and checks each checkpoint's Ed25519 signature against the pinned
 * keys only, and the chain of checkpoint hashes. Against the checkpoints published to
 * Kafka it catches a truncated table. It names the first bad seq and the kind of damage.
 */
export type DamageKind = 'modified' | 'missing' | 'inserted' | 'reordered' | 'bad signature' | 'unknown key' | 'truncated';

export interface Damage {
  seq: number;
  kind: DamageKind;
  detail: string;
}

export interface LogReport {
  log_id: string;
  rows: number;
  checkpoints: number;
  /** Rows after the last checkpoint of a log still being written: not signed yet, not damage. */
  unsigned: number;
  /** The last seq this verification read: the log as its snapshot held it (a worker may have written more since). */
  checked_through: number;
  /** With a witness key: the largest tree size whose checkpoint carries a cosignature that verifies with it (0: none). */
  witnessed_through?: number;
  /** The largest signed tree size whose signature, root and every row up to it verified. */
  verified_through: number;
  /** Rows whose payload was archived and cleared by `audit prune` (their metadata still verifies). */
  pruned: { from: number; to: number } | null;
  damage: Damage | null;
}

/** The payload hash of a row whose before, after and writes are all NULL. */
const NULL_PAYLOAD = payloadHash(encodeFields([null, null, null]));

interface Mismatch {
  seq: number;
  meta: Buffer;
  payload: Buffer;
  stored: Buffer | null;
}

/** The leaf of a row's metadata with another seq: did the row move? */
function leafAtSeq(m: Mismatch, seq: number): Buffer {
  const fields = decodeFields(m.meta, 15);
  fields[1] = String(seq);
  return leafHashOf(encodeFields(fields), m.payload);
}

/** A row's payload hash and leaf hash as recomputed from its fields: a pruned row proves its payload by the hash it kept, any other row by its payload. */
export function rowLeaf(r: LeafRow, prunedThrough: number): { payload: Buffer; leaf: Buffer } {
  if (r.payload !== null && r.leafHash && r.payloadHash) return { payload: r.payloadHash, leaf: r.leafHash }; // hashed natively, per chunk
  const payload = r.payload === null ? (r.seq <= prunedThrough && r.storedPayload ? r.storedPayload : NULL_PAYLOAD) : payloadHash(r.payload);
  return { payload, leaf: leafHashOf(r.meta, payload) };
}

interface PinnedKey { key: KeyObject; raw: Buffer }

/** Pinned keys parsed once, not at each of a log's checkpoints (a PEM's parse cost more than the Ed25519 check). */
const parsedKeys = new Map<string, PinnedKey | Error>();

function pinnedKey(pem: string): PinnedKey | Error {
  let k = parsedKeys.get(pem);
  if (!k) {
    try {
      const key = createPublicKey(pem);
      k = { key, raw: rawEd25519(key) };
    } catch (err) {
      k = err as Error;
    }
    parsedKeys.set(pem, k);
  }
  return k;
}

/**
 * A checkpoint's C2SP note: signed over its own text by the checkpoint's pinned key (under
 * whatever name its line gives, whose key ID must match), and naming the same size and root.
 * Returns what is wrong, or null.
 */
function noteProblem(note: string, size: number, root: Buffer, pinned: PinnedKey): string | null {
  let parsed: ReturnType<typeof parseNote>;
  let body: ReturnType<typeof parseCheckpointText>;
  try {
    parsed = parseNote(note);
    body = parseCheckpointText(parsed.text);
  } catch (err) {
    return `its C2SP note does not parse: ${(err as Error).message}`;
  }
  if (body.size !== size || !body.root.equals(root)) return `its C2SP note names tree size ${body.size} and another root`;
  const ok = parsed.signatures.some((s) => {
    const v: Verifier = { name: s.name, id: keyId(s.name, ED25519, pinned.raw), type: ED25519, key: pinned.key };
    return checkSignature(v, parsed.text, s).ok;
  });
  return ok ? null : 'its C2SP note carries no signature that verifies with the pinned key';
}

export async function verifyLog(db: pg.ClientBase, logId: string, pinned: Map<string, string>, published: PublishedCheckpoint[],
  o: { prunedThrough?: number; untrustedPrune?: { through: number; kind: DamageKind; detail: string }; progress?: (rows: number) => void; witness?: Verifier } = {}): Promise<LogReport> {
  const prunedThrough = o.prunedThrough ?? 0;
  const untrusted = o.untrustedPrune;
  let untrustedSeen = false;
  const progress = o.progress ?? (() => undefined);
  // Row findings (missing, inserted, reordered, modified rows) name exact rows and come
  // first; checkpoint and tail findings next; a root that does not match when every row
  // matches its own leaf hash (rows rewritten together with their hashes) last.
  const rowFindings: Damage[] = [];
  const findings: Damage[] = [];
  const rootFindings: Damage[] = [];
  const note = (d: Damage) => findings.push(d);
  const { rows: logRows } = await db.query<{ tree_size: string }>('SELECT tree_size FROM audit_logs WHERE log_id = $1', [logId]);

  // checkpoints: signature, pinned key, chain
  const { rows: cps } = await db.query<CheckpointRow & { cosignatures: string | null }>(
    'SELECT log_id, tree_size, root, prev_hash, signed_at, key_id, signature, checkpoint_hash, note, cosignatures FROM audit_checkpoints WHERE log_id = $1 ORDER BY tree_size', [logId]);
  let prev: Buffer | null = null;
  const signedOk = new Set<number>();
  const cosigned: number[] = [];
  for (const c of cps) {
    const size = Number(c.tree_size);
    const before = findings.length;
    const body: CheckpointBody = { logId, treeSize: size, root: c.root, prevHash: c.prev_hash, signedAt: c.signed_at.toISOString(), keyId: c.key_id };
    const pem = pinned.get(c.key_id);
    const key = pem === undefined ? undefined : pinnedKey(pem);
    if (!key) note({ seq: size, kind: 'unknown key', detail: `checkpoint at tree size ${size} is signed by key ${c.key_id}, which is not pinned` });
    else if (key instanceof Error) note({ seq: size, kind: 'bad signature', detail: `checkpoint at tree size ${size}: the pinned key ${c.key_id} does not parse (${key.message})` });
    else if (!verifyCheckpoint(key.key, body, c.signature)) note({ seq: size, kind: 'bad signature', detail: `checkpoint at tree size ${size}: the signature does not verify with key ${c.key_id}` });
    else if (!checkpointHash(checkpointMessage(body), c.signature).equals(c.checkpoint_hash)) note({ seq: size, kind: 'bad signature', detail: `checkpoint at tree size ${size}: its stored hash is not the hash of its message and signature` });
    else if (c.note) {
      const problem = noteProblem(c.note, size, c.root, key);
      if (problem) note({ seq: size, kind: 'bad signature', detail: `checkpoint at tree size ${size}: ${problem}` });
    }
    if (!(prev === null ? c.prev_hash === null : c.prev_hash?.equals(prev))) note({ seq: size, kind: 'bad signature', detail: `checkpoint at tree size ${size} does not chain to the one before it` });
    if (o.witness && c.note && c.cosignatures && findings.length === before) {
      try {
        const text = parseNote(c.note).text;
        if (parseNote(`${text}\n${c.cosignatures}`).signatures.some((sig) => checkSignature(o.witness!, text, sig).ok)) cosigned.push(size);
      } catch { /* a cosignature that does not parse witnesses nothing */ }
    }
    prev = c.checkpoint_hash;
    if (findings.length === before) signedOk.add(size);
  }
  const sizes = cps.map((c) => Number(c.tree_size));
  const roots = new Map(cps.map((c) => [Number(c.tree_size), c.root]));

  // rows: seq continuity, payload and leaf hashes, roots at checkpoints
  const tree = new LevelFrontier();
  let expected = 1;
  let lastGoodCheckpoint = 0;
  let verifiedThrough = 0;
  const mismatched: Mismatch[] = [];
  const written = logRows[0] ? Number(logRows[0].tree_size) : Number.MAX_SAFE_INTEGER;
  let inserted = false;
  // per arriving chunk: the leaves it appends (built in place over the chunk's own leaves), the checkpoint sizes it reaches, and whether every row up to each was sound
  let batch: Buffer = Buffer.alloc(0);
  let appended = 0;
  const stops: number[] = [];
  const soundAt: boolean[] = [];
  const reached = (size: number) => {
    if (roots.has(size)) {
      stops.push(size);
      soundAt.push(rowFindings.length === 0 && mismatched.length === 0);
    }
  };
  // a row the chunk's scan flagged (no payload, a hash that differs), or out of line: looked at field by field
  const onRow = (r: LeafRow) => {
    const seq = r.seq;
    if (seq > written) {
      if (!inserted) rowFindings.push({ seq, kind: 'inserted', detail: `the log's writer appended ${written} rows; seq ${seq} is not one of them` });
      inserted = true;
      expected = seq + 1;
      return;
    }
    if (seq !== expected) {
      rowFindings.push({ seq: expected, kind: 'missing', detail: `no row at seq ${expected}${seq > expected + 1 ? ` (next is ${seq})` : ''}` });
      expected = seq; // go on with what is there, so later checks still run
    }
    // cleared under a prune record the admin log cannot vouch for: checked like a pruned row, and named by what is wrong there
    const clearedUntrusted = untrusted !== undefined && r.payload === null && r.storedPayload !== null && seq > prunedThrough && seq <= untrusted.through;
    const { payload, leaf } = rowLeaf(r, clearedUntrusted ? seq : prunedThrough);
    if (clearedUntrusted && !untrustedSeen && r.storedLeaf !== null && leaf.equals(r.storedLeaf)) {
      rowFindings.push({ seq, kind: untrusted.kind, detail: `the payload at seq ${seq} was cleared under a prune record that does not verify: ${untrusted.detail}` });
      untrustedSeen = true;
    }
    if (r.storedLeaf === null || !leaf.equals(r.storedLeaf) || (r.storedPayload !== null && !payload.equals(r.storedPayload))) {
      if (mismatched.length < 10_000) mismatched.push({ seq, meta: Buffer.from(r.meta), payload, stored: r.storedLeaf && Buffer.from(r.storedLeaf) });
    }
    // the tree is built from the stored leaf hashes: a row edited alone is named by its own hash
    // (a stored hash of the wrong length is already a mismatch, named above: the tree goes on with the recomputed one)
    (r.storedLeaf?.length === 32 ? r.storedLeaf : leaf).copy(batch, 32 * appended++);
    reached(tree.size + appended);
    expected++;
  };
  await streamLeafChunks(db, logId, 1, Infinity, (chunk) => {
    batch = chunk.leaves; // appended <= i below: a leaf only ever moves down, over rows already taken
    const { seqs, flags } = chunk;
    for (let i = 0; i < chunk.count; i++) {
      const seq = seqs[i]!;
      if (flags[i] === 0 && seq === expected && seq <= written) { // the common row: its hashes match its fields, in line
        if (appended !== i) batch.copyWithin(32 * appended, 32 * i, 32 * i + 32);
        appended++;
        reached(tree.size + appended);
        expected++;
      } else {
        onRow(chunk.row(i));
      }
    }
    const got = tree.append(batch.subarray(0, 32 * appended), stops);
    stops.forEach((size, j) => {
      if (!got[j]!.equals(roots.get(size)!)) {
        rootFindings.push({ seq: lastGoodCheckpoint + 1, kind: 'modified', detail: `the rows from seq ${lastGoodCheckpoint + 1} to ${size} do not hash to the root signed at tree size ${size}` });
      } else {
        lastGoodCheckpoint = size;
        if (signedOk.has(size) && soundAt[j]) verifiedThrough = size;
      }
    });
    appended = 0;
    stops.length = 0;
    soundAt.length = 0;
    progress(chunk.count);
  });
  const n = Math.min(expected - 1, written);

  // rows whose content no longer matches their leaf hash: moved, or modified
  for (const m of mismatched) {
    const other = m.stored === null ? undefined : mismatched.find((x) => x.seq !== m.seq && leafAtSeq(m, x.seq).equals(m.stored!));
    if (other) rowFindings.push({ seq: Math.min(m.seq, other.seq), kind: 'reordered', detail: `the rows at seq ${m.seq} and ${other.seq} changed places` });
    else rowFindings.push({ seq: m.seq, kind: 'modified', detail: `the row at seq ${m.seq} no longer matches its ${m.seq <= prunedThrough ? 'leaf hash (pruned row: metadata and kept payload hash)' : 'leaf hash'}` });
  }

  // the tail: against the table's own checkpoints, the writer's tree size, and what was published
  const lastSigned = sizes.at(-1) ?? 0;
  if (lastSigned > n) note({ seq: n + 1, kind: 'truncated', detail: `a checkpoint signs ${lastSigned} rows; the table holds ${n}` });
  const pub = published.filter((p) => p.log_id === logId);
  const pubMax = Math.max(0, ...pub.map((p) => p.tree_size));
  if (pubMax > n) note({ seq: n + 1, kind: 'truncated', detail: `a checkpoint published to Kafka signs ${pubMax} rows; the table holds ${n}` });
  for (const p of pub) {
    if (!roots.has(p.tree_size) && p.tree_size <= n) note({ seq: p.tree_size, kind: 'truncated', detail: `the checkpoint published for tree size ${p.tree_size} is missing from audit_checkpoints` });
    else if (roots.has(p.tree_size) && roots.get(p.tree_size)!.toString('hex') !== p.root) note({ seq: p.tree_size, kind: 'modified', detail: `the root stored for tree size ${p.tree_size} differs from the one published` });
  }
  // the admin log signs every append in the same transaction: an unsigned row there was not written by a prune
  if (logId.endsWith(':admin') && n > lastSigned) rowFindings.push({ seq: lastSigned + 1, kind: 'inserted', detail: `the admin log signs every row it appends; seq ${lastSigned + 1} is not signed` });
  const first = (ds: Damage[]) => [...ds].sort((a, b) => a.seq - b.seq)[0];
  const damage = first(rowFindings) ?? first(findings) ?? first(rootFindings) ?? null;
  if (damage) verifiedThrough = Math.min(verifiedThrough, damage.seq - 1);
  return {
    log_id: logId, rows: n, checkpoints: cps.length, unsigned: Math.max(0, n - lastSigned), verified_through: verifiedThrough, checked_through: n,
    // the largest cosigned size that is also verified: a size, never a clamp between two
    ...(o.witness ? { witnessed_through: Math.max(0, ...cosigned.filter((x) => x <= verifiedThrough)) } : {}),
    pruned: prunedThrough > 0 ? { from: 1, to: prunedThrough } : null, damage,
  };
}

/** Every log id the database knows, of one group or all: written, checkpointed, or published. */
export async function logIds(db: pg.ClientBase | pg.Pool, group: string | undefined, published: PublishedCheckpoint[]): Promise<string[]> {
  const re = group === undefined ? '' : groupLogRegex(group);
  const { rows } = await db.query<{ log_id: string }>(
    `SELECT log_id FROM audit_logs WHERE log_id ~ $1 UNION SELECT DISTINCT log_id FROM audit_checkpoints WHERE log_id ~ $1`, [re]);
  const ids = new Set(rows.map((r) => r.log_id));
  const mine = new RegExp(re);
  for (const p of published) if (mine.test(p.log_id)) ids.add(p.log_id);
  return [...ids].sort();
}

/** A log's group: everything before its last ':' (a topic name holds none). */
export const groupOf = (logId: string): string => logId.slice(0, logId.lastIndexOf(':'));

/**
 * Verifies logs group by group, each group in one read-only snapshot, so rows a running
 * worker commits meanwhile are neither half-seen nor taken for inserted rows. The group's
 * admin log is verified first, and only the prune records its verified checkpoints cover
 * are honoured: a prune record forged into the table proves nothing.
 */
export async function verifyLogs(db: pg.ClientBase, ids: string[], pinned: Map<string, string>, published: PublishedCheckpoint[],
  progress?: (rows: number) => void, witness?: Verifier): Promise<LogReport[]> {
  const byGroup = new Map<string, string[]>();
  for (const id of ids) byGroup.set(groupOf(id), [...(byGroup.get(groupOf(id)) ?? []), id]);
  const reports: LogReport[] = [];
  for (const [group, logs] of byGroup) {
    await db.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    try {
      const admin = adminLogId(group);
      const adminReport = await verifyLog(db, admin, pinned, published, { progress: logs.includes(admin) ? progress : undefined });
      if (logs.includes(admin)) reports.push(adminReport);
      const pruned = await prunedThrough(db, group, adminReport.verified_through);
      const claimed = adminReport.damage ? await prunedThrough(db, group, Number.MAX_SAFE_INTEGER) : pruned;
      for (const id of logs) {
        if (id === admin) continue;
        const through = claimed.get(id) ?? 0;
        // a prune record beyond what the admin log proves: a forged one makes its cleared rows 'modified'; an unverifiable key or signature is named as such
        const kind: DamageKind = adminReport.damage?.kind === 'unknown key' || adminReport.damage?.kind === 'bad signature' ? adminReport.damage.kind : 'modified';
        const untrustedPrune = through > (pruned.get(id) ?? 0) ? { through, kind, detail: `${admin}: ${adminReport.damage!.detail}` } : undefined;
        reports.push(await verifyLog(db, id, pinned, published, { prunedThrough: pruned.get(id), untrustedPrune, progress, witness }));
      }
    } finally {
      await db.query('COMMIT').catch(() => undefined);
    }
  }
  return reports.sort((a, b) => a.log_id.localeCompare(b.log_id));
}
