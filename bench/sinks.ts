import pg from 'pg';
import mysql from 'mysql2/promise';
import { parseTopology } from '../src/config/topology.ts';
import { PostgresSink, type PgUpsertMode } from '../src/sinks/postgres-sink.ts';
import { MySqlSink } from '../src/sinks/mysql-sink.ts';
import type { Sink, UpsertRow } from '../src/sinks/sink.ts';
import { encode } from '../src/clock/codec.ts';
import { fromObject } from '../src/clock/version-vector.ts';
import { median, stackUrls, table, writeResults } from '../harness/common.ts';

/**
 * Each sink's batch apply at 100, 500 and 1,000 rows, on the stack's real databases:
 * every round upserts one batch of new rows (expected absent), then one batch updating
 * them by compare-and-set, then deletes them. The PostgreSQL sink runs in both upsert
 * modes, `unnest` and COPY staging, interleaved round by round so both see the same
 * machine. Prints rows/s (median of the rounds) and writes bench/results/sinks.json.
 */
const SIZES = [100, 500, 1000];
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 12);

const PG_DDL = `CREATE TABLE IF NOT EXISTS public.bench_customers (id bigint PRIMARY KEY, name text, email text, balance numeric(12,2), tags json, updated_at timestamp(6), _sync_version bytea)`;
const MY_DDL = `CREATE TABLE IF NOT EXISTS app.bench_customers (id bigint NOT NULL PRIMARY KEY, name varchar(255), email varchar(255), balance decimal(12,2), tags json, updated_at datetime(6), _sync_version varbinary(255)) ENGINE=InnoDB`;

export async function run(): Promise<void> {
  const s = stackUrls();
  const topology = parseTopology({
    nodes: { pg: { kind: 'postgres', url: s.postgres.url }, maria: { kind: 'mariadb', url: s.mariadb.url } },
    entities: {
      customers: {
        key: ['id'], columns: { id: 'bigint', name: 'text', email: 'text', balance: 'decimal(12,2)', tags: 'json', updated_at: 'timestamp(6)' },
        nodes: { pg: 'public.bench_customers', maria: 'app.bench_customers' },
      },
    },
  }, 'bench');
  const entity = topology.entities.get('customers')!;
  const admin = new pg.Client({ connectionString: s.postgres.url });
  await admin.connect();
  await admin.query(PG_DDL);
  await admin.query('TRUNCATE public.bench_customers');
  await admin.end();
  const my = await mysql.createConnection(s.mariadb.url);
  await my.query(MY_DDL);
  await my.query('TRUNCATE app.bench_customers');
  await my.end();

  const sinks: Array<[string, Sink]> = [
    ...(['unnest', 'copy'] as PgUpsertMode[]).map((m): [string, Sink] => [`postgres/${m}`, new PostgresSink('pg', s.postgres.url, 2, m)]),
    ['mariadb', new MySqlSink('maria', s.mariadb.url, 2)],
  ];
  const v1 = encode(fromObject({ 1: 1 }));
  const v2 = encode(fromObject({ 1: 1, 2: 1 }));
  const row = (id: number, i: number) => ({
    id, name: `customer ${i} Zoë`, email: `${id}@example.com`, balance: `${i % 10000}.25`, tags: { vip: i % 2 === 0, n: [i, i + 1] }, updated_at: '2026-11-30T12:34:56.123456',
  });
  const samples = new Map<string, number[]>();
  let next = 1;
  const total = ROUNDS * SIZES.length * sinks.length;
  let done = 0;
  for (let round = 0; round < ROUNDS; round++) {
    for (const size of SIZES) {
      for (const [name, sink] of sinks) {
        const ids = Array.from({ length: size }, () => next++);
        const inserts: UpsertRow[] = ids.map((id, i) => ({ key: { id }, row: row(id, i), version: v1, expected: null, expectAbsent: true }));
        const updates: UpsertRow[] = ids.map((id, i) => ({ key: { id }, row: { ...row(id, i), name: `updated ${i}` }, version: v2, expected: v1, expectAbsent: false }));
        const started = performance.now();
        const a = await sink.applyBatch(entity, inserts, []);
        const b = await sink.applyBatch(entity, updates, []);
        const ms = performance.now() - started;
        await sink.applyBatch(entity, [], ids.map((id) => ({ key: { id }, expected: v2, anyVersion: false })));
        if (![...a.upserts, ...b.upserts].every((o) => o === 'applied')) throw new Error(`${name}: not every row applied`);
        if (round > 0) { // the first round warms caches and statement plans
          const k = `${name}\u0000${size}`;
          samples.set(k, [...(samples.get(k) ?? []), (2 * size) / (ms / 1000)]);
        }
        done++;
        if (process.stderr.isTTY) process.stderr.write(`\r[${'#'.repeat(Math.round((done / total) * 30)).padEnd(30)}] ${done}/${total} batches`);
      }
    }
  }
  if (process.stderr.isTTY) process.stderr.write('\n');
  for (const [, sink] of sinks) await sink.close();

  const results = [...samples].map(([k, xs]) => {
    const [sink, size] = k.split('\u0000') as [string, string];
    return { sink, batch: Number(size), rows_per_s: Math.round(median(xs)), ms_per_batch: Number(((Number(size) / median(xs)) * 1000).toFixed(2)), rounds: xs.length };
  });
  process.stdout.write(`${table(results)}\n`);
  for (const size of SIZES) {
    const u = results.find((r) => r.sink === 'postgres/unnest' && r.batch === size)!;
    const c = results.find((r) => r.sink === 'postgres/copy' && r.batch === size)!;
    process.stdout.write(`postgres batch ${size}: COPY staging / unnest = ${(c.rows_per_s / u.rows_per_s).toFixed(2)}\n`);
  }
  process.stdout.write(`wrote ${writeResults('sinks', { rounds: ROUNDS - 1, unit: 'rows upserted per second (insert batch + compare-and-set update batch)', results })}\n`);
}
