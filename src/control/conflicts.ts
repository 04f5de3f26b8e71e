import type pg from 'pg';
import { encode } from '../clock/codec.ts';
import type { VersionVector } from '../clock/version-vector.ts';
import type { Row } from '../events/change-event.ts';

/**
 * `sync_conflicts` (DESIGN §6): every statement on it is here. The sync commit stores what
 * a batch detected and converged; the control loop claims resolved conflicts to converge
 * and reads the gauges; the HTTP API lists and resolves; prune archives and deletes; the
 * compliance report counts.
 */

/** A conflict row as the API and the control loop read it. */
export interface StoredConflict {
  id: string; entity: string; record_key: string; strategy: string; suggested_winner: string | null; winner_node: string | null; winner_value: Row | null;
  winner_deleted: boolean | null;
  local_node: string | null; local_value: Row | null; local_deleted: boolean; local_hlc: string | null; local_version: Buffer | null;
  incoming_node: string; incoming_value: Row | null; incoming_deleted: boolean; incoming_hlc: string | null; incoming_version: Buffer | null;
  merged_version: Buffer | null; detected_at: Date; resolved_at: Date | null; resolution_strategy: string | null; resolved_by: string | null; converged_at: Date | null;
}

const COLUMNS = `id, entity, record_key, strategy, suggested_winner, winner_node, winner_value, winner_deleted, local_node, local_value, local_deleted, local_hlc, local_version,
  incoming_node, incoming_value, incoming_deleted, incoming_hlc, incoming_version, merged_version, detected_at, resolved_at, resolution_strategy, resolved_by, converged_at`;

export interface ConflictSide<N extends string | null = string | null> { node: N; version: VersionVector | null; value: Row | null; hlc: bigint; deleted: boolean }

/** A conflict a batch detected. `settled`: the policy resolved it at once (the value written everywhere); null: it stays open (manual). */
export interface NewConflict {
  eventId: string; entity: string; keyText: string; strategy: string; suggestedWinner: string | null;
  local: ConflictSide; incoming: ConflictSide<string> & { version: VersionVector }; merged: VersionVector;
  settled: { value: Row | null } | null;
}

const NEW_COLUMNS = [
  'consumer_group', 'entity', 'record_key', 'local_node', 'local_version', 'local_value', 'local_hlc', 'local_deleted',
  'incoming_node', 'incoming_version', 'incoming_value', 'incoming_hlc', 'incoming_deleted', 'merged_version', 'strategy',
  'suggested_winner', 'winner_node', 'winner_value', 'winner_deleted', 'resolved_at', 'resolution_strategy', 'resolved_by', 'converged_at', 'event_id',
];

/** Stores a batch's new conflicts (in its commit); returns the id of each by its event id. */
export async function insertConflicts(client: pg.ClientBase, group: string, fresh: NewConflict[]): Promise<Map<string, number>> {
  const ids = new Map<string, number>();
  // 24 parameters a conflict: 2,000 a statement stays under PostgreSQL's 65,535
  for (let from = 0; from < fresh.length; from += 2000) {
    const params: unknown[] = [];
    const tuples = fresh.slice(from, from + 2000).map((c) => {
      const b = params.length;
      const s = c.settled;
      const now = s === null ? null : new Date();
      params.push(
        group, c.entity, c.keyText, c.local.node, c.local.version ? encode(c.local.version) : null, json(c.local.value), c.local.hlc.toString(), c.local.deleted,
        c.incoming.node, encode(c.incoming.version), json(c.incoming.value), c.incoming.hlc.toString(), c.incoming.deleted, encode(c.merged), c.strategy,
        c.suggestedWinner, s === null ? null : c.suggestedWinner, s === null ? null : json(s.value), s === null ? null : s.value === null, now, s === null ? null : c.strategy,
        s === null ? null : 'worker', now, c.eventId,
      );
      return `(${NEW_COLUMNS.map((_, i) => `$${b + i + 1}`).join(', ')})`;
    });
    const { rows } = await client.query<{ id: string; event_id: string }>(
      `INSERT INTO sync_conflicts (${NEW_COLUMNS.join(', ')}) VALUES ${tuples.join(', ')} RETURNING id, event_id`, params);
    for (const r of rows) ids.set(r.event_id, Number(r.id));
  }
  return ids;
}

