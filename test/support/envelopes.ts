import { readFileSync } from 'node:fs';
import path from 'node:path';
import Kafka from 'node-rdkafka';
import { ROOT, stack } from './stack.ts';

/**
 * Debezium envelopes made from the recorded ones (test/fixtures/debezium), for tests that
 * put messages onto a real connector topic themselves: the exact shape the connector
 * emits, with the key, images and position a test needs.
 */
const fixture = (name: string) => JSON.parse(readFileSync(path.join(ROOT, 'test/fixtures/debezium', name), 'utf8')) as Record<string, unknown>;

type Obj = Record<string, unknown>;

/** A `pg.public.customers` change (schemas on), as the PostgreSQL connector writes it. */
export function pgCustomerEnvelope(op: 'c' | 'u' | 'd', id: number, row: { name?: string; balance?: string | null } = {}, lsn = 1_000_000_000 + id % 1_000_000): { key: string; value: string } {
  const doc = fixture('pg.customers.u.json') as { schema: unknown; payload: Obj };
  const base = doc.payload.after as Obj;
  const image = { ...base, id, name: row.name ?? `customer ${id}`, balance: row.balance === undefined ? base.balance : row.balance, _sync_version: null };
  const source = { ...(doc.payload.source as Obj), lsn, sequence: JSON.stringify([String(lsn), String(lsn)]), ts_ms: Date.now() };
  const payload = { ...doc.payload, op, before: op === 'c' ? null : image, after: op === 'd' ? null : image, source, ts_ms: Date.now() };
  return { key: JSON.stringify({ schema: (fixture('pg.customers.u.key.json') as Obj).schema, payload: { id } }), value: JSON.stringify({ schema: doc.schema, payload }) };
}

/** A producer for raw messages onto connector topics; messages up to 64 MB (lz4 keeps what the broker sees small). */
export interface RawProducer {
  /** Resolves with the message's offset once the broker has it. */
  send(topic: string, key: string | Buffer | null, value: string | Buffer | null, partition?: number): Promise<number>;
  close(): Promise<void>;
}

export async function rawProducer(): Promise<RawProducer> {
  const producer = new Kafka.Producer({ 'metadata.broker.list': stack().kafka.bootstrap, dr_cb: true, 'message.max.bytes': 64 * 1024 * 1024, 'compression.codec': 'lz4', 'linger.ms': 5 });
  await new Promise<void>((resolve, reject) => producer.connect({}, (err) => (err ? reject(err) : resolve())));
  producer.setPollInterval(10);
  const pending = new Map<number, { resolve: (offset: number) => void; reject: (e: Error) => void }>();
  let n = 0;
  producer.on('delivery-report', (err, report) => {
    const p = pending.get(report.opaque as number);
    pending.delete(report.opaque as number);
    if (err) p?.reject(new Error(err.message));
    else p?.resolve(report.offset);
  });
  // a topic a worker has just created may not be in this producer's metadata yet, and
  // librdkafka fails a message for an explicit partition it does not know ("unknown
  // partition") instead of waiting: wait until the broker reports the partition
  const known = new Map<string, number>();
  const ensure = async (topic: string, partition: number): Promise<void> => {
    for (let i = 0; (known.get(topic) ?? 0) <= partition; i++) {
      if (i === 100) throw new Error(`${topic} has no partition ${partition} after 20 s`);
      const md = await new Promise<Kafka.Metadata>((resolve, reject) => producer.getMetadata({ topic, timeout: 5000 }, (err, m) => (err ? reject(err) : resolve(m))));
      known.set(topic, md.topics.find((t) => t.name === topic)?.partitions.length ?? 0);
      if ((known.get(topic) ?? 0) <= partition) await new Promise((r) => setTimeout(r, 200));
    }
  };
  return {
    async send(topic, key, value, partition) {
      if (partition !== undefined) await ensure(topic, partition);
      const id = n++;
      return new Promise<number>((resolve, reject) => {
        pending.set(id, { resolve, reject });
        try {
          producer.produce(topic, partition ?? null, value === null ? null : Buffer.from(value), key === null ? null : Buffer.from(key), Date.now(), id);
        } catch (err) {
          pending.delete(id);
          reject(err as Error);
        }
      });
    },
    close: () => new Promise<void>((resolve) => producer.flush(10_000, () => producer.disconnect(() => resolve()))),
  };
}
