import type { ChangeEvent } from '../events/change-event.ts';
import { copyLine } from './copy-text.ts';

/** Columns written by COPY, in order. `executed_at` takes its default (commit-time now()). */
export const AUDIT_COPY_COLUMNS = [
  'log_id', 'seq', 'kind', 'event_id', 'entity', 'record_key', 'op', 'source_node',
  'source_position', 'source_ts', 'before', 'after', 'changed_columns', 'version', 'writes',
] as const;

export const AUDIT_COPY_SQL = `COPY audit_log (${AUDIT_COPY_COLUMNS.join(', ')}) FROM STDIN`;

/** What a change caused at one target node (filled in by the sync stage; empty until then). */
export interface AuditWrite {
  node: string;
  version: string | null;
  outcome: 'applied' | 'cas-skipped' | 'pending';
}

/** One `change` leaf as a COPY text line: one row per source change (DESIGN §7). */
export function changeRowLine(logId: string, seq: number, ev: ChangeEvent, writes: AuditWrite[]): string {
  return copyLine([
    logId,
    seq,
    'change',
    ev.id,
    ev.entity,
    ev.key === null ? null : JSON.stringify(ev.key),
    ev.op,
    ev.node,
    JSON.stringify({ ...ev.position.source, topic: ev.position.topic, partition: ev.position.partition, offset: ev.position.offset }),
    new Date(ev.sourceTsMs).toISOString(),
    ev.before === null ? null : JSON.stringify(ev.before),
    ev.after === null ? null : JSON.stringify(ev.after),
    ev.changed,
    ev.baseVersion,
    JSON.stringify(writes),
  ]);
}
