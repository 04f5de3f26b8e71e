import type pg from 'pg';
import type { DebeziumDecoder } from '../events/debezium.ts';
import { DecodeError, errorMessage } from '../errors.ts';
import { encodeChange, encodeDead, routingKey, type DeadLetterRecord } from '../events/change-codec.ts';
import type { ChangeConsumer, ConsumedMessage } from '../kafka/consumer.ts';
import { recordBytes, type ChangeProducer, type OutMessage } from '../kafka/producer.ts';
import type { Topology } from '../config/topology.ts';
import type { Metrics } from '../metrics.ts';
import type { Logger } from '../log.ts';
import type { BatchOutcome, Lane, LaneHost } from './lane.ts';
import type { Semaphore } from './semaphore.ts';
import type { ConsumeLoop } from './consume-loop.ts';
import { ABANDONED, retry } from '../retry.ts';
import { stagePayloads } from '../control/dead-letters.ts';
import type { Checkpoint } from './checkpoint-store.ts';

interface Staged {
  topic: string;
  partition: number;
  offset: number;
  payload: Buffer;
}

/**
 * Ingest (DESIGN §2): a lane per Debezium partition decodes its batch and routes each
 * change to the changes topic, keyed by entity and key, so every event of one record
 * meets in one partition. The source offsets are stored once the whole batch is
 * acknowledged; a crash in between re-routes the batch, and the sync stage recognises
 * the repeats by their source positions.
 *
 * A change whose record would exceed KAFKA_MAX_MESSAGE_BYTES cannot travel the changes
 * topic. It becomes a WS_TOO_LARGE dead letter whose record travels without its payload:
 * the payload waits in sync_staged_payloads, and the sync stage's commit moves it into
 * sync_dead_letters. So does an undecodable message too large once base64.
 */
export class IngestStage implements LaneHost {
  readonly semaphore: Semaphore;
  readonly batchSize: number;
  loop!: ConsumeLoop;
  consumer!: ChangeConsumer;

  private readonly o: {
    semaphore: Semaphore; batchSize: number; decoder: DebeziumDecoder; producer: ChangeProducer; changesTopic: string; topology: Topology;
    metrics: Metrics; log: Logger; pool: pg.Pool; groupId: string;
    /** The most bytes of key and value one changes record may carry (recordLimit of KAFKA_MAX_MESSAGE_BYTES). */
    maxRecordBytes: number;
  };

  constructor(opts: IngestStage['o']) {
    this.semaphore = opts.semaphore;
    this.batchSize = opts.batchSize;
    this.o = opts;
  }

  async loadCheckpoint(): Promise<Checkpoint | null> {
    return null; // source offsets live in Kafka; the sync stage deduplicates by position
  }

