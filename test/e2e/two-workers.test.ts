import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type pg from 'pg';
import type mysql from 'mysql2/promise';
import path from 'node:path';
import { loadTopology } from '../../src/config/topology.ts';
import { ROOT, freshKeyBase, maria, pgApp, pgControl, waitFor } from '../support/stack.ts';
import { startWorker, type WorkerHandle } from '../support/worker-process.ts';

/**
 * Two workers in one consumer group share the partitions; one is SIGKILLed while 5,000
 * changes flow. Every source change is still audited exactly once, and both databases
 * converge.
 */
const N = 5000;
const group = `e2e-two-${Date.now().toString(36)}`;
const workers: WorkerHandle[] = [];
let app: pg.Pool;
let control: pg.Pool;
let my: mysql.Pool;

beforeAll(async () => {
  app = pgApp();
  control = pgControl();
  my = maria();
});

afterAll(async () => {
  for (const w of workers) await w.kill('SIGKILL');
  await Promise.all([app?.end(), control?.end(), my?.end()]);
});

async function owned(w: WorkerHandle): Promise<number> {
  const m = /^sync_partitions_owned (\d+)/m.exec(await w.metrics());
  return m ? Number(m[1]) : 0;
}

describe('two workers, one group', () => {
  it('apply every source change exactly once when one of them is SIGKILLed mid-stream', async () => {
    for (let i = 0; i < 2; i++) {
      const w = await startWorker(group);
      workers.push(w);
      await w.ready();
    }
    const [a, b] = workers as [WorkerHandle, WorkerHandle];
    // the group has settled with partitions on both
    const partitions = loadTopology(path.join(ROOT, 'deploy/local/worker-sync.yaml')).topics.size + 15;
    await waitFor('partitions on both workers', async () => (await owned(a)) > 0 && (await owned(b)) > 0 && (await owned(a)) + (await owned(b)) === partitions, 60_000, 500);

    const base = freshKeyBase();
    const half = N / 2;
    const writes = (async () => {
      for (let i = 0; i < half; i += 250) {
        await app.query(`INSERT INTO customers (id, name, balance, tags, updated_at) SELECT g, 'pg ' || g, 1, '{}', now() FROM generate_series($1::bigint, $2::bigint) g`, [base + i, base + i + 249]);
        const ids = Array.from({ length: 250 }, (_, k) => base + half + i + k);
        await my.query(`INSERT INTO customers (id, name, balance, tags, updated_at) VALUES ${ids.map(() => "(?, 'my', 2, '{}', NOW(6))").join(', ')}`, ids);
        await new Promise((r) => setTimeout(r, 150));
      }
    })();
    await new Promise((r) => setTimeout(r, 800));
    expect((await a.kill('SIGKILL')).signal).toBe('SIGKILL');
    await writes;

    const count = async () => {
      const { rows } = await control.query<{ n: number; events: number }>(
        `SELECT count(*)::int AS n, count(DISTINCT event_id)::int AS events FROM audit_log
         WHERE log_id LIKE $1 AND kind = 'change' AND entity = 'customers' AND (record_key->>'id')::bigint BETWEEN $2 AND $3`,
        [`${group}:%`, base, base + N - 1],
      );
      return rows[0]!;
    };
    await waitFor(`${N} audited changes`, async () => (await count()).n >= N, 180_000, 1000);
    await new Promise((r) => setTimeout(r, 3000));
    expect(await count()).toEqual({ n: N, events: N });

    await waitFor('both databases to hold all rows', async () => {
      const { rows } = await app.query<{ n: number }>('SELECT count(*)::int AS n FROM customers WHERE id BETWEEN $1 AND $2', [base, base + N - 1]);
      const [m] = await my.query('SELECT count(*) AS n FROM customers WHERE id BETWEEN ? AND ?', [base, base + N - 1]);
      return rows[0]!.n === N && Number((m as Array<{ n: number }>)[0]!.n) === N;
    }, 60_000, 1000);
    const { rows: pgNames } = await app.query<{ n: number }>(`SELECT count(*)::int AS n FROM customers WHERE id BETWEEN $1 AND $2 AND name = CASE WHEN id < $3 THEN 'pg ' || id ELSE 'my' END`, [base, base + N - 1, base + half]);
    expect(pgNames[0]!.n).toBe(N);
    expect((await b.kill('SIGTERM')).code).toBe(0);
  });
});
