import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type pg from 'pg';
import type mysql from 'mysql2/promise';
import { ROOT, freshKeyBase, maria, pgApp, pgControl, waitFor } from '../support/stack.ts';
import { counterSum, settle, startWorker, type WorkerHandle } from '../support/worker-process.ts';

/**
 * `truncate: propagate` (DESIGN §4, issue 3): a TRUNCATE in PostgreSQL is audited and
 * empties the entity's table in MariaDB too, record by record through each record's own
 * lane, and the sync goes on afterwards. The demo's other entities keep `ignore`.
 */
const group = `e2e-truncate-${Date.now().toString(36)}`;
let worker: WorkerHandle;
let app: pg.Pool;
let control: pg.Pool;
let my: mysql.Pool;

beforeAll(async () => {
  app = pgApp();
  control = pgControl();
  my = maria();
  const yaml = readFileSync(path.join(ROOT, 'deploy/local/worker-sync.yaml'), 'utf8');
  const propagating = yaml.replace(/(\n {2}type_probe:\n(?:\s+#.*\n)?)/, '$1    truncate: propagate\n');
  expect(propagating).toContain('truncate: propagate');
  const config = path.join(mkdtempSync(path.join(os.tmpdir(), 'ws-truncate-')), 'worker-sync.yaml');
  writeFileSync(config, propagating);
  worker = await startWorker(group, { WORKER_SYNC_CONFIG: config });
  await settle(group, worker, app, control);
});

afterAll(async () => {
  expect((await worker?.kill('SIGTERM'))?.code).toBe(0);
  await Promise.all([app?.end(), control?.end(), my?.end()]);
});

async function inMaria(ids: number[]): Promise<number[]> {
  const [rows] = await my.query('SELECT id FROM type_probe WHERE id IN (?) ORDER BY id', [ids]);
  return (rows as Array<{ id: string | number }>).map((r) => Number(r.id));
}

describe('truncate: propagate', () => {
  it('a TRUNCATE in PostgreSQL is audited and empties the table in MariaDB, and later changes still flow', async () => {
    const base = freshKeyBase();
    const fromPg = [base, base + 1, base + 2];
    const fromMaria = base + 3;
    for (const id of fromPg) await app.query(`INSERT INTO type_probe (id, c_text) VALUES ($1, 'before the truncate')`, [id]);
    await my.query(`INSERT INTO type_probe (id, c_text) VALUES (?, 'made in maria')`, [fromMaria]);
    await waitFor('all four rows in both databases', async () => {
      const { rows } = await app.query('SELECT count(*)::int AS n FROM type_probe WHERE id = ANY($1)', [[...fromPg, fromMaria]]);
      return rows[0].n === 4 && (await inMaria([...fromPg, fromMaria])).length === 4;
    }, 60_000);

    const truncatesBefore = counterSum(await worker.metrics(), 'sync_truncates_total', 'entity="type_probe",policy="propagate"');
    const truncatedAt = new Date(Date.now() - 1000);
    await app.query('TRUNCATE public.type_probe');
    await waitFor('the truncate to remove the four rows from MariaDB', async () => (await inMaria([...fromPg, fromMaria])).length === 0, 60_000);
    // and every other row the worker knew, each through its own record's lane
    await waitFor('MariaDB\'s table to be empty', async () => {
      const [left] = await my.query('SELECT count(*) AS n FROM type_probe');
      return Number((left as Array<{ n: number }>)[0]!.n) === 0;
    }, 60_000);

    const { rows: truncates } = await control.query(
      `SELECT source_node FROM audit_log WHERE log_id LIKE $1 AND entity = 'type_probe' AND op = 't' AND kind = 'change' AND source_ts >= $2`, [`${group}:%`, truncatedAt]);
    expect(truncates).toEqual([{ source_node: 'pg' }]);
    // one delete per record, each audited in its own record's log as caused by the truncate
    // (the target write precedes its batch's audit commit by a moment)
    const deletes = await waitFor('the four deletes in the audit log', async () => {
      const { rows } = await control.query(
        `SELECT record_key->>'id' AS id FROM audit_log WHERE log_id LIKE $1 AND entity = 'type_probe' AND op = 'd' AND event_id LIKE '%#%' AND record_key->>'id' = ANY($2)`,
        [`${group}:%`, [...fromPg, fromMaria].map(String)]);
      return rows.length >= 4 ? rows : undefined;
    }, 30_000);
    expect(deletes.map((r) => Number(r.id)).sort()).toEqual([...fromPg, fromMaria]);
    // (a new group replays the topic's history first, earlier truncates included)
    expect(counterSum(await worker.metrics(), 'sync_truncates_total', 'entity="type_probe",policy="propagate"')).toBe(truncatesBefore + 1);

    // the table keeps syncing, both ways
    await app.query(`INSERT INTO type_probe (id, c_text) VALUES ($1, 'after the truncate')`, [base + 10]);
    await my.query(`INSERT INTO type_probe (id, c_text) VALUES (?, 'after, from maria')`, [base + 11]);
    await waitFor('new rows synced after the truncate', async () => {
      const { rows } = await app.query('SELECT count(*)::int AS n FROM type_probe WHERE id = $1', [base + 11]);
      return rows[0].n === 1 && (await inMaria([base + 10])).length === 1;
    }, 60_000);
  });
});
