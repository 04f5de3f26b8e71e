import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { AuditWriter } from '../../src/audit/audit-writer.ts';
import { insertAuditRows, type AuditRowInput } from '../../src/audit/audit-rows.ts';
import { migrateControlSchema } from '../../src/audit/control-schema.ts';
import { generateSigningKey } from '../../src/audit/signing.ts';
import { ROOT, stack } from '../support/stack.ts';
import { forgetGroup } from '../support/cleanup.ts';

/**
 * The compliance report and the CSV export over a known set of audit rows, conflicts and
 * dead letters, written by the real AuditWriter into the real control database.
 */
const group = `it-report-${Date.now().toString(36)}`;
const logId = `${group}:pg.public.customers/0`;
const dir = mkdtempSync(path.join(os.tmpdir(), 'ws-report-'));
let pool: pg.Pool;
let pinned: string;

// [day, entity, op, node, count]: 10 changes inside the period, 2 outside it
const CHANGES: Array<[string, string, string, string, number]> = [
  ['2026-11-01', 'customers', 'c', 'pg', 3],
  ['2026-11-01', 'customers', 'u', 'maria', 2],
  ['2026-11-02', 'orders', 'd', 'pg', 1],
  ['2026-11-02', 'customers', 'u', 'pg', 4],
  ['2026-10-15', 'customers', 'c', 'pg', 2],
];

function row(seq: number, day: string, kind: AuditRowInput['kind'], entity: string, op: string, node: string): AuditRowInput {
  return {
    log_id: logId, seq, kind, event_id: `ev-${seq}`, entity, record_key: { id: seq }, op, source_node: node, source_position: { offset: seq },
    source_ts: `${day}T10:00:00.000Z`, before: null, after: { id: seq, name: `row, "${seq}"` }, changed_columns: ['name'], version: '0102', hlc: '1',
    writes: [{ node: node === 'pg' ? 'maria' : 'pg', outcome: 'applied' }], actor: kind === 'conflict' ? 'policy' : null, executed_at: `${day}T12:00:${String(seq).padStart(2, '0')}.000Z`,
  };
}

function cli(args: string[]) {
  const s = stack();
  return spawnSync(process.execPath, [path.join(ROOT, 'bin/worker-sync.js'), 'audit', ...args], {
    env: { PATH: process.env.PATH ?? '', KAFKA_BROKERS: s.kafka.bootstrap, DATABASE_URL: s.postgres.controlUrl, KAFKA_GROUP_ID: group },
    encoding: 'utf8', timeout: 60_000,
  });
}

beforeAll(async () => {
  pool = new pg.Pool({ connectionString: stack().postgres.controlUrl, max: 2 });
  await migrateControlSchema(pool);
  const key = generateSigningKey(path.join(dir, 'k.pem'));
  pinned = path.join(dir, 'pinned.json');
  writeFileSync(pinned, JSON.stringify({ keys: [{ key_id: key.keyId, public_key: key.publicPem }] }));
  const writer = new AuditWriter(key, { leaves: 5, ms: 3_600_000 });
  const epoch = await writer.claim(pool, logId, 'test');
  const rows: AuditRowInput[] = [];
  for (const [day, entity, op, node, n] of [...CHANGES].sort((a, b) => a[0].localeCompare(b[0]))) {
    for (let i = 0; i < n; i++) rows.push(row(rows.length + 1, day, 'change', entity, op, node));
  }
  rows.push(row(rows.length + 1, '2026-11-02', 'conflict', 'customers', 'u', 'maria'));
  const c = await pool.connect();
  try {
    await c.query('BEGIN');
    await writer.append(c, logId, epoch, 0, await insertAuditRows(c, rows));
    await c.query('COMMIT');
  } finally {
    c.release();
  }
  await writer.seal(pool, logId, epoch, false);
  await pool.query(
    `INSERT INTO sync_conflicts (consumer_group, entity, record_key, incoming_node, strategy, detected_at, resolved_at, resolution_strategy, resolved_by, converged_at) VALUES
       ($1, 'customers', '[1]', 'maria', 'lww', '2026-11-01T12:00Z', '2026-11-01T12:00Z', 'lww', NULL, '2026-11-01T12:00Z'),
       ($1, 'customers', '[2]', 'maria', 'lww', '2026-11-01T13:00Z', '2026-11-01T13:00Z', 'lww', NULL, '2026-11-01T13:00Z'),
       ($1, 'customers', '[3]', 'pg', 'manual', '2026-11-02T09:00Z', '2026-11-02T10:00Z', 'manual_override', 'alice', '2026-11-02T10:00Z'),
       ($1, 'orders', '[4]', 'pg', 'manual', '2026-11-02T11:00Z', NULL, NULL, NULL, NULL),
       ($1, 'orders', '[5]', 'pg', 'lww', '2026-12-01T11:00Z', '2026-12-01T11:00Z', 'lww', NULL, '2026-12-01T11:00Z')`, [group]);
  await pool.query(
    `INSERT INTO sync_dead_letters (reason, error, topic, partition, "offset", consumer_group, status, created_at) VALUES
       ('WS_DECODE', 'bad', 't', 0, 1, $1, 'open', '2026-11-01T08:00Z'), ('WS_DECODE', 'bad', 't', 0, 2, $1, 'open', '2026-11-02T08:00Z'),
       ('WS_TARGET_REJECTED', 'check', 't', 0, 3, $1, 'replayed', '2026-11-02T09:00Z'), ('WS_DECODE', 'bad', 't', 0, 4, $1, 'open', '2026-10-01T08:00Z')`, [group]);
});

afterAll(async () => {
  if (pool) await forgetGroup(pool, group); // it damages its log on purpose
  await pool?.query('DELETE FROM sync_conflicts WHERE consumer_group = $1', [group]);
  await pool?.query('DELETE FROM sync_dead_letters WHERE consumer_group = $1', [group]);
  await pool?.end();
});

