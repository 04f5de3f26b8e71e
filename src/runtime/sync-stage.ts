import type pg from 'pg';
import { CheckpointFencedError, CheckpointGapError, errorMessage, isTransient } from '../errors.ts';
import type { Redis } from 'ioredis';
import { decodeChangeRecord, encodeChange, routingKey, type DeadLetterRecord } from '../events/change-codec.ts';
import type { ChangeProducer } from '../kafka/producer.ts';
import type { ChangeEvent } from '../events/change-event.ts';
import type { ChangeConsumer, ConsumedMessage } from '../kafka/consumer.ts';
import { changeRow, conflictRow, insertAuditRows, resolveRow, type AuditRowInput } from '../audit/audit-rows.ts';
import { saveConflicts } from '../sync/conflict-store.ts';
import { encode } from '../clock/codec.ts';
import type { SyncBatchResult, SyncEngine } from '../sync/sync-engine.ts';
import type { Applier } from './apply.ts';
import type { StateStore } from '../sync/state-store.ts';
import type { Metrics } from '../metrics.ts';
import type { Logger } from '../log.ts';
import type { CrashPoint } from '../config/env.ts';
import type { CheckpointStore, Checkpoint } from './checkpoint-store.ts';
import type { BatchOutcome, Lane, LaneHost } from './lane.ts';
import { DLQ_REDIS_KEY, internalLetter, mirrorEntry, rejectedLetter } from './dead-letters.ts';
import { insertDeadLetters, parkedKeys } from '../control/dead-letters.ts';
import type { Semaphore } from './semaphore.ts';
import type { PauseGate } from '../control/pause.ts';
import { EpochFencedError, type AuditWriter } from '../audit/audit-writer.ts';
import type { ConsumeLoop } from './consume-loop.ts';
import { backoff, retry, sleep } from '../retry.ts';

/** A batch fails this often, not for want of a server, before it is split; and a record alone, before it is dead-lettered. */
export const DETERMINISTIC_TRIES = 3;

interface Parsed {
  events: ChangeEvent[];
  dead: DeadLetterRecord[];
  duplicates: number;
}

/**
 * Sync (DESIGN §2 sync, apply, commit): a lane per partition of the changes topic
 * classifies its batch, writes the targets, then commits in one PostgreSQL transaction
 * the audit leaves, the record states, the dead letters and the checkpoint. Offsets are
 * stored only after that commit.
 */
export class SyncStage implements LaneHost {
  readonly semaphore: Semaphore;
  readonly batchSize: number;
  loop!: ConsumeLoop;
  consumer!: ChangeConsumer;

  private readonly o: {
    pool: pg.Pool; engine: SyncEngine; applier: Applier; store: StateStore; checkpoints: CheckpointStore; metrics: Metrics; log: Logger;
    workerId: string; groupId: string; crashPoint: CrashPoint | undefined; crashAfter: number; redis: Redis | undefined;
    producer: ChangeProducer; changesTopic: string; propagating: (entity: string) => boolean; pause: PauseGate; audit: AuditWriter;
  };

  constructor(semaphore: Semaphore, batchSize: number, o: SyncStage['o']) {
    this.semaphore = semaphore;
    this.batchSize = batchSize;
    this.o = o;
  }

  /** The epoch this worker holds per audit log it writes (claimed when its lane starts). */
  readonly epochs = new Map<string, number>();

  loadCheckpoint(topic: string, partition: number): Promise<Checkpoint | null> {
    const logId = `${this.o.groupId}:${topic}/${partition}`;
    return retry('checkpoint load', async () => {
      this.epochs.set(logId, await this.o.audit.claim(this.o.pool, logId, this.o.workerId));
      return this.o.checkpoints.load(topic, partition);
    }, { log: this.o.log, message: 'Checkpoint load failed; retrying', context: { topic, partition } });
  }

