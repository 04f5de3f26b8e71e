import type { DebeziumDecoder } from '../events/debezium.ts';
import { DecodeError, errorMessage } from '../errors.ts';
import { encodeChange, encodeDead, routingKey } from '../events/change-codec.ts';
import type { ChangeConsumer, ConsumedMessage } from '../kafka/consumer.ts';
import type { ChangeProducer, OutMessage } from '../kafka/producer.ts';
import type { Topology } from '../config/topology.ts';
import type { Metrics } from '../metrics.ts';
import type { Logger } from '../log.ts';
import type { Lane, LaneHost } from './lane.ts';
import type { Semaphore } from './semaphore.ts';
import { backoff, type ConsumeLoop } from './consume-loop.ts';
import type { Checkpoint } from './checkpoint-store.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Ingest (DESIGN §2): a lane per Debezium partition decodes its batch and routes each
 * change to the changes topic, keyed by entity and key, so every event of one record
 * meets in one partition. The source offsets are stored once the whole batch is
 * acknowledged; a crash in between re-routes the batch, and the sync stage recognises
 * the repeats by their source positions.
 */
export class IngestStage implements LaneHost {
  readonly semaphore: Semaphore;
  readonly batchSize: number;
  loop!: ConsumeLoop;
  consumer!: ChangeConsumer;

  private readonly decoder: DebeziumDecoder;
  private readonly producer: ChangeProducer;
  private readonly changesTopic: string;
  private readonly topology: Topology;
  private readonly metrics: Metrics;
  private readonly log: Logger;

  constructor(opts: { semaphore: Semaphore; batchSize: number; decoder: DebeziumDecoder; producer: ChangeProducer; changesTopic: string; topology: Topology; metrics: Metrics; log: Logger }) {
    this.semaphore = opts.semaphore;
    this.batchSize = opts.batchSize;
    this.decoder = opts.decoder;
    this.producer = opts.producer;
    this.changesTopic = opts.changesTopic;
    this.topology = opts.topology;
    this.metrics = opts.metrics;
    this.log = opts.log;
  }

  async loadCheckpoint(): Promise<Checkpoint | null> {
    return null; // source offsets live in Kafka; the sync stage deduplicates by position
  }

  async processBatch(lane: Lane, batch: ConsumedMessage[]): Promise<void> {
    const out: OutMessage[] = [];
    let tombstones = 0;
    let dead = 0;
    const debug = this.log.isLevelEnabled('debug');
    for (const msg of batch) {
      try {
        const ev = this.decoder.decode(msg);
        if ('tombstone' in ev) {
          tombstones++;
          continue;
        }
        if (debug) this.log.debug({ event: ev.id, entity: ev.entity, op: ev.op, key: ev.keyText, node: ev.node }, 'Processing CDC event');
        out.push({ topic: this.changesTopic, key: routingKey(ev), value: encodeChange(ev) });
      } catch (err) {
        const route = this.topology.topics.get(msg.topic);
        const reason = err instanceof DecodeError ? err.code : 'WS_INTERNAL';
        this.log.warn({ topic: msg.topic, partition: msg.partition, offset: msg.offset, reason, err: errorMessage(err) }, 'Event sent to dead letters');
        dead++;
        const parked = this.decoder.decodeKey(msg.topic, msg.key);
        out.push({
          topic: this.changesTopic,
          // With a readable key it goes where that record's events go, and parks the key there.
          key: parked ? `${parked.entity}:${parked.keyText}` : `dead:${msg.topic}/${msg.partition}`,
          value: encodeDead({
            reason, error: errorMessage(err), topic: msg.topic, partition: msg.partition, offset: msg.offset,
            entity: route?.entity.name ?? null, node: route?.mapping.node ?? null, recordKey: parked?.keyText ?? null,
            payload: msg.value?.toString('base64') ?? null, payloadKind: 'debezium',
          }),
        });
      }
    }
    for (let attempt = 0; ; attempt++) {
      if (lane.revoked) return;
      try {
        await this.producer.send(out);
        break;
      } catch (err) {
        this.log.error({ lane: lane.logId, attempt, err: errorMessage(err) }, 'Routing to the changes topic failed; retrying in order');
        await sleep(backoff(attempt));
      }
    }
    if (tombstones > 0) this.metrics.tombstones.inc(tombstones);
    this.metrics.routed.inc(out.length - dead);
    this.consumer.storeOffset(lane.topic, lane.partition, batch[batch.length - 1]!.offset + 1);
  }

  released(count: number): void {
    this.loop.released(count);
  }

  laneFailed(lane: Lane, err: unknown): void {
    this.log.error({ lane: lane.logId, err: errorMessage(err) }, 'Ingest lane failed');
  }
}
