import type pg from 'pg';
import { AuditWriter } from './audit-writer.ts';
import { insertAuditRows } from './audit-rows.ts';
import type { SigningKey } from './signing.ts';

/**
 * The admin log of a deployment (`<group>:admin`): operators' actions on the audit trail
 * itself, such as a prune, each an `admin` leaf signed like any other. It sits beside the
 * lanes' logs (`<group>:<topic>/<partition>`), so `audit verify --group` checks it and the
 * running worker publishes its checkpoints with the rest. A command that writes it claims
 * it (a new epoch), appends in the caller's transaction and signs a checkpoint at once.
 */
export const adminLogId = (group: string): string => `${group}:admin`;

export interface AdminAction {
  op: string;
  actor: string;
  /** unique per action, e.g. `prune/<archive name>` */
  eventId: string;
  details: Record<string, unknown>;
}

export class AdminLog {
  private readonly writer: AuditWriter;
  private readonly logId: string;
  private epoch = -1;

  constructor(key: SigningKey, group: string) {
    this.writer = new AuditWriter(key, { leaves: 1, ms: 0 }); // every append is signed
    this.logId = adminLogId(group);
  }

  async claim(db: pg.Pool | pg.Client, owner: string): Promise<void> {
    this.epoch = await this.writer.claim(db, this.logId, owner);
  }

  /** Appends the action in the caller's transaction (fenced by the epoch claimed) and signs it. Returns its seq. */
  async append(client: pg.ClientBase, a: AdminAction): Promise<number> {
    const { rows } = await client.query<{ tree_size: string }>('SELECT tree_size FROM audit_logs WHERE log_id = $1', [this.logId]);
    const last = Number(rows[0]?.tree_size ?? 0);
    const leaves = await insertAuditRows(client, [{
      log_id: this.logId, seq: last + 1, kind: 'admin', event_id: a.eventId, entity: null, record_key: null, op: a.op, source_node: null,
      source_position: null, source_ts: null, before: null, after: null, changed_columns: null, version: null, hlc: null,
      writes: a.details, actor: a.actor, executed_at: new Date().toISOString(),
    }]);
    await this.writer.append(client, this.logId, this.epoch, last, leaves);
    return last + 1;
  }
}

/** A prune as its admin leaf records it, per log. */
export interface PrunedLog {
  log_id: string;
  from_seq: number;
  to_seq: number;
  root: string;
}

/** A regular expression matching exactly one group's log ids (`<group>:<topic>/<partition>`, `<group>:admin`): a group name may hold ':', a topic name may not. */
export const groupLogRegex = (group: string): string => `^${group.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:[^:]+$`;

/**
 * How far each log of a group was pruned, from the prune records of the group's admin log
 * at or below `trustedThrough`: the admin log's seq its verified checkpoints cover (see
 * verifyLogs). Rows above it, unsigned or forged, are not honoured.
 */
export async function prunedThrough(db: pg.ClientBase | pg.Pool, group: string, trustedThrough: number): Promise<Map<string, number>> {
  const { rows } = await db.query<{ log_id: string; to_seq: string }>(
    `SELECT l->>'log_id' AS log_id, max((l->>'to_seq')::bigint) AS to_seq
     FROM audit_log a, json_array_elements(a.writes->'logs') AS l
     WHERE a.log_id = $1 AND a.seq <= $2 AND a.kind = 'admin' AND a.op = 'prune'
     GROUP BY 1`,
    [adminLogId(group), trustedThrough]);
  return new Map(rows.map((r) => [r.log_id, Number(r.to_seq)]));
}
