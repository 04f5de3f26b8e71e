import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type pg from 'pg';
import type mysql from 'mysql2/promise';
import { freshKeyBase, maria, pgApp, pgControl, waitFor } from '../support/stack.ts';
import { startWorker, type WorkerHandle } from '../support/worker-process.ts';

/**
 * 1,000 random operations over 100 keys, alternating between PostgreSQL and MariaDB,
 * never two writes to one key in flight at once. At the end both databases hold the same
 * rows, there is one `change` audit row per source change listing one write (to the other
 * node), no conflict, and nothing loops. Seeded, so a failure can be replayed:
 * RANDOM_OPS_SEED=<n> npm test -- test/e2e/random-ops.test.ts
 */
const OPS = 1000;
const KEYS = 100;
const ROUND = 50;
const seed = Number(process.env.RANDOM_OPS_SEED ?? 20261130);
let state = seed;
const rnd = () => ((state = (Math.imul(state, 1103515245) + 12345) >>> 0) / 2 ** 32);

const group = `e2e-random-${Date.now().toString(36)}`;
let worker: WorkerHandle;
let app: pg.Pool;
let control: pg.Pool;
let my: mysql.Pool;

beforeAll(async () => {
  app = pgApp();
  control = pgControl();
  my = maria();
  worker = await startWorker(group);
  await worker.ready();
});

afterAll(async () => {
  expect((await worker?.kill('SIGTERM'))?.code).toBe(0);
  await Promise.all([app?.end(), control?.end(), my?.end()]);
});

type Model = Map<number, { name: string; balance: string } | null>;

async function readPg(ids: number[]) {
  const { rows } = await app.query<{ id: string; name: string; balance: string }>('SELECT id::text, name, balance::text FROM customers WHERE id = ANY($1)', [ids]);
  return new Map(rows.map((r) => [Number(r.id), { name: r.name, balance: r.balance }]));
}

async function readMy(ids: number[]) {
  const [rows] = await my.query(`SELECT id, name, CAST(balance AS CHAR) AS balance FROM customers WHERE id IN (${ids.map(() => '?').join(',')})`, ids);
  return new Map((rows as Array<{ id: number; name: string; balance: string }>).map((r) => [Number(r.id), { name: r.name, balance: r.balance }]));
}

async function converged(model: Model, ids: number[]): Promise<boolean> {
  const [p, m] = await Promise.all([readPg(ids), readMy(ids)]);
  return ids.every((id) => {
    const want = model.get(id) ?? null;
    return JSON.stringify(p.get(id) ?? null) === JSON.stringify(want) && JSON.stringify(m.get(id) ?? null) === JSON.stringify(want);
  });
}

describe(`1,000 random operations over 100 keys (seed ${seed})`, () => {
  it('converge with exactly one audit row per change and nothing looping', async () => {
    const base = freshKeyBase();
    const ids = Array.from({ length: KEYS }, (_, i) => base + i);
    const model: Model = new Map(ids.map((id) => [id, null]));
    let ops = 0;
    let onPg = 0;
    for (let done = 0; done < OPS; done += ROUND) {
      // ROUND distinct keys, one operation each, alternating databases
      const pool = [...ids];
      const round: number[] = [];
      while (round.length < ROUND) round.push(pool.splice(Math.floor(rnd() * pool.length), 1)[0]!);
      await Promise.all(round.map(async (id) => {
        const usePg = (ops++ % 2) === 0;
        if (usePg) onPg++;
        const cur = model.get(id) ?? null;
        const balance = (Math.floor(rnd() * 1_000_000) / 100).toFixed(2);
        const name = `n${Math.floor(rnd() * 1e6)}`;
        if (cur === null) {
          model.set(id, { name, balance });
          if (usePg) await app.query(`INSERT INTO customers (id, name, balance, tags, updated_at) VALUES ($1, $2, $3, '{}', now())`, [id, name, balance]);
          else await my.query(`INSERT INTO customers (id, name, balance, tags, updated_at) VALUES (?, ?, ?, '{}', NOW(6))`, [id, name, balance]);
        } else if (rnd() < 0.25) {
          model.set(id, null);
          if (usePg) await app.query('DELETE FROM customers WHERE id = $1', [id]);
          else await my.query('DELETE FROM customers WHERE id = ?', [id]);
        } else {
          model.set(id, { name, balance });
          if (usePg) await app.query('UPDATE customers SET name = $2, balance = $3 WHERE id = $1', [id, name, balance]);
          else await my.query('UPDATE customers SET name = ?, balance = ? WHERE id = ?', [name, balance, id]);
        }
      }));
      await waitFor(`round ${done / ROUND + 1} to converge`, async () => converged(model, round), 30_000, 100);
    }
    expect(ops).toBe(OPS);
    expect(await converged(model, ids)).toBe(true);

    // quiet, then count: one change row per source change, one write each, no conflicts
    await new Promise((r) => setTimeout(r, 3000));
    const { rows } = await control.query<{ kind: string; source_node: string; n: number; writes: number; to_other: number }>(
      `SELECT kind, source_node, count(*)::int AS n, sum(json_array_length(CASE WHEN kind = 'change' THEN writes ELSE '[]' END))::int AS writes,
              sum(CASE WHEN kind = 'change' AND writes->0->>'node' <> source_node AND writes->0->>'outcome' = 'applied' THEN 1 ELSE 0 END)::int AS to_other
       FROM audit_log WHERE log_id LIKE $1 AND entity = 'customers' AND (record_key->>'id')::bigint BETWEEN $2 AND $3 GROUP BY 1, 2 ORDER BY 1, 2`,
      [`${group}:%`, base, base + KEYS - 1],
    );
    expect(rows).toEqual([
      { kind: 'change', source_node: 'maria', n: OPS - onPg, writes: OPS - onPg, to_other: OPS - onPg },
      { kind: 'change', source_node: 'pg', n: onPg, writes: onPg, to_other: onPg },
    ]);
    // still quiet: nothing looped
    await new Promise((r) => setTimeout(r, 2000));
    const again = await control.query<{ n: number }>(`SELECT count(*)::int AS n FROM audit_log WHERE log_id LIKE $1 AND (record_key->>'id')::bigint BETWEEN $2 AND $3`, [`${group}:%`, base, base + KEYS - 1]);
    expect(again.rows[0]!.n).toBe(OPS);
  });
});
