import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type pg from 'pg';
import type mysql from 'mysql2/promise';
import { freshKeyBase, maria, pgApp, pgControl, waitFor } from '../support/stack.ts';
import { counterSum, settle } from '../support/worker-process.ts';
import { demoConfigWithPolicy, startApiWorker, type ApiWorker } from '../support/api.ts';

/**
 * Conflicts end to end (DESIGN §6, §9; issue 4): concurrent edits of one row in both
 * databases while the worker is paused, resolved by lww, and left open by manual until an
 * operator resolves them through the API or the runbook's SQL. And the API's guard rails.
 */
let app: pg.Pool;
let control: pg.Pool;
let my: mysql.Pool;

beforeAll(() => {
  app = pgApp();
  control = pgControl();
  my = maria();
});

afterAll(async () => {
  await Promise.all([app?.end(), control?.end(), my?.end()]);
});

const pgName = async (id: number) => (await app.query('SELECT name FROM customers WHERE id = $1', [id])).rows[0]?.name as string | undefined;
const myName = async (id: number) => ((await my.query('SELECT name FROM customers WHERE id = ?', [id]))[0] as Array<{ name: string }>)[0]?.name;

async function conflictsOf(group: string, id: number) {
  const { rows } = await control.query(
    `SELECT id, strategy, suggested_winner, winner_node, resolved_at, resolution_strategy, resolved_by, converged_at, local_node, incoming_node
     FROM sync_conflicts WHERE consumer_group = $1 AND entity = 'customers' AND record_key = $2 ORDER BY id`, [group, `[${id}]`]);
  return rows;
}

async function auditKinds(group: string, id: number) {
  const { rows } = await control.query(
    `SELECT kind, actor FROM audit_log WHERE log_id LIKE $1 AND entity = 'customers' AND record_key->>'id' = $2 ORDER BY executed_at, seq`, [`${group}:%`, String(id)]);
  return rows as Array<{ kind: string; actor: string | null }>;
}

/** Waits for the record's one conflict to be recorded. */
function theOnlyConflict(group: string, id: number) {
  return waitFor('the open conflict', async () => {
    const c = await conflictsOf(group, id);
    return c.length === 1 ? c : undefined;
  }, 60_000);
}

/** A row both databases hold, then edited differently in each while the worker is paused; maria's edit is the later one. */
async function editBothWhilePaused(w: ApiWorker, id: number): Promise<void> {
  await app.query(`INSERT INTO customers (id, name, balance, tags, updated_at) VALUES ($1, 'start', 1, '{}', now())`, [id]);
  await waitFor('the row in MariaDB', async () => (await myName(id)) === 'start', 60_000);
  expect((await w.api('POST', '/sync/pause', { by: 'test' })).status).toBe(200);
  await app.query(`UPDATE customers SET name = 'from pg' WHERE id = $1`, [id]);
  await new Promise((r) => setTimeout(r, 1100)); // MariaDB's source clock has whole seconds: make its edit clearly later
  await my.query(`UPDATE customers SET name = 'from maria' WHERE id = ?`, [id]);
  await new Promise((r) => setTimeout(r, 2000)); // both changes reach the changes topic and wait there
  expect((await w.api('POST', '/sync/resume', { by: 'test' })).status).toBe(200);
}

