import Kafka from 'node-rdkafka';
import { WorkerSyncError } from '../errors.ts';
import { kafkaClientProps } from './client-config.ts';
import type { Logger } from '../log.ts';

export interface TopicPartition {
  topic: string;
  partition: number;
}

export interface ConsumedMessage {
  topic: string;
  partition: number;
  offset: number;
  key: Buffer | null;
  value: Buffer | null;
  timestamp: number | undefined;
}

export interface RebalanceHandler {
  /** Partitions gained. May return a start offset per partition (RESET_CHECKPOINT). */
  assigned(parts: TopicPartition[]): Map<string, number> | undefined;
  /** Partitions lost. Called before they are released to the group. */
  revoked(parts: TopicPartition[]): void;
}

export interface ConsumerOptions {
  brokers: string;
  groupId: string;
  clientId: string;
  consumeTimeoutMs: number;
  /** KAFKA_MAX_MESSAGE_BYTES: a partition's fetch takes at least one message this large. */
  maxMessageBytes?: number;
  /** KAFKA_FETCH_MIN_BYTES and KAFKA_FETCH_WAIT_MAX_MS: how much a fetch waits for, and for how long at most. */
  fetchMinBytes?: number;
  fetchWaitMaxMs?: number;
}

const ERR_ASSIGN = Kafka.CODES.ERRORS.ERR__ASSIGN_PARTITIONS;
const ERR_REVOKE = Kafka.CODES.ERRORS.ERR__REVOKE_PARTITIONS;

export const tpKey = (topic: string, partition: number) => `${topic}/${partition}`;

/**
 * The ingest consumer (DESIGN §8): librdkafka through node-rdkafka, batch consume,
 * cooperative-sticky assignment with our own rebalance callback, offsets stored only
 * after the PostgreSQL checkpoint commits (`enable.auto.offset.store=false`) and
 * auto-committed from the store.
 */
export class ChangeConsumer {
  private readonly consumer: Kafka.KafkaConsumer;
  private readonly log: Logger;
  private readonly owned = new Set<string>();
  private readonly consumeTimeoutMs: number;
  /** Set by disconnect(): 'leaving' once it has unsubscribed, 'closing' once close() runs. */
  private phase: 'member' | 'leaving' | 'closing' = 'member';

  constructor(opts: ConsumerOptions, handler: RebalanceHandler, log: Logger) {
    this.log = log;
    const owned = this.owned;
    const phase = () => this.phase;
    this.consumer = new Kafka.KafkaConsumer(
      {
        ...kafkaClientProps(),
        'metadata.broker.list': opts.brokers,
        'group.id': opts.groupId,
        'client.id': opts.clientId,
        'enable.auto.commit': true,
        'auto.commit.interval.ms': 1000,
        'enable.auto.offset.store': false,
        'partition.assignment.strategy': 'cooperative-sticky',
        'allow.auto.create.topics': false,
        'session.timeout.ms': 10_000,
        'heartbeat.interval.ms': 1000,
        'topic.metadata.refresh.interval.ms': 5000,
        // By default the broker answers a fetch as soon as any data arrives (fetch.min.bytes 1),
        // so the wait bounds only an idle partition's: at 20 ms the two consumers' fetches cost
        // an idle worker about 9 ms of CPU a second, and the broker its share, for nothing. A
        // larger fetch.min.bytes makes batches and cycles larger (less CPU per event in the
        // worker, PostgreSQL and the broker) for up to the wait in latency on each of the two
        // hops (bench/RESULTS.md, 2026-12-03).
        'fetch.min.bytes': opts.fetchMinBytes ?? 1,
        'fetch.wait.max.ms': opts.fetchWaitMaxMs ?? 250,
        // librdkafka's defaults, raised together with KAFKA_MAX_MESSAGE_BYTES: a fetch must be
        // able to carry the largest message the worker produces (receive ≥ fetch + 512)
        'fetch.message.max.bytes': Math.max(1_048_576, opts.maxMessageBytes ?? 0),
        'fetch.max.bytes': Math.max(52_428_800, opts.maxMessageBytes ?? 0),
        'receive.message.max.bytes': Math.max(100_000_000, Math.max(52_428_800, opts.maxMessageBytes ?? 0) + 512),
        'socket.keepalive.enable': true,
        rebalance_cb(this: Kafka.KafkaConsumer, err: Kafka.LibrdKafkaError, assignment: Kafka.Assignment[]) {
          const parts = assignment.map((a) => ({ topic: a.topic, partition: a.partition }));
          try {
            if (err.code === ERR_ASSIGN) {
              if (phase() === 'closing') log.warn({ partitions: parts.length }, 'Partitions assigned while the consumer closes');
              // leaving the group: take what the protocol hands over only to give it back, without lanes
              const offsets = phase() === 'member' ? handler.assigned(parts) : undefined;
              for (const p of parts) owned.add(tpKey(p.topic, p.partition));
              const withOffsets = parts.map((p) => {
                const o = offsets?.get(tpKey(p.topic, p.partition));
                return o === undefined ? p : { ...p, offset: o };
              });
              this.incrementalAssign(withOffsets);
            } else if (err.code === ERR_REVOKE) {
              // disconnect() leaves the group first so that close() has nothing left to revoke
              if (phase() === 'closing') log.warn({ partitions: parts.length }, 'Partitions revoked while the consumer closes');
              for (const p of parts) owned.delete(tpKey(p.topic, p.partition));
              handler.revoked(parts);
              this.incrementalUnassign(parts);
            } else {
              log.error({ err: err.message, code: err.code }, 'Rebalance error');
            }
          } catch (e) {
            log.error({ err: (e as Error).message }, 'Rebalance callback failed');
          }
        },
      },
      { 'auto.offset.reset': 'earliest' },
    );
    this.consumeTimeoutMs = opts.consumeTimeoutMs;
    this.consumer.on('event.error', (err) => log.warn({ err: err.message }, 'Kafka client error'));
  }

