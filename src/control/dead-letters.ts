import type pg from 'pg';
import type { DeadLetterRecord } from '../events/change-codec.ts';
import { textArray } from '../pg-binary.ts';

/**
 * `sync_dead_letters` and `sync_staged_payloads` (DESIGN §8): every statement on them is
 * here. The sync stage inserts a batch's dead letters in its commit and asks which keys
 * are parked; ingest stages payloads too large for the changes topic; `dlq list` and
 * `dlq replay` read them and move their status; the compliance report counts them.
 */

export type DeadLetterStatus = 'open' | 'replaying' | 'replayed';

/** A stored dead letter, as `dlq` reads it. */
export interface DeadLetterRow {
  id: string;
  created_at: Date;
  reason: string;
  error: string;
  topic: string;
  partition: number;
  offset: string;
  entity: string | null;
  record_key: string | null;
  source_node: string | null;
  status: DeadLetterStatus;
  payload: Buffer | null;
  payload_kind: 'debezium' | 'change';
}

/** Dead letters per INSERT: 11 parameters each stays under PostgreSQL's 65,535 bind parameters. */
const LETTERS_PER_STATEMENT = 5000;

export async function insertDeadLetters(client: pg.PoolClient, group: string, dls: DeadLetterRecord[]): Promise<string[]> {
  const ids: string[] = [];
  for (let from = 0; from < dls.length; from += LETTERS_PER_STATEMENT) {
    const part = dls.slice(from, from + LETTERS_PER_STATEMENT);
    const params: unknown[] = [];
    const tuples: string[] = [];
    for (const d of part) {
      const b = params.length;
      tuples.push(`(${Array.from({ length: 11 }, (_, i) => `$${b + i + 1}`).join(', ')})`);
      params.push(d.reason, d.error, d.topic, d.partition, d.offset, d.entity, d.node, d.recordKey, d.payload === null ? null : Buffer.from(d.payload, 'base64'), d.payloadKind, group);
    }
    const { rows } = await client.query<{ id: string }>(
      `INSERT INTO sync_dead_letters (reason, error, topic, partition, "offset", entity, source_node, record_key, payload, payload_kind, consumer_group) VALUES ${tuples.join(', ')} RETURNING id`,
      params,
    );
    for (const r of rows) ids.push(r.id);
  }
  // Payloads too large for the changes topic wait in sync_staged_payloads: they are copied
  // into their dead letters in this same transaction. The staged row stays a day, so a
  // letter routed twice (ingest re-routes a batch after a crash) finds its payload too.
  const staged = ids.filter((_, i) => dls[i]!.payloadStaged === true);
  if (staged.length > 0) {
    await client.query(
      `UPDATE sync_dead_letters d SET payload = s.payload FROM sync_staged_payloads s
       WHERE d.id = ANY($1::bigint[]) AND s.consumer_group = d.consumer_group AND s.topic = d.topic AND s.partition = d.partition AND s."offset" = d."offset"`,
      [staged],
    );
    await client.query(`DELETE FROM sync_staged_payloads WHERE consumer_group = $1 AND staged_at < now() - interval '1 day'`, [group]);
  }
  return ids;
}

/**
 * Of the records `records` (entity and canonical key text, each once), those an open dead
 * letter parks, as `entity\u0000key`. Each record is one probe of the parked index, by both
 * its columns, whatever the statistics say (the LIMIT keeps the lookup from being
 * flattened into a join, as in STATE_LOAD_SQL). Looked up by the key alone, the index was
 * read whole, and each batch took longer the more letters were open: 9-13 ms a call with
 * 7,700 open (bench/RESULTS.md, issue 13).
 */
export async function parkedKeys(db: pg.Pool | pg.PoolClient, group: string, records: Array<{ entity: string; keyText: string }>): Promise<Set<string>> {
  const { rows } = await db.query<{ entity: string; record_key: string }>(
    `SELECT k.entity, k.record_key FROM unnest($2::text[], $3::text[]) AS k(entity, record_key)
       CROSS JOIN LATERAL (SELECT 1 FROM sync_dead_letters d
         WHERE d.entity = k.entity AND d.record_key = k.record_key AND d.status = 'open' AND d.consumer_group = $1 LIMIT 1) AS parked`,
    [group, textArray(records.map((r) => r.entity)), textArray(records.map((r) => r.keyText))],
  );
  return new Set(rows.map((r) => `${r.entity}\u0000${r.record_key}`));
}

