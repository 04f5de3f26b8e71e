import type pg from 'pg';
import pgCopy from 'pg-copy-streams';
import { DecodeError, CheckpointFencedError, errorMessage } from '../errors.ts';
import type { DebeziumDecoder } from '../events/debezium.ts';
import type { ChangeEvent } from '../events/change-event.ts';
import type { ConsumedMessage } from '../kafka/consumer.ts';
import { AUDIT_COPY_SQL, changeRowLine } from '../audit/audit-rows.ts';
import type { Metrics } from '../metrics.ts';
import type { Logger } from '../log.ts';
import type { CheckpointStore } from './checkpoint-store.ts';
import type { Lane } from './lane.ts';
import type { CrashPoint } from '../config/env.ts';

export interface DeadLetter {
  reason: string;
  error: string;
  msg: ConsumedMessage;
  entity: string | null;
  node: string | null;
}

export interface BatchOutcome {
  events: ChangeEvent[];
  /** The Kafka message each event came from (parallel to `events`). */
  eventMessages: ConsumedMessage[];
  deadLetters: DeadLetter[];
  tombstones: number;
  duplicates: number;
}

export interface BatchProcessorOptions {
  workerId: string;
  crashPoint: CrashPoint | undefined;
  topicInfo: (topic: string) => { entity: string; node: string } | undefined;
}

/**
 * Turns one lane batch into one PostgreSQL transaction (DESIGN §2 commit, §8):
 * the audit leaves by COPY, the dead letters by one INSERT, and the consumer checkpoint
 * compare-and-set, committed together. Kafka offsets are stored only after COMMIT.
 */
export class BatchProcessor {
  private readonly pool: pg.Pool;
  private readonly decoder: DebeziumDecoder;
  private readonly checkpoints: CheckpointStore;
  private readonly metrics: Metrics;
  private readonly log: Logger;
  private readonly opts: BatchProcessorOptions;

  constructor(pool: pg.Pool, decoder: DebeziumDecoder, checkpoints: CheckpointStore, metrics: Metrics, log: Logger, opts: BatchProcessorOptions) {
    this.pool = pool;
    this.decoder = decoder;
    this.checkpoints = checkpoints;
    this.metrics = metrics;
    this.log = log;
    this.opts = opts;
  }

  /** Decodes a batch; never throws for bad input (that becomes a dead letter). */
  decode(lane: Lane, batch: ConsumedMessage[]): BatchOutcome {
    const out: BatchOutcome = { events: [], eventMessages: [], deadLetters: [], tombstones: 0, duplicates: 0 };
    const floor = lane.checkpoint?.nextOffset ?? -1;
    const debug = this.log.isLevelEnabled('debug');
    for (const msg of batch) {
      if (msg.offset < floor) {
        out.duplicates++;
        continue;
      }
      try {
        const ev = this.decoder.decode(msg);
        if ('tombstone' in ev) {
          out.tombstones++;
          continue;
        }
        if (debug) this.log.debug({ event: ev.id, entity: ev.entity, op: ev.op, key: ev.keyText, node: ev.node }, 'Processing CDC event');
        out.events.push(ev);
        out.eventMessages.push(msg);
      } catch (err) {
        const info = this.opts.topicInfo(msg.topic);
        const reason = err instanceof DecodeError ? err.code : 'WS_INTERNAL';
        this.log.warn({ topic: msg.topic, partition: msg.partition, offset: msg.offset, reason, err: errorMessage(err) }, 'Event sent to dead letters');
        out.deadLetters.push({ reason, error: errorMessage(err), msg, entity: info?.entity ?? null, node: info?.node ?? null });
      }
    }
    return out;
  }

  /** Commits a decoded batch. Throws on database failure (the caller retries) or fencing. */
  async commit(lane: Lane, batch: ConsumedMessage[], outcome: BatchOutcome): Promise<void> {
    const last = batch[batch.length - 1]!;
    const nextOffset = last.offset + 1;
    if (lane.checkpoint !== null && nextOffset <= lane.checkpoint.nextOffset) return; // all duplicates
    const startSeq = lane.checkpoint?.lastSeq ?? 0;
    const started = performance.now();
    const client = await this.pool.connect();
    let released = false;
    try {
      await client.query('BEGIN');
      let seq = startSeq;
      if (outcome.events.length > 0) {
        let text = '';
        for (const ev of outcome.events) text += changeRowLine(lane.logId, ++seq, ev, []);
        await copyIn(client, AUDIT_COPY_SQL, text);
      }
      if (outcome.deadLetters.length > 0) await insertDeadLetters(client, outcome.deadLetters);
      const next = { nextOffset, logId: lane.logId, lastSeq: seq };
      await this.checkpoints.advance(client, lane.topic, lane.partition, lane.checkpoint, next, this.opts.workerId);
      this.crash('after-audit-copy');
      await client.query('COMMIT');
      lane.checkpoint = next;
    } catch (err) {
      await client.query('ROLLBACK').catch(() => undefined);
      // A connection that failed mid-transaction is not reused.
      client.release(err instanceof CheckpointFencedError ? undefined : (err as Error));
      released = true;
      throw err;
    } finally {
      if (!released) client.release();
    }
    this.crash('after-commit');
    this.metrics.commitDuration.observe(performance.now() - started);
  }