  connect(timeoutMs = 30_000): Promise<void> {
    return new Promise((resolve, reject) => {
      this.consumer.connect({ timeout: timeoutMs }, (err) => {
        if (err) reject(new WorkerSyncError('WS_KAFKA', `cannot connect to Kafka: ${err.message}`, { cause: err, retryable: true }));
        else resolve();
      });
    });
  }

  subscribe(topics: string[]): void {
    this.consumer.subscribe(topics);
  }

  isConnected(): boolean {
    return this.consumer.isConnected();
  }

  owns(topic: string, partition: number): boolean {
    return this.owned.has(tpKey(topic, partition));
  }

  /**
   * Up to `max` messages: waits at most `consumeTimeoutMs` for the first, then takes only
   * what librdkafka has already fetched. node-rdkafka's `consume(n)` applies its timeout to
   * each message in turn, so a steady trickle (one message per timeout) would hold a batch
   * open until it has `n` messages. At 500 events/s this change took the sync latency's p50
   * from about 1 s to about 0.65 s (bench/RESULTS.md, round 2). The
   * broker's `fetch.wait.max.ms` still groups what arrives together, and a lane batches
   * whatever queues up behind a batch in flight.
   */
  async consume(max: number): Promise<ConsumedMessage[]> {
    const first = await this.consumeNum(1, this.consumeTimeoutMs);
    if (first.length === 0 || max <= 1) return first;
    let rest: ConsumedMessage[];
    try {
      rest = await this.consumeNum(max - 1, 1);
    } catch (err) {
      // librdkafka has moved past the first message: returning it is the only way not to
      // skip it. The error, if it lasts, comes back on the next call.
      this.log.warn({ err: (err as Error).message }, 'Consume failed after the first message of a batch; returning that one');
      return first;
    }
    return first.concat(rest);
  }

  private consumeNum(max: number, timeoutMs: number): Promise<ConsumedMessage[]> {
    // one consume call at a time per consumer (the loop awaits each), so the timeout set here is this call's
    this.consumer.setDefaultConsumeTimeout(timeoutMs);
    return new Promise((resolve, reject) => {
      this.consumer.consume(max, (err, messages) => {
        if (err) {
          reject(new WorkerSyncError('WS_KAFKA', `consume failed: ${err.message}`, { cause: err, retryable: true }));
          return;
        }
        resolve(messages.map((m) => ({
          topic: m.topic,
          partition: m.partition,
          offset: m.offset,
          key: (m.key as Buffer | null | undefined) ?? null,
          value: m.value ?? null,
          timestamp: m.timestamp,
        })));
      });
    });
  }

  /** Stores the next offset to read for partitions we still own; auto-commit sends them. */
  storeOffset(topic: string, partition: number, nextOffset: number): void {
    if (!this.owns(topic, partition)) return;
    try {
      this.consumer.offsetsStore([{ topic, partition, offset: nextOffset }]);
    } catch (err) {
      // Lost the partition between the check and the call: the new owner resumes from
      // the PostgreSQL checkpoint, so nothing is lost.
      this.log.warn({ topic, partition, err: (err as Error).message }, 'Offset store refused');
    }
  }

