import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type pg from 'pg';
import type mysql from 'mysql2/promise';
import { freshKeyBase, maria, pgApp, pgControl, waitFor } from '../support/stack.ts';
import { counterSum, settle } from '../support/worker-process.ts';
import { startApiWorker, type ApiWorker } from '../support/api.ts';

/**
 * Group commit (DESIGN §2, issue 13): the sync stage commits the batches of all the
 * partitions it holds in one transaction, each partition still fenced on its own. Here
 * half of the worker's audit logs change owner behind its back (their epochs are bumped,
 * as a rebalance's new owner would) while changes wait behind a pause. On resume the
 * cycle leaves the fenced partitions out, commits the others, and the fenced ones go on
 * alone: they reclaim their logs and commit. Every change arrives and is audited once,
 * and every log's seqs stay contiguous.
 */
const group = `e2e-cycle-${Date.now().toString(36)}`;
const KEYS = 40;
let w: ApiWorker;
let app: pg.Pool;
let control: pg.Pool;
let my: mysql.Pool;

beforeAll(async () => {
  app = pgApp();
  control = pgControl();
  my = maria();
  w = await startApiWorker(group);
  await settle(group, w, app, control);
});

afterAll(async () => {
  expect((await w?.kill('SIGTERM'))?.code).toBe(0);
  await Promise.all([app?.end(), control?.end(), my?.end()]);
});

describe('group commit', () => {
  it('commits a cycle\'s unfenced partitions together and lets each fenced one reclaim its log and commit alone', async () => {
    const { rows: logs } = await control.query<{ log_id: string }>(`SELECT log_id FROM audit_logs WHERE log_id LIKE $1 AND log_id ~ '/[0-9]+$' ORDER BY log_id`, [`${group}:%`]);
    expect(logs.length).toBeGreaterThanOrEqual(4);
    const before = await w.metrics();
    expect((await w.api('POST', '/sync/pause', { by: 'cycle-test' })).status).toBe(200);
    const stolen = logs.filter((_, i) => i % 2 === 0).map((l) => l.log_id);
    await control.query('UPDATE audit_logs SET epoch = epoch + 1 WHERE log_id = ANY($1)', [stolen]);
    const base = freshKeyBase();
    const ids = Array.from({ length: KEYS }, (_, i) => base + i);
    for (const id of ids) await app.query(`INSERT INTO customers (id, name, balance, tags, updated_at) VALUES ($1, $2, 1, '{}', now())`, [id, `cycle ${id}`]);
    // the changes reach the changes topic while the sync stage holds them
    await new Promise((r) => setTimeout(r, 1500));
    expect((await w.api('POST', '/sync/resume', { by: 'cycle-test' })).status).toBe(200);
    const audit = async () => (await control.query<{ id: string; n: number }>(
      `SELECT record_key->>'id' AS id, count(*)::int AS n FROM audit_log WHERE log_id LIKE $1 AND entity = 'customers' AND kind = 'change' AND source_node = 'pg'
         AND record_key->>'id' = ANY($2) GROUP BY 1`, [`${group}:%`, ids.map(String)])).rows;
    // committed: the targets are written before the commit, the audit rows in it
    await waitFor(`all ${KEYS} changes audited`, async () => (await audit()).length === KEYS, 60_000);
    const [inMaria] = await my.query(`SELECT count(*) AS n FROM customers WHERE id IN (${ids.map(() => '?').join(',')})`, ids);
    expect(Number((inMaria as Array<{ n: number }>)[0]!.n)).toBe(KEYS);

    const after = await w.metrics();
    const delta = (name: string, labels = '') => counterSum(after, name, labels) - counterSum(before, name, labels);
    expect(delta('sync_cycle_alone_total', 'reason="fenced"')).toBeGreaterThanOrEqual(1);
    expect(delta('sync_cycle_alone_total', 'reason="failed"')).toBe(0);
    // some cycle committed partitions while others of it were fenced
    expect(delta('sync_cycle_partitions_sum')).toBeGreaterThanOrEqual(1);

    // each change audited exactly once, in logs whose seqs run 1..n without a gap
    await new Promise((r) => setTimeout(r, 1000)); // nothing more arrives
    const audited = await audit();
    expect(audited.length).toBe(KEYS);
    expect(audited.every((r) => r.n === 1)).toBe(true);
    const { rows: seqs } = await control.query<{ log_id: string; n: string; top: string; size: string }>(
      `SELECT a.log_id, count(*) AS n, max(a.seq) AS top, l.tree_size AS size FROM audit_log a JOIN audit_logs l USING (log_id)
        WHERE a.log_id LIKE $1 GROUP BY a.log_id, l.tree_size`, [`${group}:%`]);
    for (const s of seqs) expect([s.log_id, Number(s.n), Number(s.size)]).toEqual([s.log_id, Number(s.top), Number(s.top)]);
    // the fenced logs were claimed back by this worker
    const { rows: owners } = await control.query<{ owner: string }>('SELECT DISTINCT owner FROM audit_logs WHERE log_id = ANY($1)', [stolen]);
    expect(owners.length).toBe(1);
  });
});