  /**
   * Reads the batch's records in order. A dead letter whose key could be read parks that
   * key: every later change of the same record (in this batch, or while an open dead
   * letter holds it) becomes a dead letter too, reason WS_PARKED, until `dlq replay`
   * re-drives them in order (DESIGN §8).
   */
  private async parse(lane: Lane, batch: ConsumedMessage[]): Promise<Parsed> {
    const out: Parsed = { events: [], dead: [], duplicates: 0 };
    const floor = lane.checkpoint?.nextOffset ?? -1;
    const records: Array<{ event: ChangeEvent } | { dead: DeadLetterRecord }> = [];
    for (const msg of batch) {
      if (msg.offset < floor) {
        out.duplicates++;
        continue;
      }
      try {
        records.push(decodeChangeRecord(msg.value ?? Buffer.alloc(0)));
      } catch (err) {
        records.push({ dead: {
          reason: 'WS_DECODE_MALFORMED', error: `changes record: ${errorMessage(err)}`, topic: msg.topic, partition: msg.partition, offset: msg.offset,
          entity: null, node: null, recordKey: null, payload: msg.value?.toString('base64') ?? null, payloadKind: 'change',
        } });
      }
    }
    const keys = new Set<string>();
    for (const r of records) {
      if ('event' in r) keys.add(r.event.keyText);
      else if (r.dead.recordKey !== null) keys.add(r.dead.recordKey);
    }
    const parked = keys.size === 0 ? new Set<string>() : await parkedKeys(this.o.pool, this.o.groupId, [...keys]);
    for (const r of records) {
      if ('dead' in r) {
        out.dead.push(r.dead);
        if (r.dead.recordKey !== null && r.dead.entity !== null) parked.add(`${r.dead.entity}\u0000${r.dead.recordKey}`);
        continue;
      }
      const ev = r.event;
      if (parked.has(`${ev.entity}\u0000${ev.keyText}`)) {
        out.dead.push({
          reason: 'WS_PARKED', error: `waits behind an earlier dead letter of ${ev.entity} ${ev.keyText}`,
          topic: ev.position.topic, partition: ev.position.partition, offset: ev.position.offset, entity: ev.entity, node: ev.node,
          recordKey: ev.keyText, payload: encodeChange(ev).toString('base64'), payloadKind: 'change',
        });
      } else {
        out.events.push(ev);
      }
    }
    return out;
  }

  /** A pause holds every lane before it cuts its next batch, so what arrives meanwhile is applied together on resume. */
  gate(): Promise<boolean> {
    return this.o.pause.wait();
  }

  async processBatch(lane: Lane, batch: ConsumedMessage[]): Promise<BatchOutcome> {
    // Paused after the lane passed its gate: the batch stays queued, uncommitted, and is
    // cut again on resume (or read again after a restart, if the worker stops meanwhile).
    if (this.o.pause.isPaused) return 'held';
    const cp = lane.checkpoint;
    if (cp !== null && batch[0]!.offset > cp.nextOffset) return this.reread(lane, cp.nextOffset, batch[0]!.offset);
    const outcome = await this.processRange(lane, batch, true);
    if (outcome === 'done') lane.rereads = 0;
    return outcome;
  }

