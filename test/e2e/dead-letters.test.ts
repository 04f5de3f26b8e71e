import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import Kafka from 'node-rdkafka';
import { Redis } from 'ioredis';
import type pg from 'pg';
import type mysql from 'mysql2/promise';
import { ROOT, freshKeyBase, maria, pgApp, pgControl, stack, waitFor } from '../support/stack.ts';
import { startWorker, type WorkerHandle } from '../support/worker-process.ts';

/**
 * Bad input never stops the pipeline and is never dropped (DESIGN §3.7, §8): unknown
 * columns and undecodable payloads end in sync_dead_letters with their reason, mirrored
 * in Redis under the runbook's key, their record's later changes wait parked behind them,
 * good events keep flowing, and `dlq replay` applies them once the cause is fixed.
 */
const group = `e2e-dlq-${Date.now().toString(36)}`;
let app: pg.Pool;
let control: pg.Pool;
let my: mysql.Pool;
let redis: Redis;
let brokenConfig: string;
const running: WorkerHandle[] = [];

beforeAll(() => {
  app = pgApp();
  control = pgControl();
  my = maria();
  redis = new Redis(stack().redis.url);
  // The demo topology, with orders.status forgotten: every orders event names an unknown column.
  const yaml = readFileSync(path.join(ROOT, 'deploy/local/worker-sync.yaml'), 'utf8');
  const broken = yaml.replace(/\n\s+status: text\n/, '\n');
  expect(broken).not.toBe(yaml);
  brokenConfig = path.join(mkdtempSync(path.join(os.tmpdir(), 'ws-dlq-')), 'broken.yaml');
  writeFileSync(brokenConfig, broken);
});

afterEach(async () => {
  for (const w of running.splice(0)) await w.kill('SIGKILL');
});

afterAll(async () => {
  redis?.disconnect();
  await Promise.all([app?.end(), control?.end(), my?.end()]);
});

const env = () => ({ REDIS_URL: stack().redis.url });

function cli(args: string[], extra: Record<string, string> = {}) {
  const s = stack();
  return spawnSync(process.execPath, [path.join(ROOT, 'bin/worker-sync.js'), ...args], {
    env: { PATH: process.env.PATH ?? '', KAFKA_BROKERS: s.kafka.bootstrap, DATABASE_URL: s.postgres.controlUrl, KAFKA_GROUP_ID: group, ...env(), ...extra },
    encoding: 'utf8', timeout: 60_000, maxBuffer: 256 * 1024 * 1024,
  });
}

async function deadLetters(key: string): Promise<Array<{ id: string; reason: string; status: string; entity: string; error: string }>> {
  const { rows } = await control.query(`SELECT id, reason, status, entity, error FROM sync_dead_letters WHERE consumer_group = $1 AND record_key = $2 ORDER BY id`, [group, key]);
  return rows;
}

async function inMaria(table: string, id: number): Promise<boolean> {
  const [rows] = await my.query(`SELECT 1 FROM ${table} WHERE id = ?`, [id]);
  return (rows as unknown[]).length > 0;
}

function produceRaw(topic: string, key: string, value: string): Promise<void> {
  const producer = new Kafka.Producer({ 'metadata.broker.list': stack().kafka.bootstrap, dr_cb: true });
  return new Promise((resolve, reject) => {
    producer.on('delivery-report', (err) => {
      producer.disconnect();
      if (err) reject(err);
      else resolve();
    });
    producer.setPollInterval(10);
    producer.connect({}, (err) => {
      if (err) reject(err);
      else producer.produce(topic, null, Buffer.from(value), Buffer.from(key), Date.now());
    });
  });
}

