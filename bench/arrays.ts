import { readFileSync } from 'node:fs';
import pg from 'pg';
import { boolArray, byteaArray, int4Array, int8Array, ordinals, textArray } from '../src/pg-binary.ts';
import { median, progress, stackUrls, table, writeResults } from '../harness/common.ts';

/**
 * Array parameters of the hot path's set-based statements, as JS arrays (node-postgres
 * writes an array literal, the server parses it) against binary arrays (src/pg-binary.ts).
 * One statement shaped like the record-state upsert's input: per row a key, six text
 * columns like a customer row, a 600-byte bytea state, a bigint, a bool and an ordinal,
 * put through `unnest` and summed on the server so every element is read. Batches of
 * BENCH_ROWS (150, about a cycle's batch at 2,000 events/s); the two forms alternate
 * round by round. Prints the CPU per row of this process and of the server's backend,
 * from /proc, and writes bench/results/arrays.json.
 */
const ROWS = Number(process.env.BENCH_ROWS ?? 150);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 8);
const CALLS = Number(process.env.BENCH_CALLS ?? 1000);
const TICK_US = 1e6 / 100; // USER_HZ

const SQL = `SELECT count(*)::int AS n, sum(length(k) + length(a) + length(b) + length(c) + length(d) + length(e) + length(f) + length(s) + (h % 1000) + o + t::int)::bigint AS total
  FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::bytea[], $9::bigint[], $10::bool[], $11::int[])
    AS u(k, a, b, c, d, e, f, s, h, t, o)`;

function backendTicks(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return Number(fields[11]) + Number(fields[12]); // utime, stime
}

export async function run(): Promise<void> {
  const client = new pg.Client({ connectionString: stackUrls().postgres.controlUrl });
  await client.connect();
  const pid = (await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
  const rows = Array.from({ length: ROWS }, (_, i) => ({
    key: `[${1_000_000 + i}]`, cols: [`customer ${i} Zoë "quoted" \\ back`, `${i}@example.com`, `${i % 10000}.25`, `{"vip":${i % 2 === 0},"n":[${i}]}`, '2026-11-30T12:34:56.123456', `note ${i}`],
    state: Buffer.from(Array.from({ length: 600 }, (_, j) => (i * 7 + j) & 0xff)), hlc: (BigInt(1796000000000 + i) << 16n), tomb: i % 50 === 0,
  }));
  const col = (j: number) => rows.map((r) => r.cols[j]!);
  const forms: Record<string, () => unknown[]> = {
    literal: () => [rows.map((r) => r.key), col(0), col(1), col(2), col(3), col(4), col(5), rows.map((r) => r.state), rows.map((r) => r.hlc.toString()), rows.map((r) => r.tomb), rows.map((_, i) => i)],
    binary: () => [textArray(rows.map((r) => r.key)), textArray(col(0)), textArray(col(1)), textArray(col(2)), textArray(col(3)), textArray(col(4)), textArray(col(5)),
      byteaArray(rows.map((r) => r.state)), int8Array(rows.map((r) => r.hlc)), boolArray(rows.map((r) => r.tomb)), ordinals(rows.length)],
  };
  const expected = new Set<string>();
  for (const make of Object.values(forms)) expected.add(JSON.stringify((await client.query(SQL, make())).rows[0]));
  if (expected.size !== 1) throw new Error(`the two forms gave different sums: ${[...expected].join(' vs ')}`);
  void int4Array; // the other encoders share its code path; the statement covers ordinals()

  const samples = new Map<string, { client: number[]; server: number[] }>();
  for (let round = 0; round < ROUNDS; round++) {
    for (const [name, make] of Object.entries(forms)) {
      const c0 = process.cpuUsage();
      const s0 = backendTicks(pid);
      for (let i = 0; i < CALLS; i++) await client.query(SQL, make());
      const c = process.cpuUsage(c0);
      const server = ((backendTicks(pid) - s0) * TICK_US) / (CALLS * ROWS);
      const s = samples.get(name) ?? { client: [], server: [] };
      s.client.push((c.user + c.system) / (CALLS * ROWS));
      s.server.push(server);
      samples.set(name, s);
      progress(`arrays round ${round + 1}/${ROUNDS} ${name}`);
    }
  }
  progress(`arrays: ${ROUNDS} rounds done`, true);
  await client.end();
  const summary = Object.fromEntries([...samples].map(([name, s]) => [name, { client_us_per_row: Number(median(s.client).toFixed(2)), server_us_per_row: Number(median(s.server).toFixed(2)) }]));
  process.stdout.write(`array parameters, ${ROWS} rows a call, ${CALLS} calls a round, ${ROUNDS} rounds (medians, CPU µs per row from /proc):\n`);
  process.stdout.write(`${table(Object.entries(summary).map(([form, v]) => ({ form, 'this process': v.client_us_per_row, 'PostgreSQL backend': v.server_us_per_row })))}\n`);
  process.stdout.write(`wrote ${writeResults('arrays', { rows: ROWS, calls: CALLS, rounds: ROUNDS, ...summary })}\n`);
}
