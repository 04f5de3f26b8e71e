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
import type { RejectedEvent, SyncBatchResult, SyncedEvent, SyncEngine } from '../sync/sync-engine.ts';
import type { RecordState } from '../sync/record-state.ts';
import type { Applier } from './apply.ts';
import type { StateStore } from '../sync/state-store.ts';
import type { Metrics } from '../metrics.ts';
import type { Logger } from '../log.ts';
import type { CrashPoint } from '../config/env.ts';
import { checkpointFenced, type CheckpointStore, type Checkpoint } from './checkpoint-store.ts';
import type { BatchOutcome, Lane, LaneHost } from './lane.ts';
import { DLQ_REDIS_KEY, internalLetter, mirrorEntry, rejectedLetter } from './dead-letters.ts';
import { insertDeadLetters, parkedKeys } from '../control/dead-letters.ts';
import { Semaphore } from './semaphore.ts';
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

/** One partition's batch in a commit: what it holds, what sync made of it, and what it commits. */
interface Part {
  lane: Lane;
  firstOffset: number;
  nextOffset: number;
  parsed: Parsed;
  synced: SyncedEvent[];
  rejected: RejectedEvent[];
  /** Set by the commit: the audit rows, dead letters (with their ids once stored) and the checkpoint it moves to. */
  audit: AuditRowInput[];
  dead: DeadLetterRecord[];
  ids: string[];
  next: Checkpoint | undefined;
}

/** A lane batch waiting for the next cycle. */
interface Member {
  lane: Lane;
  batch: ConsumedMessage[];
  resolve: (outcome: BatchOutcome) => void;
  reject: (err: unknown) => void;
}

const partOf = (lane: Lane, batch: ConsumedMessage[], parsed: Parsed): Part => ({
  lane, firstOffset: batch[0]!.offset, nextOffset: batch[batch.length - 1]!.offset + 1, parsed,
  synced: [], rejected: [], audit: [], dead: [], ids: [], next: undefined,
});

