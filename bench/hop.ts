import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { parseEnv } from '../src/config/env.ts';
import { loadTopology } from '../src/config/topology.ts';
import { DebeziumDecoder } from '../src/events/debezium.ts';
import { decodeChangeRecord, encodeChange, routingKey } from '../src/events/change-codec.ts';
import type { ChangeEvent } from '../src/events/change-event.ts';
import { ChangeConsumer } from '../src/kafka/consumer.ts';
import { ChangeProducer, deleteTopic, ensureTopic, type OutMessage } from '../src/kafka/producer.ts';
import { createLogger } from '../src/log.ts';
import { sleep } from '../src/retry.ts';
import { cpuSnapshot } from '../load/proc-cpu.ts';
import { ENTITIES, envelope, row } from '../load/events.ts';
import { median, progress, ROOT, table, writeResults, type BenchOptions } from '../harness/common.ts';

/**
 * What the second Kafka hop costs (issue 13: "measure it before you build it", for the
 * co-partitioned single-hop mode). The worker's ingest stage turns each Debezium envelope
 * into a change record on the changes topic, and its sync stage reads it back. A single-hop
 * mode would drop that hop and keep everything else. This bench runs the hop alone: the
 * load topology's own change records, built by the worker's decoder and `encodeChange`, are
 * produced at BENCH_HOP_RATE a second (2,000) for BENCH_HOP_SECONDS (30) onto a fresh topic
 * of CHANGES_PARTITIONS partitions, with the worker's `ChangeProducer`, and consumed and
 * decoded with its `ChangeConsumer` and `decodeChangeRecord`, under the worker's Kafka
 * settings (KAFKA_LINGER_MS, KAFKA_FETCH_*, BATCH_SIZE, BATCH_WAIT_MS).
 *
 * It prints CPU per record, from /proc: this process (the worker's share of the hop), and
 * the broker above its own idle rate, measured first for BENCH_HOP_IDLE_SECONDS (10).
 * Needs the local stack; the rest of it should be idle.
 */
