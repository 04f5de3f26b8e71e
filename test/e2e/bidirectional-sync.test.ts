import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type pg from 'pg';
import type mysql from 'mysql2/promise';
import { freshKeyBase, maria, pgApp, pgControl, waitFor } from '../support/stack.ts';
import { settle, startWorker, type WorkerHandle } from '../support/worker-process.ts';

/**
 * A change made in one database appears in the other within 5 s, both ways, through
 * Debezium, Kafka, the changes topic and the worker, and nothing loops.
 */
const group = `e2e-bidi-${Date.now().toString(36)}`;
let worker: WorkerHandle;
let app: pg.Pool;
let control: pg.Pool;
let my: mysql.Pool;

beforeAll(async () => {
  app = pgApp();
  control = pgControl();
  my = maria();
  worker = await startWorker(group);
  await settle(group, worker, app, control); // caught up, so the 5 s measure the sync itself
});

afterAll(async () => {
  expect((await worker?.kill('SIGTERM'))?.code).toBe(0);
  await Promise.all([app?.end(), control?.end(), my?.end()]);
});

async function pgRow(id: number) {
  const { rows } = await app.query(`SELECT id::text, name, email, balance::text, tags::text, to_char(updated_at, 'YYYY-MM-DD HH24:MI:SS.US') AS updated_at, _sync_version FROM customers WHERE id = $1`, [id]);
  return rows[0] as { name: string; balance: string; tags: string; updated_at: string; _sync_version: Buffer | null } | undefined;
}

async function myRow(id: number) {
  const [rows] = await my.query(`SELECT id, name, email, CAST(balance AS CHAR) AS balance, tags, DATE_FORMAT(updated_at, '%Y-%m-%d %H:%i:%s.%f') AS updated_at, _sync_version FROM customers WHERE id = ?`, [id]);
  return (rows as Array<{ name: string; balance: string; tags: string; updated_at: string; _sync_version: Buffer | null }>)[0];
}

const within = 5000;

async function auditCount(id: number): Promise<number> {
  const { rows } = await control.query(`SELECT count(*)::int AS n FROM audit_log WHERE log_id LIKE $1 AND record_key->>'id' = $2`, [`${group}:%`, String(id)]);
  return rows[0].n as number;
}

describe('bidirectional sync PostgreSQL <-> MariaDB', () => {
  it('PostgreSQL insert, update and delete reach MariaDB within 5 s', async () => {
    const id = freshKeyBase();
    await app.query(`INSERT INTO customers (id, name, email, balance, tags, updated_at) VALUES ($1, 'Zoë', 'z@example.com', 1234.56, '{"vip": true, "n": [1, 2]}', '2026-11-30 12:34:56.123456')`, [id]);
    const ins = await waitFor('the insert in MariaDB', async () => myRow(id), within, 50);
    expect(ins).toMatchObject({ name: 'Zoë', balance: '1234.56', updated_at: '2026-11-30 12:34:56.123456' });
    expect(JSON.parse(ins.tags)).toEqual({ vip: true, n: [1, 2] });
    expect(ins._sync_version).not.toBeNull();

    await app.query(`UPDATE customers SET name = 'Zoë Ñandú', balance = 0.05 WHERE id = $1`, [id]);
    await waitFor('the update in MariaDB', async () => (await myRow(id))?.name === 'Zoë Ñandú', within, 50);
    expect((await myRow(id))?.balance).toBe('0.05');

    await app.query('DELETE FROM customers WHERE id = $1', [id]);
    await waitFor('the delete in MariaDB', async () => (await myRow(id)) === undefined, within, 50);
    // quiet: exactly the three source changes were audited, the echoes were not
    await new Promise((r) => setTimeout(r, 2000));
    expect(await auditCount(id)).toBe(3);
  });

  it('MariaDB insert, update and delete reach PostgreSQL within 5 s', async () => {
    const id = freshKeyBase();
    await my.query(`INSERT INTO customers (id, name, email, balance, tags, updated_at) VALUES (?, 'Åsa', NULL, -10.5, '{"tier": 2}', '2026-01-02 03:04:05.000006')`, [id]);
    const ins = await waitFor('the insert in PostgreSQL', async () => pgRow(id), within, 50);
    expect(ins).toMatchObject({ name: 'Åsa', balance: '-10.50', updated_at: '2026-01-02 03:04:05.000006' });
    expect(JSON.parse(ins.tags)).toEqual({ tier: 2 });

    await my.query(`UPDATE customers SET email = 'asa@example.org' WHERE id = ?`, [id]);
    await waitFor('the update in PostgreSQL', async () => (await pgRow(id) as { email?: string } | undefined)?.email === 'asa@example.org', within, 50);

    await my.query('DELETE FROM customers WHERE id = ?', [id]);
    await waitFor('the delete in PostgreSQL', async () => (await pgRow(id)) === undefined, within, 50);
    await new Promise((r) => setTimeout(r, 2000));
    expect(await auditCount(id)).toBe(3);
  });

  it('an edit back and forth ends with both databases holding the same row, and nothing looping', async () => {
    const id = freshKeyBase();
    await app.query(`INSERT INTO customers (id, name, balance, tags, updated_at) VALUES ($1, 'one', 1, '[]', '2026-11-30 00:00:00')`, [id]);
    await waitFor('the row in MariaDB', async () => myRow(id), within, 50);
    await my.query(`UPDATE customers SET name = 'two' WHERE id = ?`, [id]);
    await waitFor('the edit in PostgreSQL', async () => (await pgRow(id))?.name === 'two', within, 50);
    await app.query(`UPDATE customers SET name = 'three' WHERE id = $1`, [id]);
    await waitFor('the second edit in MariaDB', async () => (await myRow(id))?.name === 'three', within, 50);
    await new Promise((r) => setTimeout(r, 2000));
    const [p, m] = [await pgRow(id), await myRow(id)];
    // The source keeps the version its application edit carried; only the worker writes versions.
    expect({ ...p, _sync_version: null }).toEqual({ ...m, id: String(id), _sync_version: null });
    expect(await auditCount(id)).toBe(3);
    const metrics = await worker.metrics();
    expect(metrics).toMatch(/sync_echoes_total\{node="maria"\} \d+/);
    expect(metrics).toMatch(/sync_node_rows_total\{node="pg",outcome="applied"\} \d+/);
  });
});
