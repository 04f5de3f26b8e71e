import type pg from 'pg';
import type { Topology } from '../config/topology.ts';
import type { ChangeEvent, Row } from '../events/change-event.ts';
import { encodeChange, routingKey } from '../events/change-codec.ts';
import type { OutMessage } from '../kafka/producer.ts';
import type { Metrics } from '../metrics.ts';
import type { Logger } from '../log.ts';
import { errorMessage } from '../errors.ts';
import { readPaused, type PauseGate } from '../control/pause.ts';
import { claimForConvergence, conflictCounts, type StoredConflict } from '../control/conflicts.ts';

/** The strategies a policy settles by itself; anything else in resolution_strategy was an operator's. */
export const AUTO_STRATEGIES = ['lww', 'priority', 'merge'];

/**
 * The control loop of one worker (DESIGN §6 manual, §8 pause):
 * - follows the deployment's pause flag in sync_control;
 * - finds conflicts an operator resolved (API or the runbook's UPDATE) that are not yet
 *   converged, claims them (FOR UPDATE SKIP LOCKED, so one replica does each), and sends
 *   each as a resolve command through the changes topic to its record's lane, which
 *   writes the winner everywhere, audits it and sets converged_at; a claim not converged
 *   within 30 s is retried;
 * - refreshes sync_conflicts_open, conflict_rate and the auto-resolved ratio.
 */
export class ConflictService {
  private timer: NodeJS.Timeout | undefined;
  private running = false;
  private ticks = 0;
  private readonly o: {
    pool: pg.Pool; groupId: string; topology: Topology; changesTopic: string; metrics: Metrics; log: Logger; pause: PauseGate; pollMs: number;
    send: (messages: OutMessage[]) => Promise<void>;
  };

  constructor(o: ConflictService['o']) {
    this.o = o;
  }

  start(): void {
    this.timer = setInterval(() => void this.tick(), this.o.pollMs);
    this.timer.unref();
    void this.tick();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }

  /** One pass now (the API calls it after a resolution, so convergence does not wait for the timer). */
  async tick(): Promise<void> {
    if (this.running) return;
    this.running = true;
    try {
      const version = this.o.pause.version;
      const p = await readPaused(this.o.pool, this.o.groupId);
      if (this.o.pause.setFromPoll(p.paused, version)) this.o.log.warn({ paused: p.paused, by: p.by }, p.paused ? 'Sync paused: batches are held' : 'Sync resumed');
      this.o.metrics.paused.set(this.o.pause.isPaused ? 1 : 0);
      await this.converge();
      if (this.ticks++ % 10 === 0) await this.gauges();
    } catch (err) {
      this.o.log.warn({ err: errorMessage(err) }, 'Conflict control pass failed; retrying');
    } finally {
      this.running = false;
    }
  }

  private async converge(): Promise<void> {
    const rows = await claimForConvergence(this.o.pool, this.o.groupId);
    if (rows.length === 0) return;
    const messages: OutMessage[] = [];
    for (const r of rows) {
      const ev = this.command(r);
      if (ev) messages.push({ topic: this.o.changesTopic, key: routingKey(ev), value: encodeChange(ev) });
    }
    await this.o.send(messages);
    this.o.log.info({ conflicts: rows.map((r) => Number(r.id)) }, 'Resolved conflicts sent to their lanes to converge');
  }

  /** The resolve command of a resolved conflict: the chosen value, else the chosen node's side, else the suggested winner's. */
  private command(r: StoredConflict): ChangeEvent | undefined {
    const entity = this.o.topology.entities.get(r.entity);
    if (!entity) {
      this.o.log.warn({ conflict: r.id, entity: r.entity }, 'Resolved conflict of an entity this topology no longer has; left unconverged');
      return undefined;
    }
    let value: Row | null;
    let winnerNode: string | null;
    if (r.winner_value !== null || r.winner_deleted === true) {
      value = r.winner_deleted ? null : r.winner_value;
      winnerNode = r.winner_node;
    } else {
      winnerNode = r.winner_node ?? r.suggested_winner ?? r.incoming_node;
      const local = winnerNode === r.local_node;
      value = (local ? r.local_deleted : r.incoming_deleted) ? null : local ? r.local_value : r.incoming_value;
    }
    const parts = JSON.parse(r.record_key) as Row[string][];
    const key: Row = Object.fromEntries(entity.key.map((k, i) => [k, parts[i]!]));
    const node = winnerNode && entity.nodes.has(winnerNode) ? winnerNode : [...entity.nodes.keys()][0]!;
    const now = Date.now();
    return {
      id: `resolve/${r.id}`, entity: entity.name, node, op: value === null ? 'd' : 'u', key, keyText: r.record_key,
      before: null, after: value, changed: null, baseVersion: null, sourceTsMs: now, emittedTsMs: now,
      position: { topic: this.o.changesTopic, partition: -1, offset: -1, source: {} }, transactionId: null,
      resolve: {
        conflictId: Number(r.id), value, winnerNode, by: r.resolved_by ?? 'runbook-sql', strategy: r.resolution_strategy ?? 'manual_override', atMs: now,
      },
    };
  }

  private async gauges(): Promise<void> {
    // sync_conflicts only (conflicts are rare, and detected_at is indexed); conflict_rate comes
    // from the worker's counters at each scrape (metrics.ts), not from counting audit_log, which
    // cost 350 ms a call at 2,000 events/s and grows with the rate
    const r = await conflictCounts(this.o.pool, this.o.groupId, AUTO_STRATEGIES);
    this.o.metrics.conflictsOpen.set(r.open);
    this.o.metrics.autoResolvedRatio.set(r.total === 0 ? 1 : r.auto / r.total);
  }
}
