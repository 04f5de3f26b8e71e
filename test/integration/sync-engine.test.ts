import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { parseTopology, type Topology } from '../../src/config/topology.ts';
import { PostgresSink } from '../../src/sinks/postgres-sink.ts';
import { MySqlSink } from '../../src/sinks/mysql-sink.ts';
import type { Sink } from '../../src/sinks/sink.ts';
import { SyncEngine } from '../../src/sync/sync-engine.ts';
import { Applier } from '../../src/runtime/apply.ts';
import { StateStore } from '../../src/sync/state-store.ts';
import { migrateControlSchema, registerNodes } from '../../src/audit/control-schema.ts';
import type { ChangeEvent, Row } from '../../src/events/change-event.ts';
import { createHandlesTables, freshKeyBase, maria, stack } from '../support/stack.ts';

/**
 * The sync stage against the stack's real databases, driven with change events directly
 * (the Kafka path is covered end to end elsewhere): apply, echo, persist, replay.
 */
let topology: Topology;
let control: pg.Pool;
let engine: SyncEngine;
const store = new StateStore();
const sinks = new Map<string, Sink>();
const silent = { debug: () => undefined, warn: () => undefined, isLevelEnabled: () => false };
let offset = 0;

beforeAll(async () => {
  const s = stack();
  topology = parseTopology({
    nodes: { pg: { kind: 'postgres', url: s.postgres.url, priority: 1 }, maria: { kind: 'mariadb', url: s.mariadb.url, priority: 2 } },
    entities: {
      customers: {
        key: ['id'], columns: { id: 'bigint', name: 'text', email: 'text', balance: 'decimal(12,2)', tags: 'json', updated_at: 'timestamp(6)' },
        nodes: { pg: 'public.customers', maria: 'app.customers' },
      },
      handles: { key: ['id'], columns: { id: 'bigint', handle: 'text', qty: 'integer' }, nodes: { pg: 'public.ws_handles', maria: 'app.ws_handles' } },
    },
  }, 'test');
  await createHandlesTables();
  control = new pg.Pool({ connectionString: s.postgres.controlUrl, max: 3 });
  await migrateControlSchema(control);
  const nodeIndex = await registerNodes(control, ['pg', 'maria']);
  sinks.set('pg', new PostgresSink('pg', s.postgres.url)).set('maria', new MySqlSink('maria', s.mariadb.url));
  const applier = new Applier(sinks, silent);
  engine = new SyncEngine(topology, (slots) => applier.apply(slots), nodeIndex, store, silent);
});

afterAll(async () => {
  for (const s of sinks.values()) await s.close();
  await control?.end();
});

function event(node: 'pg' | 'maria', op: 'c' | 'u' | 'd', row: Row, version: Buffer | null = null, entity = 'customers'): ChangeEvent {
  offset++;
  const source: Record<string, string | number | null> = node === 'pg' ? { lsn: 1_000_000 + offset, sequence: null, txId: 1 } : { file: 'mysql-bin.000001', pos: 1000 + offset, row: 0, gtid: null };
  return {
    id: `test/${offset}`, entity, node, op, key: { id: row.id! }, keyText: JSON.stringify([row.id]),
    before: op === 'c' ? null : row, after: op === 'd' ? null : row, changed: null, baseVersion: version,
    sourceTsMs: Date.now(), emittedTsMs: Date.now(), position: { topic: 't', partition: 0, offset, source }, transactionId: null,
  };
}

async function commit(states: Map<string, Map<string, unknown>>): Promise<void> {
  const client = await control.connect();
  try {
    await client.query('BEGIN');
    for (const [entity, byKey] of states) await store.save(client, entity, byKey as never);
    await client.query('COMMIT');
  } finally {
    client.release();
  }
}

const customer = (id: number, name: string): Row => ({ id, name, email: null, balance: '10.00', tags: { k: [1] }, updated_at: '2026-11-30T01:02:03.000004' });

