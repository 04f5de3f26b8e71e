import type pg from 'pg';
import { append, emptyFrontier, rootOf, type Frontier } from './merkle.ts';
import { AUDIT_ROW_COLUMNS, fieldsOfRow, leafOf, type AuditRow } from './leaf.ts';
import { checkpointHash, checkpointMessage, verifyCheckpoint, type CheckpointBody, type CheckpointRow } from './signing.ts';
import type { PublishedCheckpoint } from './audit-service.ts';

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
  damage: Damage | null;
}

const PAGE = 10_000;

export async function verifyLog(db: pg.Pool | pg.Client, logId: string, pinned: Map<string, string>, published: PublishedCheckpoint[], progress: (rows: number) => void = () => undefined): Promise<LogReport> {
  // Row findings (missing, inserted, reordered, modified rows) name exact rows and come
  // first; checkpoint and tail findings next; a root that does not match when every row
  // matches its own leaf hash (rows rewritten together with their hashes) last.
  const rowFindings: Damage[] = [];
  const findings: Damage[] = [];
  const rootFindings: Damage[] = [];
  const note = (d: Damage) => findings.push(d);
  const { rows: logRows } = await db.query<{ tree_size: string }>('SELECT tree_size FROM audit_logs WHERE log_id = $1', [logId]);

  // checkpoints: signature, pinned key, chain
  const { rows: cps } = await db.query<CheckpointRow>(
    'SELECT log_id, tree_size, root, prev_hash, signed_at, key_id, signature, checkpoint_hash FROM audit_checkpoints WHERE log_id = $1 ORDER BY tree_size', [logId]);
  let prev: Buffer | null = null;
  for (const c of cps) {
    const size = Number(c.tree_size);
    const body: CheckpointBody = { logId, treeSize: size, root: c.root, prevHash: c.prev_hash, signedAt: c.signed_at.toISOString(), keyId: c.key_id };
    const key = pinned.get(c.key_id);
    if (!key) note({ seq: size, kind: 'unknown key', detail: `checkpoint at tree size ${size} is signed by key ${c.key_id}, which is not pinned` });
    else if (!verifyCheckpoint(key, body, c.signature)) note({ seq: size, kind: 'bad signature', detail: `checkpoint at tree size ${size}: the signature does not verify with key ${c.key_id}` });
    else if (!checkpointHash(checkpointMessage(body), c.signature).equals(c.checkpoint_hash)) note({ seq: size, kind: 'bad signature', detail: `checkpoint at tree size ${size}: its stored hash is not the hash of its message and signature` });
    if (!(prev === null ? c.prev_hash === null : c.prev_hash?.equals(prev))) note({ seq: size, kind: 'bad signature', detail: `checkpoint at tree size ${size} does not chain to the one before it` });
    prev = c.checkpoint_hash;
  }
  const sizes = cps.map((c) => Number(c.tree_size));
  const roots = new Map(cps.map((c) => [Number(c.tree_size), c.root]));

  // rows: seq continuity, leaf hashes, roots at checkpoints
  let f: Frontier = emptyFrontier();
  let expected = 1;
  let lastGoodCheckpoint = 0;
  const mismatched: Array<{ seq: number; row: AuditRow }> = [];
  const written = logRows[0] ? Number(logRows[0].tree_size) : Number.MAX_SAFE_INTEGER;
  let inserted = false;
  for (;;) {
    const { rows } = await db.query<AuditRow>(`SELECT ${AUDIT_ROW_COLUMNS} FROM audit_log WHERE log_id = $1 AND seq >= $2 ORDER BY seq LIMIT ${PAGE}`, [logId, expected]);
    if (rows.length === 0) break;
    for (const r of rows) {
      const seq = Number(r.seq);
      if (seq > written) {
        if (!inserted) rowFindings.push({ seq, kind: 'inserted', detail: `the log's writer appended ${written} rows; seq ${seq} is not one of them` });
        inserted = true;
        expected = seq + 1;
        continue;
      }
      if (seq !== expected) {
        rowFindings.push({ seq: expected, kind: 'missing', detail: `no row at seq ${expected}${seq > expected + 1 ? ` (next is ${seq})` : ''}` });
        expected = seq; // go on with what is there, so later checks still run
      }
      const leaf = leafOf(fieldsOfRow(r));
      if (r.leaf_hash === null || !leaf.equals(r.leaf_hash)) {
        if (mismatched.length < 10_000) mismatched.push({ seq, row: r });
      }
      // the tree is built from the stored leaf hashes: a row edited alone is named by its own hash
      f = append(f, [r.leaf_hash ?? leaf]);
      if (roots.has(f.size)) {
        if (!rootOf(f).equals(roots.get(f.size)!)) {
          rootFindings.push({ seq: lastGoodCheckpoint + 1, kind: 'modified', detail: `the rows from seq ${lastGoodCheckpoint + 1} to ${f.size} do not hash to the root signed at tree size ${f.size}` });
        } else {
          lastGoodCheckpoint = f.size;
        }
      }
      expected++;
    }
    progress(rows.length);
  }
  const n = Math.min(expected - 1, written);

  // rows whose content no longer matches their leaf hash: moved, or modified
  for (const m of mismatched) {
    const other = mismatched.find((o) => o.seq !== m.seq && m.row.leaf_hash !== null && leafOf({ ...fieldsOfRow(m.row), seq: o.seq }).equals(m.row.leaf_hash));
    if (other) rowFindings.push({ seq: Math.min(m.seq, other.seq), kind: 'reordered', detail: `the rows at seq ${m.seq} and ${other.seq} changed places` });
    else rowFindings.push({ seq: m.seq, kind: 'modified', detail: `the row at seq ${m.seq} no longer matches its leaf hash` });
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
  const first = (ds: Damage[]) => [...ds].sort((a, b) => a.seq - b.seq)[0];
  const damage = first(rowFindings) ?? first(findings) ?? first(rootFindings) ?? null;
  return { log_id: logId, rows: n, checkpoints: cps.length, unsigned: Math.max(0, n - lastSigned), damage };
}

/** Every log id the database knows: written, checkpointed, or published. */
export async function logIds(db: pg.Pool | pg.Client, prefix: string | undefined, published: PublishedCheckpoint[]): Promise<string[]> {
  const like = prefix === undefined ? '%' : `${prefix.replace(/[\\%_]/g, '\\$&')}%`;
  const { rows } = await db.query<{ log_id: string }>(
    `SELECT log_id FROM audit_logs WHERE log_id LIKE $1 UNION SELECT DISTINCT log_id FROM audit_checkpoints WHERE log_id LIKE $1`, [like]);
  const ids = new Set(rows.map((r) => r.log_id));
  for (const p of published) if (prefix === undefined || p.log_id.startsWith(prefix)) ids.add(p.log_id);
  return [...ids].sort();
}