describe('lww', () => {
  const group = `e2e-lww-${Date.now().toString(36)}`;
  let w: ApiWorker;
  beforeAll(async () => {
    w = await startApiWorker(group);
    await settle(group, w, app, control);
  });
  afterAll(async () => {
    expect((await w?.kill('SIGTERM'))?.code).toBe(0);
  });

  it('records exactly one conflict, converges both databases to the later edit, audits it, and a later edit is causal', async () => {
    const id = freshKeyBase();
    await editBothWhilePaused(w, id);
    await waitFor('both databases at the winner', async () => (await pgName(id)) === 'from maria' && (await myName(id)) === 'from maria', 60_000);
    const conflicts = await waitFor('the conflict, converged', async () => {
      const c = await conflictsOf(group, id);
      return c.length === 1 && c[0].converged_at !== null ? c : undefined;
    }, 30_000);
    expect(conflicts[0]).toMatchObject({ strategy: 'lww', suggested_winner: 'maria', winner_node: 'maria', resolution_strategy: 'lww', resolved_by: 'worker' });
    expect((await auditKinds(group, id)).filter((r) => r.kind === 'conflict')).toHaveLength(1);
    const listed = await w.api('GET', `/sync/conflicts?status=resolved&entity=customers&limit=500`);
    expect(listed.status).toBe(200);
    expect(counterSum(await w.metrics(), 'sync_conflicts_total', 'entity="customers",strategy="lww",outcome="auto"')).toBeGreaterThanOrEqual(1);

    // the node that held the winner edits again: causal, no second conflict
    await my.query(`UPDATE customers SET name = 'later' WHERE id = ?`, [id]);
    await waitFor('the later edit in PostgreSQL', async () => (await pgName(id)) === 'later', 60_000);
    await new Promise((r) => setTimeout(r, 1500));
    expect(await conflictsOf(group, id)).toHaveLength(1);
  });
});