const CONFLICTS_RESOLVED = ['2026-11-01T12:00Z', '2026-11-01T13:00Z', '2026-11-02T10:00Z', '2026-12-01T11:00Z'];
const PERIOD = ['--from', '2026-11-01', '--to', '2026-11-03'];

describe('compliance report', () => {
  it('counts a known set of events by entity, op, node and day, with conflicts, dead letters, the verdict and the keys', async () => {
    const res = cli(['report', ...PERIOD, '--format', 'json', '--keys', pinned, '--no-kafka', '--retention-days', '30']);
    expect(res.status, res.stderr).toBe(0);
    const r = JSON.parse(res.stdout);
    const counts = (xs: Array<{ key: string; count: number }>) => Object.fromEntries(xs.map((x) => [x.key, x.count]));
    expect(r.changes.total).toBe(10);
    expect(counts(r.changes.by_entity)).toEqual({ customers: 9, orders: 1 });
    expect(counts(r.changes.by_op)).toEqual({ c: 3, u: 6, d: 1 });
    expect(counts(r.changes.by_node)).toEqual({ pg: 8, maria: 2 });
    expect(counts(r.changes.by_day)).toEqual({ '2026-11-01': 5, '2026-11-02': 5 });
    expect(counts(r.leaves_by_kind)).toEqual({ change: 10, conflict: 1 });
    expect(r.conflicts.audited).toBe(1);
    expect(r.conflicts.by_resolution).toEqual([
      { entity: 'customers', strategy: 'lww', resolution: 'lww', resolved_by: null, state: 'converged', count: 2 },
      { entity: 'customers', strategy: 'manual', resolution: 'manual_override', resolved_by: 'alice', state: 'converged', count: 1 },
      { entity: 'orders', strategy: 'manual', resolution: 'open', resolved_by: null, state: 'open', count: 1 },
    ]);
    expect(r.conflicts.open.map((c: { record_key: string }) => c.record_key)).toEqual(['[4]']);
    expect(r.dead_letters).toEqual([{ reason: 'WS_DECODE', status: 'open', count: 2 }, { reason: 'WS_TARGET_REJECTED', status: 'replayed', count: 1 }]);
    expect(r.integrity).toMatchObject({ verdict: 'intact', logs: 1, rows: 13, damaged: [] });
    expect(r.keys).toHaveLength(1);
    expect(r.keys[0]).toMatchObject({ pinned: true, checkpoints: 3 }); // at 5, 10 and 13 leaves
    const { rows: due } = await pool.query(`SELECT count(*)::int AS n FROM audit_log WHERE log_id = $1 AND executed_at < now() - interval '30 days'`, [logId]);
    expect(due[0].n).toBeGreaterThan(0);
    // resolved on 1 and 2 November, so due under a 30-day policy from 2 December on (the dates are fixed; the clock is not)
    const cdue = CONFLICTS_RESOLVED.filter((t) => Date.parse(t) < Date.now() - 30 * 86_400_000).length;
    expect(r.retention).toMatchObject({ policy: { audit_payload_days: 30 }, pruned: [], prunes: [], rows_due: due[0].n, conflicts_due: cdue });
  });

  it('renders Markdown and HTML with inline SVG charts, and says so when integrity was not verified', () => {
    const md = cli(['report', ...PERIOD, '--format', 'md', '--keys', pinned, '--no-kafka']);
    expect(md.status).toBe(0);
    expect(md.stdout).toContain('**INTACT**');
    expect(md.stdout).toContain('| customers | 9 |');
    const html = cli(['report', ...PERIOD, '--format', 'html']);
    expect(html.status).toBe(0);
    expect(html.stdout).toMatch(/^<!doctype html>/);
    expect(html.stdout.match(/<svg /g)?.length).toBeGreaterThanOrEqual(4);
    expect(html.stdout).toContain('NOT VERIFIED');
    expect(cli(['report', ...PERIOD, '--format', 'pdf']).status).toBe(2);
  });

  it('damage turns the verdict and the exit code', async () => {
    await pool.query(`UPDATE audit_log SET op = 'd' WHERE log_id = $1 AND seq = 2`, [logId]);
    try {
      const res = cli(['report', ...PERIOD, '--format', 'json', '--keys', pinned, '--no-kafka']);
      expect(res.status).toBe(1);
      expect(JSON.parse(res.stdout).integrity).toMatchObject({ verdict: 'damaged', damaged: [{ log_id: logId, seq: 2, kind: 'modified' }] });
    } finally {
      await pool.query(`UPDATE audit_log SET op = 'c' WHERE log_id = $1 AND seq = 2`, [logId]);
    }
  });
});

describe('audit export', () => {
  it('streams the period\'s rows as CSV with a header row', async () => {
    const res = cli(['export', ...PERIOD, '--group', group]);
    expect(res.status, res.stderr).toBe(0);
    const lines = res.stdout.trimEnd().split('\n');
    expect(lines[0]).toBe('log_id,seq,kind,event_id,entity,record_key,op,source_node,source_position,source_ts,before,after,changed_columns,version,hlc,writes,actor,executed_at,payload_hash,leaf_hash');
    expect(lines).toHaveLength(1 + 11);
    const { rows } = await pool.query(`SELECT encode(leaf_hash, 'hex') AS h FROM audit_log WHERE log_id = $1 AND seq = 3`, [logId]);
    expect(lines[1]).toMatch(new RegExp(`^${logId.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')},3,change,.*,2026-11-01 12:00:03\\+00,[0-9a-f]{64},${rows[0].h}$`));
    expect(cli(['export', '--from', 'yesterday']).status).toBe(2);
  });
});