describe('SyncEngine on the real stack', () => {
  it('applies a PostgreSQL insert to MariaDB, recognises the echo, and a MariaDB update flows back', async () => {
    const id = freshKeyBase();
    const app = new pg.Client({ connectionString: stack().postgres.url });
    await app.connect();
    await app.query(`INSERT INTO customers (id, name, balance, tags, updated_at) VALUES ($1, 'from pg', 10, '{"k": [1]}', '2026-11-30 01:02:03.000004')`, [id]);
    await app.end();
    const first = await engine.process(control, [event('pg', 'c', customer(id, 'from pg'))]);
    expect(first.counts.causal).toBe(1);
    expect(first.synced[0]!.writes).toEqual([{ node: 'maria', op: 'upsert', version: expect.stringMatching(/^01/) as string, outcome: 'applied' }]);
    await commit(first.states);
    const [atMaria] = await sinks.get('maria')!.read(topology.entities.get('customers')!, [{ id }]);
    expect(atMaria?.row).toEqual(customer(id, 'from pg'));

    // MariaDB's connector emits the worker's write: an echo, not re-synced
    const echo = await engine.process(control, [event('maria', 'c', atMaria!.row, atMaria!.version)]);
    expect(echo.counts.echo).toBe(1);
    await commit(echo.states);

    // an application edit in MariaDB carries the worker's version and propagates
    const edit = await engine.process(control, [event('maria', 'u', customer(id, 'edited in maria'), atMaria!.version)]);
    expect(edit.counts.causal).toBe(1);
    await commit(edit.states);
    const [atPg] = await sinks.get('pg')!.read(topology.entities.get('customers')!, [{ id }]);
    expect(atPg?.row.name).toBe('edited in maria');
  });

  it('reduces a batch to the last state per key and marks the earlier writes superseded', async () => {
    const id = freshKeyBase();
    const res = await engine.process(control, [event('pg', 'c', customer(id, 'one')), event('pg', 'u', customer(id, 'two')), event('pg', 'u', customer(id, 'three'))]);
    expect(res.synced.map((s) => s.writes[0]!.outcome)).toEqual(['superseded', 'superseded', 'applied']);
    await commit(res.states);
    const [atMaria] = await sinks.get('maria')!.read(topology.entities.get('customers')!, [{ id }]);
    expect(atMaria?.row.name).toBe('three');
  });

  it('a replay after a crash before the commit writes nothing new and expects one echo', async () => {
    const id = freshKeyBase();
    const ev = event('pg', 'c', customer(id, 'once'));
    await engine.process(control, [ev]); // applied, then "crashed" before committing the state
    const replay = await engine.process(control, [ev]);
    expect(replay.synced[0]!.writes[0]!.outcome).toBe('already');
    const state = replay.states.get('customers')!.get(ev.keyText)!;
    expect(state.nodes.maria!.fifo).toHaveLength(1);
  });

  it('recognises the echo of a pre-crash write that arrives in the same batch as the replayed change', async () => {
    const id = freshKeyBase();
    const ev = event('pg', 'c', customer(id, 'before the crash'));
    await engine.process(control, [ev]); // written to MariaDB, state never committed
    const [atMaria] = await sinks.get('maria')!.read(topology.entities.get('customers')!, [{ id }]);
    const echo = event('maria', 'c', atMaria!.row, atMaria!.version);
    const replay = await engine.process(control, [ev, echo]);
    expect(replay.synced.map((s) => s.decision.kind)).toEqual(['causal', 'echo']);
    expect(replay.counts.concurrent).toBe(0);
  });

  it('retries a refused statement on halves: the rows at fault are rejected after three tries alone, the rest land', async () => {
    const base = freshKeyBase();
    const my = maria();
    await my.query('INSERT INTO app.ws_handles (id, handle, qty) VALUES (?, ?, 0)', [base + 100, `taken-${base}`]);
    await my.end();
    const h = (i: number, extra: Row = {}): Row => ({ id: base + i, handle: `h-${base}-${i}`, qty: i, ...extra });
    // key 5 changes twice: both changes are rejected with its record, the later one parked behind the first
    const events = Array.from({ length: 8 }, (_, i) => event('pg', 'c', i === 3 ? h(3, { handle: `taken-${base}` }) : h(i), null, 'handles'));
    events.splice(6, 0, event('pg', 'u', h(5, { qty: -5 }), null, 'handles'));
    const res = await engine.process(control, events);
    expect(res.rejected.map((r) => [r.event.key!.id, r.node, r.first])).toEqual([[base + 3, 'maria', true], [base + 5, 'maria', true], [base + 5, 'maria', false]]);
    expect(res.rejected[0]!.error).toMatch(/refused the write 3 times: .*Duplicate entry/);
    expect(res.rejected[1]!.error).toMatch(/refused the write 3 times: .*(CONSTRAINT|check)/i);
    expect(res.synced.map((s) => s.event.key!.id)).toEqual([0, 1, 2, 4, 6, 7].map((i) => base + i));
    expect(res.synced.every((s) => s.writes[0]!.outcome === 'applied')).toBe(true);
    // the refused records keep the state they had before the batch: none
    const states = res.states.get('handles')!;
    expect(states.has(JSON.stringify([base + 3]))).toBe(false);
    expect(states.has(JSON.stringify([base + 5]))).toBe(false);
    expect(states.has(JSON.stringify([base + 4]))).toBe(true);
    const read = await sinks.get('maria')!.read(topology.entities.get('handles')!, Array.from({ length: 8 }, (_, i) => ({ id: base + i })));
    expect(read.map((r) => r?.row.id ?? null)).toEqual([0, 1, 2, null, 4, null, 6, 7].map((i) => (i === null ? null : base + i)));
    const [taken] = await sinks.get('maria')!.read(topology.entities.get('handles')!, [{ id: base + 100 }]);
    expect(taken?.row).toEqual({ id: base + 100, handle: `taken-${base}`, qty: 0 });
  });

  it('a truncate is ignored without a record state, and fans out nothing under the default policy (ignore)', async () => {
    const t: ChangeEvent = { ...event('pg', 'c', customer(freshKeyBase(), 'x')), op: 't', key: null, keyText: '*', before: null, after: null };
    const res = await engine.process(control, [t]);
    expect(res.synced.map((s) => s.decision)).toEqual([{ kind: 'ignored', reason: 'truncate' }]);
    expect(res.states.size).toBe(0);
    expect(await engine.truncateDeletes(control, t)).toEqual([]);
  });
});