  /**
   * Processes `batch` until it commits. A transient failure (a node or the control
   * database unreachable, a lock conflict) is retried in order, for as long as it lasts.
   * Any other failure that repeats is taken to be some record's fault (DESIGN §3,
   * invariant 7): the batch is split in halves, which commit one after the other, until
   * the record at fault stands alone; after DETERMINISTIC_TRIES failures alone, with the
   * control database and every node answering, it becomes a WS_INTERNAL dead letter and
   * its key is parked.
   */
  private async processRange(lane: Lane, batch: ConsumedMessage[], whole: boolean): Promise<BatchOutcome> {
    let parsed = await this.retryForever('dead-letter lookup', () => this.parse(lane, batch));
    let result: SyncBatchResult | undefined;
    let committed: { dead: DeadLetterRecord[]; ids: string[] } | undefined;
    const first = batch[0]!.offset;
    const nextOffset = batch[batch.length - 1]!.offset + 1;
    let failures = 0;
    for (let attempt = 0; ; attempt++) {
      if (lane.revoked) return 'held';
      try {
        if (lane.checkpoint !== null && nextOffset <= lane.checkpoint.nextOffset) break; // all seen
        result = await this.o.engine.process(this.o.pool, parsed.events);
        if (this.o.crashPoint) this.synced += result.counts.causal; // new changes only: a replayed history does not arm it
        await this.propagateTruncates(result);
        this.crash('after-target-write');
        committed = await this.commit(lane, first, nextOffset, parsed, result);
        break;
      } catch (err) {
        if (err instanceof EpochFencedError) {
          // Another owner claimed the log: wait for the rebalance to take the lane away, or
          // claim it back if nobody else is writing (the checkpoint CAS still fences).
          this.o.log.warn({ lane: lane.logId, err: err.message }, 'Audit log epoch moved under us; reclaiming');
          await sleep(backoff(attempt));
          if (lane.revoked) return 'held';
          this.epochs.set(lane.logId, await this.retryForever('audit log claim', () => this.o.audit.claim(this.o.pool, lane.logId, this.o.workerId)));
          lane.checkpoint = await this.o.checkpoints.load(lane.topic, lane.partition).catch(() => lane.checkpoint);
          parsed = await this.retryForever('dead-letter lookup', () => this.parse(lane, batch));
          continue;
        }
        if (err instanceof CheckpointFencedError) {
          this.o.log.warn({ lane: lane.logId, err: err.message }, 'Checkpoint moved under us; reloading it');
          lane.checkpoint = await this.o.checkpoints.load(lane.topic, lane.partition).catch(() => lane.checkpoint);
          parsed = await this.retryForever('dead-letter lookup', () => this.parse(lane, batch));
          continue;
        }
        if (err instanceof CheckpointGapError) return this.reread(lane, err.nextOffset, err.firstOffset);
        this.o.metrics.commitFailures.inc();
        if (isTransient(err)) {
          this.o.log.error({ lane: lane.logId, attempt, err: errorMessage(err) }, 'Sync batch failed; retrying in order');
          await sleep(backoff(attempt));
          continue;
        }
        // Another owner may have committed meanwhile (its rows then collide with ours before
        // the checkpoint's compare-and-set is reached): that is a fence, not a record's fault.
        const cp = await this.o.checkpoints.load(lane.topic, lane.partition).catch(() => lane.checkpoint);
        if ((cp?.nextOffset ?? null) !== (lane.checkpoint?.nextOffset ?? null)) {
          this.o.log.warn({ lane: lane.logId, err: errorMessage(err) }, 'Checkpoint moved under us; reloading it');
          lane.checkpoint = cp;
          parsed = await this.retryForever('dead-letter lookup', () => this.parse(lane, batch));
          continue;
        }
        failures++;
        this.o.log.error({ lane: lane.logId, attempt, failures, events: batch.length, from: first, err: errorMessage(err) }, 'Sync batch failed, not for want of a server; retrying, then isolating the record at fault');
        if (batch.length > 1 && failures >= (whole ? DETERMINISTIC_TRIES : 1)) {
          const half = batch.length >> 1;
          const left = await this.processRange(lane, batch.slice(0, half), false);
          return left === 'done' ? this.processRange(lane, batch.slice(half), false) : left;
        }
        if (batch.length === 1 && failures >= DETERMINISTIC_TRIES && await this.dependenciesAnswer()) {
          parsed = { events: [], dead: [internalLetter(batch[0]!, parsed, err)], duplicates: 0 };
          this.o.log.error({ lane: lane.logId, offset: first, key: parsed.dead[0]!.recordKey, err: errorMessage(err) }, 'A record keeps failing: it goes to the dead letters (WS_INTERNAL) and its key is parked');
          failures = 0; // the dead letter's own commit gets its retries
          continue;
        }
        await sleep(backoff(attempt));
      }
    }
    if (result && committed) this.observe(committed.dead, result);
    if (committed && committed.dead.length > 0) await this.mirror(committed.dead, committed.ids);
    if (parsed.duplicates > 0) this.o.metrics.duplicates.labels('checkpoint').inc(parsed.duplicates);
    this.consumer.storeOffset(lane.topic, lane.partition, nextOffset);
    return 'done';
  }

  /**
   * The batch starts past the checkpoint (DESIGN §3, invariant 8): what lies between was
   * never committed here. Seek the partition back to the checkpoint, so it is read again
   * in order; the lane drops what it buffered. Repeats back off, and keep logging, until
   * the missing offsets arrive.
   */
  private async reread(lane: Lane, nextOffset: number, firstOffset: number): Promise<BatchOutcome> {
    this.o.metrics.checkpointGaps.inc();
    const again = lane.rereads++ > 0;
    const detail = { lane: lane.logId, nextOffset, firstOffset, rereads: lane.rereads };
    if (again) this.o.log.error(detail, 'Batch still starts past the checkpoint; reading the partition again from it');
    else this.o.log.warn(detail, 'Batch starts past the checkpoint; reading the partition again from it');
    if (again) await sleep(backoff(lane.rereads));
    const low = this.consumer.lowWatermark(lane.topic, lane.partition);
    if (low !== undefined && low > nextOffset) {
      // retention deleted offsets this group never committed: they cannot be read again
      this.o.log.error({ ...detail, lowWatermark: low }, `Offsets ${nextOffset}-${low - 1} of ${lane.topic}/${lane.partition} were deleted by the topic's retention before this group committed them; the lane waits (docs/RUNBOOK.md, "Pause and resume")`);
    }
    try {
      await this.consumer.seek(lane.topic, lane.partition, nextOffset);
    } catch (err) {
      // keep the batch: the lane tries again, backing off, rather than drop what it holds with the position unmoved
      this.o.log.warn({ lane: lane.logId, err: errorMessage(err) }, 'Seek to the checkpoint failed; trying again');
      return 'held';
    }
    return 'reread';
  }

