import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type pg from 'pg';
import { generateSigningKey, signCheckpoint, type SigningKey } from '../../src/audit/signing.ts';
import { ROOT, freshKeyBase, pgApp, pgControl, stack, waitFor } from '../support/stack.ts';
import { settle, startWorker } from '../support/worker-process.ts';
import { forgetGroup } from '../support/cleanup.ts';

/**
 * The signed audit log against tampering (DESIGN §7, issue 5): a real worker writes and
 * signs a log from real changes on the stack, then each kind of damage is done through SQL
 * and the verifier must name the exact seq and kind. The log is restored between cases.
 */
const group = `e2e-audit-${Date.now().toString(36)}`;
const dir = mkdtempSync(path.join(os.tmpdir(), 'ws-audit-'));
const topic = `${group}.audit-checkpoints`;
let key: SigningKey;
let pinned: string;
let app: pg.Pool;
let control: pg.Pool;
let logId: string;
const backup = `tamper_backup_${group.replace(/[^a-z0-9]/gi, '_')}`;

function cli(args: string[], extra: Record<string, string> = {}) {
  const s = stack();
  const res = spawnSync(process.execPath, [path.join(ROOT, 'bin/worker-sync.js'), 'audit', ...args], {
    env: { PATH: process.env.PATH ?? '', KAFKA_BROKERS: s.kafka.bootstrap, DATABASE_URL: s.postgres.controlUrl, KAFKA_GROUP_ID: group, AUDIT_CHECKPOINT_TOPIC: topic, AUDIT_SIGNING_KEY_FILE: path.join(dir, 'key.pem'), ...extra },
    encoding: 'utf8', timeout: 120_000, maxBuffer: 256 * 1024 * 1024,
  });
  return res;
}

function verify(keys = pinned, extra: Record<string, string> = {}): { status: number | null; report: { ok: boolean; logs: Array<{ log_id: string; rows: number; checkpoints: number; damage: { seq: number; kind: string; detail: string } | null }> } } {
  const res = cli(['verify', '--keys', keys, '--group', group, '--json'], extra);
  if (res.status !== 0 && res.status !== 1) throw new Error(`verify exited ${res.status}: ${res.stderr}`);
  return { status: res.status, report: JSON.parse(res.stdout) };
}

const damageOf = (r: ReturnType<typeof verify>) => r.report.logs.find((l) => l.log_id === logId)?.damage ?? null;

async function restore(): Promise<void> {
  await control.query(`DELETE FROM audit_log WHERE log_id LIKE $1`, [`${group}:%`]);
  await control.query(`INSERT INTO audit_log SELECT * FROM ${backup}_rows`);
  await control.query(`DELETE FROM audit_checkpoints WHERE log_id LIKE $1`, [`${group}:%`]);
  await control.query(`INSERT INTO audit_checkpoints SELECT * FROM ${backup}_cps`);
  await control.query(`DELETE FROM audit_logs WHERE log_id LIKE $1`, [`${group}:%`]);
  await control.query(`INSERT INTO audit_logs SELECT * FROM ${backup}_logs`);
}