export async function run(o: BenchOptions = {}): Promise<void> {
  const env = parseEnv(process.env);
  const rate = Number(process.env.BENCH_HOP_RATE ?? 2000);
  const seconds = Number(process.env.BENCH_HOP_SECONDS ?? 30);
  const idleSeconds = Number(process.env.BENCH_HOP_IDLE_SECONDS ?? 10);
  const brokers = process.env.KAFKA_BROKERS ?? '127.0.0.1:19092';
  const log = createLogger('warn', 'bench-hop');
  const topic = `worker-sync-hop-${Date.now().toString(36)}`;

  const records = changeRecords(4000, topic);
  const sizes = records.map((r) => r.value.length);
  process.stdout.write(`change records: ${records.length} distinct, median ${median(sizes)} bytes (JSON, before lz4)\n`);

  await ensureTopic(brokers, topic, env.changesPartitions, 1);
  const producer = new ChangeProducer(brokers, 'bench-hop', log, env.kafkaMaxMessageBytes, env.kafkaLingerMs);
  const consumer = new ChangeConsumer({
    brokers, groupId: `${topic}-group`, clientId: 'bench-hop-sync', consumeTimeoutMs: env.batchWaitMs,
    maxMessageBytes: env.kafkaMaxMessageBytes, fetchMinBytes: env.kafkaFetchMinBytes, fetchWaitMaxMs: env.kafkaFetchWaitMaxMs,
  }, { assigned: () => undefined, revoked: () => undefined }, log);
  try {
    await producer.connect();
    await consumer.connect();
    consumer.subscribe([topic]);

    // the broker's own rate with nothing flowing, to take off its figure below
    const i0 = cpuSnapshot(ROOT, undefined);
    await sleep(idleSeconds * 1000);
    const i1 = cpuSnapshot(ROOT, undefined);
    const brokerIdlePerS = i0.broker === null || i1.broker === null ? null : (i1.broker - i0.broker) / idleSeconds;

    let consumed = 0;
    let stop = false;
    const lagMs: number[] = [];
    const reader = (async () => {
      while (!stop) {
        const msgs = await consumer.consume(env.batchSize);
        for (const m of msgs) {
          const rec = decodeChangeRecord(m.value ?? Buffer.alloc(0));
          if (!('event' in rec)) throw new Error('a change record without an event');
          consumer.storeOffset(m.topic, m.partition, m.offset + 1);
          if (m.timestamp !== undefined && consumed % 50 === 0) lagMs.push(Date.now() - m.timestamp); // one record in 50
          consumed++;
        }
      }
    })();
    reader.catch(() => undefined); // awaited below, where its error surfaces

    const warmup = 5;
    const tickMs = 20;
    const perTick = rate * tickMs / 1000;
    const start = Date.now();
    let sent = 0;
    let a: ReturnType<typeof cpuSnapshot> | undefined;
    let aCount = 0;
    let aAt = 0;
    let next = 0;
    for (let tick = 0; ; tick++) {
      const at = start + tick * tickMs;
      const elapsed = (at - start) / 1000;
      if (elapsed >= warmup + seconds) break;
      if (a === undefined && elapsed >= warmup) {
        a = cpuSnapshot(ROOT, undefined);
        aCount = consumed;
        aAt = Date.now();
      }
      const due = Math.floor((tick + 1) * perTick) - sent;
      const batch: OutMessage[] = [];
      for (let k = 0; k < due; k++) {
        batch.push(records[next]!);
        next = (next + 1) % records.length;
      }
      await producer.send(batch);
      sent += due;
      progress(`[hop] ${Math.floor(elapsed)}/${warmup + seconds} s  produced ${sent}  consumed ${consumed}`);
      const wait = at + tickMs - Date.now();
      if (wait > 0) await sleep(wait);
    }
    const b = cpuSnapshot(ROOT, undefined);
    const bCount = consumed;
    const window = (Date.now() - aAt) / 1000;
    progress(`[hop] produced ${sent}  consumed ${consumed}`, true);
    // let the rest arrive, so the count is whole
    const drainBy = Date.now() + 10_000;
    while (consumed < sent && Date.now() < drainBy) await sleep(50);
    stop = true;
    await reader;

    const n = bCount - aCount;
    const perRecord = (x: number | null, y: number | null, idle = 0) => (x === null || y === null || n === 0 ? null : Number(((y - x - idle * window) * 1e6 / n).toFixed(1)));
    const summary = {
      rate, seconds: Number(window.toFixed(1)), partitions: env.changesPartitions, record_bytes_median: median(sizes),
      linger_ms: env.kafkaLingerMs, fetch_min_bytes: env.kafkaFetchMinBytes, fetch_wait_max_ms: env.kafkaFetchWaitMaxMs,
      produced: sent, consumed, records_in_window: n, lost: Math.max(0, sent - consumed),
      cpu_us_per_record: {
        worker: perRecord(a!.generator, b.generator),
        broker: perRecord(a!.broker, b.broker, brokerIdlePerS ?? 0),
        broker_with_idle: perRecord(a!.broker, b.broker),
        connect: perRecord(a!.connect, b.connect),
        postgres: perRecord(a!.postgres, b.postgres),
      },
      broker_idle_ms_per_s: brokerIdlePerS === null ? null : Number((brokerIdlePerS * 1000).toFixed(1)),
      lag_ms: { p50: median(lagMs), p95: percentile(lagMs, 0.95) },
    };
    process.stdout.write(`${table([
      { process: 'this process (produce, consume, decode)', 'µs per record': String(summary.cpu_us_per_record.worker) },
      { process: 'broker, above its idle rate', 'µs per record': String(summary.cpu_us_per_record.broker) },
      { process: 'broker, all of it', 'µs per record': String(summary.cpu_us_per_record.broker_with_idle) },
      { process: 'Connect / PostgreSQL (idle here)', 'µs per record': `${summary.cpu_us_per_record.connect} / ${summary.cpu_us_per_record.postgres}` },
    ])}\n`);
    process.stdout.write(`${n} records in ${summary.seconds} s at ${rate}/s; broker idle ${summary.broker_idle_ms_per_s} ms/s; produce-to-consume p50 ${summary.lag_ms.p50} ms, p95 ${summary.lag_ms.p95} ms; ${summary.lost} not consumed\n`);
    process.stdout.write(`results: ${writeResults('hop', summary)}\n`);
    if (o.json) writeFileSync(o.json, `${JSON.stringify(summary, null, 2)}\n`);
  } finally {
    await consumer.disconnect().catch(() => undefined);
    await producer.disconnect().catch(() => undefined);
    await deleteTopic(brokers, topic).catch(() => undefined);
  }
}

/** The load topology's change records, as the ingest stage makes them: envelope, decoder, encodeChange. */
function changeRecords(count: number, topic: string): OutMessage[] {
  const topology = loadTopology(path.join(ROOT, 'load/topology.yaml'));
  const decoder = new DebeziumDecoder(topology);
  const now = Date.now();
  const out: OutMessage[] = [];
  for (let i = 0; i < count; i++) {
    const entity = ENTITIES[i % ENTITIES.length]!;
    const id = 1 + Math.floor(i / ENTITIES.length);
    const e = envelope(entity, 'u', row(id, 1, now * 1000), row(id, 2, now * 1000), { lsn: BigInt(1_000_000 + i), txId: 1000 + i, now, schemas: i % 2 === 0 });
    const ev = decoder.decode({ topic: e.topic, partition: id % 6, offset: i, value: e.value }) as ChangeEvent;
    out.push({ topic, key: routingKey(ev), value: encodeChange(ev) });
  }
  return out;
}

function percentile(xs: number[], q: number): number {
  const s = [...xs].sort((x, y) => x - y);
  return s.length === 0 ? NaN : s[Math.min(s.length - 1, Math.floor(q * s.length))]!;
}
