import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type pg from 'pg';
import type mysql from 'mysql2/promise';
import { freshKeyBase, maria, pgApp, pgControl, waitFor } from '../support/stack.ts';
import { settle, startWorker, type WorkerHandle } from '../support/worker-process.ts';

/**
 * Interleavings that must converge with nothing lost (DESIGN §6), each built on purpose:
 * a crash between the target write and the checkpoint commit (three ways), the same new
 * key inserted in both databases, and a delete in one database concurrent with an update
 * in the other (with full before-images and with REPLICA IDENTITY DEFAULT).
 */
const group = `e2e-inter-${Date.now().toString(36)}`;
let app: pg.Pool;
let control: pg.Pool;
let my: mysql.Pool;
const running: WorkerHandle[] = [];

beforeAll(async () => {
  app = pgApp();
  control = pgControl();
  my = maria();
  const w = await start();
  await settle(group, w, app, control);
  expect((await w.kill('SIGTERM')).code).toBe(0);
});

afterEach(async () => {
  for (const w of running.splice(0)) await w.kill('SIGKILL');
});

afterAll(async () => {
  await app.query('ALTER TABLE customers REPLICA IDENTITY FULL');
  await Promise.all([app?.end(), control?.end(), my?.end()]);
});

async function start(env: Record<string, string> = {}): Promise<WorkerHandle> {
  const w = await startWorker(group, env);
  running.push(w);
  return w;
}

async function stop(w: WorkerHandle): Promise<void> {
  // the whole exit, so a death by signal names itself; the worker's log says how far shutdown got
  expect(await w.kill('SIGTERM'), `SIGTERM exit of the worker logging to ${w.logFile}`).toEqual({ code: 0, signal: null });
}

interface Both { pg: { name: string } | undefined; maria: { name: string } | undefined }

async function both(id: number): Promise<Both> {
  const { rows } = await app.query<{ name: string }>('SELECT name FROM customers WHERE id = $1', [id]);
  const [m] = await my.query('SELECT name FROM customers WHERE id = ?', [id]);
  return { pg: rows[0], maria: (m as Array<{ name: string }>)[0] };
}

async function audit(id: number): Promise<Array<{ kind: string; source_node: string; op: string }>> {
  const { rows } = await control.query(
    `SELECT kind, source_node, op FROM audit_log WHERE log_id LIKE $1 AND entity = 'customers' AND record_key->>'id' = $2 ORDER BY log_id, seq`,
    [`${group}:%`, String(id)],
  );
  return rows;
}

/** Waits for the audit rows of `id` to reach `expected`, then checks they stay exactly that. */
async function expectAudit(id: number, expected: Array<{ kind: string; source_node: string; op: string }>): Promise<void> {
  await waitFor(`${expected.length} audit row(s) for ${id}`, async () => (await audit(id)).length >= expected.length, 60_000, 250);
  await new Promise((r) => setTimeout(r, 1500));
  expect(await audit(id)).toEqual(expected);
}

async function converge(id: number, name: string | null): Promise<void> {
  await waitFor(`both databases at ${name ?? 'deleted'}`, async () => {
    const b = await both(id);
    return name === null ? b.pg === undefined && b.maria === undefined : b.pg?.name === name && b.maria?.name === name;
  }, 30_000, 200);
  await new Promise((r) => setTimeout(r, 1500));
  const b = await both(id);
  expect(name === null ? [b.pg, b.maria] : [b.pg?.name, b.maria?.name]).toEqual(name === null ? [undefined, undefined] : [name, name]);
}

/** Kills a worker armed at the crash point right after it wrote `id` to MariaDB. */
async function crashAfterTargetWrite(id: number): Promise<void> {
  // first let the group catch up, so the armed worker's first new change is this test's
  const w = await start();
  await settle(group, w, app, control);
  await stop(w);
  // armed by the first new change it applies, not by the first batch (a late echo of the
  // catch-up would otherwise kill it before this test's insert is written)
  const doomed = await start({ WORKER_SYNC_TEST_HOOKS: '1', WORKER_SYNC_TEST_CRASH_POINT: 'after-target-write', WORKER_SYNC_TEST_CRASH_AFTER: '1' });
  await doomed.ready();
  await app.query(`INSERT INTO customers (id, name, balance, tags, updated_at) VALUES ($1, 'first', 1, '{}', now())`, [id]);
  expect((await doomed.exited).signal).toBe('SIGKILL');
  expect((await both(id)).maria?.name).toBe('first'); // the write landed; its checkpoint did not
}

