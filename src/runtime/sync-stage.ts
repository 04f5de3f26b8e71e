import type pg from 'pg';
import pgCopy from 'pg-copy-streams';
import { CheckpointFencedError, errorMessage } from '../errors.ts';
import { decodeChangeRecord, type DeadLetterRecord } from '../events/change-codec.ts';
import type { ChangeEvent } from '../events/change-event.ts';
import type { ChangeConsumer, ConsumedMessage } from '../kafka/consumer.ts';
import { AUDIT_COPY_SQL, changeRowLine, conflictRowLine } from '../audit/audit-rows.ts';
import { encode } from '../clock/codec.ts';
import type { SyncBatchResult, SyncEngine } from '../sync/sync-engine.ts';
import type { StateStore } from '../sync/state-store.ts';
import type { Metrics } from '../metrics.ts';
import type { Logger } from '../log.ts';
import type { CrashPoint } from '../config/env.ts';
import type { CheckpointStore, Checkpoint } from './checkpoint-store.ts';
import type { Lane, LaneHost } from './lane.ts';
import type { Semaphore } from './semaphore.ts';
import { backoff, type ConsumeLoop } from './consume-loop.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

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
    pool: pg.Pool; engine: SyncEngine; store: StateStore; checkpoints: CheckpointStore; metrics: Metrics; log: Logger;
    workerId: string; crashPoint: CrashPoint | undefined;
  };

  constructor(semaphore: Semaphore, batchSize: number, o: SyncStage['o']) {
    this.semaphore = semaphore;
    this.batchSize = batchSize;
    this.o = o;
  }

  async loadCheckpoint(topic: string, partition: number): Promise<Checkpoint | null> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.o.checkpoints.load(topic, partition);
      } catch (err) {
        this.o.log.warn({ topic, partition, attempt, err: errorMessage(err) }, 'Checkpoint load failed; retrying');
        await sleep(backoff(attempt));
      }
    }
  }

  private parse(lane: Lane, batch: ConsumedMessage[]): Parsed {
    const out: Parsed = { events: [], dead: [], duplicates: 0 };
    const floor = lane.checkpoint?.nextOffset ?? -1;
    for (const msg of batch) {
      if (msg.offset < floor) {
        out.duplicates++;
        continue;
      }
      try {
        const rec = decodeChangeRecord(msg.value ?? Buffer.alloc(0));
        if ('dead' in rec) out.dead.push(rec.dead);
        else out.events.push(rec.event);
      } catch (err) {
        out.dead.push({ reason: 'WS_DECODE_MALFORMED', error: `changes record: ${errorMessage(err)}`, topic: msg.topic, partition: msg.partition, offset: msg.offset, entity: null, node: null, payload: msg.value?.toString('base64') ?? null });
      }
    }
    return out;
  }

  async processBatch(lane: Lane, batch: ConsumedMessage[]): Promise<void> {
    let parsed = this.parse(lane, batch);
    let result: SyncBatchResult | undefined;
    for (let attempt = 0; ; attempt++) {
      if (lane.revoked) return;
      try {
        const nextOffset = batch[batch.length - 1]!.offset + 1;
        if (lane.checkpoint !== null && nextOffset <= lane.checkpoint.nextOffset) break; // all seen
        result = await this.o.engine.process(this.o.pool, parsed.events);
        this.crash('after-target-write');
        await this.commit(lane, nextOffset, parsed, result);
        break;
      } catch (err) {
        if (err instanceof CheckpointFencedError) {
          this.o.log.warn({ lane: lane.logId, err: err.message }, 'Checkpoint moved under us; reloading it');
          lane.checkpoint = await this.o.checkpoints.load(lane.topic, lane.partition).catch(() => lane.checkpoint);
          parsed = this.parse(lane, batch);
          continue;
        }
        this.o.metrics.commitFailures.inc();
        this.o.log.error({ lane: lane.logId, attempt, err: errorMessage(err) }, 'Sync batch failed; retrying in order');
        await sleep(backoff(attempt));
      }
    }
    if (result) this.observe(parsed, result);
    this.o.metrics.duplicates.inc(parsed.duplicates);
    this.consumer.storeOffset(lane.topic, lane.partition, batch[batch.length - 1]!.offset + 1);
  }

  private async commit(lane: Lane, nextOffset: number, parsed: Parsed, result: SyncBatchResult): Promise<void> {
    const started = performance.now();
    const client = await this.o.pool.connect();
    let broken: Error | undefined;
    try {
      await client.query('BEGIN');
      let seq = lane.checkpoint?.lastSeq ?? 0;
      let text = '';
      for (const s of result.synced) {
        const d = s.decision;
        if (d.kind === 'causal' || d.kind === 'ignored') {
          const state = result.states.get(s.event.entity)?.get(s.event.keyText);
          text += changeRowLine(lane.logId, ++seq, s.event, s.writes, d.kind === 'causal' ? encode(d.version) : null, state?.hlc ?? null);
        } else if (d.kind === 'concurrent') {
          const state = result.states.get(s.event.entity)!.get(s.event.keyText)!;
          text += changeRowLine(lane.logId, ++seq, s.event, s.writes, encode(d.version), state.hlc);
          text += conflictRowLine(lane.logId, ++seq, s.event, {
            localNode: d.conflict.local.node, localValue: d.conflict.local.value, incomingValue: d.conflict.incoming.value,
            winner: d.conflict.winner, strategy: d.conflict.strategy, merged: encode(d.conflict.merged), hlc: state.hlc,
          }, s.writes);
        }
      }
      if (text.length > 0) await copyIn(client, text);
      if (parsed.dead.length > 0) await insertDeadLetters(client, parsed.dead);
      for (const [entity, states] of result.states) await this.o.store.save(client, entity, states);
      const next = { nextOffset, logId: lane.logId, lastSeq: seq };
      await this.o.checkpoints.advance(client, lane.topic, lane.partition, lane.checkpoint, next, this.o.workerId);
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
  }

  private observe(parsed: Parsed, result: SyncBatchResult): void {
    const m = this.o.metrics;
    const now = Date.now();
    const counts = new Map<string, { node: string; entity: string; n: number }>();
    const newest = new Map<string, number>();
    for (const s of result.synced) {
      const ev = s.event;
      const kind = s.decision.kind;
      if (kind === 'echo') { m.echoes.labels(ev.node).inc(); continue; }
      if (kind === 'duplicate') { m.duplicates.inc(); continue; }
      if (kind === 'repair') { m.repairs.labels(ev.node).inc(); continue; }
      if (kind === 'concurrent') m.conflicts.labels(ev.entity, s.decision.conflict.strategy, s.decision.conflict.winner).inc();
      const k = `${ev.node}\u0000${ev.entity}`;
      const c = counts.get(k);
      if (c) c.n++;
      else counts.set(k, { node: ev.node, entity: ev.entity, n: 1 });
      m.latency.labels(ev.node).observe(Math.max(0, now - ev.emittedTsMs));
      if ((newest.get(ev.node) ?? 0) < ev.sourceTsMs) newest.set(ev.node, ev.sourceTsMs);
    }
    for (const c of counts.values()) m.events.labels(c.node, c.entity).inc(c.n);
    for (const [node, ts] of newest) m.lag.labels(node).set(Math.max(0, now - ts));
    for (const d of parsed.dead) {
      m.errors.labels(d.node ?? 'unknown', d.entity ?? 'unknown').inc();
      m.deadLetters.labels(d.reason).inc();
    }
    m.batchSize.observe(result.synced.length + parsed.dead.length);
  }

  private crash(point: CrashPoint): void {
    if (this.o.crashPoint === point) {
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

function copyIn(client: pg.PoolClient, text: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const stream = client.query(pgCopy.from(AUDIT_COPY_SQL));
    stream.on('error', reject);
    stream.on('finish', () => resolve());
    stream.end(text);
  });
}

async function insertDeadLetters(client: pg.PoolClient, dls: DeadLetterRecord[]): Promise<void> {
  const params: unknown[] = [];
  const tuples: string[] = [];
  for (const d of dls) {
    const b = params.length;
    tuples.push(`(${Array.from({ length: 8 }, (_, i) => `$${b + i + 1}`).join(', ')})`);
    params.push(d.reason, d.error, d.topic, d.partition, d.offset, d.entity, d.node, d.payload === null ? null : Buffer.from(d.payload, 'base64'));
  }
  await client.query(`INSERT INTO sync_dead_letters (reason, error, topic, partition, "offset", entity, source_node, payload) VALUES ${tuples.join(', ')}`, params);
}
