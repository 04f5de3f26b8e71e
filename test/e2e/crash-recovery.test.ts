import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type pg from 'pg';
import { freshKeyBase, pgApp, pgControl, waitFor } from '../support/stack.ts';
import { counterSum, settle, startWorker, type WorkerHandle } from '../support/worker-process.ts';

/**
 * Invariant 4 (DESIGN §3): no acknowledged change is lost, and none is audited twice,
 * whatever moment the worker dies at. Each scenario SIGKILLs a real worker while 2,000
 * inserts flow, restarts it, and counts the audit rows for those keys.
 */
const N = 2000;
let app: pg.Pool;
let control: pg.Pool;
const running: WorkerHandle[] = [];

beforeAll(() => {
  app = pgApp();
  control = pgControl();
});

// A failed scenario must not leave its worker running into the next one.
afterEach(async () => {
  for (const w of running.splice(0)) await w.kill('SIGKILL');
});

afterAll(async () => {
  await Promise.all([app?.end(), control?.end()]);
});

async function start(group: string, env: Record<string, string> = {}): Promise<WorkerHandle> {
  const w = await startWorker(group, env);
  running.push(w);
  return w;
}

async function warmUp(group: string): Promise<void> {
  const w = await start(group);
  await settle(group, w, app, control);
  expect((await w.kill('SIGTERM')).code).toBe(0);
}

/** 2,000 single-row changes, in 20 transactions of 100, spread over about two seconds. */
async function insertRows(base: number): Promise<void> {
  for (let i = 0; i < N; i += 100) {
    await app.query(
      `INSERT INTO customers (id, name, email, balance, tags, updated_at)
       SELECT g, 'crash ' || g, g || '@example.com', (g % 1000) / 10.0, '{"crash": true}', now() FROM generate_series($1::bigint, $2::bigint) AS g`,
      [base + i, base + i + 99],
    );
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function counts(group: string, base: number): Promise<{ rows: number; events: number }> {
  const { rows } = await control.query<{ rows: string; events: string }>(
    `SELECT count(*) AS rows, count(DISTINCT event_id) AS events FROM audit_log
     WHERE log_id LIKE $1 AND kind = 'change' AND entity = 'customers' AND (record_key->>'id')::bigint BETWEEN $2 AND $3`,
    [`${group}:%`, base, base + N - 1],
  );
  return { rows: Number(rows[0]!.rows), events: Number(rows[0]!.events) };
}

async function expectExactlyOnce(group: string, base: number, restarted: WorkerHandle, alsoCheck?: () => Promise<void>): Promise<void> {
  await waitFor(`${N} audit rows after the restart`, async () => (await counts(group, base)).rows >= N, 120_000, 500);
  // Let anything redelivered arrive, then count again: exactly N, none twice.
  await new Promise((r) => setTimeout(r, 3000));
  expect(await counts(group, base)).toEqual({ rows: N, events: N });
  const seqs = await control.query<{ gaps: string }>(
    `SELECT count(*) AS gaps FROM (SELECT seq - lag(seq) OVER (PARTITION BY log_id ORDER BY seq) AS d FROM audit_log WHERE log_id LIKE $1) s WHERE d <> 1`,
    [`${group}:%`],
  );
  expect(Number(seqs.rows[0]!.gaps)).toBe(0);
  await alsoCheck?.();
  expect((await restarted.kill('SIGTERM')).code).toBe(0);
}

describe('crash recovery: exactly one audit row per change', () => {
  for (const point of ['after-audit-copy', 'after-commit'] as const) {
    it(`SIGKILL ${point === 'after-audit-copy' ? 'after the audit COPY, before the commit' : 'after the commit, before the offsets are stored'}`, async () => {
      const group = `e2e-crash-${point}-${Date.now().toString(36)}`;
      await warmUp(group);
      const base = freshKeyBase();
      // armed after 200 changes: mid-stream of this test's own, whatever strays in first
      const doomed = await start(group, { WORKER_SYNC_TEST_HOOKS: '1', WORKER_SYNC_TEST_CRASH_POINT: point, WORKER_SYNC_TEST_CRASH_AFTER: '200' });
      await doomed.ready();
      const inserting = insertRows(base);
      const exit = await doomed.exited;
      expect(exit.signal).toBe('SIGKILL');
      await inserting;
      // the fatal batch's audit rows died with its transaction: some of the rows are not audited yet
      if (point === 'after-audit-copy') expect((await counts(group, base)).rows).toBeLessThan(N);
      const restarted = await start(group);
      await restarted.ready();
      await expectExactlyOnce(group, base, restarted, async () => {
        if (point !== 'after-commit') return;
        // The committed batch's offsets never reached Kafka, so it came back and was
        // recognised by the PostgreSQL checkpoint instead of being audited again.
        expect(counterSum(await restarted.metrics(), 'sync_duplicates_total', 'kind="checkpoint"')).toBeGreaterThan(0);
      });
    });
  }

  it('SIGKILL at a random moment', async () => {
    const group = `e2e-crash-random-${Date.now().toString(36)}`;
    await warmUp(group);
    const base = freshKeyBase();
    const victim = await start(group);
    await victim.ready();
    const inserting = insertRows(base);
    const delay = 300 + Math.floor(Math.random() * 1700);
    await new Promise((r) => setTimeout(r, delay));
    expect((await victim.kill('SIGKILL')).signal).toBe('SIGKILL');
    await inserting;
    const restarted = await start(group);
    await restarted.ready();
    await expectExactlyOnce(group, base, restarted);
  });
});