/** A further concurrent change of a record with an open conflict: it replaces that node's side. */
export async function updateOpenSide(client: pg.ClientBase, id: number, side: ConflictSide<string> & { version: VersionVector }, merged: VersionVector): Promise<void> {
  await client.query(
    `UPDATE sync_conflicts SET
       local_value      = CASE WHEN local_node = $2 THEN $3::jsonb ELSE local_value END,
       local_version    = CASE WHEN local_node = $2 THEN $4 ELSE local_version END,
       local_hlc        = CASE WHEN local_node = $2 THEN $5 ELSE local_hlc END,
       local_deleted    = CASE WHEN local_node = $2 THEN $6 ELSE local_deleted END,
       incoming_value   = CASE WHEN local_node = $2 THEN incoming_value ELSE $3::jsonb END,
       incoming_version = CASE WHEN local_node = $2 THEN incoming_version ELSE $4 END,
       incoming_hlc     = CASE WHEN local_node = $2 THEN incoming_hlc ELSE $5 END,
       incoming_deleted = CASE WHEN local_node = $2 THEN incoming_deleted ELSE $6 END,
       incoming_node    = CASE WHEN local_node = $2 THEN incoming_node ELSE $2 END,
       merged_version   = $7
     WHERE id = $1 AND resolved_at IS NULL`,
    [id, side.node, json(side.value), encode(side.version), side.hlc.toString(), side.deleted, encode(merged)],
  );
}

/** Resolutions whose convergence the batch applied (or found already done). */
export async function markConverged(client: pg.ClientBase, ids: number[]): Promise<void> {
  if (ids.length > 0) await client.query('UPDATE sync_conflicts SET converged_at = COALESCE(converged_at, now()) WHERE id = ANY($1)', [ids]);
}

/** Up to 500 resolved conflicts not yet converged (and not claimed in the last 30 s), claimed for this replica to converge. */
export async function claimForConvergence(db: pg.Pool, group: string): Promise<StoredConflict[]> {
  const { rows } = await db.query<StoredConflict>(
    `UPDATE sync_conflicts SET converge_requested_at = now()
     WHERE id IN (SELECT id FROM sync_conflicts
                  WHERE consumer_group = $1 AND resolved_at IS NOT NULL AND converged_at IS NULL
                    AND (converge_requested_at IS NULL OR converge_requested_at < now() - interval '30 seconds')
                  ORDER BY id LIMIT 500 FOR UPDATE SKIP LOCKED)
     RETURNING ${COLUMNS}`,
    [group],
  );
  return rows;
}

/** Open conflicts, and those of the last 24 h in all and settled by one of `autoStrategies`. */
export async function conflictCounts(db: pg.Pool, group: string, autoStrategies: string[]): Promise<{ open: number; total: number; auto: number }> {
  const { rows } = await db.query<{ open: string; total: string; auto: string }>(
    `SELECT
       (SELECT count(*) FROM sync_conflicts WHERE consumer_group = $1 AND resolved_at IS NULL) AS open,
       (SELECT count(*) FROM sync_conflicts WHERE consumer_group = $1 AND detected_at > now() - interval '24 hours') AS total,
       (SELECT count(*) FROM sync_conflicts WHERE consumer_group = $1 AND detected_at > now() - interval '24 hours' AND resolution_strategy = ANY($2)) AS auto`,
    [group, autoStrategies],
  );
  const r = rows[0]!;
  return { open: Number(r.open), total: Number(r.total), auto: Number(r.auto) };
}

/** A page of the group's conflicts after id `after`, oldest first (one more than `limit`, to tell whether a next page exists). */
export async function listConflicts(db: pg.Pool, group: string, q: { after: string; status: string; entity: string | null; node: string | null; limit: number }): Promise<StoredConflict[]> {
  const { rows } = await db.query<StoredConflict>(
    `SELECT ${COLUMNS} FROM sync_conflicts
     WHERE consumer_group = $1 AND id > $2
       AND ($3 = 'all' OR ($3 = 'open') = (resolved_at IS NULL))
       AND ($4::text IS NULL OR entity = $4) AND ($5::text IS NULL OR local_node = $5 OR incoming_node = $5)
     ORDER BY id LIMIT $6`,
    [group, q.after, q.status, q.entity, q.node, q.limit + 1],
  );
  return rows;
}

export async function getConflict(db: pg.Pool, group: string, id: string): Promise<StoredConflict | undefined> {
  const { rows } = await db.query<StoredConflict>(`SELECT ${COLUMNS} FROM sync_conflicts WHERE consumer_group = $1 AND id = $2`, [group, id]);
  return rows[0];
}

