import Kafka from 'node-rdkafka';
import { ENTITIES, EnvelopeWriter, formsOf, Keyspace, mixOp, step, type Entity, type MixOp } from './events.ts';

/**
 * The load generator (issue 6), kept cheap (issue 13): on this 2-core machine it shares the
 * CPU with the system it measures, so what it spends is taken from the worker, the broker
 * and PostgreSQL.
 *
 * - Envelopes come from an EnvelopeWriter: constant pieces copied into one buffer, no
 *   per-event JSON.
 * - The pace loop wakes every TICK_MS and produces what is due in one burst. Each wake-up
 *   of a process costs about 100-340 µs of CPU on this machine whatever it then does
 *   (measured with `npm run bench -- generator`), so 200 wake-ups/s cost more than the
 *   events. Every event is stamped when it is built, just before it is produced, so the
 *   burst does not add to the latency measured from its ts_ms.
 * - No delivery report per message: handling one costs the main thread about 4 µs (about
 *   a sixth of the budget). Delivery is checked once, by the broker's own count: the sum
 *   of the load topics' high watermarks must have grown by every message produced
 *   (`undelivered`). A run's errors include what is missing. Only the generator writes
 *   the load topics.
 */
export const TICK_MS = 100;
export const POLL_MS = 1000;

export interface Sample { entity: Entity; id: number; version: number; sentAt: number }

/** The producer of `npm run load` and `npm run bench -- generator`: Debezium's events in lz4 batches. */
export function loadProducer(brokers: string): Kafka.Producer {
  return new Kafka.Producer({
    'metadata.broker.list': brokers, 'client.id': 'worker-sync-load', 'linger.ms': 5, 'batch.num.messages': 10_000,
    'compression.codec': 'lz4', 'queue.buffering.max.messages': 2_000_000,
  }, {});
}

export class Generator {
  /** Change events produced (tombstones not counted). */
  produced = 0;
  /** Kafka messages produced: change events and tombstones. */
  private messages = 0;
  private readonly topics: string[];
  private baseline: number | undefined;
  private lsn = BigInt(Date.now()) * 1000n;
  private seq = 0;
  private readonly writer: EnvelopeWriter;
  readonly keys = new Map<Entity, Keyspace>();
  readonly samples: Sample[] = [];
  sampleEvery = 97;

  /** `prefix`: the synthetic node's topic prefix (load.loadtest.<entity>). */
  constructor(private readonly producer: Kafka.Producer, base: number, prefix = 'load') {
    this.writer = new EnvelopeWriter(prefix);
    for (const e of ENTITIES) this.keys.set(e, new Keyspace(base));
    this.topics = ENTITIES.map((e) => `${prefix}.loadtest.${e}`);
    producer.setPollInterval(POLL_MS); // librdkafka's error and log events
  }

  /** One change event; returns the number of change events (tombstones not counted). */
  emit(op: MixOp, entity: Entity): number {
    const ks = this.keys.get(entity)!;
    const now = Date.now();
    const c = step(ks, op, now * 1000);
    this.lsn += 8n;
    const { topic, key, value } = this.writer.write(entity, c.op, c.id, c.beforeVersion, c.afterVersion, now * 1000, { lsn: this.lsn, txId: ++this.seq, now, ...formsOf(entity, this.seq) });
    this.produce(topic, key, value, now);
    if (c.op === 'd') this.produce(topic, key, null, now); // Debezium's tombstone
    if (c.op === 'u' && this.seq % this.sampleEvery === 0) this.samples.push({ entity, id: c.id, version: ks.version.get(c.id)!, sentAt: now });
    return 1;
  }

  /** The writer's key and value are copied by librdkafka here (RK_MSG_COPY), before the next write reuses them. */
  private produce(topic: string, key: Buffer, value: Buffer | null, now: number): void {
    for (;;) {
      try {
        this.producer.produce(topic, null, value, key, now);
        this.messages++;
        return;
      } catch (err) {
        if ((err as { code?: number }).code !== Kafka.CODES.ERRORS.ERR__QUEUE_FULL) throw err;
        this.producer.poll();
      }
    }
  }

  /** Sum of the load topics' high watermarks; a topic just created may not have its leaders yet, so this waits up to 30 s for them. */
  private async watermarks(): Promise<number> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.watermarksOnce();
      } catch (err) {
        if (attempt >= 60) throw err;
        await sleep(500);
      }
    }
  }

  private async watermarksOnce(): Promise<number> {
    const md = await new Promise<Kafka.Metadata>((resolve, reject) => this.producer.getMetadata({ timeout: 10_000 }, (err, m) => (err ? reject(err) : resolve(m))));
    let sum = 0;
    for (const t of md.topics.filter((x) => this.topics.includes(x.name))) {
      for (const p of t.partitions) {
        sum += await new Promise<number>((resolve, reject) => this.producer.queryWatermarkOffsets(t.name, p.id, 10_000, (err, o) => (err ? reject(err) : resolve(o.highOffset))));
      }
    }
    return sum;
  }

  /** Call once before producing (the topics must exist): what `undelivered` counts from. */
  async start(): Promise<void> {
    this.baseline = await this.watermarks();
  }

  /** Flushes, then returns how many produced messages the broker does not hold (0 when all arrived). */
  async undelivered(): Promise<number> {
    if (this.baseline === undefined) throw new Error('Generator.start() was not called');
    await new Promise<void>((resolve, reject) => this.producer.flush(60_000, (err) => (err ? reject(err) : resolve())));
    return Math.max(0, this.messages - ((await this.watermarks()) - this.baseline));
  }

  next(): number {
    const r = Math.random();
    const entity = ENTITIES[Math.floor(Math.random() * ENTITIES.length)]!;
    this.produced += this.emit(mixOp(r), entity);
    return 1;
  }

  /** Offers `rate` events/s for `durationS`, in one burst per TICK_MS; `each` runs about once a second. Returns the events sent. */
  async pace(rate: number, durationS: number, each: (elapsedS: number, sent: number) => Promise<void>): Promise<number> {
    const t0 = performance.now();
    let sent = 0;
    let lastReport = 0;
    while (performance.now() - t0 < durationS * 1000) {
      const due = Math.floor(((performance.now() - t0) / 1000) * rate) - sent;
      for (let i = 0; i < due; i++) sent += this.next();
      const elapsed = (performance.now() - t0) / 1000;
      if (elapsed - lastReport >= 1) {
        lastReport = Math.floor(elapsed);
        await each(elapsed, sent);
      }
      await sleep(TICK_MS);
    }
    return sent;
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