  /** Moves an owned partition's fetch position; what was fetched past it is discarded by librdkafka. */
  seek(topic: string, partition: number, offset: number): Promise<void> {
    return new Promise((resolve, reject) => {
      this.consumer.seek({ topic, partition, offset }, 5000, (err) => {
        if (err) reject(new WorkerSyncError('WS_KAFKA', `seek of ${topic}/${partition} to ${offset} failed: ${err.message}`, { cause: err, retryable: true }));
        else resolve();
      });
    });
  }

  /** The partition's first offset still in the log, from the last fetch (librdkafka's cached watermarks). */
  lowWatermark(topic: string, partition: number): number | undefined {
    try {
      const low = this.consumer.getWatermarkOffsets(topic, partition).lowOffset;
      return low >= 0 ? low : undefined;
    } catch {
      return undefined;
    }
  }

  highWatermark(topic: string, partition: number): number | undefined {
    try {
      return this.consumer.getWatermarkOffsets(topic, partition).highOffset;
    } catch {
      return undefined;
    }
  }

  /** Commits stored offsets now (used on shutdown). */
  commitStored(): void {
    try {
      this.consumer.commit();
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'Final offset commit failed');
    }
  }

  /**
   * Leaves the group, then closes. With a rebalance callback, librdkafka's close() revokes
   * what is still assigned (and delivers an assignment still on its way) and waits for the
   * callback's incremental (un)assign, which node-rdkafka runs on the JavaScript thread while
   * its own close thread goes on to destroy the handle: a race in the binding, and the
   * suspect when a worker stopped by SIGTERM died by signal instead of exiting 0. So the
   * group is left first, the normal way: unsubscribe, then poll until every rebalance has
   * been served and nothing is assigned. What those polls return is dropped: offsets are
   * stored only for committed work, so the next owner reads it again.
   */
  async disconnect(leaveTimeoutMs = 5000): Promise<void> {
    if (!this.consumer.isConnected()) return;
    this.phase = 'leaving';
    try {
      this.consumer.unsubscribe();
      const deadline = Date.now() + leaveTimeoutMs;
      // at least two polls: an assignment the broker has already sent is delivered by one of them
      for (let polls = 0; polls < 2 || (this.assigned() && Date.now() < deadline); polls++) {
        await this.consumeNum(500, 100).catch(() => []);
      }
      if (this.assigned()) this.log.warn({ partitions: this.owned.size, leaveTimeoutMs }, 'Partitions still assigned after leaving the group; closing anyway');
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'Leaving the group failed; closing with what is assigned');
    }
    this.phase = 'closing';
    await new Promise<void>((resolve) => this.consumer.disconnect(() => resolve()));
  }

  private assigned(): boolean {
    return this.owned.size > 0 || this.consumer.assignments().length > 0;
  }
}

/**
 * Commits a consumer group's offsets at the current end of `topics`, so a new group starts
 * with what arrives from now on instead of the topics' whole history (load runs, tests).
 * Returns how many messages it skips.
 */
export async function commitAtEnd(brokers: string, group: string, topics: string[]): Promise<number> {
  const c = new Kafka.KafkaConsumer({ ...kafkaClientProps(), 'metadata.broker.list': brokers, 'group.id': group, 'enable.auto.commit': false }, {});
  await new Promise<void>((resolve, reject) => c.connect({ timeout: 15_000 }, (err) => (err ? reject(err) : resolve())));
  try {
    const md = await new Promise<Kafka.Metadata>((resolve, reject) => c.getMetadata({ timeout: 15_000 }, (err, m) => (err ? reject(err) : resolve(m))));
    const offsets: Kafka.TopicPartitionOffset[] = [];
    let skipped = 0;
    for (const t of md.topics.filter((x) => topics.includes(x.name))) {
      for (const p of t.partitions) {
        const w = await new Promise<Kafka.WatermarkOffsets>((resolve, reject) => c.queryWatermarkOffsets(t.name, p.id, 10_000, (err, o) => (err ? reject(err) : resolve(o))));
        offsets.push({ topic: t.name, partition: p.id, offset: w.highOffset });
        skipped += w.highOffset - w.lowOffset;
      }
    }
    if (offsets.length > 0) c.commitSync(offsets);
    return skipped;
  } finally {
    await new Promise<void>((resolve) => c.disconnect(() => resolve()));
  }
}
