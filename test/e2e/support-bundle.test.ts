import { execFileSync, spawnSync } from 'node:child_process';
import { appendFileSync, mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CDC_TOPICS, ROOT, stack, waitFor } from '../support/stack.ts';
import { freePort, startWorker, type WorkerHandle } from '../support/worker-process.ts';
import { commitAtEnd } from '../../src/kafka/consumer.ts';

/**
 * The runbook's `npm run collect:logs` and `npm run support:bundle` (issue 14): what they
 * gather from a running worker, and that no password, token or key leaves with it, even one
 * a log line carried.
 */
const group = `e2e-support-${Date.now().toString(36)}`;
const dir = mkdtempSync(path.join(os.tmpdir(), 'ws-support-'));
const token = `tok-${Math.random().toString(36).slice(2)}${Math.random().toString(36).slice(2)}`;
const logFile = path.join(dir, 'logs', `${group}.log`);
let env: Record<string, string>;
let w: WorkerHandle;

function cli(args: string[]) {
  return spawnSync(process.execPath, [path.join(ROOT, 'bin/worker-sync.js'), ...args], { env: { PATH: process.env.PATH ?? '', ...env }, encoding: 'utf8', timeout: 120_000 });
}

beforeAll(async () => {
  const s = stack();
  const apiPort = await freePort();
  await commitAtEnd(s.kafka.bootstrap, group, CDC_TOPICS);
  w = await startWorker(group, { API_TOKEN: token, API_PORT: String(apiPort), LOG_FILE: logFile });
  await w.ready();
  env = {
    KAFKA_BROKERS: s.kafka.bootstrap, DATABASE_URL: s.postgres.controlUrl, KAFKA_GROUP_ID: group, API_TOKEN: token,
    API_PORT: String(apiPort), HTTP_PORT: String(w.port), LOG_FILE: logFile,
  };
  // a line a careless library might write: the bundle must not pass it on
  appendFileSync(logFile, `${JSON.stringify({ msg: `connecting to ${s.postgres.controlUrl} with Bearer ${token}` })}\n`);
});

afterAll(async () => {
  if (w) expect((await w.kill('SIGTERM')).code).toBe(0);
});

const secrets = () => [token, 'sync_pass', ':app@'];

describe('collect:logs and support:bundle', () => {
  it('collect logs prints the recent log lines, redacted', () => {
    const r = cli(['collect', 'logs', '--lines', '500']);
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('"msg":"Consuming"');
    expect(r.stdout).toContain('sync_user:***@');
    for (const s of secrets()) expect(r.stdout).not.toContain(s);
  });

  it('support bundle writes a tar.gz with what support needs, and no secret', async () => {
    await waitFor('a scrape-able /metrics', async () => (await fetch(`${w.url}/metrics`)).ok);
    const r = cli(['support', 'bundle', '--out', dir]);
    expect(r.status, r.stderr).toBe(0);
    const tarball = r.stdout.trim();
    expect(tarball).toMatch(/worker-sync-support-.*\.tar\.gz$/);
    const out = path.join(dir, 'unpacked');
    execFileSync('mkdir', ['-p', out]);
    execFileSync('tar', ['-xzf', tarball, '-C', out]);
    const [folder] = readdirSync(out);
    const files = readdirSync(path.join(out, folder!)).sort();
    expect(files).toEqual(['config.json', 'health-full.json', 'logs.txt', 'metrics.txt', 'ready.txt', 'stack-status.json', 'sync-status.txt', 'version.txt']);
    const read = (f: string) => readFileSync(path.join(out, folder!, f), 'utf8');
    expect(read('version.txt')).toMatch(/^worker-sync \d+\.\d+\.\d+\ncommit /);
    expect(read('ready.txt')).toMatch(/^HTTP 200/);
    expect(read('metrics.txt')).toContain('sync_partitions_owned');
    expect(read('sync-status.txt')).toContain(`"group":"${group}"`);
    expect(JSON.parse(read('health-full.json'))).toMatchObject({ ok: true });
    expect(JSON.parse(read('config.json')).env.apiToken).toBe('[set]');
    for (const f of files) for (const s of secrets()) expect(read(f), `${f} holds ${s}`).not.toContain(s);
  });
});
