import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { AuditWriter, EpochFencedError } from '../../src/audit/audit-writer.ts';
import { generateSigningKey } from '../../src/audit/signing.ts';
import { leafHash, rootOf, treeRoot } from '../../src/audit/merkle.ts';
import { migrateControlSchema } from '../../src/audit/control-schema.ts';
import { stack } from '../support/stack.ts';

/** The audit log's writer on the real control database: epochs fence a zombie owner, frontiers and checkpoints. */
let pool: pg.Pool;
let writer: AuditWriter;

beforeAll(async () => {
  pool = new pg.Pool({ connectionString: stack().postgres.controlUrl, max: 3 });
  await migrateControlSchema(pool);
  writer = new AuditWriter(generateSigningKey(path.join(mkdtempSync(path.join(os.tmpdir(), 'ws-aw-')), 'k.pem')), { leaves: 4, ms: 3_600_000 });
});

afterAll(async () => {
  await pool?.end();
});

async function inTx<T>(fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
  const c = await pool.connect();
  try {
    await c.query('BEGIN');
    const out = await fn(c);
    await c.query('COMMIT');
    return out;
  } catch (err) {
    await c.query('ROLLBACK');
    throw err;
  } finally {
    c.release();
  }
}

describe('AuditWriter', () => {
  it('refuses at commit a writer holding a stale epoch', async () => {
    const log = `it-audit-${Date.now().toString(36)}:t/0`;
    const zombie = await writer.claim(pool, log, 'worker-a');
    const owner = await writer.claim(pool, log, 'worker-b'); // the partition moved
    expect(owner).toBe(zombie + 1);
    const leaf = leafHash(Buffer.from('x'));
    await expect(inTx((c) => writer.append(c, log, zombie, 0, [leaf]))).rejects.toBeInstanceOf(EpochFencedError);
    await inTx((c) => writer.append(c, log, owner, 0, [leaf]));
    // and a writer whose checkpoint disagrees with the log (a partial restore) is refused, saying so
    await expect(inTx((c) => writer.append(c, log, owner, 5, [leaf]))).rejects.toThrow(/holds 1 leaves but its checkpoint says 5/);
  });

  it('keeps the frontier and signs a checkpoint at its first commit, at every 4th leaf, and when sealed, chained', async () => {
    const log = `it-audit-${Date.now().toString(36)}:t/1`;
    const epoch = await writer.claim(pool, log, 'worker-a');
    const leaves = Array.from({ length: 10 }, (_, i) => leafHash(Buffer.from(`leaf ${i}`)));
    await inTx((c) => writer.append(c, log, epoch, 0, leaves.slice(0, 3))); // signed: 3 (the first)
    await inTx((c) => writer.append(c, log, epoch, 3, leaves.slice(3, 9))); // signed: 7 (3 + 4), inside the batch
    expect(await writer.seal(pool, log, epoch, false)).toBe(true); // 9
    expect(await writer.seal(pool, log, epoch, false)).toBe(false); // nothing unsigned
    await inTx((c) => writer.append(c, log, epoch, 9, leaves.slice(9)));
    expect(await writer.seal(pool, log, epoch, true)).toBe(false); // not due for an hour
    expect(await writer.seal(pool, log, epoch, false)).toBe(true); // 10
    const { rows } = await pool.query(`SELECT tree_size, root, prev_hash, checkpoint_hash FROM audit_checkpoints WHERE log_id = $1 ORDER BY tree_size`, [log]);
    expect(rows.map((r) => Number(r.tree_size))).toEqual([3, 7, 9, 10]);
    expect(rows.map((r) => r.root)).toEqual([3, 7, 9, 10].map((n) => treeRoot(leaves.slice(0, n))));
    expect(rows[0].prev_hash).toBeNull();
    for (let i = 1; i < rows.length; i++) expect(rows[i].prev_hash).toEqual(rows[i - 1].checkpoint_hash);
    const { rows: l } = await pool.query(`SELECT tree_size, frontier FROM audit_logs WHERE log_id = $1`, [log]);
    expect(rootOf({ size: Number(l[0].tree_size), roots: l[0].frontier })).toEqual(treeRoot(leaves));
  });
});
