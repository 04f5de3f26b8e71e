import type pg from 'pg';
import { encode } from '../clock/codec.ts';
import type { Conflict } from './classify.ts';
import type { SyncBatchResult } from './sync-engine.ts';

/**
 * `sync_conflicts` (DESIGN §6), written in the batch's commit: a conflict an automatic
 * policy settled is stored resolved and converged; a `manual` one is stored open and
 * numbered into its record's state (`openConflict`); a later concurrent change of that
 * record updates its side; a converged resolution sets `converged_at`.
 */
export async function saveConflicts(client: pg.PoolClient, group: string, result: SyncBatchResult): Promise<void> {
  const fresh: Array<{ eventId: string; entity: string; keyText: string; c: Conflict }> = [];
  const updates: Array<{ entity: string; keyText: string; c: Conflict }> = [];
  const converged: number[] = [];
  for (const s of result.synced) {
    const d = s.decision;
    if (d.kind === 'concurrent' && d.conflict.updatesOpen) updates.push({ entity: s.event.entity, keyText: s.event.keyText, c: d.conflict });
    else if (d.kind === 'concurrent') fresh.push({ eventId: s.event.id, entity: s.event.entity, keyText: s.event.keyText, c: d.conflict });
    else if (d.kind === 'resolved') converged.push(d.command.conflictId);
    else if (s.event.resolve) converged.push(s.event.resolve.conflictId); // not open any more: nothing left to do
  }

  if (fresh.length > 0) {
    const cols = [
      'consumer_group', 'entity', 'record_key', 'local_node', 'local_version', 'local_value', 'local_hlc', 'local_deleted',
      'incoming_node', 'incoming_version', 'incoming_value', 'incoming_hlc', 'incoming_deleted', 'merged_version', 'strategy',
      'suggested_winner', 'winner_node', 'winner_value', 'winner_deleted', 'resolved_at', 'resolution_strategy', 'resolved_by', 'converged_at', 'event_id',
    ];
    // 24 parameters a conflict: 2,000 a statement stays under PostgreSQL's 65,535
    for (let from = 0; from < fresh.length; from += 2000) {
      const params: unknown[] = [];
      const tuples = fresh.slice(from, from + 2000).map(({ eventId, entity, keyText, c }) => {
        const b = params.length;
        const suggested = c.winner === 'incoming' ? c.incoming.node : c.winner === 'local' ? c.local.node : 'merged';
        const now = c.open ? null : new Date();
        params.push(
          group, entity, keyText, c.local.node, c.local.version ? encode(c.local.version) : null, json(c.local.value), c.local.hlc.toString(), c.local.deleted,
          c.incoming.node, encode(c.incoming.version), json(c.incoming.value), c.incoming.hlc.toString(), c.incoming.deleted, encode(c.merged), c.strategy,
          suggested, c.open ? null : suggested, c.open ? null : json(c.value), c.open ? null : c.value === null, now, c.open ? null : c.strategy, c.open ? null : 'worker', now, eventId,
        );
        return `(${cols.map((_, i) => `$${b + i + 1}`).join(', ')})`;
      });
      const { rows } = await client.query<{ id: string; event_id: string }>(
        `INSERT INTO sync_conflicts (${cols.join(', ')}) VALUES ${tuples.join(', ')} RETURNING id, event_id`, params);
      const ids = new Map(rows.map((r) => [r.event_id, Number(r.id)]));
      for (const f of fresh.slice(from, from + 2000)) {
        if (!f.c.open) continue;
        const state = result.states.get(f.entity)?.get(f.keyText);
        if (state) state.openConflict = ids.get(f.eventId)!;
      }
    }
  }

  for (const u of updates) {
    const id = result.states.get(u.entity)?.get(u.keyText)?.openConflict;
    if (id === undefined || id === null || id < 0) continue;
    const side = u.c.incoming;
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
      [id, side.node, json(side.value), encode(side.version), side.hlc.toString(), side.deleted, encode(u.c.merged)],
    );
  }

  if (converged.length > 0) {
    await client.query('UPDATE sync_conflicts SET converged_at = COALESCE(converged_at, now()) WHERE id = ANY($1)', [converged]);
  }
}

function json(v: unknown): string | null {
  return v === null || v === undefined ? null : JSON.stringify(v);
}
