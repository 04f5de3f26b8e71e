import { spawn } from 'node:child_process';
import { generateKeyPairSync, sign } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type pg from 'pg';
import type mysql from 'mysql2/promise';
import { generateSigningKey } from '../../src/audit/signing.ts';
import { readPublished } from '../../src/cli/audit.ts';
import { ROOT, freshKeyBase, maria, pgApp, pgControl, stack, waitFor } from '../support/stack.ts';
import { settle, startWorker, type WorkerHandle } from '../support/worker-process.ts';
import { forgetGroup } from '../support/cleanup.ts';
import { checkpointOf, keyIdOf, noteSignedBy, parseVKey, rawOf, rfcConsistency, rfcInclusion, splitNote, type VKey } from '../support/rfc9162.ts';

/**
 * The audit log as an auditor with standard tooling sees it (issue 15): a real worker
 * writes and signs a log from real changes, sends each checkpoint to a C2SP witness
 * written here (it checks every consistency proof itself and cosigns), and the CLI's
 * note, verifier key, inclusion and consistency proofs are checked with the code in
 * test/support/rfc9162.ts, not the project's verifiers.
 */
const group = `e2e-tlog-${Date.now().toString(36)}`;
const dir = mkdtempSync(path.join(os.tmpdir(), 'ws-tlog-'));
const topic = `${group}.audit-checkpoints`;
const keyFile = path.join(dir, 'key.pem');
let app: pg.Pool;
let control: pg.Pool;
let my: mysql.Pool;
let worker: WorkerHandle;
let logVKey: VKey;
let pinned: string;
let base: number;

/** A tlog-witness (c2sp.org/tlog-witness) for one log key: verifies, checks consistency, remembers, cosigns. */
class TestWitness {
  readonly name = 'witness.test/w1';
  readonly keys = generateKeyPairSync('ed25519');
  readonly state = new Map<string, { size: number; root: Buffer }>();
  readonly answers: number[] = [];
  server: http.Server | undefined;
  port = 0;
  log: VKey | undefined;

  get vkey(): string {
    const raw = rawOf(this.keys.publicKey);
    return `${this.name}+${keyIdOf(this.name, 0x04, raw).toString('hex')}+${Buffer.concat([Buffer.from([0x04]), raw]).toString('base64')}`;
  }

  async listen(port = 0): Promise<void> {
    this.server = http.createServer((req, res) => {
      let body = '';
      req.on('data', (c) => { body += c; });
      req.on('end', () => {
        const [status, text] = req.method === 'POST' && req.url === '/add-checkpoint' ? this.add(body) : [404, 'not found\n'];
        this.answers.push(status);
        res.writeHead(status, { 'content-type': status === 409 ? 'text/x.tlog.size' : 'text/plain' }).end(text);
      });
    });
    await new Promise<void>((resolve) => this.server!.listen(port, '127.0.0.1', resolve));
    this.port = (this.server.address() as { port: number }).port;
  }

  async close(): Promise<void> {
    const closed = new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
    this.server?.closeAllConnections(); // the worker's keep-alive connections, or close() waits for them
    await closed;
  }

  private add(body: string): [number, string] {
    const lines = body.split('\n');
    const old = /^old (0|[1-9]\d*)$/.exec(lines[0]!);
    if (!old) return [400, 'bad old line\n'];
    let i = 1;
    const proof: Buffer[] = [];
    while (lines[i] !== '') proof.push(Buffer.from(lines[i++]!, 'base64'));
    const note = lines.slice(i + 1).join('\n');
    if (!noteSignedBy(note, this.log!)) return [403, 'no signature of the log key verifies\n'];
    const { text } = splitNote(note);
    const c = checkpointOf(text);
    const oldSize = Number(old[1]);
    if (oldSize > c.size) return [400, 'old size beyond the checkpoint\n'];
    const known = this.state.get(c.origin);
    if (oldSize !== (known?.size ?? 0)) return [409, `${known?.size ?? 0}\n`];
    if (known && known.size === c.size && !known.root.equals(c.root)) return [409, `${known.size}\n`];
    if (known && !rfcConsistency(known.size, c.size, known.root, c.root, proof)) return [422, 'the consistency proof does not verify\n'];
    this.state.set(c.origin, { size: c.size, root: c.root });
    const t = Math.floor(Date.now() / 1000);
    const ts = Buffer.alloc(8);
    ts.writeBigUInt64BE(BigInt(t));
    const sig = sign(null, Buffer.from(`cosignature/v1\ntime ${t}\n${text}`), this.keys.privateKey);
    return [200, `\u2014 ${this.name} ${Buffer.concat([keyIdOf(this.name, 0x04, rawOf(this.keys.publicKey)), ts, sig]).toString('base64')}\n`];
  }
}

