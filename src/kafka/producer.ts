import Kafka from 'node-rdkafka';
import { WorkerSyncError } from '../errors.ts';
import { kafkaClientProps } from './client-config.ts';
import type { Logger } from '../log.ts';

export interface OutMessage {
  topic: string;
  key: string;
  value: Buffer;
}

/**
 * Room left for a record's framing inside message.max.bytes: librdkafka refuses a message
 * whose key, value and record overhead exceed it, and the broker measures the whole record
 * batch against the topic's max.message.bytes.
 */
export const RECORD_FRAMING_BYTES = 512;

/** The bytes of key and value a message may carry under `maxMessageBytes` (KAFKA_MAX_MESSAGE_BYTES). */
export function recordLimit(maxMessageBytes: number): number {
  return maxMessageBytes - RECORD_FRAMING_BYTES;
}

export function recordBytes(m: { key: string; value: Buffer }): number {
  return Buffer.byteLength(m.key) + m.value.length;
}

/** Counts the delivery reports of one batch; settles when all are in or one failed. */
class BatchDelivery {
  private pending: number;
  private failed: Error | undefined;
  readonly done: Promise<void>;
  private resolve!: () => void;
  private reject!: (e: Error) => void;

  constructor(count: number) {
    this.pending = count;
    this.done = new Promise((res, rej) => { this.resolve = res; this.reject = rej; });
    if (count === 0) this.resolve();
  }

  report(err: Error | null): void {
    if (err && !this.failed) this.failed = err;
    if (--this.pending === 0) {
      if (this.failed) this.reject(this.failed);
      else this.resolve();
    }
  }
}

/** How often the router's producer is polled: with nothing in flight (error and log events), and while a batch waits for its acknowledgements. */
const IDLE_POLL_MS = 1000;
const IN_FLIGHT_POLL_MS = 5;

/**
 * The routing producer (DESIGN §8): idempotent with acks=all, so one source partition's
 * events are never reordered or doubled by a retry on the way to the changes topic.
 * `send` resolves when every message of the batch is acknowledged.
 */
export class ChangeProducer {
  private readonly producer: Kafka.Producer;

  constructor(brokers: string, clientId: string, log: Logger, maxMessageBytes = 1_000_000, lingerMs = 2) {
    this.producer = new Kafka.Producer({
      ...kafkaClientProps(),
      'metadata.broker.list': brokers,
      'client.id': `${clientId}-router`,
      'message.max.bytes': maxMessageBytes,
      'enable.idempotence': true,
      // KAFKA_LINGER_MS: how long records wait to share a request with the next lane's batch
      'linger.ms': lingerMs,
      'compression.codec': 'lz4',
      'dr_cb': true,
      'queue.buffering.max.messages': 1_000_000,
    }, { 'request.required.acks': -1 });
    // librdkafka's error and log events, when nothing is in flight; delivery reports are polled for while a batch waits (`pollWhileInFlight`)
    this.producer.setPollInterval(IDLE_POLL_MS);
    this.producer.on('delivery-report', (err, report) => {
      (report.opaque as BatchDelivery | undefined)?.report(err ? new Error(err.message) : null);
    });
    this.producer.on('event.error', (err) => log.warn({ err: err.message }, 'Kafka producer error'));
  }

  connect(timeoutMs = 30_000): Promise<void> {
    return new Promise((resolve, reject) => {
      this.producer.connect({ timeout: timeoutMs }, (err) => {
        if (err) reject(new WorkerSyncError('WS_KAFKA', `producer cannot connect: ${err.message}`, { cause: err, retryable: true }));
        else resolve();
      });
    });
  }

  isConnected(): boolean {
    return this.producer.isConnected();
  }

  private inFlight = 0;
  private pollTimer: NodeJS.Timeout | undefined;

  /**
   * Delivery reports arrive only when the producer is polled. Polling every 5 ms all the
   * time cost an idle worker about 10 ms of CPU a second (a process wake-up costs 100-340 µs
   * on the 2-core test machine), so the fast poll runs only while a batch waits for its
   * acknowledgements.
   */
  private pollWhileInFlight(): void {
    if (this.pollTimer !== undefined) return;
    const tick = () => {
      this.producer.poll();
      this.pollTimer = this.inFlight > 0 ? setTimeout(tick, IN_FLIGHT_POLL_MS) : undefined;
    };
    this.pollTimer = setTimeout(tick, IN_FLIGHT_POLL_MS);
  }

  async send(messages: OutMessage[]): Promise<void> {
    if (messages.length === 0) return;
    const delivery = new BatchDelivery(messages.length);
    this.inFlight++;
    try {
      await this.produceAll(messages, delivery);
    } finally {
      this.inFlight--;
    }
  }

  private async produceAll(messages: OutMessage[], delivery: BatchDelivery): Promise<void> {
    this.pollWhileInFlight();
    for (const m of messages) {
      for (;;) {
        try {
          this.producer.produce(m.topic, null, m.value, m.key, Date.now(), delivery);
          break;
        } catch (err) {
          // Local queue full: let deliveries drain, then try again.
          if (!/queue full/i.test((err as Error).message)) throw new WorkerSyncError('WS_KAFKA', `produce failed: ${(err as Error).message}`, { cause: err, retryable: true });
          await new Promise((r) => setTimeout(r, 5));
        }
      }
    }
    try {
      await delivery.done;
    } catch (err) {
      throw new WorkerSyncError('WS_KAFKA', `delivery to the changes topic failed: ${(err as Error).message}`, { cause: err, retryable: true });
    }
  }

  disconnect(): Promise<void> {
    clearTimeout(this.pollTimer);
    this.pollTimer = undefined;
    return new Promise((resolve) => {
      if (!this.producer.isConnected()) {
        resolve();
        return;
      }
      this.producer.flush(5000, () => this.producer.disconnect(() => resolve()));
    });
  }
}

/** Creates a topic when it does not exist; an existing one is left as it is. */
export function ensureTopic(brokers: string, topic: string, partitions: number, replication: number, config: Record<string, string> = { 'cleanup.policy': 'delete' }): Promise<void> {
  const admin = Kafka.AdminClient.create({ ...kafkaClientProps(), 'metadata.broker.list': brokers, 'client.id': 'worker-sync-admin' });
  return new Promise<void>((resolve, reject) => {
    admin.createTopic({ topic, num_partitions: partitions, replication_factor: replication, config }, 15_000, (err) => {
      admin.disconnect();
      if (!err || err.code === Kafka.CODES.ERRORS.ERR_TOPIC_ALREADY_EXISTS) resolve();
      else reject(new WorkerSyncError('WS_KAFKA', `cannot create topic ${topic}: ${err.message}`, { cause: err, retryable: true }));
    });
  });
}

/** Deletes a topic; resolves whether or not it existed (benchmarks clean up after themselves). */
export function deleteTopic(brokers: string, topic: string): Promise<void> {
  const admin = Kafka.AdminClient.create({ ...kafkaClientProps(), 'metadata.broker.list': brokers, 'client.id': 'worker-sync-admin' });
  return new Promise<void>((resolve) => {
    admin.deleteTopic(topic, 30_000, () => {
      admin.disconnect();
      resolve();
    });
  });
}
