import type { ChangeEvent, Row } from '../events/change-event.ts';
import { copyLine } from './copy-text.ts';

/** Columns written by COPY, in order. `executed_at` takes its default (commit-time now()). */
export const AUDIT_COPY_COLUMNS = [
  'log_id', 'seq', 'kind', 'event_id', 'entity', 'record_key', 'op', 'source_node',
  'source_position', 'source_ts', 'before', 'after', 'changed_columns', 'version', 'hlc', 'writes', 'actor',
] as const;

export const AUDIT_COPY_SQL = `COPY audit_log (${AUDIT_COPY_COLUMNS.join(', ')}) FROM STDIN`;

/** What a change caused at one node: the version written and what happened to it. */
export interface AuditWrite {
  node: string;
  op: 'upsert' | 'delete';
  version: string;
  outcome: 'applied' | 'already' | 'cas-skipped' | 'superseded';
}

const position = (ev: ChangeEvent) => JSON.stringify({ ...ev.position.source, topic: ev.position.topic, partition: ev.position.partition, offset: ev.position.offset });
const json = (v: unknown) => (v === null || v === undefined ? null : JSON.stringify(v));

/** One `change` leaf: one row per source change, listing the writes it caused (DESIGN §7). */
export function changeRowLine(logId: string, seq: number, ev: ChangeEvent, writes: AuditWrite[], version: Buffer | null, hlc: bigint | null): string {
  return copyLine([
    logId, seq, 'change', ev.id, ev.entity, json(ev.key), ev.op, ev.node, position(ev),
    new Date(ev.sourceTsMs).toISOString(), json(ev.before), json(ev.after), ev.changed, version, hlc, JSON.stringify(writes), null,
  ]);
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
export function conflictRowLine(logId: string, seq: number, ev: ChangeEvent, c: ConflictLeaf, writes: AuditWrite[]): string {
  return copyLine([
    logId, seq, 'conflict', ev.id, ev.entity, json(ev.key), ev.op, ev.node, position(ev),
    new Date(ev.sourceTsMs).toISOString(), json(c.localValue), json(c.incomingValue), null, c.merged, c.hlc,
    JSON.stringify({ strategy: c.strategy, winner: c.winner, localNode: c.localNode, writes }), 'policy',
  ]);
}

/** One `resolve` leaf: an operator's resolution of an open conflict, converged by the worker, with who resolved it. */
export function resolveRowLine(logId: string, seq: number, ev: ChangeEvent, r: { conflictId: number; strategy: string; by: string; value: Row | null }, writes: AuditWrite[], version: Buffer, hlc: bigint): string {
  return copyLine([
    logId, seq, 'resolve', ev.id, ev.entity, json(ev.key), r.value === null ? 'd' : 'u', ev.node, null,
    new Date(ev.sourceTsMs).toISOString(), null, json(r.value), null, version, hlc,
    JSON.stringify({ conflictId: r.conflictId, strategy: r.strategy, writes }), r.by,
  ]);
}