const witness = new TestWitness();

/**
 * One `worker-sync audit` command, run without blocking this process: the witness the
 * worker calls lives here, and a spawnSync held its answers for the command's whole run (on a
 * slow machine past the worker's 5 s timeout, and the retry then met a 409); the writer of
 * the verify-while-writing test lives here too.
 */
function cli(args: string[]): Promise<{ status: number | null; stdout: string; stderr: string }> {
  const s = stack();
  const proc = spawn(process.execPath, [path.join(ROOT, 'bin/worker-sync.js'), 'audit', ...args], {
    env: { PATH: process.env.PATH ?? '', KAFKA_BROKERS: s.kafka.bootstrap, DATABASE_URL: s.postgres.controlUrl, KAFKA_GROUP_ID: group, AUDIT_CHECKPOINT_TOPIC: topic, AUDIT_SIGNING_KEY_FILE: keyFile },
    stdio: ['ignore', 'pipe', 'pipe'], timeout: 120_000,
  });
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  proc.stdout.on('data', (b: Buffer) => out.push(b));
  proc.stderr.on('data', (b: Buffer) => err.push(b));
  return new Promise((resolve, reject) => {
    proc.on('error', reject);
    proc.on('close', (status) => resolve({ status, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') }));
  });
}

async function json<T>(args: string[]): Promise<T> {
  const r = await cli(args);
  expect(r.status, `audit ${args.join(' ')}: ${r.stderr}`).toBe(0);
  return JSON.parse(r.stdout) as T;
}

async function change(n: number, tag: string): Promise<void> {
  for (let i = 0; i < n; i++) {
    await app.query(`UPDATE customers SET name = $2, balance = balance + 1 WHERE id = $1`, [base, `${tag} ${i}`]);
    await new Promise((r) => setTimeout(r, 50)); // small batches: several checkpoints
  }
}

/** The log of `base` (one record: one log), and its newest checkpoint's size once the witness cosigned it. */
async function cosignedNewest(logId: string): Promise<number> {
  return waitFor(`the witness's cosignature on the newest checkpoint of ${logId}`, async () => {
    const { rows } = await control.query(
      `SELECT c.tree_size, c.cosignatures FROM audit_logs l JOIN audit_checkpoints c ON c.log_id = l.log_id AND c.tree_size = l.checkpoint_size WHERE l.log_id = $1`, [logId]);
    return rows[0]?.cosignatures ? Number(rows[0].tree_size) : undefined;
  }, 60_000, 250);
}

/** The log of `base`, once the worker has written its first row (one record: one log). */
async function logOfBase(): Promise<string> {
  const rows = await waitFor(`the audit rows of customer ${base}`, async () => {
    const { rows } = await control.query(`SELECT DISTINCT log_id FROM audit_log WHERE log_id LIKE $1 AND record_key->>'id' = $2`, [`${group}:%`, String(base)]);
    return rows.length > 0 ? rows : undefined;
  }, 60_000, 250);
  expect(rows).toHaveLength(1);
  return rows[0].log_id;
}

const metric = async (line: RegExp) => Number(line.exec(await worker.metrics())?.[1] ?? Number.NaN);

beforeAll(async () => {
  app = pgApp();
  control = pgControl();
  my = maria();
  generateSigningKey(keyFile);
  const k = await json<{ keys: Array<{ key_id: string; public_key: string }> }>(['public-key']);
  pinned = path.join(dir, 'pinned.json');
  writeFileSync(pinned, JSON.stringify(k));
  const vkey = await cli(['public-key', '--format', 'c2sp']);
  expect(vkey.status).toBe(0);
  logVKey = parseVKey(vkey.stdout);
  witness.log = logVKey;
  await witness.listen();
  worker = await startWorker(group, {
    AUDIT_SIGNING_KEY_FILE: keyFile, AUDIT_CHECKPOINT_LEAVES: '5', AUDIT_CHECKPOINT_MS: '200', AUDIT_CHECKPOINT_TOPIC: topic,
    AUDIT_WITNESS_URL: `http://127.0.0.1:${witness.port}`, AUDIT_WITNESS_PUBLIC_KEY: witness.vkey,
  });
  await settle(group, worker, app, control);
  base = freshKeyBase();
  await app.query(`INSERT INTO customers (id, name, balance, tags, updated_at) VALUES ($1, 'tlog 0', 1, '{}', now())`, [base]);
  await change(25, 'first');
}, 300_000);

afterAll(async () => {
  await worker?.kill('SIGKILL');
  await witness.close();
  if (control) await forgetGroup(control, group, [topic]);
  await Promise.all([app?.end(), control?.end(), my?.end()]);
});

describe('the audit log in the transparency-log standards', () => {
  it("an auditor's round trip: verifier key, note, cosignature, inclusion and consistency proofs, checked by other code", async () => {
    const logId = await logOfBase();
    const n = await cosignedNewest(logId);
    expect(logVKey.name).toBe('worker-sync.local/audit');

    // the checkpoint as a note: signed by the log key, cosigned by the witness
    const note = await cli(['checkpoint', '--log', logId, '--size', String(n), '--format', 'c2sp']);
    expect(note.status, note.stderr).toBe(0);
    expect(noteSignedBy(note.stdout, logVKey)).toBe(true);
    expect(noteSignedBy(note.stdout, parseVKey(witness.vkey))).toBe(true);
    const cp = checkpointOf(splitNote(note.stdout).text);
    expect(cp).toMatchObject({ origin: `worker-sync.local/audit/${logId}`, size: n });

    // an event's inclusion in that tree
    const { rows: [row] } = await control.query(`SELECT event_id, seq FROM audit_log WHERE log_id = $1 AND seq = 3`, [logId]);
    const [p] = await json<Array<{ leaf_index: number; tree_size: number; leaf_hash: string; audit_path: string[]; verified: boolean }>>(
      ['prove', '--event', row.event_id, '--size', String(n), '--keys', pinned, '--group', group, '--json']);
    expect(p).toMatchObject({ leaf_index: 2, tree_size: n, verified: true });
    expect(rfcInclusion(p!.leaf_index, p!.tree_size, Buffer.from(p!.leaf_hash, 'hex'), p!.audit_path.map((h) => Buffer.from(h, 'hex')), cp.root)).toBe(true);

    // consistency from each earlier checkpoint to this one, roots as the notes sign them
    const { rows: sizes } = await control.query(`SELECT tree_size FROM audit_checkpoints WHERE log_id = $1 AND tree_size < $2 ORDER BY tree_size`, [logId, n]);
    expect(sizes.length).toBeGreaterThan(2);
    for (const { tree_size: m } of sizes) {
      const earlier = await cli(['checkpoint', '--log', logId, '--size', String(m), '--format', 'c2sp']);
      expect(noteSignedBy(earlier.stdout, logVKey)).toBe(true);
      const first = checkpointOf(splitNote(earlier.stdout).text);
      const c = await json<{ first_size: number; second_size: number; first_root: string; second_root: string; proof: string[] }>(
        ['consistency', '--log', logId, '--from', String(m), '--to', String(n), '--json']);
      expect(c).toMatchObject({ first_size: Number(m), second_size: n, first_root: first.root.toString('hex'), second_root: cp.root.toString('hex') });
      expect(rfcConsistency(c.first_size, c.second_size, first.root, cp.root, c.proof.map((h) => Buffer.from(h, 'hex'))), `${m} -> ${n}`).toBe(true);
    }
    // the checkpoints published to Kafka carry the same notes
    const published = await readPublished(stack().kafka.bootstrap, topic);
    const mine = published.filter((c) => c.log_id === logId && c.note);
    expect(mine.length).toBeGreaterThan(0);
    for (const c of mine) expect(noteSignedBy(c.note!, logVKey) && checkpointOf(splitNote(c.note!).text).size === c.tree_size).toBe(true);

    // every add-checkpoint the witness answered carried a proof it accepted
    expect(witness.answers.filter((s) => s !== 200)).toEqual([]);
    expect(await metric(/^sync_audit_witness_cosignatures_total (\d+)/m)).toBeGreaterThan(2);
  });

  it('a witness that lost its state (409) or is away is counted, and holds nothing up', async () => {
    const logId = await logOfBase();
    witness.state.clear(); // a witness restored from nothing: it now expects old size 0
    await change(6, 'after the reset');
    await waitFor('a 409 from the witness', async () => witness.answers.includes(409), 30_000, 100);
    const afterReset = await cosignedNewest(logId);
    expect(await metric(/^sync_audit_witness_failures_total\{reason="conflict"\} (\d+)/m)).toBeGreaterThan(0);
    expect(witness.state.get(`worker-sync.local/audit/${logId}`)?.size).toBe(afterReset);

    // away: changes still sync and are audited; the misses are counted; it catches up when back
    await witness.close();
    await change(6, 'while away');
    await waitFor('MariaDB at the last change', async () => {
      const [r] = await my.query('SELECT name FROM customers WHERE id = ?', [base]);
      return (r as Array<{ name: string }>)[0]?.name === 'while away 5';
    }, 30_000, 200);
    await waitFor('unreachable witness counted', async () => (await metric(/^sync_audit_witness_failures_total\{reason="unreachable"\} (\d+)/m)) > 0, 30_000, 250);
    expect(await metric(/^sync_audit_witness_behind_logs (\d+)/m)).toBeGreaterThan(0);
    await witness.listen(witness.port);
    const back = await cosignedNewest(logId);
    expect(back).toBeGreaterThan(afterReset);
  });

  it('verify runs while the worker writes: exit 0, up to a seq per log, and the witness cosigned through a size', async () => {
    const logId = await logOfBase();
    let writing = true;
    const writer = (async () => {
      for (let i = 0; writing; i++) {
        await app.query(`INSERT INTO customers (id, name, balance, tags, updated_at) VALUES ($1, 'streamed', 1, '{}', now())`, [base + 1 + i]);
        await new Promise((r) => setTimeout(r, 10));
      }
    })();
    try {
      const maxSeq = async () => Number((await control.query(`SELECT max(seq) AS s FROM audit_log WHERE log_id = $1`, [logId])).rows[0].s);
      for (let round = 0; round < 3; round++) {
        const before = await maxSeq();
        const r = await cli(['verify', '--keys', pinned, '--group', group, '--witness-key', witness.vkey, '--json']);
        const after = await maxSeq();
        expect(r.status, `verify round ${round}: ${r.stdout.slice(0, 2000)} ${r.stderr}`).toBe(0);
        const report = JSON.parse(r.stdout) as { ok: boolean; logs: Array<{ log_id: string; rows: number; checked_through: number; witnessed_through: number; damage: unknown }> };
        expect(report.ok).toBe(true);
        const mine = report.logs.find((l) => l.log_id === logId)!;
        // what the snapshot held: at least what was there before it began, at most what was there after
        expect(mine.checked_through).toBeGreaterThanOrEqual(before);
        expect(mine.checked_through).toBeLessThanOrEqual(after);
        expect(mine.witnessed_through).toBeGreaterThan(0);
        await new Promise((res) => setTimeout(res, 500));
      }
    } finally {
      writing = false;
      await writer;
    }
  });
});