/**
 * Sync (DESIGN §2 sync, apply, commit), in cycles. A lane per partition of the changes
 * topic cuts its batch in order; a cycle takes the batches every lane has cut meanwhile
 * (up to `cycleEvents`), classifies them together, writes each target node once per
 * entity, and commits them in one PostgreSQL transaction: every partition's audit
 * leaves, record states, dead letters and checkpoint, each partition still fenced on its
 * own (its epoch and its checkpoint's compare-and-set). A partition whose fence fails is
 * left out of that transaction and retried alone; so is every partition of a cycle that
 * fails otherwise, where the one-batch path below isolates the record at fault. Offsets
 * are stored only after the commit. Up to `cycles` cycles run at once, on different lanes.
 * With an `intervalMs`, lanes cut their next batches no sooner than that long after the
 * last cycle started (Kafka Streams' commit.interval.ms), so a cycle takes what was fetched
 * over the interval: fewer, larger cycles, and up to that much more latency.
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

  /** Cycles in flight; each lane has at most one batch in one of them. */
  private readonly cycleSlots: Semaphore;
  private readonly cycleEvents: number;
  private readonly cycleIntervalMs: number;
  private pending: Member[] = [];
  private cycleScheduled = false;
  /** When lanes may cut their next batches (`performance.now()`), and the one timer they wait on. */
  private nextCutAt = 0;
  private cutWait: { at: number; done: Promise<void> } | undefined;

  constructor(batchSize: number, cycle: { cycles: number; events: number; intervalMs: number }, o: SyncStage['o']) {
    // Lanes do not queue for a slot each: each has one batch at most in flight, and the
    // cycles bound the work.
    this.semaphore = new Semaphore(Number.MAX_SAFE_INTEGER);
    this.cycleSlots = new Semaphore(cycle.cycles);
    this.cycleEvents = cycle.events;
    this.cycleIntervalMs = cycle.intervalMs;
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
    return (await this.parseMany([{ lane, batch }]))[0]!;
  }

  /** `parse` for a cycle's batches: one dead-letter lookup for all of them. */
  private async parseMany(batches: Array<{ lane: Lane; batch: ConsumedMessage[] }>): Promise<Parsed[]> {
    const keys = new Map<string, { entity: string; keyText: string }>();
    const want = (entity: string, keyText: string) => keys.set(`${entity}\u0000${keyText}`, { entity, keyText });
    const decoded = batches.map(({ lane, batch }) => {
      const floor = lane.checkpoint?.nextOffset ?? -1;
      const records: Array<{ event: ChangeEvent } | { dead: DeadLetterRecord }> = [];
      let duplicates = 0;
      for (const msg of batch) {
        if (msg.offset < floor) {
          duplicates++;
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
      for (const r of records) {
        if ('event' in r) want(r.event.entity, r.event.keyText);
        else if (r.dead.recordKey !== null && r.dead.entity !== null) want(r.dead.entity, r.dead.recordKey);
      }
      return { records, duplicates };
    });
    const parked = keys.size === 0 ? new Set<string>() : await parkedKeys(this.o.pool, this.o.groupId, [...keys.values()]);
    return decoded.map(({ records, duplicates }) => {
      const out: Parsed = { events: [], dead: [], duplicates };
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
    });
  }

  /**
   * A pause holds every lane before it cuts its next batch, so what arrives meanwhile is
   * applied together on resume; so does the cycle interval, until it has passed.
   */
  gate(): Promise<boolean> {
    const wait = this.nextCutAt - performance.now();
    if (wait <= 0) return this.o.pause.wait();
    if (this.cutWait?.at !== this.nextCutAt) {
      this.cutWait = { at: this.nextCutAt, done: new Promise((resolve) => setTimeout(resolve, wait)) };
    }
    // a cycle that started meanwhile moved the time on: wait for it too, or the lanes
    // woken by each timer would start cycles of their own, closer together than the interval
    return this.cutWait.done.then(() => this.gate());
  }

  async processBatch(lane: Lane, batch: ConsumedMessage[]): Promise<BatchOutcome> {
    // Paused after the lane passed its gate: the batch stays queued, uncommitted, and is
    // cut again on resume (or read again after a restart, if the worker stops meanwhile).
    if (this.o.pause.isPaused) return 'held';
    const cp = lane.checkpoint;
    if (cp !== null && batch[0]!.offset > cp.nextOffset) return this.reread(lane, cp.nextOffset, batch[0]!.offset);
    const outcome = await new Promise<BatchOutcome>((resolve, reject) => {
      this.pending.push({ lane, batch, resolve, reject });
      this.scheduleCycle();
    });
    if (outcome === 'done') lane.rereads = 0;
    return outcome;
  }

  /**
   * Starts a cycle once the lanes woken together have cut their batches (the next turn of
   * the event loop), if a cycle slot is free; otherwise when one frees.
   */
  private scheduleCycle(): void {
    if (this.cycleScheduled || this.pending.length === 0) return;
    this.cycleScheduled = true;
    void this.cycleSlots.acquire().then(() => setImmediate(() => {
      this.cycleScheduled = false;
      if (this.cycleIntervalMs > 0) this.nextCutAt = performance.now() + this.cycleIntervalMs;
      const members: Member[] = [];
      let events = 0;
      while (this.pending.length > 0 && (members.length === 0 || events + this.pending[0]!.batch.length <= this.cycleEvents)) {
        const m = this.pending.shift()!;
        events += m.batch.length;
        members.push(m);
      }
      this.o.metrics.cyclesInFlight.inc();
      this.o.metrics.cycleEvents.observe(events);
      void this.cycle(members).finally(() => {
        this.o.metrics.cyclesInFlight.dec();
        this.cycleSlots.release();
        this.scheduleCycle();
      });
      this.scheduleCycle();
    }));
  }

  /**
   * One cycle (DESIGN §2): the members' batches are parsed with one dead-letter lookup,
   * classified and applied together, and committed in one transaction. A member that is
   * fenced, and every member of a cycle that fails, goes on alone (`processRange`), which
   * retries, reloads its checkpoint or isolates the record at fault; it does not hold the
   * cycle's slot meanwhile.
   */
  private async cycle(members: Member[]): Promise<void> {
    const alone = (list: Member[]) => {
      for (const m of list) this.processRange(m.lane, m.batch, true).then(m.resolve, m.reject);
    };
    const live: Member[] = [];
    for (const m of members) {
      if (m.lane.revoked || this.o.pause.isPaused) m.resolve('held');
      else if (m.lane.checkpoint !== null && m.batch[m.batch.length - 1]!.offset + 1 <= m.lane.checkpoint.nextOffset) alone([m]); // all seen
      else live.push(m);
    }
    if (live.length === 0) return;
    const settled = new Set<Member>();
    try {
      const parsed = await this.parseMany(live);
      const parts = live.map((m, i) => partOf(m.lane, m.batch, parsed[i]!));
      const result = await this.o.engine.process(this.o.pool, parts.flatMap((p) => p.parsed.events));
      if (this.o.crashPoint) this.synced += result.counts.causal;
      split(parts, result);
      await this.propagateTruncates(result);
      this.crash('after-target-write');
      const fenced = await this.commit(parts, result);
      this.o.metrics.cycleBatches.observe(parts.length - fenced.size);
      if (fenced.size > 0) {
        this.o.metrics.cycleAlone.labels('fenced').inc(fenced.size);
        this.o.log.warn({ lanes: [...fenced.keys()].map((p) => p.lane.logId) }, 'Partitions fenced in a cycle\'s commit go on alone');
      }
      for (let i = 0; i < parts.length; i++) {
        if (fenced.has(parts[i]!)) continue;
        settled.add(live[i]!);
        await this.finish(parts[i]!).catch((err: unknown) => this.o.log.warn({ lane: parts[i]!.lane.logId, err: errorMessage(err) }, 'After a committed batch: its metrics, mirror or offset failed'));
        live[i]!.resolve('done');
      }
      alone(live.filter((_, i) => fenced.has(parts[i]!)));
    } catch (err) {
      // a member already committed is its lane's no longer: the lane may have cut its next batch
      const rest = live.filter((m) => !settled.has(m));
      this.o.metrics.cycleAlone.labels('failed').inc(rest.length);
      this.o.log.warn({ lanes: rest.length, err: errorMessage(err) }, 'A cycle failed; its partitions go on alone');
      alone(rest);
    }
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
    const first = batch[0]!.offset;
    const nextOffset = batch[batch.length - 1]!.offset + 1;
    let failures = 0;
    for (let attempt = 0; ; attempt++) {
      if (lane.revoked) return 'held';
      try {
        if (lane.checkpoint !== null && nextOffset <= lane.checkpoint.nextOffset) break; // all seen
        const part = partOf(lane, batch, parsed);
        const result = await this.o.engine.process(this.o.pool, parsed.events);
        if (this.o.crashPoint) this.synced += result.counts.causal; // new changes only: a replayed history does not arm it
        split([part], result);
        await this.propagateTruncates(result);
        this.crash('after-target-write');
        const fenced = (await this.commit([part], result)).get(part);
        if (fenced) throw fenced;
        await this.finish(part);
        return 'done';
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
    // everything was committed before: nothing to write
    if (parsed.duplicates > 0) this.o.metrics.duplicates.labels('checkpoint').inc(parsed.duplicates);
    this.consumer.storeOffset(lane.topic, lane.partition, nextOffset);
    return 'done';
  }

  /** After a part's commit: its metrics, its dead letters' Redis mirror, and its offset for Kafka. */
  private async finish(part: Part): Promise<void> {
    this.observe(part);
    if (part.dead.length > 0) await this.mirror(part.dead, part.ids);
    if (part.parsed.duplicates > 0) this.o.metrics.duplicates.labels('checkpoint').inc(part.parsed.duplicates);
    this.consumer.storeOffset(part.lane.topic, part.lane.partition, part.nextOffset);
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

  /**
   * The committer: one transaction for the parts of a cycle (or one part alone), holding
   * every part's audit leaves (one COPY), dead letters, conflicts, record states and
   * checkpoint. Each part is fenced on its own, before anything of it is written: its log's
   * epoch (locked, in log order) and its checkpoint's compare-and-set. A part that fails
   * either is left out and returned with its error; the others commit. Anything else rolls
   * the whole transaction back and throws.
   */
  private async commit(parts: Part[], result: SyncBatchResult): Promise<Map<Part, CheckpointFencedError>> {
    const started = performance.now();
    const at = new Date().toISOString();
    for (const p of parts) {
      p.audit = auditRows(at, p, result.states);
      p.dead = [...p.parsed.dead, ...p.rejected.map(rejectedLetter)];
      p.next = { nextOffset: p.nextOffset, logId: p.lane.logId, lastSeq: (p.lane.checkpoint?.lastSeq ?? 0) + p.audit.length };
    }
    const fenced = new Map<Part, CheckpointFencedError>();
    const client = await this.o.pool.connect();
    let broken: Error | undefined;
    try {
      await client.query('BEGIN');
      const logged = parts.filter((p) => p.audit.length > 0);
      const logs = await this.o.audit.lockMany(client, logged.map((p) => ({ logId: p.lane.logId, epoch: this.epochs.get(p.lane.logId) ?? -1 })));
      for (const p of logged) {
        const e = logs.fenced.get(p.lane.logId);
        if (e) fenced.set(p, e);
      }
      const open = parts.filter((p) => !fenced.has(p));
      const stale = await this.o.checkpoints.advanceMany(client, open.map((p) => ({
        topic: p.lane.topic, partition: p.lane.partition, expected: p.lane.checkpoint, next: p.next!, firstOffset: p.firstOffset,
      })), this.o.workerId);
      for (const p of open) {
        if (stale.has(`${p.lane.topic}/${p.lane.partition}`)) {
          fenced.set(p, checkpointFenced(p.lane.topic, p.lane.partition, p.lane.checkpoint));
        }
      }
      const live = parts.filter((p) => !fenced.has(p));
      const rows = live.flatMap((p) => p.audit);
      if (rows.length > 0) {
        const leaves = await insertAuditRows(client, rows);
        let i = 0;
        await this.o.audit.appendLocked(client, logs.locked, live.map((p) => ({ logId: p.lane.logId, lastSeq: p.lane.checkpoint?.lastSeq ?? 0, leaves: leaves.slice(i, (i += p.audit.length)) })));
      }
      const dead = live.flatMap((p) => p.dead);
      if (dead.length > 0) {
        const ids = await insertDeadLetters(client, this.o.groupId, dead);
        let i = 0;
        for (const p of live) p.ids = ids.slice(i, (i += p.dead.length));
      }
      const kept = fenced.size === 0 ? result : without(result, [...fenced.keys()]);
      await saveConflicts(client, this.o.groupId, kept);
      for (const [entity, states] of kept.states) if (states.size > 0) await this.o.store.save(client, entity, states);
      this.crash('after-audit-copy');
      await client.query('COMMIT');
      for (const p of live) p.lane.checkpoint = p.next!;
    } catch (err) {
      await client.query('ROLLBACK').catch(() => undefined);
      if (!(err instanceof CheckpointGapError)) broken = err as Error; // the pool drops a client whose transaction failed
      throw err;
    } finally {
      client.release(broken);
    }
    this.crash('after-commit');
    this.o.metrics.commitDuration.observe(performance.now() - started);
    return fenced;
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

  private observe(part: Part): void {
    const { dead, synced, rejected } = part;
    const m = this.o.metrics;
    const now = Date.now();
    const counts = new Map<string, { node: string; entity: string; n: number }>();
    const newest = new Map<string, number>();
    for (const s of synced) {
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
    for (const r of rejected) if (r.first) m.nodeRows.labels(r.node, 'rejected').inc();
    m.batchSize.observe(synced.length + dead.length);
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

/** Hands each synced and rejected event of a cycle's result to the part it came from. */
function split(parts: Part[], result: SyncBatchResult): void {
  const owner = new Map<ChangeEvent, Part>();
  for (const p of parts) for (const ev of p.parsed.events) owner.set(ev, p);
  for (const s of result.synced) owner.get(s.event)!.synced.push(s);
  for (const r of result.rejected) owner.get(r.event)!.rejected.push(r);
}

/** A cycle's result without the fenced parts: their events and their records' states. */
function without(result: SyncBatchResult, fenced: Part[]): SyncBatchResult {
  const events = new Set<ChangeEvent>(fenced.flatMap((p) => p.parsed.events));
  const states = new Map<string, Map<string, RecordState>>();
  for (const [entity, byKey] of result.states) states.set(entity, new Map(byKey));
  for (const ev of events) states.get(ev.entity)?.delete(ev.keyText);
  return { ...result, synced: result.synced.filter((s) => !events.has(s.event)), rejected: result.rejected.filter((r) => !events.has(r.event)), states };
}

/** A part's audit rows, at seqs after its checkpoint's: a change leaf per change, and a conflict leaf after a concurrent one (DESIGN §7). */
function auditRows(at: string, p: Part, states: SyncBatchResult['states']): AuditRowInput[] {
  let seq = p.lane.checkpoint?.lastSeq ?? 0;
  const logId = p.lane.logId;
  const audit: AuditRowInput[] = [];
  for (const s of p.synced) {
    const d = s.decision;
    const state = states.get(s.event.entity)?.get(s.event.keyText);
    if (s.event.resolve && d.kind === 'ignored') continue; // a resolution already converged: not a change
    if (d.kind === 'causal' || d.kind === 'ignored') {
      audit.push(changeRow(at, logId, ++seq, s.event, s.writes, d.kind === 'causal' ? encode(d.version) : null, state?.hlc ?? null));
    } else if (d.kind === 'resolved') {
      const c = d.command;
      audit.push(resolveRow(at, logId, ++seq, s.event, { conflictId: c.conflictId, strategy: c.strategy, by: c.by, value: c.value }, s.writes, encode(d.version), state!.hlc));
    } else if (d.kind === 'concurrent') {
      audit.push(changeRow(at, logId, ++seq, s.event, s.writes, encode(d.version), state!.hlc));
      audit.push(conflictRow(at, logId, ++seq, s.event, {
        localNode: d.conflict.local.node, localValue: d.conflict.local.value, incomingValue: d.conflict.incoming.value,
        winner: d.conflict.winner, strategy: d.conflict.strategy, merged: encode(d.conflict.merged), hlc: state!.hlc,
      }, s.writes));
    }
  }
  return audit;
}
