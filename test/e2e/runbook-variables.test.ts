import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync, mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type pg from 'pg';
import { ROOT, freshKeyBase, pgApp, pgControl, waitFor } from '../support/stack.ts';
import { counterSum, freePort, settle, startWorker, type WorkerHandle } from '../support/worker-process.ts';
import { forgetGroup } from '../support/cleanup.ts';
import { StateStore } from '../../src/sync/state-store.ts';

/** The runbook's variables (EMERGENCY_STOP, RESET_CHECKPOINT), SIGTERM, and start-up validation. */
let app: pg.Pool;
let control: pg.Pool;
const running: WorkerHandle[] = [];

beforeAll(() => {
  app = pgApp();
  control = pgControl();
});

afterEach(async () => {
  for (const w of running.splice(0)) await w.kill('SIGKILL');
});

afterAll(async () => {
  for (const f of forget.splice(0)) await f();
  await Promise.all([app?.end(), control?.end()]);
});

const forget: Array<() => Promise<void>> = [];

async function start(group: string, env: Record<string, string> = {}): Promise<WorkerHandle> {
  return startIn(group, env);
}

async function startIn(group: string, env: Record<string, string> = {}): Promise<WorkerHandle> {
  const w = await startWorker(group, env);
  running.push(w);
  await w.ready();
  return w;
}

async function insertOrders(base: number, n: number): Promise<void> {
  await app.query(
    `INSERT INTO orders (id, customer_id, total, status, created_at)
     SELECT g, 7, 1.50, 'new', now() FROM generate_series($1::bigint, $2::bigint) AS g`,
    [base, base + n - 1],
  );
}

async function audited(group: string, base: number, n: number): Promise<{ log_id: string; seq: string; event_id: string; offset: string; id: string }[]> {
  const { rows } = await control.query(
    `SELECT log_id, seq, event_id, source_position->>'offset' AS offset, record_key->>'id' AS id FROM audit_log
     WHERE log_id LIKE $1 AND entity = 'orders' AND (record_key->>'id')::bigint BETWEEN $2 AND $3 ORDER BY seq`,
    [`${group}:%`, base, base + n - 1],
  );
  return rows;
}

describe('EMERGENCY_STOP', () => {
  it('consumes nothing while /health and /metrics stay up, and loses nothing', async () => {
    const group = `e2e-estop-${Date.now().toString(36)}`;
    const apiPort = await freePort();
    const stopped = await start(group, { EMERGENCY_STOP: 'true', API_TOKEN: 'estop-token', API_PORT: String(apiPort) });
    // the API stays up too (issue 12, defect 6): an operator can look, and needs the token
    const status = await fetch(`http://127.0.0.1:${apiPort}/sync/status`, { headers: { authorization: 'Bearer estop-token' } });
    expect(status.status).toBe(200);
    expect(await status.json()).toMatchObject({ group, emergencyStop: true, lanes: [] });
    expect((await fetch(`http://127.0.0.1:${apiPort}/sync/status`)).status).toBe(401);
    const base = freshKeyBase();
    await insertOrders(base, 3);
    await new Promise((r) => setTimeout(r, 4000));
    expect(await audited(group, base, 3)).toHaveLength(0);
    expect((await fetch(`${stopped.url}/health`)).status).toBe(200);
    const metrics = await stopped.metrics();
    expect(metrics).toMatch(/^sync_emergency_stop 1$/m);
    expect(counterSum(metrics, 'sync_events_total')).toBe(0);
    expect((await stopped.kill('SIGTERM')).code).toBe(0);

    const resumed = await start(group);
    await waitFor('the held changes after the stop is lifted', async () => (await audited(group, base, 3)).length === 3, 120_000);
    expect((await resumed.kill('SIGTERM')).code).toBe(0);
  });
});

describe('the fatal-error policy (issue 12, defect 3)', () => {
  for (const fault of ['uncaught-exception', 'unhandled-rejection']) {
    it(`logs a ${fault} and exits 1 at once`, async () => {
      // the fault fires 200 ms after start-up completes, before /ready has had its first probe
      const w = await startWorker(`e2e-fatal-${Date.now().toString(36)}`, { WORKER_SYNC_TEST_HOOKS: '1', WORKER_SYNC_TEST_FAULT: fault });
      running.push(w);
      const exit = await Promise.race([w.exited, new Promise((r) => setTimeout(() => r('still running'), 20_000))]);
      expect(exit).toEqual({ code: 1, signal: null });
      const log = readFileSync(w.logFile, 'utf8');
      expect(log).toMatch(fault === 'uncaught-exception' ? /"msg":"Uncaught exception: exiting"/ : /"msg":"Unhandled rejection: exiting"/);
      expect(log).toMatch(/test fault/);
    });
  }
});

