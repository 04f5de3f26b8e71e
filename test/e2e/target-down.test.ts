import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type pg from 'pg';
import type mysql from 'mysql2/promise';
import { ROOT, freshKeyBase, maria, pgApp, pgControl, waitFor } from '../support/stack.ts';
import { startWorker, type WorkerHandle } from '../support/worker-process.ts';

/**
 * MariaDB stopped for 30 s while PostgreSQL keeps changing: the circuit opens, /ready
 * names the node, nothing is lost, and the backlog drains in order once it is back.
 */
const group = `e2e-down-${Date.now().toString(36)}`;
let worker: WorkerHandle;
let app: pg.Pool;
let control: pg.Pool;
let my: mysql.Pool | undefined;

beforeAll(async () => {
  app = pgApp();
  control = pgControl();
  worker = await startWorker(group);
  await worker.ready();
});

afterAll(async () => {
  // whatever happened, leave MariaDB running for the suites after this one
  execFileSync('bash', [path.join(ROOT, 'deploy/local/stack.sh'), 'up'], { stdio: 'ignore' });
  expect((await worker?.kill('SIGTERM'))?.code).toBe(0);
  await Promise.all([app?.end(), control?.end(), my?.end()]);
});

describe('a target node that is down', () => {
  it('opens its circuit, fails /ready naming it, and drains the backlog in order when back', async () => {
    const base = freshKeyBase();
    const pidFile = path.join(ROOT, '.local/stack/run/mariadb.pid');
    const pid = Number(readFileSync(pidFile, 'utf8').trim());
    process.kill(pid, 'SIGKILL');
    const stoppedAt = Date.now();

    // 20 new rows, then a second version of each, while MariaDB is gone
    await app.query(`INSERT INTO customers (id, name, balance, tags, updated_at) SELECT g, 'first', 1, '{}', now() FROM generate_series($1::bigint, $2::bigint) g`, [base, base + 19]);
    await app.query(`UPDATE customers SET name = 'second', balance = 2 WHERE id BETWEEN $1 AND $2`, [base, base + 19]);

    const notReady = await waitFor('/ready to fail naming MariaDB', async () => {
      const res = await fetch(`${worker.url}/ready`);
      if (res.status !== 503) return undefined;
      const body = await res.json() as { failing: string[] };
      return body.failing.includes('node:maria') ? body : undefined;
    }, 20_000, 250);
    expect(notReady.failing).toContain('node:maria');
    await waitFor('the circuit to open', async () => /^sync_circuit_open\{node="maria"\} 1$/m.test(await worker.metrics()), 20_000, 250);
    expect((await fetch(`${worker.url}/health`)).status).toBe(200);

    await new Promise((r) => setTimeout(r, Math.max(0, 30_000 - (Date.now() - stoppedAt))));
    execFileSync('bash', [path.join(ROOT, 'deploy/local/stack.sh'), 'up'], { stdio: 'ignore' });
    my = maria();

    await waitFor('the backlog in MariaDB', async () => {
      const [rows] = await my!.query(`SELECT name, CAST(balance AS CHAR) AS balance FROM customers WHERE id BETWEEN ? AND ?`, [base, base + 19]);
      const list = rows as Array<{ name: string; balance: string }>;
      return list.length === 20 && list.every((r) => r.name === 'second' && r.balance === '2.00');
    }, 60_000, 500);
    await waitFor('/ready to recover', async () => (await fetch(`${worker.url}/ready`)).status === 200, 30_000, 500);
    expect(await worker.metrics()).toMatch(/^sync_circuit_open\{node="maria"\} 0$/m);
    // every change audited once, in order per key: insert then update
    await waitFor('40 audit rows', async () => (await control.query<{ n: number }>(`SELECT count(*)::int AS n FROM audit_log WHERE log_id LIKE $1 AND (record_key->>'id')::bigint BETWEEN $2 AND $3`, [`${group}:%`, base, base + 19])).rows[0]!.n >= 40, 30_000);
    const { rows } = await control.query<{ ops: string }>(
      `SELECT string_agg(op, '' ORDER BY seq) AS ops FROM audit_log WHERE log_id LIKE $1 AND (record_key->>'id')::bigint BETWEEN $2 AND $3 GROUP BY record_key::text`,
      [`${group}:%`, base, base + 19],
    );
    expect(rows).toHaveLength(20);
    expect(rows.every((r) => r.ops === 'cu')).toBe(true);
  });
});