describe('manual', () => {
  const group = `e2e-manual-${Date.now().toString(36)}`;
  let w: ApiWorker;
  beforeAll(async () => {
    w = await startApiWorker(group, { WORKER_SYNC_CONFIG: demoConfigWithPolicy('manual') });
    await settle(group, w, app, control);
  });
  afterAll(async () => {
    expect((await w?.kill('SIGTERM'))?.code).toBe(0);
  });

  it('keeps the conflict open with each database holding its value, until POST /sync/conflicts/:id/resolve converges them, audited with who', async () => {
    const id = freshKeyBase();
    await editBothWhilePaused(w, id);
    const [open] = await theOnlyConflict(group, id);
    expect(open).toMatchObject({ strategy: 'manual', resolved_at: null, suggested_winner: 'maria' });
    await new Promise((r) => setTimeout(r, 1500));
    expect([await pgName(id), await myName(id)]).toEqual(['from pg', 'from maria']);
    const got = await w.api('GET', `/sync/conflicts/${open.id}`);
    expect(got.status).toBe(200);
    expect(got.body).toMatchObject({ status: 'open', local: { node: 'pg', value: { name: 'from pg' } }, incoming: { node: 'maria', value: { name: 'from maria' } } });
    const list = await w.api('GET', '/sync/conflicts?status=open&entity=customers&node=maria');
    expect((list.body.conflicts as Array<{ id: number }>).map((c) => c.id)).toContain(Number(open.id));
    expect(counterSum(await w.metrics(), 'sync_conflicts_total', 'strategy="manual",outcome="open"')).toBeGreaterThanOrEqual(1);

    const res = await w.api('POST', `/sync/conflicts/${open.id}/resolve`, { winner: 'pg', by: 'alice' });
    expect(res).toMatchObject({ status: 202, body: { status: 'resolved', winner_node: 'pg', resolved_by: 'alice' } });
    await waitFor('both databases at the chosen value', async () => (await pgName(id)) === 'from pg' && (await myName(id)) === 'from pg', 60_000);
    await waitFor('the conflict converged', async () => (await conflictsOf(group, id))[0].converged_at !== null, 30_000);
    await waitFor('the resolution in the audit log', async () => (await auditKinds(group, id)).some((r) => r.kind === 'resolve' && r.actor === 'alice'), 30_000);
    expect((await w.api('POST', `/sync/conflicts/${open.id}/resolve`, { winner: 'maria' })).status).toBe(409);
    // converged: the next edit is causal
    await my.query(`UPDATE customers SET name = 'after' WHERE id = ?`, [id]);
    await waitFor('the next edit in PostgreSQL', async () => (await pgName(id)) === 'after', 60_000);
    expect(await conflictsOf(group, id)).toHaveLength(1);
  });

  it('the runbook\'s SQL resolution converges to the suggested winner and is audited', async () => {
    const id = freshKeyBase();
    await editBothWhilePaused(w, id);
    const [open] = await theOnlyConflict(group, id);
    await control.query(`UPDATE sync_conflicts SET resolution_strategy='manual_override', resolved_at=NOW() WHERE id=${Number(open.id)}`);
    await waitFor('both databases at the suggested winner', async () => (await pgName(id)) === 'from maria' && (await myName(id)) === 'from maria', 60_000);
    await waitFor('the resolution in the audit log', async () => (await auditKinds(group, id)).some((r) => r.kind === 'resolve' && r.actor === 'runbook-sql'), 30_000);
    expect((await conflictsOf(group, id))[0]).toMatchObject({ resolution_strategy: 'manual_override' });
  });

  it('answers 401 without the token, 400 naming the field, 404 for an unknown id, and never 500', async () => {
    expect((await w.api('GET', '/sync/conflicts', undefined, null)).status).toBe(401);
    expect((await w.api('GET', '/sync/conflicts', undefined, 'wrong')).status).toBe(401);
    expect((await w.api('POST', '/sync/pause', undefined, null)).status).toBe(401);
    const cases: Array<[string, string, unknown, number, string | undefined]> = [
      ['GET', '/sync/conflicts?status=bogus', undefined, 400, 'status'],
      ['GET', '/sync/conflicts?limit=0', undefined, 400, 'limit'],
      ['GET', '/sync/conflicts?cursor=abc', undefined, 400, 'cursor'],
      ['GET', '/sync/conflicts?entity=nope', undefined, 400, 'entity'],
      ['GET', '/sync/conflicts?node=nope', undefined, 400, 'node'],
      ['GET', '/sync/conflicts/abc', undefined, 400, 'id'],
      ['GET', '/sync/conflicts/99999999999999999999', undefined, 400, 'id'],
      ['GET', '/sync/conflicts/987654321', undefined, 404, undefined],
      ['POST', '/sync/conflicts/987654321/resolve', '{not json', 400, 'body'],
      ['POST', '/sync/conflicts/987654321/resolve', [1, 2], 400, 'body'],
      ['POST', '/sync/conflicts/987654321/resolve', {}, 400, 'winner'],
      ['POST', '/sync/conflicts/987654321/resolve', { winner: 'pg', value: {} }, 400, 'winner'],
      ['POST', '/sync/conflicts/987654321/resolve', { winner: 'pg', by: 42 }, 400, 'by'],
      ['POST', '/sync/conflicts/987654321/resolve', { winner: 'pg' }, 404, undefined],
      ['POST', '/sync/resolve-conflicts', { limit: -1 }, 400, 'limit'],
      ['POST', '/sync/resolve-conflicts', { entity: 7 }, 400, 'entity'],
      ['GET', '/sync/nothing', undefined, 404, undefined],
      ['POST', '/sync/conflicts', {}, 405, undefined],
    ];
    for (const [method, p, body, status, field] of cases) {
      const res = await w.api(method as 'GET' | 'POST', p, body);
      expect({ p, status: res.status, field: res.body.field }).toEqual({ p, status, field });
    }
    // a value that is not the record's columns or types names the field
    const id = freshKeyBase();
    await editBothWhilePaused(w, id);
    const [open] = await theOnlyConflict(group, id);
    const r = (body: unknown) => w.api('POST', `/sync/conflicts/${open.id}/resolve`, body);
    expect((await r({ winner: 'mongo' })).body.field).toBe('winner');
    expect((await r({ value: { id, nickname: 'x' } })).body.field).toBe('value.nickname');
    expect((await r({ value: { id, balance: 'abc' } })).body.field).toBe('value.balance');
    expect((await r({ value: { id: id + 1, name: 'x' } })).body.field).toBe('value.id');
    // a given value wins and converges
    expect((await r({ value: { id, name: 'given', balance: '3.50', tags: { k: 1 }, updated_at: '2026-11-30T00:00:00.000000', email: null }, by: 'bob' })).status).toBe(202);
    await waitFor('both databases at the given value', async () => (await pgName(id)) === 'given' && (await myName(id)) === 'given', 60_000);
    const status = await w.api('GET', '/sync/status');
    expect(status).toMatchObject({ status: 200, body: { group, paused: false } });
    expect(await w.metrics()).not.toMatch(/HTTP handler failed/);
  });
});