/** An operator's resolution of one open conflict; false when it was resolved meanwhile. */
export async function resolveConflict(db: pg.Pool, group: string, id: string, r: { strategy: string; by: string; winnerNode: string | null; winnerValue: Row | null; deleted: boolean }): Promise<boolean> {
  const res = await db.query(
    `UPDATE sync_conflicts SET resolved_at = now(), resolution_strategy = $3, resolved_by = $4, winner_node = $5, winner_value = $6, winner_deleted = $7
     WHERE consumer_group = $1 AND id = $2 AND resolved_at IS NULL`,
    [group, id, r.strategy, r.by, r.winnerNode, r.winnerValue === null ? null : JSON.stringify(r.winnerValue), r.deleted],
  );
  return (res.rowCount ?? 0) > 0;
}

/** Resolves up to `limit` open conflicts (of one entity, or all) to their suggested winner; returns their ids. */
export async function resolveToSuggested(db: pg.Pool, group: string, entity: string | null, by: string, limit: number): Promise<number[]> {
  const { rows } = await db.query<{ id: string }>(
    `UPDATE sync_conflicts SET resolved_at = now(), resolution_strategy = 'auto', resolved_by = $3, winner_node = suggested_winner
     WHERE id IN (SELECT id FROM sync_conflicts WHERE consumer_group = $1 AND resolved_at IS NULL AND ($2::text IS NULL OR entity = $2) ORDER BY id LIMIT $4 FOR UPDATE SKIP LOCKED)
     RETURNING id`,
    [group, entity, by, limit],
  );
  return rows.map((r) => Number(r.id));
}

/** Converged conflicts resolved before `before`: what prune may archive and delete. */
export async function prunableConflicts(db: pg.ClientBase, group: string, before: Date): Promise<number[]> {
  const { rows } = await db.query<{ id: string }>(
    `SELECT id FROM sync_conflicts WHERE consumer_group = $1 AND resolved_at < $2 AND converged_at IS NOT NULL ORDER BY id`, [group, before]);
  return rows.map((r) => Number(r.id));
}

/** The rows of `ids` as JSON text, in id order, for the archive. */
export async function conflictsAsJson(db: pg.ClientBase, ids: number[]): Promise<string[]> {
  const { rows } = await db.query<{ j: string }>('SELECT row_to_json(c)::text AS j FROM sync_conflicts c WHERE id = ANY($1::bigint[]) ORDER BY id', [ids]);
  return rows.map((r) => r.j);
}

export async function deleteConflicts(client: pg.ClientBase, ids: number[]): Promise<void> {
  if (ids.length > 0) await client.query('DELETE FROM sync_conflicts WHERE id = ANY($1::bigint[])', [ids]);
}

/** The compliance report's counts: conflicts detected in [from, to) by entity, strategy, resolution and state. */
export async function conflictsByResolution<T>(db: pg.ClientBase | pg.Pool, group: string, from: Date | string, to: Date | string): Promise<T[]> {
  const { rows } = await db.query(
    `SELECT entity, strategy, COALESCE(resolution_strategy, CASE WHEN resolved_at IS NULL THEN 'open' ELSE strategy END) AS resolution, resolved_by,
            CASE WHEN resolved_at IS NULL THEN 'open' WHEN converged_at IS NULL THEN 'resolved, converging' ELSE 'converged' END AS state, count(*)::int AS count
     FROM sync_conflicts WHERE consumer_group = $1 AND detected_at >= $2 AND detected_at < $3
     GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5`, [group, from, to]);
  return rows as T[];
}

/** Up to 100 conflicts still open that were detected before `to`. */
export async function openConflictsBefore(db: pg.ClientBase | pg.Pool, group: string, to: Date | string): Promise<Array<{ id: string; entity: string; record_key: string; detected_at: Date }>> {
  const { rows } = await db.query<{ id: string; entity: string; record_key: string; detected_at: Date }>(
    `SELECT id, entity, record_key, detected_at FROM sync_conflicts WHERE consumer_group = $1 AND resolved_at IS NULL AND detected_at < $2 ORDER BY id LIMIT 100`, [group, to]);
  return rows;
}

/** Converged conflicts resolved more than `days` ago: due for prune. */
export async function conflictsDue(db: pg.ClientBase | pg.Pool, group: string, days: number): Promise<number> {
  const { rows } = await db.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM sync_conflicts WHERE consumer_group = $1 AND converged_at IS NOT NULL AND resolved_at < now() - make_interval(days => $2)`,
    [group, days]);
  return rows[0]!.n;
}

function json(v: unknown): string | null {
  return v === null || v === undefined ? null : JSON.stringify(v);
}