/** Keeps payloads too large for the changes topic until their dead letter's commit takes them (idempotent). */
export async function stagePayloads(db: pg.Pool, group: string, staged: Array<{ topic: string; partition: number; offset: number; payload: Buffer }>): Promise<void> {
  await db.query(
    `INSERT INTO sync_staged_payloads (consumer_group, topic, partition, "offset", payload)
     SELECT $1, * FROM unnest($2::text[], $3::int[], $4::bigint[], $5::bytea[])
     ON CONFLICT DO NOTHING`,
    [group, staged.map((s) => s.topic), staged.map((s) => s.partition), staged.map((s) => s.offset), staged.map((s) => s.payload)],
  );
}

/** The group's dead letters of one status (or all), oldest first, without payloads. */
export async function listDeadLetters(db: pg.ClientBase, group: string, status: DeadLetterStatus | 'all', limit: number): Promise<Omit<DeadLetterRow, 'payload'>[]> {
  const { rows } = await db.query<Omit<DeadLetterRow, 'payload'>>(
    `SELECT id, created_at, reason, error, topic, partition, "offset", entity, record_key, source_node, status, payload_kind
     FROM sync_dead_letters WHERE consumer_group = $1 AND ($2 = 'all' OR status = $2) ORDER BY id LIMIT $3`,
    [group, status, limit],
  );
  return rows;
}

/**
 * What `dlq replay` considers: the selected open dead letters (all, or those of `ids`) and
 * every open one of the same records, oldest first, each marked whether it was selected.
 * A record's dead letters are re-driven together and in order, or not at all.
 */
export async function replayCandidates(db: pg.ClientBase, group: string, all: boolean, ids: number[]): Promise<Array<DeadLetterRow & { selected: boolean }>> {
  const { rows } = await db.query<DeadLetterRow & { selected: boolean }>(
    `WITH sel AS (SELECT id, entity, record_key FROM sync_dead_letters WHERE consumer_group = $1 AND status = 'open' AND ($2 OR id = ANY($3)))
     SELECT d.id, d.created_at, d.reason, d.error, d.topic, d.partition, d."offset", d.entity, d.record_key, d.source_node, d.payload, d.payload_kind, d.status,
            d.id IN (SELECT id FROM sel) AS selected
     FROM sync_dead_letters d
     WHERE d.consumer_group = $1 AND d.status = 'open'
       AND (d.id IN (SELECT id FROM sel) OR EXISTS (SELECT 1 FROM sel s WHERE s.entity = d.entity AND s.record_key = d.record_key))
     ORDER BY d.id`,
    [group, all, ids],
  );
  return rows;
}

/**
 * Moves dead letters along `dlq replay`'s path: 'replaying' releases their park, so the
 * re-driven changes are not parked again; 'replayed' once they are on the changes topic;
 * back to 'open' (only those still replaying) when the replay failed.
 */
export async function setDeadLetterStatus(db: pg.ClientBase, ids: Array<string | number>, to: DeadLetterStatus): Promise<void> {
  if (to === 'replayed') await db.query(`UPDATE sync_dead_letters SET status = 'replayed', replayed_at = now() WHERE id = ANY($1)`, [ids]);
  else if (to === 'open') await db.query(`UPDATE sync_dead_letters SET status = 'open' WHERE id = ANY($1) AND status = 'replaying'`, [ids]);
  else await db.query(`UPDATE sync_dead_letters SET status = 'replaying' WHERE id = ANY($1)`, [ids]);
}

/** The group's dead letters created in [from, to), counted by reason and status (the compliance report). */
export async function deadLetterCounts(db: pg.ClientBase | pg.Pool, group: string, from: Date | string, to: Date | string): Promise<Array<{ reason: string; status: string; count: number }>> {
  const { rows } = await db.query<{ reason: string; status: string; count: number }>(
    `SELECT reason, status, count(*)::int AS count FROM sync_dead_letters WHERE consumer_group = $1 AND created_at >= $2 AND created_at < $3 GROUP BY 1, 2 ORDER BY 1, 2`,
    [group, from, to]);
  return rows;
}