beforeAll(async () => {
  app = pgApp();
  control = pgControl();
  key = generateSigningKey(path.join(dir, 'key.pem'));
  pinned = path.join(dir, 'pinned.json');
  writeFileSync(pinned, JSON.stringify({ keys: [{ key_id: key.keyId, public_key: key.publicPem }] }));
  const w = await startWorker(group, { AUDIT_SIGNING_KEY_FILE: path.join(dir, 'key.pem'), AUDIT_CHECKPOINT_LEAVES: '7', AUDIT_CHECKPOINT_MS: '200', AUDIT_CHECKPOINT_TOPIC: topic });
  await settle(group, w, app, control);
  // one record changed 40 times (one log, in order) and a few others (other logs)
  const base = freshKeyBase();
  await app.query(`INSERT INTO customers (id, name, balance, tags, updated_at) VALUES ($1, 'audit 0', 1, '{}', now())`, [base]);
  for (let i = 1; i <= 40; i++) {
    await app.query(`UPDATE customers SET name = $2, balance = $3 WHERE id = $1`, [base, `audit ${i}`, i]);
    await new Promise((r) => setTimeout(r, 60)); // small batches, so the log gets several checkpoints
  }
  for (let i = 1; i <= 5; i++) await app.query(`INSERT INTO customers (id, name, balance, tags, updated_at) VALUES ($1, $2, 1, '{}', now())`, [base + i, `other ${i}`]);
  await app.query(`DELETE FROM customers WHERE id = $1`, [base + 1]);
  await waitFor('the changes in the audit log', async () => {
    const { rows } = await control.query(`SELECT count(*)::int AS n FROM audit_log WHERE log_id LIKE $1 AND record_key->>'id' = $2`, [`${group}:%`, String(base)]);
    return rows[0].n >= 41;
  }, 60_000);
  expect((await w.kill('SIGTERM')).code).toBe(0); // seals and publishes every log
  // the log holding most rows is the one the cases damage
  const { rows } = await control.query(`SELECT log_id, tree_size FROM audit_logs WHERE log_id LIKE $1 ORDER BY tree_size DESC LIMIT 1`, [`${group}:%`]);
  logId = rows[0].log_id;
  expect(Number(rows[0].tree_size)).toBeGreaterThan(20);
  await control.query(`CREATE TABLE ${backup}_rows AS SELECT * FROM audit_log WHERE log_id LIKE $1`.replace('$1', `'${group}:%'`));
  await control.query(`CREATE TABLE ${backup}_cps AS SELECT * FROM audit_checkpoints WHERE log_id LIKE '${group}:%'`);
  await control.query(`CREATE TABLE ${backup}_logs AS SELECT * FROM audit_logs WHERE log_id LIKE '${group}:%'`);
}, 300_000);

afterAll(async () => {
  for (const t of ['rows', 'cps', 'logs']) await control?.query(`DROP TABLE IF EXISTS ${backup}_${t}`);
  if (control) await forgetGroup(control, group, [topic]); // its logs are damaged on purpose and signed by a key of its own
  await Promise.all([app?.end(), control?.end()]);
});

async function checkpointSizes(): Promise<number[]> {
  const { rows } = await control.query(`SELECT tree_size FROM audit_checkpoints WHERE log_id = $1 ORDER BY tree_size`, [logId]);
  return rows.map((r) => Number(r.tree_size));
}