  /**
   * The database refused a row of the batch (a data exception, such as a NUL character
   * that jsonb cannot hold). Finds the offending events, each COPY'd alone under a
   * savepoint in a transaction that is rolled back, and moves them to the dead letters,
   * so the rest of the batch commits and the lane moves on.
   */
  async isolateRejects(lane: Lane, outcome: BatchOutcome): Promise<number> {
    const client = await this.pool.connect();
    const keep: number[] = [];
    const rejected: DeadLetter[] = [];
    try {
      await client.query('BEGIN');
      for (let i = 0; i < outcome.events.length; i++) {
        const ev = outcome.events[i]!;
        await client.query('SAVEPOINT probe');
        try {
          // A log id of its own, so the probe cannot collide with the real rows.
          await copyIn(client, AUDIT_COPY_SQL, changeRowLine(`${lane.logId}#probe`, i + 1, ev, []));
          keep.push(i);
        } catch (err) {
          const msg = outcome.eventMessages[i]!;
          rejected.push({ reason: 'WS_AUDIT_REJECTED', error: errorMessage(err), msg, entity: ev.entity, node: ev.node });
        }
        await client.query('ROLLBACK TO SAVEPOINT probe');
      }
      await client.query('ROLLBACK');
    } finally {
      client.release();
    }
    if (rejected.length > 0) {
      for (const d of rejected) this.log.warn({ event: `${d.msg.topic}/${d.msg.partition}/${d.msg.offset}`, err: d.error }, 'Event refused by the audit log; sent to dead letters');
      outcome.events = keep.map((i) => outcome.events[i]!);
      outcome.eventMessages = keep.map((i) => outcome.eventMessages[i]!);
      outcome.deadLetters.push(...rejected);
    }
    return rejected.length;
  }

  /** Counts and measures a committed batch (labels bound per batch, not per event). */
  observe(outcome: BatchOutcome): void {
    const now = Date.now();
    const counts = new Map<string, { node: string; entity: string; n: number }>();
    const newestSource = new Map<string, number>();
    for (const ev of outcome.events) {
      const k = `${ev.node}\u0000${ev.entity}`;
      const c = counts.get(k);
      if (c) c.n++;
      else counts.set(k, { node: ev.node, entity: ev.entity, n: 1 });
      this.metrics.latency.labels(ev.node).observe(Math.max(0, now - ev.emittedTsMs));
      if ((newestSource.get(ev.node) ?? 0) < ev.sourceTsMs) newestSource.set(ev.node, ev.sourceTsMs);
    }
    for (const c of counts.values()) this.metrics.events.labels(c.node, c.entity).inc(c.n);
    for (const [node, ts] of newestSource) this.metrics.lag.labels(node).set(Math.max(0, now - ts));
    for (const d of outcome.deadLetters) {
      this.metrics.errors.labels(d.node ?? 'unknown', d.entity ?? 'unknown').inc();
      this.metrics.deadLetters.labels(d.reason).inc();
    }
    if (outcome.tombstones > 0) this.metrics.tombstones.inc(outcome.tombstones);
    if (outcome.duplicates > 0) this.metrics.duplicates.inc(outcome.duplicates);
    this.metrics.batchSize.observe(outcome.events.length + outcome.deadLetters.length + outcome.tombstones);
  }

  private crash(point: CrashPoint): void {
    if (this.opts.crashPoint === point) {
      this.log.fatal({ point }, 'Test crash point reached: SIGKILL');
      process.kill(process.pid, 'SIGKILL');
    }
  }
}

/** SQLSTATE classes that say "this data", not "this connection": retrying unchanged cannot help. */
export function isDataError(err: unknown): boolean {
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' && /^(22|23|42804|54)/.test(code);
}

function copyIn(client: pg.PoolClient, sql: string, text: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const stream = client.query(pgCopy.from(sql));
    stream.on('error', reject);
    stream.on('finish', () => resolve());
    stream.end(text);
  });
}

async function insertDeadLetters(client: pg.PoolClient, dls: DeadLetter[]): Promise<void> {
  const cols = 8;
  const params: unknown[] = [];
  const tuples: string[] = [];
  for (const d of dls) {
    const b = params.length;
    tuples.push(`(${Array.from({ length: cols }, (_, i) => `$${b + i + 1}`).join(', ')})`);
    params.push(d.reason, d.error, d.msg.topic, d.msg.partition, d.msg.offset, d.entity, d.node, d.msg.value);
  }
  await client.query(
    `INSERT INTO sync_dead_letters (reason, error, topic, partition, "offset", entity, source_node, payload) VALUES ${tuples.join(', ')}`,
    params,
  );
}
