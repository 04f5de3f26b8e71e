import type pg from 'pg';
import type { ChangeEvent, Row } from '../events/change-event.ts';
import pgCopy from 'pg-copy-streams';
import { copyLine } from '../sinks/copy-text.ts';
import { hashTexts, pgTimestampText } from './leaf.ts';

/** One audit_log row as the writer supplies it; the hashes are computed from it (leaf.ts). */
export interface AuditRowInput {
  log_id: string;
  seq: number;
  kind: 'change' | 'conflict' | 'resolve' | 'admin';
  event_id: string | null;
  entity: string | null;
  record_key: unknown;
  op: string | null;
  source_node: string | null;
  source_position: unknown;
  source_ts: string | null;
  before: unknown;
  after: unknown;
  changed_columns: string[] | null;
  /** hex */
  version: string | null;
  /** decimal: an HLC does not fit a JSON number */
  hlc: string | null;
  writes: unknown;
  actor: string | null;
  executed_at: string;
}

export const AUDIT_COPY_COLUMNS = [
  'log_id', 'seq', 'kind', 'event_id', 'entity', 'record_key', 'op', 'source_node', 'source_position', 'source_ts',
  'before', 'after', 'changed_columns', 'version', 'hlc', 'writes', 'actor', 'executed_at', 'payload_hash', 'leaf_hash',
] as const;

const COPY_SQL = `COPY audit_log (${AUDIT_COPY_COLUMNS.join(', ')}) FROM STDIN`;

const json = (v: unknown): string | null => (v === null || v === undefined ? null : JSON.stringify(v));

/**
 * One batch's audit rows as COPY text, and their leaf hashes in seq order. The hashes are
 * computed from exactly the texts written: the JSON columns are `json`, which keeps them
 * byte for byte, and timestamps are written in the form PostgreSQL prints (leaf.ts).
 */
export function encodeAuditRows(rows: AuditRowInput[]): { text: string; leaves: Buffer[] } {
  let text = '';
  const leaves: Buffer[] = [];
  let at = '';
  let atText = '';
  for (const r of rows) {
    if (r.executed_at !== at) { // one per batch, in practice
      at = r.executed_at;
      atText = pgTimestampText(at);
    }
    const key = json(r.record_key);
    const pos = json(r.source_position);
    const changed = json(r.changed_columns);
    const sourceTs = r.source_ts === null ? null : pgTimestampText(r.source_ts);
    const before = json(r.before);
    const after = json(r.after);
    const writes = json(r.writes);
    const h = hashTexts(
      [r.log_id, String(r.seq), r.kind, r.event_id, r.entity, key, r.op, r.source_node, pos, sourceTs, changed, r.version, r.hlc, r.actor, atText],
      [before, after, writes]);
    leaves.push(h.leaf);
    text += copyLine([
      r.log_id, r.seq, r.kind, r.event_id, r.entity, key, r.op, r.source_node, pos, sourceTs, before, after, changed,
      r.version === null ? null : Buffer.from(r.version, 'hex'), r.hlc, writes, r.actor, atText, h.payload, h.leaf,
    ]);
  }
  return { text, leaves };
}

/** Writes one batch's audit rows by COPY, inside the batch's transaction; returns their leaf hashes in seq order. */
export async function insertAuditRows(client: pg.ClientBase, rows: AuditRowInput[]): Promise<Buffer[]> {
  if (rows.length === 0) return [];
  const { text, leaves } = encodeAuditRows(rows);
  await new Promise<void>((resolve, reject) => {
    const stream = client.query(pgCopy.from(COPY_SQL));
    stream.on('error', reject);
    stream.on('finish', () => resolve());
    stream.end(text);
  });
  return leaves;
}

const position = (ev: ChangeEvent) => ({ ...ev.position.source, topic: ev.position.topic, partition: ev.position.partition, offset: ev.position.offset });
const sourceTs = (ev: ChangeEvent) => new Date(ev.sourceTsMs).toISOString();
const hex = (b: Buffer | null) => b?.toString('hex') ?? null;
const dec = (n: bigint | null) => (n === null ? null : n.toString());

/** What a change caused at one node: the version written and what happened to it. */
export interface AuditWrite {
  node: string;
  op: 'upsert' | 'delete';
  version: string;
  outcome: 'applied' | 'already' | 'cas-skipped' | 'superseded';
}

/** One `change` leaf: one row per source change, listing the writes it caused (DESIGN §7). */
export function changeRow(executedAt: string, logId: string, seq: number, ev: ChangeEvent, writes: AuditWrite[], version: Buffer | null, hlc: bigint | null): AuditRowInput {
  return {
    log_id: logId, seq, kind: 'change', event_id: ev.id, entity: ev.entity, record_key: ev.key, op: ev.op, source_node: ev.node, source_position: position(ev),
    source_ts: sourceTs(ev), before: ev.before, after: ev.after, changed_columns: ev.changed, version: hex(version), hlc: dec(hlc), writes, actor: null, executed_at: executedAt,
  };
}

export interface ConflictLeaf {
  localNode: string | null;
  localValue: Row | null;
  incomingValue: Row | null;
  winner: 'local' | 'incoming' | 'merged';
  strategy: string;
  merged: Buffer;
  hlc: bigint;
}

/** One `conflict` leaf: both sides, the policy, the winner and the writes of the resolution. */
export function conflictRow(executedAt: string, logId: string, seq: number, ev: ChangeEvent, c: ConflictLeaf, writes: AuditWrite[]): AuditRowInput {
  return {
    log_id: logId, seq, kind: 'conflict', event_id: ev.id, entity: ev.entity, record_key: ev.key, op: ev.op, source_node: ev.node, source_position: position(ev),
    source_ts: sourceTs(ev), before: c.localValue, after: c.incomingValue, changed_columns: null, version: hex(c.merged), hlc: dec(c.hlc),
    writes: { strategy: c.strategy, winner: c.winner, localNode: c.localNode, writes }, actor: 'policy', executed_at: executedAt,
  };
}

/** One `resolve` leaf: an operator's resolution of an open conflict, converged by the worker, with who resolved it. */
export function resolveRow(executedAt: string, logId: string, seq: number, ev: ChangeEvent, r: { conflictId: number; strategy: string; by: string; value: Row | null }, writes: AuditWrite[], version: Buffer, hlc: bigint): AuditRowInput {
  return {
    log_id: logId, seq, kind: 'resolve', event_id: ev.id, entity: ev.entity, record_key: ev.key, op: r.value === null ? 'd' : 'u', source_node: ev.node, source_position: null,
    source_ts: sourceTs(ev), before: null, after: r.value, changed_columns: null, version: hex(version), hlc: dec(hlc),
    writes: { conflictId: r.conflictId, strategy: r.strategy, writes }, actor: r.by, executed_at: executedAt,
  };
}
