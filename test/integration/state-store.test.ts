import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { migrateControlSchema } from '../../src/audit/control-schema.ts';
import { STATE_LOAD_SQL, StateStore } from '../../src/sync/state-store.ts';
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
});