/** Until MariaDB's echoes of the worker's writes for these orders are back and consumed. */
async function echoesSettled(base: number, n: number): Promise<void> {
  await waitFor('the echoes from MariaDB', async () => {
    const states = await new StateStore().load(control, 'orders', Array.from({ length: n }, (_, i) => `[${base + i}]`));
    return states.size === n && [...states.values()].every((s) => s.nodes.maria !== undefined && s.nodes.maria.fifo.length === 0);
  }, 180_000);
}

describe('RESET_CHECKPOINT', () => {
  it('seeks to the PostgreSQL checkpoint, whatever Kafka committed', async () => {
    const group = `e2e-reset-${Date.now().toString(36)}`;
    // its own checkpoint topic: the restore below truncates the group's logs, which verify
    // rightly reports; the suite forgets them afterwards (issue 12, defect 7)
    const topic = `${group}.audit-checkpoints`;
    const start = (g: string, env: Record<string, string> = {}) => startIn(g, { AUDIT_CHECKPOINT_TOPIC: topic, ...env });
    forget.push(() => forgetGroup(control, group, [topic]));
    const base = freshKeyBase();
    const first = await start(group);
    // caught up first: a backlog still flowing after the restore below would move the
    // partitions on past their restored checkpoints, and the worker rightly re-reads them
    await settle(group, first, app, control);
    await insertOrders(base, 5);
    await waitFor('5 audited orders', async () => (await audited(group, base, 10)).length === 5, 120_000);
    await echoesSettled(base, 5);
    expect((await first.kill('SIGTERM')).code).toBe(0);

    // A backup of sync_db's worker state, taken now.
    const checkpoints = (await control.query('SELECT * FROM sync_checkpoints WHERE consumer_group = $1', [group])).rows;
    const metadata = (await control.query(
      `SELECT * FROM sync_metadata WHERE entity = 'orders' AND record_key = ANY($1)`,
      [Array.from({ length: 10 }, (_, i) => `[${base + i}]`)],
    )).rows;
    expect(metadata).toHaveLength(5);
    // and of the signed log's state: frontiers, epochs, checkpoints
    const auditLogs = (await control.query('SELECT * FROM audit_logs WHERE log_id LIKE $1', [`${group}:%`])).rows;
    const auditCheckpoints = (await control.query('SELECT * FROM audit_checkpoints WHERE log_id LIKE $1', [`${group}:%`])).rows;

    const second = await start(group);
    await insertOrders(base + 5, 5);
    const all = await waitFor('10 audited orders', async () => {
      const r = await audited(group, base, 10);
      return r.length === 10 ? r : undefined;
    }, 180_000);
    await echoesSettled(base + 5, 5);
    expect((await second.kill('SIGTERM')).code).toBe(0);

    // sync_db is restored from that backup: the last five changes are gone from it, while
    // Kafka still has the group's offsets after all ten.
    await control.query('BEGIN');
    await control.query('DELETE FROM sync_checkpoints WHERE consumer_group = $1', [group]);
    // logs first written after the backup are not in it at all
    await control.query('DELETE FROM audit_log WHERE log_id LIKE $1 AND NOT (log_id = ANY($2))', [`${group}:%`, checkpoints.map((c) => c.log_id)]);
    for (const c of checkpoints) {
      await control.query(
        'INSERT INTO sync_checkpoints (consumer_group, topic, partition, next_offset, log_id, last_seq, updated_by) VALUES ($1, $2, $3, $4, $5, $6, $7)',
        [c.consumer_group, c.topic, c.partition, c.next_offset, c.log_id, c.last_seq, c.updated_by],
      );
      await control.query('DELETE FROM audit_log WHERE log_id = $1 AND seq > $2', [c.log_id, c.last_seq]);
    }
    await control.query('DELETE FROM audit_logs WHERE log_id LIKE $1', [`${group}:%`]);
    for (const l of auditLogs) {
      await control.query('INSERT INTO audit_logs (log_id, epoch, owner, tree_size, frontier, checkpoint_size, checkpoint_hash, checkpoint_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)',
        [l.log_id, l.epoch, l.owner, l.tree_size, l.frontier, l.checkpoint_size, l.checkpoint_hash, l.checkpoint_at]);
    }
    await control.query('DELETE FROM audit_checkpoints WHERE log_id LIKE $1', [`${group}:%`]);
    for (const c of auditCheckpoints) {
      await control.query('INSERT INTO audit_checkpoints (log_id, tree_size, root, prev_hash, signed_at, key_id, signature, checkpoint_hash, published_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)',
        [c.log_id, c.tree_size, c.root, c.prev_hash, c.signed_at, c.key_id, c.signature, c.checkpoint_hash, c.published_at]);
    }
    await control.query(`DELETE FROM sync_metadata WHERE entity = 'orders' AND record_key = ANY($1)`, [Array.from({ length: 10 }, (_, i) => `[${base + i}]`)]);
    for (const m of metadata) {
      await control.query(
        'INSERT INTO sync_metadata (entity, record_key, version, hlc, origin_node, tombstone, value, nodes, state) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)',
        [m.entity, m.record_key, m.version, m.hlc, m.origin_node, m.tombstone, m.value, m.nodes, m.state],
      );
    }
    await control.query('COMMIT');
    expect(await audited(group, base, 10)).toHaveLength(5);

    const plain = await start(group);
    await new Promise((r) => setTimeout(r, 3000));
    expect(await audited(group, base, 10)).toHaveLength(5); // Kafka's offsets were followed
    expect((await plain.kill('SIGTERM')).code).toBe(0);

    const reset = await start(group, { RESET_CHECKPOINT: 'true' });
    // partitions without a checkpoint restart from the beginning: give the catch-up time
    await waitFor('the five lost changes re-audited', async () => (await audited(group, base, 10)).length >= 10, 180_000);
    await new Promise((r) => setTimeout(r, 1500));
    const final = await audited(group, base, 10);
    expect(final.map((r) => r.event_id).sort()).toEqual(all.map((r) => r.event_id).sort());
    expect((await reset.kill('SIGTERM')).code).toBe(0);
  });
});