  /** The control database and every target answer: a failure that persists meanwhile is not theirs. */
  private async dependenciesAnswer(): Promise<boolean> {
    try {
      const { rows } = await this.o.pool.query<{ standby: boolean }>('SELECT pg_is_in_recovery() AS standby');
      if (rows[0]?.standby) throw new Error('the control database is a standby (read-only)');
      await this.o.applier.ping();
      return true;
    } catch (err) {
      this.o.log.warn({ err: errorMessage(err) }, 'A dependency does not answer: the failure is retried, not blamed on the record');
      return false;
    }
  }

  /**
   * `truncate: propagate`: the truncate's per-record deletes go to the changes topic, each
   * to its record's partition, before the truncate's own batch commits. A crash in between
   * sends them again; their source position makes the copies duplicates.
   */
  private async propagateTruncates(result: SyncBatchResult): Promise<void> {
    for (const s of result.synced) {
      if (s.event.op !== 't') continue;
      const deletes = await this.o.engine.truncateDeletes(this.o.pool, s.event);
      const policy = this.o.propagating(s.event.entity) ? 'propagate' : 'ignore';
      this.o.metrics.truncates.labels(s.event.node, s.event.entity, policy).inc();
      this.o.log.warn({ entity: s.event.entity, node: s.event.node, policy, records: deletes.length }, 'Truncate received');
      for (let i = 0; i < deletes.length; i += 1000) {
        await this.o.producer.send(deletes.slice(i, i + 1000).map((ev) => ({ topic: this.o.changesTopic, key: routingKey(ev), value: encodeChange(ev) })));
      }
    }
  }

  private async commit(lane: Lane, firstOffset: number, nextOffset: number, parsed: Parsed, result: SyncBatchResult): Promise<{ dead: DeadLetterRecord[]; ids: string[] }> {
    const started = performance.now();
    const dead = [...parsed.dead, ...result.rejected.map(rejectedLetter)];
    let ids: string[] = [];
    const client = await this.o.pool.connect();
    let broken: Error | undefined;
    try {
      await client.query('BEGIN');
      let seq = lane.checkpoint?.lastSeq ?? 0;
      const audit: AuditRowInput[] = [];
      const at = new Date().toISOString();
      for (const s of result.synced) {
        const d = s.decision;
        if (s.event.resolve && d.kind === 'ignored') continue; // a resolution already converged: not a change
        if (d.kind === 'causal' || d.kind === 'ignored') {
          const state = result.states.get(s.event.entity)?.get(s.event.keyText);
          audit.push(changeRow(at, lane.logId, ++seq, s.event, s.writes, d.kind === 'causal' ? encode(d.version) : null, state?.hlc ?? null));
        } else if (d.kind === 'resolved') {
          const state = result.states.get(s.event.entity)!.get(s.event.keyText)!;
          const c = d.command;
          audit.push(resolveRow(at, lane.logId, ++seq, s.event, { conflictId: c.conflictId, strategy: c.strategy, by: c.by, value: c.value }, s.writes, encode(d.version), state.hlc));
        } else if (d.kind === 'concurrent') {
          const state = result.states.get(s.event.entity)!.get(s.event.keyText)!;
          audit.push(changeRow(at, lane.logId, ++seq, s.event, s.writes, encode(d.version), state.hlc));
          audit.push(conflictRow(at, lane.logId, ++seq, s.event, {
            localNode: d.conflict.local.node, localValue: d.conflict.local.value, incomingValue: d.conflict.incoming.value,
            winner: d.conflict.winner, strategy: d.conflict.strategy, merged: encode(d.conflict.merged), hlc: state.hlc,
          }, s.writes));
        }
      }
      if (audit.length > 0) {
        const leaves = await insertAuditRows(client, audit);
        await this.o.audit.append(client, lane.logId, this.epochs.get(lane.logId) ?? -1, lane.checkpoint?.lastSeq ?? 0, leaves);
      }
      if (dead.length > 0) ids = await insertDeadLetters(client, this.o.groupId, dead);
      await saveConflicts(client, this.o.groupId, result);
      for (const [entity, states] of result.states) await this.o.store.save(client, entity, states);
      const next = { nextOffset, logId: lane.logId, lastSeq: seq };
      await this.o.checkpoints.advance(client, lane.topic, lane.partition, lane.checkpoint, next, this.o.workerId, firstOffset);
      this.crash('after-audit-copy');
      await client.query('COMMIT');
      lane.checkpoint = next;
    } catch (err) {
      await client.query('ROLLBACK').catch(() => undefined);
      if (!(err instanceof CheckpointFencedError)) broken = err as Error;
      throw err;
    } finally {
      client.release(broken);
    }
    this.crash('after-commit');
    this.o.metrics.commitDuration.observe(performance.now() - started);
    return { dead, ids };
  }

