import { readFileSync } from 'node:fs';
import path from 'node:path';
import { loadTopology } from '../src/config/topology.ts';
import { DebeziumDecoder } from '../src/events/debezium.ts';
import type { ChangeEvent } from '../src/events/change-event.ts';
import { classify, recordOutcome, type ClassifyContext } from '../src/sync/classify.ts';
import { emptyState } from '../src/sync/record-state.ts';
import { changeRow, encodeAuditRows } from '../src/audit/audit-rows.ts';
import { appendOne, emptyFrontier, leafHash, rootOf } from '../src/audit/merkle.ts';
import { ROOT, median, table, writeResults } from '../harness/common.ts';

/**
 * Micro-benchmarks of the per-event hot path (issue 6), in one process, rounds of
 * BENCH_ROUND_MS (250) repeated BENCH_ROUNDS (7) times; the figure is the median ops/s.
 * - decode: a recorded Debezium update, PostgreSQL with schemas on and MariaDB with schemas
 *   off (test/fixtures/debezium), through the worker's decoder;
 * - classify: a causal update of a record and its planned write's outcome, as a lane does;
 * - audit rows: the format-2 encoding and both hashes of a change row (encodeAuditRows);
 * - merkle: appending a leaf hash to a log's frontier, and a root every 1,000 leaves.
 * The codec has its own benchmark (`clock`), and so do the sinks (`sinks`).
 */
const ROUND_MS = Number(process.env.BENCH_ROUND_MS ?? 250);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 7);

function opsPerSecond(fn: () => number): number[] {
  const out: number[] = [];
  fn(); // warm up
  for (let r = 0; r < ROUNDS; r++) {
    let n = 0;
    const t = performance.now();
    while (performance.now() - t < ROUND_MS) n += fn();
    out.push(n / ((performance.now() - t) / 1000));
  }
  return out;
}

function cases(): Array<[string, () => number]> {
  const topology = loadTopology(path.join(ROOT, 'deploy/local/worker-sync.yaml'));
  const decoder = new DebeziumDecoder(topology);
  const fixture = (name: string) => readFileSync(path.join(ROOT, 'test/fixtures/debezium', name));
  const pgValue = fixture('pg.customers.u.json');
  const mariaValue = fixture('maria.customers.u.json');
  const decoded = decoder.decode({ topic: 'pg.public.customers', partition: 0, offset: 1, value: pgValue }) as ChangeEvent;

  const nodeIndex = new Map([['pg', 1], ['maria', 2]]);
  const entity = topology.entities.get('customers')!;
  let pos = 0;
  const ctx = (): ClassifyContext => ({ entity, nodeIndex, nodePriority: new Map([['pg', 1], ['maria', 2]]), positionKey: String(++pos).padStart(12, '0') });
  const state = emptyState();

  const rows = Array.from({ length: 100 }, (_, i) => changeRow(new Date().toISOString(), 'g:t/0', i + 1, decoded, [{ node: 'maria', op: 'upsert', version: '0102', outcome: 'applied' }], Buffer.from('0102', 'hex'), 1n << 20n));
  const leaves = Array.from({ length: 1000 }, (_, i) => leafHash(Buffer.from(`leaf ${i}`)));

  return [
    ['decode, PostgreSQL (schemas on)', () => { decoder.decode({ topic: 'pg.public.customers', partition: 0, offset: 1, value: pgValue }); return 1; }],
    ['decode, MariaDB (schemas off)', () => { decoder.decode({ topic: 'maria.app.customers', partition: 0, offset: 1, value: mariaValue }); return 1; }],
    ['classify a causal update', () => {
      const d = classify(state, { ...decoded, id: String(pos) }, null, ctx());
      if ('writes' in d) for (const w of d.writes) recordOutcome(state, w, 'applied');
      // keep the record's state from growing: the worker's write was echoed long ago
      for (const n of Object.values(state.nodes)) n.fifo.length = 0;
      return 1;
    }],
    ['audit rows: encode + hash (batch of 100)', () => { encodeAuditRows(rows); return 100; }],
    ['merkle: append 1,000 leaves + root', () => {
      const f = emptyFrontier();
      for (const l of leaves) appendOne(f, l);
      rootOf(f);
      return 1000;
    }],
  ];
}

export async function run(): Promise<void> {
  const results = cases().map(([name, fn]) => {
    const xs = opsPerSecond(fn);
    return { name, ops_per_s: Math.round(median(xs)), min: Math.round(Math.min(...xs)), max: Math.round(Math.max(...xs)) };
  });
  process.stdout.write(`${table(results.map((r) => ({ benchmark: r.name, 'ops/s (median)': r.ops_per_s.toLocaleString('en-US'), min: r.min.toLocaleString('en-US'), max: r.max.toLocaleString('en-US') })))}\n`);
  process.stdout.write(`wrote ${writeResults('hot', { round_ms: ROUND_MS, rounds: ROUNDS, results })}\n`);
}