  async processBatch(lane: Lane, batch: ConsumedMessage[]): Promise<BatchOutcome> {
    const { decoder, changesTopic, log } = this.o;
    const out: OutMessage[] = [];
    const staged: Staged[] = [];
    let tombstones = 0;
    let dead = 0;
    const debug = log.isLevelEnabled('debug');
    for (const msg of batch) {
      try {
        const ev = decoder.decode(msg);
        if ('tombstone' in ev) {
          tombstones++;
          continue;
        }
        if (debug) log.debug({ event: ev.id, entity: ev.entity, op: ev.op, key: ev.keyText, node: ev.node }, 'Processing CDC event');
        const m = { topic: changesTopic, key: routingKey(ev), value: encodeChange(ev) };
        const size = recordBytes(m);
        if (size > this.o.maxRecordBytes) {
          dead++;
          const error = `the change's record is ${size} bytes; KAFKA_MAX_MESSAGE_BYTES leaves ${this.o.maxRecordBytes} for one`;
          log.warn({ topic: msg.topic, partition: msg.partition, offset: msg.offset, key: ev.keyText, size, limit: this.o.maxRecordBytes }, 'Change too large for the changes topic: sent to dead letters');
          out.push(this.deadRecord(msg, 'WS_TOO_LARGE', error, { entity: ev.entity, keyText: ev.keyText }, staged));
          continue;
        }
        out.push(m);
      } catch (err) {
        const reason = err instanceof DecodeError ? err.code : 'WS_INTERNAL';
        log.warn({ topic: msg.topic, partition: msg.partition, offset: msg.offset, reason, err: errorMessage(err).slice(0, 500) }, 'Event sent to dead letters');
        dead++;
        out.push(this.deadRecord(msg, reason, errorMessage(err), decoder.decodeKey(msg.topic, msg.key), staged));
      }
    }
    if (staged.length > 0 && !(await this.stage(lane, staged))) return 'held';
    const routed = await retry('routing', () => this.o.producer.send(out), {
      log, level: 'error', message: 'Routing to the changes topic failed; retrying in order', context: { lane: lane.logId }, abandon: () => lane.revoked,
    });
    if (routed === ABANDONED) return 'held';
    if (tombstones > 0) this.o.metrics.tombstones.inc(tombstones);
    this.o.metrics.routed.inc(out.length - dead);
    this.consumer.storeOffset(lane.topic, lane.partition, batch[batch.length - 1]!.offset + 1);
    return 'done';
  }

  /**
   * A dead letter's changes record. With a readable key it goes where that record's events
   * go, and parks the key there. A payload that would make the record too large is staged.
   */
  private deadRecord(msg: ConsumedMessage, reason: string, error: string, parked: { entity: string; keyText: string } | null, staged: Staged[]): OutMessage {
    const route = this.o.topology.topics.get(msg.topic);
    const letter: DeadLetterRecord = {
      reason, error: error.length > 4000 ? `${error.slice(0, 4000)}…` : error, topic: msg.topic, partition: msg.partition, offset: msg.offset,
      entity: parked?.entity ?? route?.entity.name ?? null, node: route?.mapping.node ?? null, recordKey: parked?.keyText ?? null,
      payload: msg.value?.toString('base64') ?? null, payloadKind: 'debezium',
    };
    const key = parked ? `${parked.entity}:${parked.keyText}` : `dead:${msg.topic}/${msg.partition}`;
    let record: OutMessage = { topic: this.o.changesTopic, key, value: encodeDead(letter) };
    if (recordBytes(record) > this.o.maxRecordBytes && msg.value !== null) {
      staged.push({ topic: msg.topic, partition: msg.partition, offset: msg.offset, payload: msg.value });
      record = { ...record, value: encodeDead({ ...letter, payload: null, payloadStaged: true }) };
    }
    if (recordBytes(record) > this.o.maxRecordBytes) {
      // the key alone is too large to travel (it is in the Kafka key and in the letter): the
      // letter goes without it, unparked; the record's later changes are as large, and go the same way
      record = { topic: this.o.changesTopic, key: `dead:${msg.topic}/${msg.partition}`, value: encodeDead({ ...letter, recordKey: null, payload: null, payloadStaged: msg.value !== null, error: `${letter.error.slice(0, 1000)} (its key is too large to park)` }) };
    }
    return record;
  }

  /** Keeps the payloads of this batch's too-large dead letters until their commit takes them (idempotent: a re-routed batch stages nothing twice). */
  private async stage(lane: Lane, staged: Staged[]): Promise<boolean> {
    const done = await retry('staging', () => stagePayloads(this.o.pool, this.o.groupId, staged), {
      log: this.o.log, level: 'error', message: 'Staging an oversized dead letter\'s payload failed; retrying in order', context: { lane: lane.logId }, abandon: () => lane.revoked,
    });
    return done !== ABANDONED;
  }

  released(count: number): void {
    this.loop.released(count);
  }

  laneFailed(lane: Lane, err: unknown): void {
    this.o.log.error({ lane: lane.logId, err: errorMessage(err) }, 'Ingest lane failed');
  }
}