  private retryForever<T>(what: string, fn: () => Promise<T>): Promise<T> {
    return retry(what, fn, { log: this.o.log });
  }

  /**
   * The runbook reads failed work with `LLEN bull:sync:failed`: the committed dead letters
   * are mirrored there. PostgreSQL holds the truth; a Redis failure is logged and counted,
   * never fatal.
   */
  private async mirror(dead: DeadLetterRecord[], ids: string[]): Promise<void> {
    if (!this.o.redis) return;
    try {
      await this.o.redis.rpush(DLQ_REDIS_KEY, ...dead.map((d, i) => mirrorEntry({ id: ids[i]!, group: this.o.groupId, reason: d.reason, entity: d.entity, recordKey: d.recordKey })));
    } catch (err) {
      this.o.metrics.redisErrors.inc();
      this.o.log.warn({ err: errorMessage(err) }, 'Redis dead-letter mirror failed (sync_dead_letters holds them)');
    }
  }

  private observe(dead: DeadLetterRecord[], result: SyncBatchResult): void {
    const m = this.o.metrics;
    const now = Date.now();
    const counts = new Map<string, { node: string; entity: string; n: number }>();
    const newest = new Map<string, number>();
    for (const s of result.synced) {
      const ev = s.event;
      const kind = s.decision.kind;
      if (kind === 'echo') { m.echoes.labels(ev.node).inc(); continue; }
      if (kind === 'duplicate') { m.duplicates.labels('position').inc(); continue; }
      if (kind === 'repair') { m.repairs.labels(ev.node).inc(); continue; }
      if (kind === 'concurrent') {
        const c = s.decision.conflict;
        if (!c.updatesOpen) m.conflicts.labels(ev.entity, c.strategy, c.open ? 'open' : 'auto').inc();
      }
      if (kind === 'resolved') { m.conflictResolutions.labels(ev.entity, s.decision.command.strategy).inc(); continue; }
      if (ev.resolve) continue;
      const k = `${ev.node}\u0000${ev.entity}`;
      const c = counts.get(k);
      if (c) c.n++;
      else counts.set(k, { node: ev.node, entity: ev.entity, n: 1 });
      m.latency.labels(ev.node).observe(Math.max(0, now - ev.emittedTsMs));
      if ((newest.get(ev.node) ?? 0) < ev.sourceTsMs) newest.set(ev.node, ev.sourceTsMs);
    }
    for (const c of counts.values()) m.events.labels(c.node, c.entity).inc(c.n);
    for (const [node, ts] of newest) if ((m.newestSourceTs.get(node) ?? 0) < ts) m.newestSourceTs.set(node, ts);
    for (const d of dead) {
      m.errors.labels(d.node ?? 'unknown', d.entity ?? 'unknown').inc();
      m.deadLetters.labels(d.reason).inc();
    }
    for (const r of result.rejected) if (r.first) m.nodeRows.labels(r.node, 'rejected').inc();
    m.batchSize.observe(result.synced.length + dead.length);
  }

  private synced = 0;

  private crash(point: CrashPoint): void {
    if (this.o.crashPoint === point && this.synced >= this.o.crashAfter) {
      this.o.log.fatal({ point }, 'Test crash point reached: SIGKILL');
      process.kill(process.pid, 'SIGKILL');
    }
  }

  released(count: number): void {
    this.loop.released(count);
  }

  laneFailed(lane: Lane, err: unknown): void {
    this.o.log.error({ lane: lane.logId, err: errorMessage(err) }, 'Sync lane failed');
  }
}

