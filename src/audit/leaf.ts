import { stableJson } from '../events/debezium.ts';
import { leafHash, type Hash } from './merkle.ts';

/**
 * The canonical bytes of one audit_log row, the input of its RFC 6962 leaf hash
 * (DESIGN §7). Format 1, specified here and nowhere else:
 *
 *   UTF-8 of the JSON array
 *   [1, log_id, seq, kind, event_id, entity, record_key, op, source_node, source_position,
 *    source_ts, before, after, changed_columns, version, hlc, writes, actor, executed_at]
 *
 * written with object keys sorted at every depth and no whitespace (stableJson), where
 * - jsonb columns are their JSON values (numbers as JavaScript reads them back);
 * - timestamps are ISO-8601 UTC with milliseconds (`2026-11-30T12:00:00.000Z`);
 * - `version` is lower-case hex, `hlc` decimal digits, `seq` a number;
 * - an absent value is null.
 * The writer computes it from the values it writes, read back the way PostgreSQL returns
 * them; the verifier computes it from the row. Any edit of any column changes it.
 */
export const LEAF_FORMAT = 1;

export interface LeafFields {
  logId: string;
  seq: number;
  kind: string;
  eventId: string | null;
  entity: string | null;
  recordKey: unknown;
  op: string | null;
  sourceNode: string | null;
  sourcePosition: unknown;
  sourceTs: string | null;
  before: unknown;
  after: unknown;
  changedColumns: string[] | null;
  version: string | null;
  hlc: string | null;
  writes: unknown;
  actor: string | null;
  executedAt: string;
}

export function leafBytes(f: LeafFields): Buffer {
  return Buffer.from(stableJson([
    LEAF_FORMAT, f.logId, f.seq, f.kind, f.eventId, f.entity, f.recordKey ?? null, f.op, f.sourceNode, f.sourcePosition ?? null,
    f.sourceTs, f.before ?? null, f.after ?? null, f.changedColumns, f.version, f.hlc, f.writes ?? null, f.actor, f.executedAt,
  ]), 'utf8');
}

export function leafOf(f: LeafFields): Hash {
  return leafHash(leafBytes(f));
}

/** An audit_log row as node-postgres returns it. */
export interface AuditRow {
  log_id: string;
  seq: string | number;
  kind: string;
  event_id: string | null;
  entity: string | null;
  record_key: unknown;
  op: string | null;
  source_node: string | null;
  source_position: unknown;
  source_ts: Date | null;
  before: unknown;
  after: unknown;
  changed_columns: string[] | null;
  version: Buffer | null;
  hlc: string | null;
  writes: unknown;
  actor: string | null;
  executed_at: Date;
  leaf_hash: Buffer | null;
}

export const AUDIT_ROW_COLUMNS = 'log_id, seq, kind, event_id, entity, record_key, op, source_node, source_position, source_ts, before, after, changed_columns, version, hlc::text AS hlc, writes, actor, executed_at, leaf_hash';

export function fieldsOfRow(r: AuditRow): LeafFields {
  return {
    logId: r.log_id, seq: Number(r.seq), kind: r.kind, eventId: r.event_id, entity: r.entity, recordKey: r.record_key, op: r.op,
    sourceNode: r.source_node, sourcePosition: r.source_position, sourceTs: r.source_ts?.toISOString() ?? null, before: r.before, after: r.after,
    changedColumns: r.changed_columns, version: r.version?.toString('hex') ?? null, hlc: r.hlc, writes: r.writes, actor: r.actor,
    executedAt: r.executed_at.toISOString(),
  };
}