describe('dead letters', () => {
  it('an unknown column is dead-lettered with its reason and mirrored in Redis, good events flow, and a replay applies it once fixed', async () => {
    const llenBefore = await redis.llen('bull:sync:failed');
    const broken = await startWorker(group, { ...env(), WORKER_SYNC_CONFIG: brokenConfig });
    running.push(broken);
    await broken.ready();
    const order = freshKeyBase();
    const customer = order + 1;
    await app.query(`INSERT INTO orders (id, customer_id, total, status, created_at) VALUES ($1, 1, 9.99, 'new', now())`, [order]);
    await app.query(`INSERT INTO customers (id, name, balance, tags, updated_at) VALUES ($1, 'flows', 1, '{}', now())`, [customer]);

    const [dl] = await waitFor('the dead letter', async () => {
      const d = await deadLetters(`[${order}]`);
      return d.length > 0 ? d : undefined;
    }, 120_000);
    expect(dl).toMatchObject({ reason: 'WS_DECODE_UNKNOWN_COLUMN', status: 'open', entity: 'orders' });
    expect(dl!.error).toBe('column "status" of public.orders is not mapped in entity orders');
    await waitFor('the good event in MariaDB', async () => inMaria('customers', customer), 120_000);
    expect(await inMaria('orders', order)).toBe(false);
    expect(await redis.llen('bull:sync:failed')).toBeGreaterThan(llenBefore);
    expect(await redis.lrange('bull:sync:failed', 0, -1)).toContain(JSON.stringify({ id: Number(dl!.id), group, reason: 'WS_DECODE_UNKNOWN_COLUMN', entity: 'orders', key: `[${order}]` }));

    const listed = cli(['dlq', 'list', '--limit', '100000', '--json']);
    expect(listed.status).toBe(0);
    expect((JSON.parse(listed.stdout) as Array<{ id: number }>).map((r) => r.id)).toContain(Number(dl!.id));
    expect((await broken.kill('SIGTERM')).code).toBe(0);

    // the topology is fixed (the demo's own file); replay, then run the fixed worker
    const replay = cli(['dlq', 'replay', '--id', dl!.id, '--json']);
    expect({ status: replay.status, signal: replay.signal, error: replay.error?.message, stderr: replay.stderr }).toEqual({ status: 0, signal: null, error: undefined, stderr: '' });
    expect(JSON.parse(replay.stdout)).toEqual({ dryRun: false, replayed: [Number(dl!.id)], failing: [] });
    expect((await deadLetters(`[${order}]`))[0]!.status).toBe('replayed');
    expect(await redis.lrange('bull:sync:failed', 0, -1)).not.toContain(JSON.stringify({ id: Number(dl!.id), group, reason: 'WS_DECODE_UNKNOWN_COLUMN', entity: 'orders', key: `[${order}]` }));

    const fixed = await startWorker(group, env());
    running.push(fixed);
    await waitFor('the replayed order in MariaDB', async () => inMaria('orders', order), 120_000);
    // the target write precedes the audit commit by a moment
    const audited = async () => (await control.query(`SELECT count(*)::int AS n FROM audit_log WHERE log_id LIKE $1 AND entity = 'orders' AND record_key->>'id' = $2`, [`${group}:%`, String(order)])).rows[0].n as number;
    await waitFor('the replayed order in the audit log', async () => (await audited()) >= 1, 30_000);
    await new Promise((r) => setTimeout(r, 1000));
    expect(await audited()).toBe(1);
    expect((await fixed.kill('SIGTERM')).code).toBe(0);
  });

  it('an undecodable payload parks its key: later changes of that record wait, others flow, and the replay keeps them parked while it still fails', async () => {
    const w = await startWorker(group, env());
    running.push(w);
    await w.ready();
    const parked = freshKeyBase();
    const free = parked + 1;
    await produceRaw('pg.public.customers', JSON.stringify({ id: parked }), '{"op": "c", "after": {"id": ');
    await app.query(`INSERT INTO customers (id, name, balance, tags, updated_at) VALUES ($1, 'waits', 1, '{}', now()), ($2, 'flows', 1, '{}', now())`, [parked, free]);
    const letters = await waitFor('two dead letters for the parked key', async () => {
      const d = await deadLetters(`[${parked}]`);
      return d.length >= 2 ? d : undefined;
    }, 120_000);
    expect(letters.map((d) => d.reason)).toEqual(['WS_DECODE_MALFORMED', 'WS_PARKED']);
    await waitFor('the other key in MariaDB', async () => inMaria('customers', free), 120_000);
    expect(await inMaria('customers', parked)).toBe(false);
    const errors = /sync_errors_total\{source_node="pg",entity="customers"\} (\d+)/.exec(await w.metrics());
    expect(Number(errors?.[1])).toBeGreaterThanOrEqual(2);

    const replay = cli(['dlq', 'replay', '--id', letters[0]!.id, '--id', letters[1]!.id, '--json']);
    expect(replay.status).toBe(1);
    const out = JSON.parse(replay.stdout) as { replayed: number[]; failing: Array<{ id: number; error: string }> };
    expect(out.replayed).toEqual([]);
    expect(out.failing.map((f) => f.id)).toEqual([Number(letters[0]!.id), Number(letters[1]!.id)]);
    expect(out.failing[1]!.error).toBe('still parked behind an earlier dead letter of the same record');
    expect((await w.kill('SIGTERM')).code).toBe(0);
  });

  it('a row MariaDB keeps refusing is dead-lettered with the reason, its record parked, others flow, and a replay applies it once the constraint is gone', async () => {
    // this run's own marker: rows of earlier runs must not break the constraint
    const constraint = `ws_reject_${group.replace(/[^a-z0-9]/gi, '_')}`;
    const refuse = `reject-${group}`;
    await my.query(`ALTER TABLE customers ADD CONSTRAINT ${constraint} CHECK (name IS NULL OR name NOT LIKE '${refuse}%')`);
    try {
      const w = await startWorker(group, env());
      running.push(w);
      await w.ready();
      const refused = freshKeyBase();
      const free = refused + 1;
      await app.query(`INSERT INTO customers (id, name, balance, tags, updated_at) VALUES ($1, $3, 1, '{}', now()), ($2, 'flows', 1, '{}', now())`, [refused, free, refuse]);
      const [first] = await waitFor('the refused row in the dead letters', async () => {
        const d = await deadLetters(`[${refused}]`);
        return d.length > 0 ? d : undefined;
      }, 120_000);
      expect(first).toMatchObject({ reason: 'WS_TARGET_REJECTED', status: 'open', entity: 'customers' });
      expect(first!.error).toMatch(/^maria refused the write 3 times: .*CONSTRAINT/i);
      await waitFor('the other row in MariaDB', async () => inMaria('customers', free), 120_000);
      // a later change of the refused record waits behind it
      await app.query(`UPDATE customers SET name = $2, balance = 2 WHERE id = $1`, [refused, `${refuse} too`]);
      const letters = await waitFor('the later change parked', async () => {
        const d = await deadLetters(`[${refused}]`);
        return d.length >= 2 ? d : undefined;
      }, 120_000);
      expect(letters.map((d) => d.reason)).toEqual(['WS_TARGET_REJECTED', 'WS_PARKED']);
      expect(await inMaria('customers', refused)).toBe(false);
      expect(await w.metrics()).toMatch(/sync_node_rows_total\{node="maria",outcome="rejected"\} [1-9]/);
      expect(await w.metrics()).toMatch(/sync_circuit_open\{node="maria"\} 0/);
      expect(await redis.lrange('bull:sync:failed', 0, -1)).toContain(JSON.stringify({ id: Number(first!.id), group, reason: 'WS_TARGET_REJECTED', entity: 'customers', key: `[${refused}]` }));

      // replaying the later one alone would reorder the record: refused
      const alone = cli(['dlq', 'replay', '--id', letters[1]!.id, '--json']);
      expect(alone.status).toBe(1);
      expect((JSON.parse(alone.stdout) as { failing: Array<{ error: string }> }).failing[0]!.error).toMatch(new RegExp(`^waits behind #${letters[0]!.id} `));

      await my.query(`ALTER TABLE customers DROP CONSTRAINT ${constraint}`);
      const replay = cli(['dlq', 'replay', '--id', letters[0]!.id, '--json']);
      expect({ status: replay.status, stderr: replay.stderr }).toEqual({ status: 0, stderr: '' });
      expect(JSON.parse(replay.stdout)).toEqual({ dryRun: false, replayed: letters.map((d) => Number(d.id)), failing: [] });
      const [row] = await waitFor('the replayed record in MariaDB', async () => {
        const [rows] = await my.query('SELECT name, balance FROM customers WHERE id = ?', [refused]);
        const r = rows as Array<{ name: string; balance: string }>;
        return r[0]?.name === `${refuse} too` ? r : undefined;
      }, 120_000);
      expect(row).toEqual({ name: `${refuse} too`, balance: '2.00' });
      expect((await deadLetters(`[${refused}]`)).map((d) => d.status)).toEqual(['replayed', 'replayed']);
      // one audit row per source change, once applied; the echoes come back and nothing loops
      await new Promise((r) => setTimeout(r, 3000));
      const { rows: audited } = await control.query(
        `SELECT op, source_node FROM audit_log WHERE log_id LIKE $1 AND entity = 'customers' AND record_key->>'id' = $2 AND kind = 'change' ORDER BY executed_at`, [`${group}:%`, String(refused)]);
      expect(audited).toEqual([{ op: 'c', source_node: 'pg' }, { op: 'u', source_node: 'pg' }]);
      expect(await w.metrics()).toMatch(/sync_echoes_total\{node="maria"\} [1-9]/);
      expect((await w.kill('SIGTERM')).code).toBe(0);
    } finally {
      await my.query(`ALTER TABLE customers DROP CONSTRAINT IF EXISTS ${constraint}`);
    }
  });
});
