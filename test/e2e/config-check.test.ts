import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type pg from 'pg';
import { ROOT, pgApp, stack } from '../support/stack.ts';

/**
 * `worker-sync config check [--connect]` (issue 14): what a user runs after adding an entity.
 * Offline it parses the file and names the key at fault; against the real stack it finds a
 * missing column, a wrong type, a missing version column, a table without REPLICA IDENTITY
 * FULL and a table no connector captures.
 */
const dir = mkdtempSync(path.join(os.tmpdir(), 'ws-cc-'));
const table = `ws_cc_${Date.now().toString(36)}`;
let app: pg.Pool;

function check(args: string[]) {
  const s = stack();
  return spawnSync(process.execPath, [path.join(ROOT, 'bin/worker-sync.js'), 'config', 'check', ...args], {
    env: { PATH: process.env.PATH ?? '', KAFKA_CONNECT_URL: s.connect.url, PG_URL: s.postgres.url, MARIA_URL: s.mariadb.url },
    encoding: 'utf8', timeout: 60_000,
  });
}

beforeAll(async () => {
  app = pgApp();
  await app.query(`CREATE TABLE public.${table} (id bigint PRIMARY KEY, amount numeric(10,3), note text)`);
});

afterAll(async () => {
  await app?.query(`DROP TABLE IF EXISTS public.${table}`);
  await app?.end();
});

describe('config check', () => {
  it('passes the demo topology against the stack, and names what is wrong with a new entity', () => {
    const ok = check(['--file', path.join(ROOT, 'deploy/local/worker-sync.yaml'), '--connect']);
    expect(ok.stdout).toContain('config check: ok');
    expect(ok.status).toBe(0);

    const demo = readFileSync(path.join(ROOT, 'deploy/local/worker-sync.yaml'), 'utf8');
    const added = demo.replace(/^entities:\n/m, `entities:
  ${table}:
    key: [id]
    versionColumn: _sync_version
    columns: { id: bigint, amount: "decimal(12,2)", note: text, missing: text }
    nodes: { pg: public.${table} }
`);
    const file = path.join(dir, 'added.yaml');
    writeFileSync(file, added);
    const r = check(['--file', file, '--connect', '--json']);
    expect(r.status).toBe(1);
    const report = JSON.parse(r.stdout) as { ok: boolean; checks: Array<{ check: string; ok: boolean; detail: string }> };
    const failed = Object.fromEntries(report.checks.filter((c) => !c.ok).map((c) => [c.check, c.detail]));
    expect(failed[`pg: public.${table} columns`]).toMatch(/column amount is numeric\(10,3\), declared decimal\(12,2\).*column missing is missing/);
    expect(failed[`pg: public.${table} version column _sync_version`]).toMatch(/missing: add _sync_version bytea/);
    expect(failed[`pg: public.${table} REPLICA IDENTITY FULL`]).toMatch(/REPLICA IDENTITY FULL/);
    expect(failed[`pg: app-postgres captures public.${table}`]).toMatch(/add public\.\w+ to its table.include.list/);
  });

  it('exits 2 naming the key when the file does not parse, with a hint for a split decimal', () => {
    const file = path.join(dir, 'bad.yaml');
    writeFileSync(file, 'nodes:\n  pg: { kind: postgres, url: postgres://x@h/db }\nentities:\n  t:\n    key: [id]\n    columns: { id: bigint, v: decimal(12,2) }\n    nodes: { pg: public.t }\n');
    const r = check(['--file', file]);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/entities\.t\.columns\.v: unknown column type "decimal\(12" \(inside a YAML flow map/);
  });
});
