import type pg from 'pg';
import { insertConflicts, markConverged, updateOpenSide, type NewConflict } from '../control/conflicts.ts';
import type { Conflict } from './classify.ts';
import type { SyncBatchResult } from './sync-engine.ts';

/**
 * What a batch's decisions mean for `sync_conflicts` (DESIGN §6), written in its commit
 * through src/control/conflicts.ts: a conflict an automatic policy settled is stored
 * resolved and converged; a `manual` one is stored open and numbered into its record's
 * state (`openConflict`); a later concurrent change of that record updates its side; a
 * converged resolution sets `converged_at`.
 */
export async function saveConflicts(client: pg.PoolClient, group: string, result: SyncBatchResult): Promise<void> {
  const fresh: NewConflict[] = [];
  const updates: Array<{ entity: string; keyText: string; c: Conflict }> = [];
  const converged: number[] = [];
  for (const s of result.synced) {
    const d = s.decision;
    if (d.kind === 'concurrent' && d.conflict.updatesOpen) {
      updates.push({ entity: s.event.entity, keyText: s.event.keyText, c: d.conflict });
    } else if (d.kind === 'concurrent') {
      const c = d.conflict;
      fresh.push({
        eventId: s.event.id, entity: s.event.entity, keyText: s.event.keyText, strategy: c.strategy,
        suggestedWinner: c.winner === 'incoming' ? c.incoming.node : c.winner === 'local' ? c.local.node : 'merged',
        local: c.local, incoming: c.incoming, merged: c.merged, settled: c.open ? null : { value: c.value },
      });
    } else if (d.kind === 'resolved') {
      converged.push(d.command.conflictId);
    } else if (s.event.resolve) {
      converged.push(s.event.resolve.conflictId); // not open any more: nothing left to do
    }
  }
  if (fresh.length > 0) {
    const ids = await insertConflicts(client, group, fresh);
    for (const f of fresh) {
      if (f.settled !== null) continue;
      const state = result.states.get(f.entity)?.get(f.keyText);
      if (state) state.openConflict = ids.get(f.eventId)!;
    }
  }
  // after the inserts: a record's conflict opened earlier in this batch has its id only now
  for (const u of updates) {
    const id = result.states.get(u.entity)?.get(u.keyText)?.openConflict;
    if (id !== undefined && id !== null && id >= 0) await updateOpenSide(client, id, u.c.incoming, u.c.merged);
  }
  await markConverged(client, converged);
}
