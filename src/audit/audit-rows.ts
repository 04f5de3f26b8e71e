import type { ChangeEvent, Row } from '../events/change-event.ts';
import { copyLine } from './copy-text.ts';
import { leafOf } from './leaf.ts';

/** Columns written by COPY, in order; `leaf_hash` covers all the others (leaf.ts). */
export const AUDIT_COPY_COLUMNS = [
  'log_id', 'seq', 'kind', 'event_id', 'entity', 'record_key', 'op', 'source_node',
  'source_position', 'source_ts', 'before', 'after', 'changed_columns', 'version', 'hlc', 'writes', 'actor', 'executed_at', 'leaf_hash',
] as const;

export const AUDIT_COPY_SQL = `COPY audit_log (${AUDIT_COPY_COLUMNS.join(', ')}) FROM STDIN`;

/** One batch's audit rows: their common executed_at, and the leaf hashes in seq order. */
export interface LeafBatch {
  executedAt: string;
  leaves: Buffer[];
}

/** JSON text for a jsonb column, and the value PostgreSQL will give back for it. */
function jsonb(v: unknown): { text: string | null; value: unknown } {
  if (v === null || v === undefined) return { text: null, value: null };
  const text = JSON.stringify(v);
  return { text, value: JSON.parse(text) as unknown };
}

/** The COPY line of one row, with its leaf hash computed over what PostgreSQL will hold. */
function line(batch: LeafBatch, r: {
  logId: string; seq: number; kind: string; eventId: string | null; entity: string | null; recordKey: unknown; op: string | null; sourceNode: string | null;
  sourcePosition: unknown; sourceTs: string | null; before: unknown; after: unknown; changed: string[] | null; version: Buffer | null; hlc: bigint | null; writes: unknown; actor: string | null;
}): string {
  const key = jsonb(r.recordKey);
  const pos = jsonb(r.sourcePosition);
  const before = jsonb(r.before);
  const after = jsonb(r.after);
  const writes = jsonb(r.writes);
  const leaf = leafOf({
    logId: r.logId, seq: r.seq, kind: r.kind, eventId: r.eventId, entity: r.entity, recordKey: key.value, op: r.op, sourceNode: r.sourceNode,
    sourcePosition: pos.value, sourceTs: r.sourceTs, before: before.value, after: after.value, changedColumns: r.changed,
    version: r.version?.toString('hex') ?? null, hlc: r.hlc === null ? null : r.hlc.toString(), writes: writes.value, actor: r.actor, executedAt: batch.executedAt,
  });
  batch.leaves.push(leaf);
  return copyLine([
    r.logId, r.seq, r.kind, r.eventId, r.entity, key.text, r.op, r.sourceNode, pos.text, r.sourceTs, before.text, after.text,
    r.changed, r.version, r.hlc, writes.text, r.actor, batch.executedAt, leaf,
  ]);
}

/** What a change caused at one node: the version written and what happened to it. */
export interface AuditWrite {
  node: string;
  op: 'upsert' | 'delete';
  version: string;
  outcome: 'applied' | 'already' | 'cas-skipped' | 'superseded';
}

const position = (ev: ChangeEvent) => ({ ...ev.position.source, topic: ev.position.topic, partition: ev.position.partition, offset: ev.position.offset });
const sourceTs = (ev: ChangeEvent) => new Date(ev.sourceTsMs).toISOString();

/** One `change` leaf: one row per source change, listing the writes it caused (DESIGN §7). */
export function changeRowLine(batch: LeafBatch, logId: string, seq: number, ev: ChangeEvent, writes: AuditWrite[], version: Buffer | null, hlc: bigint | null): string {
  return line(batch, {
    logId, seq, kind: 'change', eventId: ev.id, entity: ev.entity, recordKey: ev.key, op: ev.op, sourceNode: ev.node, sourcePosition: position(ev),
    sourceTs: sourceTs(ev), before: ev.before, after: ev.after, changed: ev.changed, version, hlc, writes, actor: null,
  });
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
export function conflictRowLine(batch: LeafBatch, logId: string, seq: number, ev: ChangeEvent, c: ConflictLeaf, writes: AuditWrite[]): string {
  return line(batch, {
    logId, seq, kind: 'conflict', eventId: ev.id, entity: ev.entity, recordKey: ev.key, op: ev.op, sourceNode: ev.node, sourcePosition: position(ev),
    sourceTs: sourceTs(ev), before: c.localValue, after: c.incomingValue, changed: null, version: c.merged, hlc: c.hlc,
    writes: { strategy: c.strategy, winner: c.winner, localNode: c.localNode, writes }, actor: 'policy',
  });
}

/** One `resolve` leaf: an operator's resolution of an open conflict, converged by the worker, with who resolved it. */
export function resolveRowLine(batch: LeafBatch, logId: string, seq: number, ev: ChangeEvent, r: { conflictId: number; strategy: string; by: string; value: Row | null }, writes: AuditWrite[], version: Buffer, hlc: bigint): string {
  return line(batch, {
    logId, seq, kind: 'resolve', eventId: ev.id, entity: ev.entity, recordKey: ev.key, op: r.value === null ? 'd' : 'u', sourceNode: ev.node, sourcePosition: null,
    sourceTs: sourceTs(ev), before: null, after: r.value, changed: null, version, hlc, writes: { conflictId: r.conflictId, strategy: r.strategy, writes }, actor: r.by,
  });
}