describe('the signed audit log', () => {
  it('verifies intact: every log, every row, every checkpoint, against the pinned key and the published checkpoints', () => {
    const r = verify();
    expect(r.status).toBe(0);
    expect(r.report.ok).toBe(true);
    const mine = r.report.logs.find((l) => l.log_id === logId)!;
    expect(mine.checkpoints).toBeGreaterThan(2);
    expect(r.report.logs.every((l) => l.damage === null)).toBe(true);
  });

  const cases: Array<[string, (n: number) => Promise<{ seq: number; kind: string }>]> = [
    ['a modified field', async () => {
      await control.query(`UPDATE audit_log SET actor = 'mallory' WHERE log_id = $1 AND seq = 9`, [logId]);
      return { seq: 9, kind: 'modified' };
    }],
    ['a stored leaf hash cut to one byte', async () => {
      await control.query(`UPDATE audit_log SET leaf_hash = '\\x00' WHERE log_id = $1 AND seq = 5`, [logId]);
      return { seq: 5, kind: 'modified' };
    }],
    ['a modified payload', async () => {
      await control.query(`UPDATE audit_log SET after = '{"name":"mallory"}' WHERE log_id = $1 AND seq = 12`, [logId]);
      return { seq: 12, kind: 'modified' };
    }],
    ['a raw DELETE of the oldest rows, as the seed runbook did', async () => {
      await control.query(`DELETE FROM audit_log WHERE log_id = $1 AND seq <= 3`, [logId]);
      return { seq: 1, kind: 'missing' };
    }],
    ['payloads cleared by hand behind a forged prune record in the admin log', async (n) => {
      await control.query(`INSERT INTO audit_logs (log_id, epoch, tree_size) VALUES ($1, 1, 1)`, [`${group}:admin`]);
      await control.query(
        `INSERT INTO audit_log (log_id, seq, kind, event_id, op, writes, actor, executed_at, payload_hash, leaf_hash)
         VALUES ($1, 1, 'admin', 'prune/forged', 'prune', $2, 'mallory', now(), '\\x00', '\\x00')`,
        [`${group}:admin`, JSON.stringify({ logs: [{ log_id: logId, from_seq: 1, to_seq: n }] })]);
      await control.query(`UPDATE audit_log SET before = NULL, after = NULL, writes = NULL WHERE log_id = $1 AND seq = 5`, [logId]);
      return { seq: 5, kind: 'modified' };
    }],
    ['a deleted row', async () => {
      await control.query(`DELETE FROM audit_log WHERE log_id = $1 AND seq = 11`, [logId]);
      return { seq: 11, kind: 'missing' };
    }],
    ['an inserted row', async (n) => {
      await control.query(`INSERT INTO audit_log (log_id, seq, kind, event_id, executed_at, leaf_hash) SELECT log_id, $2, kind, 'forged', executed_at, leaf_hash FROM audit_log WHERE log_id = $1 AND seq = 5`, [logId, n + 1]);
      return { seq: n + 1, kind: 'inserted' };
    }],
    ['two rows swapping seq', async () => {
      await control.query(`UPDATE audit_log SET seq = -1 WHERE log_id = $1 AND seq = 6`, [logId]);
      await control.query(`UPDATE audit_log SET seq = 6 WHERE log_id = $1 AND seq = 8`, [logId]);
      await control.query(`UPDATE audit_log SET seq = 8 WHERE log_id = $1 AND seq = -1`, [logId]);
      return { seq: 6, kind: 'reordered' };
    }],
    ['an altered checkpoint signature', async () => {
      const c = (await checkpointSizes())[1]!;
      await control.query(`UPDATE audit_checkpoints SET signature = set_byte(signature, 0, get_byte(signature, 0) # 1) WHERE log_id = $1 AND tree_size = $2`, [logId, c]);
      return { seq: c, kind: 'bad signature' };
    }],
    ['a checkpoint re-signed with a key of mallory\'s, added to audit_keys', async () => {
      const mallory = generateSigningKey(path.join(dir, 'mallory.pem'));
      await control.query(`INSERT INTO audit_keys (key_id, public_key) VALUES ($1, $2)`, [mallory.keyId, mallory.publicPem]);
      const c = (await checkpointSizes())[2]!;
      const { rows } = await control.query(`SELECT root, prev_hash FROM audit_checkpoints WHERE log_id = $1 AND tree_size = $2`, [logId, c]);
      const signedAt = new Date().toISOString();
      const forged = signCheckpoint(mallory, { logId, treeSize: c, root: rows[0].root, prevHash: rows[0].prev_hash, signedAt });
      await control.query(`UPDATE audit_checkpoints SET key_id = $3, signature = $4, signed_at = $5, checkpoint_hash = $6 WHERE log_id = $1 AND tree_size = $2`,
        [logId, c, mallory.keyId, forged.signature, signedAt, forged.hash]);
      return { seq: c, kind: 'unknown key' };
    }],
    ['the tail truncated, rows and checkpoints alike', async () => {
      const cut = (await checkpointSizes())[1]!;
      await control.query(`DELETE FROM audit_log WHERE log_id = $1 AND seq > $2`, [logId, cut]);
      await control.query(`DELETE FROM audit_checkpoints WHERE log_id = $1 AND tree_size > $2`, [logId, cut]);
      const { rows } = await control.query(`SELECT checkpoint_hash FROM audit_checkpoints WHERE log_id = $1 AND tree_size = $2`, [logId, cut]);
      await control.query(`UPDATE audit_logs SET tree_size = $2, checkpoint_size = $2, checkpoint_hash = $3 WHERE log_id = $1`, [logId, cut, rows[0].checkpoint_hash]);
      return { seq: cut + 1, kind: 'truncated' };
    }],
  ];

  for (const [what, damage] of cases) {
    it(`names the seq and kind of ${what}`, async () => {
      const { rows } = await control.query(`SELECT tree_size FROM audit_logs WHERE log_id = $1`, [logId]);
      const want = await damage(Number(rows[0].tree_size));
      try {
        const r = verify();
        expect(r.status).toBe(1);
        expect(damageOf(r)).toMatchObject(want);
        // the TypeScript row scan, where the addon is absent, names the same damage
        expect(damageOf(verify(pinned, { WORKER_SYNC_NATIVE_HASH: '0' }))).toEqual(damageOf(r));
      } finally {
        await restore();
      }
      expect(verify().status).toBe(0);
    });
  }

  it('prunes payloads to an archive: the log still verifies and says what was pruned, the manifest matches the signed roots, resolved conflicts go too', async () => {
    const archive = path.join(dir, 'archive');
    const { rows: c } = await control.query<{ id: string }>(
      `INSERT INTO sync_conflicts (consumer_group, entity, record_key, incoming_node, strategy, detected_at, resolved_at, resolution_strategy, converged_at)
       VALUES ($1, 'customers', '[1]', 'pg', 'lww', now() - interval '40 days', now() - interval '31 days', 'lww', now() - interval '31 days'),
              ($1, 'customers', '[2]', 'pg', 'manual', now() - interval '40 days', NULL, NULL, NULL) RETURNING id`, [group]);
    const { rows: before } = await control.query(`SELECT tree_size FROM audit_logs WHERE log_id = $1`, [logId]);
    const size = Number(before[0].tree_size);

    // a damaged log is not pruned: clearing its payloads would destroy the evidence
    await control.query(`UPDATE audit_log SET actor = 'mallory' WHERE log_id = $1 AND seq = 9`, [logId]);
    const refused = cli(['prune', '--before', '0s', '--archive', archive, '--keys', pinned]);
    expect(refused.status).toBe(1);
    expect(refused.stdout).toMatch(/first bad seq 9: modified[\s\S]*nothing pruned/);
    await control.query(`UPDATE audit_log SET actor = NULL WHERE log_id = $1 AND seq = 9`, [logId]);
    expect((await control.query(`SELECT count(*)::int AS n FROM audit_log WHERE log_id = $1 AND writes IS NULL`, [logId])).rows[0].n).toBe(0);

    const res = cli(['prune', '--before', '0s', '--archive', archive, '--keys', pinned, '--json', '--actor', 'auditor-test']);
    expect(res.status, res.stderr).toBe(0);
    const out = JSON.parse(res.stdout) as { archive: string; admin_seq: number; conflicts: number; logs: Array<{ log_id: string; from_seq: number; to_seq: number }> };
    expect(out.logs.find((l) => l.log_id === logId)).toMatchObject({ from_seq: 1, to_seq: size });
    expect(out.conflicts).toBe(1);
    expect(out.admin_seq).toBe(1);
    const { rows: left } = await control.query(`SELECT count(*) FILTER (WHERE writes IS NOT NULL OR after IS NOT NULL)::int AS payloads, count(*) FILTER (WHERE payload_hash IS NULL)::int AS unhashed, count(*)::int AS n FROM audit_log WHERE log_id = $1`, [logId]);
    expect(left[0]).toEqual({ payloads: 0, unhashed: 0, n: size });
    const { rows: conflicts } = await control.query(`SELECT id FROM sync_conflicts WHERE id = ANY($1::bigint[])`, [c.map((x) => x.id)]);
    expect(conflicts.map((x) => x.id)).toEqual([c[1]!.id]); // the open one stays

    // verify: intact, with the pruned range named; the admin log holds the prune, signed
    const r = verify();
    expect(r.status).toBe(0);
    const mine = r.report.logs.find((l) => l.log_id === logId) as unknown as { pruned: { from: number; to: number } };
    expect(mine.pruned).toEqual({ from: 1, to: size });
    expect(r.report.logs.find((l) => l.log_id === `${group}:admin`)).toMatchObject({ rows: 1, damage: null });
    const { rows: adminRow } = await control.query(`SELECT kind, op, actor, writes FROM audit_log WHERE log_id = $1`, [`${group}:admin`]);
    expect(adminRow[0]).toMatchObject({ kind: 'admin', op: 'prune', actor: 'auditor-test' });

    // the archive alone: files, leaves, roots, signatures; and its roots are the table's
    const a = cli(['verify-archive', out.archive, '--keys', pinned, '--json']);
    expect(a.status, a.stdout).toBe(0);
    const manifest = JSON.parse(readFileSync(path.join(out.archive, 'manifest.json'), 'utf8')) as { logs: Array<{ log_id: string; to_seq: number; root: string }>; files: Array<{ name: string; rows: number }> };
    for (const l of manifest.logs) {
      const { rows } = await control.query(`SELECT encode(root, 'hex') AS root FROM audit_checkpoints WHERE log_id = $1 AND tree_size = $2`, [l.log_id, l.to_seq]);
      expect(rows[0].root).toBe(l.root);
    }
    expect(manifest.files.find((f) => f.name === 'sync_conflicts.ndjson.gz')!.rows).toBe(1);
    // an archive edited afterwards does not pass
    const gz = path.join(out.archive, 'sync_conflicts.ndjson.gz');
    writeFileSync(gz, Buffer.concat([readFileSync(gz), Buffer.from([0])]));
    expect(cli(['verify-archive', out.archive, '--keys', pinned]).status).toBe(1);

    // a pruned row's metadata is still covered by its leaf
    const { rows: orig } = await control.query(`SELECT entity FROM audit_log WHERE log_id = $1 AND seq = 4`, [logId]);
    await control.query(`UPDATE audit_log SET entity = 'accounts' WHERE log_id = $1 AND seq = 4`, [logId]);
    expect(damageOf(verify())).toMatchObject({ seq: 4, kind: 'modified' });
    await control.query(`UPDATE audit_log SET entity = $2 WHERE log_id = $1 AND seq = 4`, [logId, orig[0].entity]);
    expect(verify().status).toBe(0);
  });

  it('proves one record against a signed checkpoint', () => {
    return (async () => {
      const { rows } = await control.query(`SELECT event_id FROM audit_log WHERE log_id = $1 AND seq = 3`, [logId]);
      const res = cli(['prove', '--event', rows[0].event_id, '--keys', pinned, '--json']);
      expect(res.status).toBe(0);
      const [proof] = JSON.parse(res.stdout) as Array<{ verified: boolean; seq: number; audit_path: string[] }>;
      expect(proof).toMatchObject({ verified: true, seq: 3 });
      expect(proof!.audit_path.length).toBeGreaterThan(0);
    })();
  });

  it('refuses a checkpoint whose key is not pinned, and accepts the old checkpoints after a rotation when both keys are pinned', async () => {
    const other = path.join(dir, 'other.json');
    const stranger = generateSigningKey(path.join(dir, 'stranger.pem'));
    writeFileSync(other, JSON.stringify({ keys: [{ key_id: stranger.keyId, public_key: stranger.publicPem }] }));
    expect(damageOf(verify(other))).toMatchObject({ kind: 'unknown key' });

    const rotated = cli(['rotate-key', '--out', path.join(dir, 'key.pem')]);
    expect(rotated.status).toBe(0);
    const next = JSON.parse(rotated.stdout) as { rotated_from: string; keys: Array<{ key_id: string; public_key: string }> };
    expect(next.rotated_from).toBe(key.keyId);
    const both = path.join(dir, 'both.json');
    writeFileSync(both, JSON.stringify({ keys: [{ key_id: key.keyId, public_key: key.publicPem }, ...next.keys] }));
    const w = await startWorker(group, { AUDIT_SIGNING_KEY_FILE: path.join(dir, 'key.pem'), AUDIT_CHECKPOINT_LEAVES: '7', AUDIT_CHECKPOINT_MS: '200', AUDIT_CHECKPOINT_TOPIC: topic });
    await settle(group, w, app, control);
    expect((await w.kill('SIGTERM')).code).toBe(0);
    const { rows } = await control.query(`SELECT DISTINCT key_id FROM audit_checkpoints WHERE log_id LIKE $1`, [`${group}:%`]);
    expect(rows.map((r) => r.key_id).sort()).toEqual([key.keyId, next.keys[0]!.key_id].sort());
    const r = verify(both);
    expect(r.status).toBe(0);
    // with only the old key pinned, the logs the new key signed since are refused
    const oldOnly = verify(pinned);
    expect(oldOnly.status).toBe(1);
    expect(oldOnly.report.logs.filter((l) => l.damage).every((l) => l.damage!.kind === 'unknown key')).toBe(true);
  });
});
