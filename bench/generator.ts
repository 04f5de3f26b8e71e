import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { deleteTopic, ensureTopic } from '../src/kafka/producer.ts';
import { ENTITIES, envelope, EnvelopeWriter, formsOf, row, type Entity } from '../load/events.ts';

type Meta = { lsn: bigint; txId: number; now: number; schemas: boolean; keySchemas: boolean };
import { Generator, loadProducer, POLL_MS, TICK_MS } from '../load/generator.ts';
import { median, table, writeResults } from '../harness/common.ts';
import type { BenchOptions } from '../harness/common.ts';

/**
 * What the load generator costs (issue 13 asks for at most 15 µs of CPU per event): on
 * this 2-core machine every µs it spends is taken from the system it measures.
 *
 * 1. Building envelopes alone, in a tight loop: `envelope` (one JSON.stringify per event)
 *    against the EnvelopeWriter that `npm run load` uses.
 * 2. The generator as `npm run load` runs it, without a worker: paced at BENCH_GEN_RATE
 *    (default 2,000) events/s for BENCH_GEN_SECONDS (20) into the load topics' prefix
 *    `bench-gen.*`, which no worker reads. CPU is this process's, every thread of it (the
 *    main thread, librdkafka's), from /proc, per event produced, over the paced window.
 * 3. Idle wake-ups: the same process asleep with a timer of TICK_MS, then 5 ms, to show what
 *    a wake-up costs here whatever it does.
 *
 * Needs the local stack's broker (`npm run stack:up`).
 */
export async function run(o: BenchOptions = {}): Promise<void> {
  const brokers = process.env.KAFKA_BROKERS ?? '127.0.0.1:19092';
  const rate = Number(process.env.BENCH_GEN_RATE ?? 2000);
  const seconds = Number(process.env.BENCH_GEN_SECONDS ?? 20);

  // 1. building alone
  const now = Date.now();
  const writer = new EnvelopeWriter();
  const build: Array<Record<string, string | number>> = [];
  const buildUs: Record<string, number> = {};
  const viaEnvelope = (e: Entity, i: number, m: Meta) => envelope(e, 'u', row(i, 3, now * 1000), row(i, 4, now * 1000), m);
  const viaWriter = (e: Entity, i: number, m: Meta) => writer.write(e, 'u', i, 3, 4, now * 1000, m);
  for (const [name, f] of [['envelope (JSON.stringify)', viaEnvelope], ['EnvelopeWriter', viaWriter]] as const) {
    const rounds: number[] = [];
    for (let round = 0; round < 5; round++) {
      const n = 50_000;
      const t = process.cpuUsage();
      for (let i = 0; i < n; i++) {
        const e = ENTITIES[i % 3]!;
        f(e, i, { lsn: BigInt(now) * 1000n + BigInt(i), txId: i, now, ...formsOf(e, i) });
      }
      const d = process.cpuUsage(t);
      rounds.push((d.user + d.system) / n);
    }
    buildUs[name] = Number(median(rounds).toFixed(2));
    build.push({ 'build only': name, 'µs per event (median of 5)': buildUs[name]! });
  }
  process.stdout.write(`${table(build)}\n`);

  // 2. the paced generator
  const producer = loadProducer(brokers);
  await new Promise<void>((resolve, reject) => producer.connect({}, (err) => (err ? reject(err) : resolve())));
  const gen = new Generator(producer, Date.now() * 10, 'bench-gen');
  for (const e of ENTITIES) await ensureTopic(brokers, `bench-gen.loadtest.${e}`, 6, 1);
  await gen.start();
  for (let i = 0; i < 2000; i++) gen.next(); // warm: the first produce to each topic waits for its metadata
  await new Promise<void>((resolve) => producer.flush(30_000, () => resolve()));
  const before = threadCpu();
  const t0 = performance.now();
  const sent = await gen.pace(rate, seconds, async () => {});
  const wallS = (performance.now() - t0) / 1000;
  const after = threadCpu();
  const undelivered = await gen.undelivered();
  await new Promise<void>((resolve) => producer.disconnect(() => resolve()));
  for (const e of ENTITIES) await deleteTopic(brokers, `bench-gen.loadtest.${e}`);
  const per = (name?: string) => {
    let us = 0;
    for (const [tid, t] of after) if (name === undefined || t.name === name) us += t.us - (before.get(tid)?.us ?? 0);
    return Number((us / sent).toFixed(1));
  };
  const threads = [...new Set([...after.values()].map((t) => t.name))];
  const paced = { rate, seconds: Number(wallS.toFixed(1)), events: sent, undelivered, cpu_us_per_event: per(), by_thread: Object.fromEntries(threads.map((n) => [n, per(n)])) };
  process.stdout.write(`${table([{ 'paced generator': `${rate} events/s, ${paced.seconds} s, tick ${TICK_MS} ms, poll ${POLL_MS} ms`, events: sent, 'CPU µs per event, all threads': paced.cpu_us_per_event, undelivered, 'by thread': threads.map((n) => `${n} ${paced.by_thread[n]}`).join(', ') }])}\n`);

  // 3. what a wake-up costs
  const wake: Record<string, number> = {};
  for (const ms of [TICK_MS, 5]) {
    const b = threadCpu();
    const t = performance.now();
    let n = 0;
    while (performance.now() - t < 3000) {
      await new Promise((r) => setTimeout(r, ms));
      n++;
    }
    const a = threadCpu();
    let us = 0;
    for (const [tid, x] of a) us += x.us - (b.get(tid)?.us ?? 0);
    wake[`${ms}ms`] = Math.round(us / n);
  }
  process.stdout.write(`${table(Object.entries(wake).map(([k, v]) => ({ 'idle timer': k, 'CPU µs per wake-up (whole process)': v })))}\n`);

  const summary = { build_us_per_event: buildUs, paced, wakeup_us: wake };
  const file = writeResults('generator', summary);
  process.stdout.write(`results: ${file}\n`);
  if (o.json) writeFileSync(o.json, `${JSON.stringify(summary, null, 2)}\n`);
}

/** Every thread's CPU time (user + system, µs) from /proc/self/task/<tid>/schedstat (exact, in ns), with its name. */
function threadCpu(): Map<string, { name: string; us: number }> {
  const out = new Map<string, { name: string; us: number }>();
  for (const tid of readdirSync('/proc/self/task')) {
    try {
      const ns = Number(readFileSync(`/proc/self/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
      const name = readFileSync(`/proc/self/task/${tid}/comm`, 'utf8').trim().replace(/^rdk:broker.*/, 'rdk:broker').replace(/^node$/, tid === String(process.pid) ? 'main' : 'node (V8, libuv)');
      out.set(tid, { name, us: ns / 1000 });
    } catch { /* the thread ended */ }
  }
  return out;
}