describe('SIGTERM', () => {
  it('drains, commits and stores offsets, so a restart has nothing to redeliver', async () => {
    const group = `e2e-sigterm-${Date.now().toString(36)}`;
    const base = freshKeyBase();
    const w = await start(group);
    await insertOrders(base, 500);
    await waitFor('the first audited rows', async () => (await audited(group, base, 500)).length > 0, 60_000, 50);
    const exit = await w.kill('SIGTERM');
    expect(exit.code).toBe(0);
    const afterStop = (await audited(group, base, 500)).length;
    const next = await start(group);
    await waitFor('all 500 orders', async () => (await audited(group, base, 500)).length === 500, 60_000);
    expect(counterSum(await next.metrics(), 'sync_duplicates_total', 'kind="checkpoint"')).toBe(0);
    expect(afterStop).toBeGreaterThan(0);
    expect((await next.kill('SIGTERM')).code).toBe(0);
  });
});

describe('SIGTERM during start-up', () => {
  it('waits for start-up to reach a consistent point, then drains and exits 0', async () => {
    // a pod can be stopped while it starts (a rollout, a node drain): at several points after the surface is up
    for (const delayMs of [0, 60, 250, 800]) {
      const w = await startWorker(`e2e-early-term-${Date.now().toString(36)}`);
      await waitFor('the operating surface', async () => (await fetch(`${w.url}/health`).catch(() => undefined))?.status === 200, 60_000, 20);
      await new Promise((r) => setTimeout(r, delayMs));
      const exit = await w.kill('SIGTERM');
      expect(exit, `SIGTERM ${delayMs} ms after the surface came up; see ${w.logFile}`).toEqual({ code: 0, signal: null });
    }
  });
});

describe('configuration is validated at start-up', () => {
  const run = (env: Record<string, string>) => spawnSync(process.execPath, [path.join(ROOT, 'bin/worker-sync.js'), 'run'], {
    env: { PATH: process.env.PATH ?? '', HTTP_PORT: '0', ...env }, encoding: 'utf8', timeout: 30_000,
  });

  it('exits 2 naming a bad variable', () => {
    const res = run({ QUEUE_CONCURRENCY: 'lots' });
    expect(res.status).toBe(2);
    expect(res.stderr).toContain('QUEUE_CONCURRENCY: must be an integer, got "lots"');
    const res2 = run({ EMERGENCY_STOP: 'maybe' });
    expect(res2.status).toBe(2);
    expect(res2.stderr).toContain('EMERGENCY_STOP: must be true or false');
  });

  it('exits 2 naming a bad key of the topology file', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'ws-config-'));
    const file = path.join(dir, 'bad.json');
    writeFileSync(file, JSON.stringify({
      nodes: { pg: { kind: 'postgres', url: 'postgres://x@127.0.0.1/x' } },
      entities: { customers: { key: ['id'], columns: { id: 'bigint' }, nodes: { pg: 'public.customers; DROP TABLE x' } } },
    }));
    const res = run({ WORKER_SYNC_CONFIG: file });
    expect(res.status).toBe(2);
    expect(res.stderr).toContain('entities.customers.nodes.pg.table');
  });
});
