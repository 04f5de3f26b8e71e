import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { migrateControlSchema } from '../../src/audit/control-schema.ts';
import { STATE_LOAD_SQL, StateStore } from '../../src/sync/state-store.ts';
import type { RecordState } from '../../src/sync/record-state.ts';
import { stack } from '../support/stack.ts';

/**
 * The record-state load on the real control database, with the statistics a fresh
 * deployment has: ANALYZE saw a few records of one entity, then another entity grew to
 * 20,000 records. The load must still read each key by the primary key (issue 13). The
 * table is a temporary one on this session, which shadows sync_metadata and which
 * autovacuum never analyzes, so the statistics stay as stale as the test made them.
 */
let pool: pg.Pool;
let client: pg.PoolClient;
const keys = Array.from({ length: 50 }, (_, i) => `[${1000 + i * 37}]`);

beforeAll(async () => {
  pool = new pg.Pool({ connectionString: stack().postgres.controlUrl, max: 1 });
  await migrateControlSchema(pool);
  client = await pool.connect();
  await client.query('CREATE TEMP TABLE sync_metadata (LIKE public.sync_metadata INCLUDING ALL)');
  await client.query(`INSERT INTO sync_metadata (entity, record_key, hlc) SELECT 'early', '[' || i || ']', i FROM generate_series(1, 128) i`);
  await client.query('ANALYZE sync_metadata');
  await client.query(`INSERT INTO sync_metadata (entity, record_key, version, hlc, origin_node, value, nodes)
    SELECT 'grown', '[' || i || ']', NULL, i, 'pg', jsonb_build_object('id', i, 'name', repeat('x', 200)), '{}' FROM generate_series(1, 20000) i`);
});

afterAll(async () => {
  client?.release(true);
  await pool?.end();
});

/** Buffers a statement touches, from EXPLAIN (ANALYZE, BUFFERS): a temporary table's are local ones. */
async function blocks(sql: string, params: unknown[]): Promise<number> {
  const { rows } = await client.query<{ 'QUERY PLAN': Array<{ Plan: Record<string, number> }> }>(`EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) ${sql}`, params);
  const plan = rows[0]!['QUERY PLAN'][0]!.Plan;
  return ['Shared Hit Blocks', 'Shared Read Blocks', 'Local Hit Blocks', 'Local Read Blocks'].reduce((n, k) => n + (plan[k] ?? 0), 0);
}

describe('the record-state load', () => {
  it('reads each key by the primary key although the statistics have never seen the entity', async () => {
    const naive = await blocks('SELECT record_key FROM sync_metadata WHERE entity = $1 AND record_key = ANY($2)', ['grown', keys]);
    const load = await blocks(STATE_LOAD_SQL, ['grown', keys]);
    // the premise: with these statistics, the plain form walks the whole entity
    expect(naive).toBeGreaterThan(1000);
    expect(load).toBeLessThan(keys.length * 6);
  });

  it('returns the stored states of the keys that have one, and nothing for the others', async () => {
    const states = await new StateStore().load(client, 'grown', [...keys, '[999999]', '[x]']);
    expect([...states.keys()].sort()).toEqual([...keys].sort());
    const s = states.get('[1000]')!;
    expect(s.hlc).toBe(1000n);
    expect(s.origin).toBe('pg');
    expect((s.value as { id: number }).id).toBe(1000);
    expect((await new StateStore().load(client, 'early', ['[1]', '[129]'])).size).toBe(1);
  });

  it('reads back what it saved, in the compact binary state, and still reads a row written as jsonb before it', async () => {
    const store = new StateStore();
    const saved = new Map<string, RecordState>([
      ['[1]', { version: [[1, 2]] as const, hlc: 5n << 16n, origin: 'maria', tombstone: false, value: { id: 1, name: 'Zoë' }, openConflict: null,
        nodes: { maria: { seen: [[1, 2]] as const, present: true, rowVersion: [[1, 2]] as const, position: 'binlog.000001:4', fifo: [] },
          pg: { seen: [[1, 1]] as const, present: true, rowVersion: [[1, 1]] as const, position: null,
            fifo: [{ expected: [[1, 1]] as const, expectedAbsent: false, pushed: [[1, 2]] as const, digest: 'ab'.repeat(16), delete: false }] } } }],
      ['[2]', { version: [[2, 1]] as const, hlc: 7n, origin: 'pg', tombstone: true, value: null, openConflict: 42, nodes: {} }],
    ]);
    await store.save(client, 'saved', saved);
    const { rows } = await client.query(`SELECT record_key, value, nodes, state IS NOT NULL AS binary FROM sync_metadata WHERE entity = 'saved' ORDER BY record_key`);
    expect(rows).toEqual([{ record_key: '[1]', value: null, nodes: {}, binary: true }, { record_key: '[2]', value: null, nodes: {}, binary: true }]);
    expect(await store.load(client, 'saved', ['[1]', '[2]'])).toEqual(saved);

    // a row as an earlier release wrote it: value and nodes as jsonb, no state
    await client.query(`INSERT INTO sync_metadata (entity, record_key, version, hlc, origin_node, tombstone, value, nodes) VALUES ('saved', '[3]', NULL, 9, 'pg', false, $1, $2)`,
      [{ id: 3 }, { pg: { seen: [[1, 4]], present: true, rv: [[1, 4]], pos: '0/16B3748', fifo: [{ e: null, a: true, p: [[1, 4]], d: 'cd'.repeat(16), x: false }] } }]);
    const legacy = (await store.load(client, 'saved', ['[3]'])).get('[3]')!;
    expect(legacy.value).toEqual({ id: 3 });
    expect(legacy.nodes).toEqual({ pg: { seen: [[1, 4]], present: true, rowVersion: [[1, 4]], position: '0/16B3748', fifo: [{ expected: null, expectedAbsent: true, pushed: [[1, 4]], digest: 'cd'.repeat(16), delete: false }] } });
    // its next write moves it to the binary state
    await store.save(client, 'saved', new Map([['[3]', legacy]]));
    expect((await client.query(`SELECT value, nodes, state IS NOT NULL AS binary FROM sync_metadata WHERE entity = 'saved' AND record_key = '[3]'`)).rows).toEqual([{ value: null, nodes: {}, binary: true }]);
    expect((await store.load(client, 'saved', ['[3]'])).get('[3]')).toEqual(legacy);
  });
});

