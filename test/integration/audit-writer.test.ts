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
import { forgetGroup } from '../support/cleanup.ts';
import { insertAuditRows, type AuditRowInput } from '../../src/audit/audit-rows.ts';
import { streamLeafRows } from '../../src/audit/leaf.ts';
import { rowLeaf, verifyLog } from '../../src/audit/verify.ts';

/** The audit log's writer on the real control database: epochs fence a zombie owner, frontiers and checkpoints. */
let pool: pg.Pool;
let writer: AuditWriter;

beforeAll(async () => {
  pool = new pg.Pool({ connectionString: stack().postgres.controlUrl, max: 3 });
  await migrateControlSchema(pool);
  writer = new AuditWriter(generateSigningKey(path.join(mkdtempSync(path.join(os.tmpdir(), 'ws-aw-')), 'k.pem')), { leaves: 4, ms: 3_600_000 });
});

/** One group for the suite's logs, forgotten at the end: they are signed by a key of their own. */
const group = `it-audit-${Date.now().toString(36)}`;

afterAll(async () => {
  if (pool) await forgetGroup(pool, group);
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
    const log = `${group}:t/0`;
    const zombie = await writer.claim(pool, log, 'worker-a');
    const owner = await writer.claim(pool, log, 'worker-b'); // the partition moved
    expect(owner).toBe(zombie + 1);
    const leaf = leafHash(Buffer.from('x'));
    await expect(inTx((c) => writer.append(c, log, zombie, 0, [leaf]))).rejects.toBeInstanceOf(EpochFencedError);
    await inTx((c) => writer.append(c, log, owner, 0, [leaf]));
    // and a writer whose checkpoint disagrees with the log (a partial restore) is refused, saying so
    await expect(inTx((c) => writer.append(c, log, owner, 5, [leaf]))).rejects.toThrow(/holds 1 leaves but its checkpoint says 5/);
  });

  it('appends to several logs in one transaction as it would to each alone, and fences only the log whose epoch moved', async () => {
    const logs = [`${group}:m/0`, `${group}:m/1`, `${group}:m/2`];
    const epochs = await Promise.all(logs.map((l) => writer.claim(pool, l, 'worker-a')));
    const leaves = (l: number, n: number, from = 0) => Array.from({ length: n }, (_, i) => leafHash(Buffer.from(`${l} leaf ${from + i}`)));
    await inTx(async (c) => {
      const { locked, fenced } = await writer.lockMany(c, logs.map((logId, i) => ({ logId, epoch: epochs[i]! })));
      expect(fenced.size).toBe(0);
      // log 0 crosses one multiple of 4 leaves, log 1 two, log 2 appends nothing (signed at
      // each multiple; at the end only if never signed, the time interval being an hour)
      await writer.appendLocked(c, locked, [{ logId: logs[0]!, lastSeq: 0, leaves: leaves(0, 5) }, { logId: logs[1]!, lastSeq: 0, leaves: leaves(1, 9) }, { logId: logs[2]!, lastSeq: 0, leaves: [] }]);
    });
    const stale = await writer.claim(pool, logs[1]!, 'worker-b'); // log 1 moves to another owner
    await inTx(async (c) => {
      const { locked, fenced } = await writer.lockMany(c, logs.map((logId, i) => ({ logId, epoch: epochs[i]! })));
      expect([...fenced.keys()]).toEqual([logs[1]]);
      expect(fenced.get(logs[1]!)).toBeInstanceOf(EpochFencedError);
      expect(fenced.get(logs[1]!)!.message).toContain(`epoch ${stale} is not this writer's ${epochs[1]}`);
      await writer.appendLocked(c, locked, [{ logId: logs[0]!, lastSeq: 5, leaves: leaves(0, 2, 5) }, { logId: logs[2]!, lastSeq: 0, leaves: leaves(2, 1) }]);
      // a fenced log is not locked: nothing can be appended to it in this transaction
      await expect(writer.appendLocked(c, locked, [{ logId: logs[1]!, lastSeq: 9, leaves: leaves(1, 1, 9) }])).rejects.toThrow(/not locked/);
    });
    const all = [[...leaves(0, 5), ...leaves(0, 2, 5)], leaves(1, 9), leaves(2, 1)];
    const { rows } = await pool.query<{ log_id: string; tree_size: string; frontier: Buffer[] }>('SELECT log_id, tree_size, frontier FROM audit_logs WHERE log_id = ANY($1) ORDER BY log_id', [logs]);
    expect(rows.map((r) => Number(r.tree_size))).toEqual([7, 9, 1]);
    rows.forEach((r, i) => expect(rootOf({ size: Number(r.tree_size), roots: r.frontier })).toEqual(treeRoot(all[i]!)));
    const { rows: cps } = await pool.query<{ log_id: string; tree_size: string; root: Buffer }>('SELECT log_id, tree_size, root FROM audit_checkpoints WHERE log_id = ANY($1) ORDER BY log_id, tree_size', [logs]);
    expect(cps.map((r) => [r.log_id, Number(r.tree_size)])).toEqual([[logs[0], 4], [logs[1], 4], [logs[1], 8], [logs[2], 1]]);
    for (const r of cps) expect(r.root).toEqual(treeRoot(all[logs.indexOf(r.log_id)]!.slice(0, Number(r.tree_size))));
  });

  it('a timer seal does not wait behind a commit that holds the log, and that commit signs it when due', async () => {
    const log = `${group}:t/busy`;
    const timed = new AuditWriter(writer.key, { leaves: 100, ms: 0 });
    const epoch = await timed.claim(pool, log, 'worker-a');
    const leaves = Array.from({ length: 3 }, (_, i) => leafHash(Buffer.from(`busy ${i}`)));
    await inTx((c) => timed.append(c, log, epoch, 0, leaves.slice(0, 1))); // signed: 1
    const holder = await pool.connect();
    try {
      await holder.query('BEGIN');
      const { locked } = await timed.lockMany(holder, [{ logId: log, epoch }]);
      const started = performance.now();
      expect(await timed.seal(pool, log, epoch, true)).toBe('busy');
      expect(performance.now() - started).toBeLessThan(2000);
      await timed.appendLocked(holder, locked, [{ logId: log, lastSeq: 1, leaves: leaves.slice(1) }]);
      await holder.query('COMMIT');
    } finally {
      holder.release();
    }
    const { rows } = await pool.query(`SELECT tree_size FROM audit_checkpoints WHERE log_id = $1 ORDER BY tree_size`, [log]);
    expect(rows.map((r) => Number(r.tree_size))).toEqual([1, 3]);
    expect(await timed.seal(pool, log, epoch, true)).toBe(false); // nothing unsigned, and free
  });

  it('keeps the frontier and signs a checkpoint at its first commit, at every 4th leaf, and when sealed, chained', async () => {
    const log = `${group}:t/1`;
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

describe('leaf format 2 on the real table', () => {
  it('reads back, from what PostgreSQL holds, exactly the leaf hashes the writer computed, whatever the values', async () => {
    const log = `${group}:t/2`;
    const epoch = await writer.claim(pool, log, 'worker-a');
    const odd = ['Zoë 😀', 'tab\there', 'new\nline', 'back\\slash', 'quote"d', '{brace}', 'NULL', '', ' spaced ', 'comma,here', '\u0001ctl', 'ümlaut'];
    const rows: AuditRowInput[] = odd.map((text, i) => ({
      log_id: log, seq: i + 1, kind: i % 3 === 0 ? 'conflict' : 'change', event_id: `ev/${text}`, entity: 'customers', record_key: { id: i, text },
      op: 'u', source_node: 'pg', source_position: { lsn: 2 ** 53 - 1 - i, txId: null }, source_ts: new Date(Date.UTC(2026, 10, 30, 12, 0, i % 2 === 0 ? 0 : 1, i * 10)).toISOString(),
      before: i === 4 ? null : { name: text, n: 1.5e-7 * i, big: 2 ** 64, arr: [text, null, true] }, after: { name: `${text}!`, nested: { [text]: text } },
      changed_columns: [text, 'name'], version: i === 5 ? null : '0102ff', hlc: i === 6 ? null : '9223372036854775807', writes: [{ node: 'maria', outcome: 'applied' }],
      actor: i === 7 ? null : text, executed_at: new Date(Date.UTC(2026, 10, 30, 12, 0, 0, i === 0 ? 0 : 120)).toISOString(),
    }));
    const leaves = await inTx(async (c) => {
      const l = await insertAuditRows(c, rows);
      await writer.append(c, log, epoch, 0, l);
      return l;
    });
    expect(leaves).toHaveLength(odd.length);
    const client = await pool.connect();
    try {
      const seen: Buffer[] = [];
      await streamLeafRows(client, log, 1, Infinity, (rs) => {
        for (const r of rs) {
          expect(r.storedLeaf).toEqual(leaves[r.seq - 1]);
          seen.push(rowLeaf(r, 0).leaf);
        }
      });
      expect(seen).toEqual(leaves);
      const report = await verifyLog(client, log, new Map([[writer.key.keyId, writer.key.publicPem]]), []);
      expect(report).toMatchObject({ rows: odd.length, damage: null });
    } finally {
      client.release();
    }
  });
});
