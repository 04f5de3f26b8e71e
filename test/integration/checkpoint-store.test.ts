import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { CheckpointStore } from '../../src/runtime/checkpoint-store.ts';
import { migrateControlSchema } from '../../src/audit/control-schema.ts';
import { CheckpointFencedError, CheckpointGapError } from '../../src/errors.ts';
import { stack } from '../support/stack.ts';

/**
 * The checkpoint compare-and-set on the real control database (DESIGN §3, invariant 8;
 * issue 12, defect 1): a batch commits only if it starts at or before the checkpoint's
 * next offset, so a batch that was cut but never committed cannot be skipped by the next.
 */
const group = `it-cp-${Date.now().toString(36)}`;
let pool: pg.Pool;
let store: CheckpointStore;

beforeAll(async () => {
  pool = new pg.Pool({ connectionString: stack().postgres.controlUrl, max: 2 });
  await migrateControlSchema(pool);
  store = new CheckpointStore(pool, group);
});

afterAll(async () => {
  await pool?.query('DELETE FROM sync_checkpoints WHERE consumer_group = $1', [group]);
  await pool?.end();
});

async function advance(expected: number | null, next: number, first: number): Promise<unknown> {
  const c = await pool.connect();
  try {
    await c.query('BEGIN');
    const cp = (n: number) => ({ nextOffset: n, logId: `${group}:t/0`, lastSeq: n });
    await store.advance(c, 't', 0, expected === null ? null : cp(expected), cp(next), 'test', first);
    await c.query('COMMIT');
    return 'committed';
  } catch (err) {
    await c.query('ROLLBACK');
    return err;
  } finally {
    c.release();
  }
}

describe('checkpoint compare-and-set', () => {
  it('commits contiguous batches, refuses one that starts past the checkpoint, and fences a stale owner', async () => {
    expect(await advance(null, 10, 0)).toBe('committed');
    expect(await advance(10, 20, 10)).toBe('committed');
    // offsets 20-24 were cut into a batch that never committed (a pause): 25-29 must not commit
    const gap = await advance(20, 30, 25);
    expect(gap).toBeInstanceOf(CheckpointGapError);
    expect((gap as CheckpointGapError).message).toMatch(/starts at offset 25.*ends at 20.*20-24 were never committed/);
    expect((await store.load('t', 0))?.nextOffset).toBe(20);
    // a batch that overlaps what is committed (a redelivery) commits from where it ends
    expect(await advance(20, 30, 15)).toBe('committed');
    // an owner whose view of the checkpoint is stale is fenced
    expect(await advance(20, 40, 20)).toBeInstanceOf(CheckpointFencedError);
    expect((await store.load('t', 0))?.nextOffset).toBe(30);
  });
});

describe('a cycle\'s checkpoints, advanced together', () => {
  const cp = (topic: string, n: number) => ({ nextOffset: n, logId: `${group}:${topic}/0`, lastSeq: n });
  async function many(items: Array<{ topic: string; expected: number | null; next: number; first: number }>): Promise<Set<string> | unknown> {
    const c = await pool.connect();
    try {
      await c.query('BEGIN');
      const fenced = await store.advanceMany(c, items.map((it) => ({
        topic: it.topic, partition: 0, expected: it.expected === null ? null : cp(it.topic, it.expected), next: cp(it.topic, it.next), firstOffset: it.first,
      })), 'test');
      await c.query('COMMIT');
      return fenced;
    } catch (err) {
      await c.query('ROLLBACK');
      return err;
    } finally {
      c.release();
    }
  }

  it('moves every partition whose checkpoint is as expected, first commits included, and names the ones another owner moved', async () => {
    expect(await many([{ topic: 'a', expected: null, next: 10, first: 0 }, { topic: 'b', expected: null, next: 5, first: 0 }])).toEqual(new Set());
    // b is stale here (it is at 5, not 3), and c's first commit raced another owner's
    await many([{ topic: 'c', expected: null, next: 7, first: 0 }]);
    const fenced = await many([
      { topic: 'a', expected: 10, next: 20, first: 10 },
      { topic: 'b', expected: 3, next: 9, first: 3 },
      { topic: 'c', expected: null, next: 4, first: 0 },
    ]);
    expect(fenced).toEqual(new Set(['b/0', 'c/0']));
    expect((await store.load('a', 0))?.nextOffset).toBe(20);
    expect((await store.load('b', 0))?.nextOffset).toBe(5);
    expect((await store.load('c', 0))?.nextOffset).toBe(7);
  });

  it('refuses the whole cycle when one partition\'s batch starts past its checkpoint', async () => {
    const gap = await many([{ topic: 'a', expected: 20, next: 30, first: 20 }, { topic: 'b', expected: 5, next: 12, first: 8 }]);
    expect(gap).toBeInstanceOf(CheckpointGapError);
    expect((await store.load('a', 0))?.nextOffset).toBe(20);
  });
});