describe('a crash after the target write, before the checkpoint commit', () => {
  it('plainly: the restart neither writes twice nor audits twice', async () => {
    const id = freshKeyBase();
    await crashAfterTargetWrite(id);
    const w = await start();
    await expectAudit(id, [{ kind: 'change', source_node: 'pg', op: 'c' }]);
    await converge(id, 'first');
    await stop(w);
  });

  it('with an application update landing at the target in between', async () => {
    const id = freshKeyBase();
    await crashAfterTargetWrite(id);
    await my.query(`UPDATE customers SET name = 'edited in maria' WHERE id = ?`, [id]);
    const w = await start();
    await expectAudit(id, [{ kind: 'change', source_node: 'pg', op: 'c' }, { kind: 'change', source_node: 'maria', op: 'u' }]);
    await converge(id, 'edited in maria');
    await stop(w);
  });

  it('with a further change to the same record arriving before the restart', async () => {
    const id = freshKeyBase();
    await crashAfterTargetWrite(id);
    await app.query(`UPDATE customers SET name = 'second at pg' WHERE id = $1`, [id]);
    const w = await start();
    await expectAudit(id, [{ kind: 'change', source_node: 'pg', op: 'c' }, { kind: 'change', source_node: 'pg', op: 'u' }]);
    await converge(id, 'second at pg');
    await stop(w);
  });
});

describe('concurrent changes while the worker is away', () => {
  it('the same new key inserted in both databases converges to the lww winner, with one conflict', async () => {
    const id = freshKeyBase();
    await my.query(`INSERT INTO customers (id, name, balance, tags, updated_at) VALUES (?, 'from maria', 1, '{}', NOW(6))`, [id]);
    // MariaDB's commit time has whole seconds; a second later PostgreSQL's is surely later
    await new Promise((r) => setTimeout(r, 1100));
    await app.query(`INSERT INTO customers (id, name, balance, tags, updated_at) VALUES ($1, 'from pg', 1, '{}', now())`, [id]);
    const w = await start();
    await converge(id, 'from pg');
    await waitFor('the conflict in the audit log', async () => (await audit(id)).length >= 3, 30_000, 250);
    const rows = await audit(id);
    expect(rows.filter((r) => r.kind === 'conflict')).toHaveLength(1);
    expect(rows.filter((r) => r.kind === 'change')).toHaveLength(2);
    await stop(w);
  });

  for (const identity of ['FULL', 'DEFAULT'] as const) {
    it(`a delete in PostgreSQL against an update in MariaDB: deleteWins (REPLICA IDENTITY ${identity})`, async () => {
      const id = freshKeyBase();
      const w = await start();
      await w.ready();
      await app.query(`INSERT INTO customers (id, name, balance, tags, updated_at) VALUES ($1, 'shared', 1, '{}', now())`, [id]);
      await converge(id, 'shared');
      await stop(w);
      await app.query(`ALTER TABLE customers REPLICA IDENTITY ${identity}`);
      try {
        await app.query('DELETE FROM customers WHERE id = $1', [id]);
        await my.query(`UPDATE customers SET name = 'updated in maria' WHERE id = ?`, [id]);
      } finally {
        await app.query('ALTER TABLE customers REPLICA IDENTITY FULL');
      }
      const again = await start();
      await converge(id, null);
      await waitFor('the conflict in the audit log', async () => (await audit(id)).some((r) => r.kind === 'conflict'), 30_000, 250);
      const rows = await audit(id);
      expect(rows.filter((r) => r.kind === 'conflict')).toHaveLength(1);
      await stop(again);
    });
  }
});
