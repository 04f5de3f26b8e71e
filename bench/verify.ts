import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { migrateControlSchema } from '../src/audit/control-schema.ts';
import { AuditWriter } from '../src/audit/audit-writer.ts';
import { generateSigningKey } from '../src/audit/signing.ts';
import { changeRow, insertAuditRows, type AuditRowInput } from '../src/audit/audit-rows.ts';
import { verifyLogs } from '../src/audit/verify.ts';
import { cpuSnapshot, type CpuGroup } from '../load/proc-cpu.ts';
import type { ChangeEvent } from '../src/events/change-event.ts';
import { ROOT, stackUrls, writeResults } from '../harness/common.ts';
import type { BenchOptions } from '../harness/common.ts';

/**
 * Audit verification speed (issue 5 asks for at least 100,000 rows/s, issue 15 for
 * 300,000): writes one log of BENCH_AUDIT_ROWS (default 200,000) change rows like the
 * worker's (a customer row before and after, two writes, through the worker's own row
 * encoder and AuditWriter, checkpoint every 1,000), then verifies it BENCH_ROUNDS (5) times
 * the way `audit verify` does (verifyLogs: one read-only snapshot), timing that alone. Each
 * round also gives the CPU per row of every process of the stack, from /proc: the verifier
 * (this process), PostgreSQL (all backends), the broker, Connect and MariaDB. Timing starts
 * once PostgreSQL has fallen idle after the write (settle). The log is
 * deleted afterwards unless BENCH_KEEP=1, which keeps it to time the `audit verify --log`
 * command line on it.
 */
/**
 * Waits until PostgreSQL's processes use less than 5 % of a core over a second (at most
 * 120 s). Writing the log leaves work behind: Debezium's walsender decodes all of the
 * cluster's WAL, the audit rows' too, and took up to a core for ~10 s after a write of
 * 200,000 rows on a freshly started stack; rounds timed beside it measured 176,000-208,000
 * rows/s instead of ~330,000 (bench/RESULTS.md, issue 15).
 */
async function settle(): Promise<{ seconds: number; idle: boolean }> {
  const started = performance.now();
  let last = cpuSnapshot(ROOT, undefined).postgres;
  while (performance.now() - started < 120_000) {
    await new Promise((r) => setTimeout(r, 1000));
    const now = cpuSnapshot(ROOT, undefined).postgres;
    const busy = last !== null && now !== null ? now - last : 0;
    last = now;
    if (busy < 0.05) return { seconds: (performance.now() - started) / 1000, idle: true };
  }
  return { seconds: (performance.now() - started) / 1000, idle: false };
}

export async function run(o: BenchOptions = {}): Promise<void> {
  const n = Number(process.env.BENCH_AUDIT_ROWS ?? 200_000);
  const db = new pg.Pool({ connectionString: stackUrls().postgres.controlUrl, max: 2 });
  await migrateControlSchema(db);
  const key = generateSigningKey(path.join(mkdtempSync(path.join(os.tmpdir(), 'ws-bench-')), 'k.pem'));
  const writer = new AuditWriter(key, { leaves: 1000, ms: 3_600_000 });
  const logId = `bench-verify-${Date.now().toString(36)}:t/0`;
  const epoch = await writer.claim(db, logId, 'bench');
  const started = performance.now();
  for (let seq = 0; seq < n; seq += 5000) {
    const at = new Date().toISOString();
    const batch: AuditRowInput[] = [];
    for (let i = seq; i < Math.min(n, seq + 5000); i++) {
      const row = { id: i, name: `customer ${i} Zoë`, email: `${i}@example.com`, balance: `${i % 10000}.25`, tags: { vip: i % 2 === 0, n: [i] }, updated_at: '2026-11-30T12:34:56.123456' };
      const ev: ChangeEvent = {
        id: `pg.public.customers/0/${i}`, entity: 'customers', node: 'pg', op: 'u', key: { id: i }, keyText: `[${i}]`, before: row, after: { ...row, name: 'x' },
        changed: ['name'], baseVersion: null, sourceTsMs: 1796000000000 + i, emittedTsMs: 1796000000000 + i,
        position: { topic: 'pg.public.customers', partition: 0, offset: i, source: { lsn: 1000 + i, sequence: null, txId: i } }, transactionId: null,
      };
      batch.push(changeRow(at, logId, i + 1, ev, [{ node: 'maria', op: 'upsert', version: '01020101', outcome: 'applied' }], Buffer.from('01020101', 'hex'), BigInt(i) << 16n));
    }
    const client = await db.connect();
    try {
      await client.query('BEGIN');
      await writer.append(client, logId, epoch, seq, await insertAuditRows(client, batch));
      await client.query('COMMIT');
    } finally {
      client.release();
    }
    if (process.stderr.isTTY) process.stderr.write(`\rwrote ${Math.min(n, seq + 5000)}/${n}`);
  }
  await writer.seal(db, logId, epoch, false);
  const writeS = (performance.now() - started) / 1000;
  if (process.stderr.isTTY) process.stderr.write('\n');
  const pinned = new Map([[key.keyId, key.publicPem]]);
  const settled = await settle();
  process.stdout.write(`waited ${settled.seconds.toFixed(1)} s for PostgreSQL to fall idle after the write${settled.idle ? '' : ' (it did not: the rounds below ran beside it)'}\n`);
  const results = [];
  for (let round = 0; round < Number(process.env.BENCH_ROUNDS ?? 5); round++) {
    const client = await db.connect();
    const before = cpuSnapshot(ROOT, undefined);
    const t = performance.now();
    const [report] = await verifyLogs(client, [logId], pinned, []).finally(() => client.release());
    const s = (performance.now() - t) / 1000;
    const after = cpuSnapshot(ROOT, undefined);
    const per = (k: CpuGroup) => { const a = before[k]; const b = after[k]; return a === null || b === null ? null : Number((((b - a) * 1e6) / n).toFixed(2)); };
    if (!report || report.damage || report.rows !== n) throw new Error(`verification failed: ${JSON.stringify(report)}`);
    const us = { verifier: per('generator'), postgres: per('postgres'), broker: per('broker'), connect: per('connect'), mariadb: per('mariadb') };
    results.push({ round, rows: n, seconds: Number(s.toFixed(2)), rows_per_s: Math.round(n / s), cpu_us_per_row: us });
    const fmt = (v: number | null) => (v === null ? '-' : v.toFixed(2));
    process.stdout.write(`verify round ${round}: ${n} rows in ${s.toFixed(2)} s = ${Math.round(n / s).toLocaleString('en-US')} rows/s;`
      + ` CPU µs/row: verifier ${fmt(us.verifier)}, PostgreSQL ${fmt(us.postgres)}, broker ${fmt(us.broker)}, Connect ${fmt(us.connect)}, MariaDB ${fmt(us.mariadb)}\n`);
  }
  process.stdout.write(`(writing them through the worker's encoder and AuditWriter took ${writeS.toFixed(1)} s = ${Math.round(n / writeS).toLocaleString('en-US')} rows/s)\n`);
  const sorted = results.map((r) => r.rows_per_s).sort((a, b) => a - b);
  const median = sorted[Math.floor(sorted.length / 2)]!;
  process.stdout.write(`verify: median ${median.toLocaleString('en-US')} rows/s over ${results.length} rounds\n`);
  const summary = { rows: n, verify_rows_per_s: median, write_rows_per_s: Math.round(n / writeS), settle_s: Number(settled.seconds.toFixed(1)), settled: settled.idle, results };
  process.stdout.write(`wrote ${writeResults('verify', summary)}\n`);
  if (o.json) writeFileSync(o.json, `${JSON.stringify(summary, null, 2)}\n`);
  if (process.env.BENCH_KEEP === '1') {
    process.stdout.write(`kept ${logId} (BENCH_KEEP=1)\n`);
    await db.end();
    return;
  }
  await db.query('DELETE FROM audit_log WHERE log_id = $1', [logId]);
  await db.query('DELETE FROM audit_checkpoints WHERE log_id = $1', [logId]);
  await db.query('DELETE FROM audit_logs WHERE log_id = $1', [logId]);
  await db.end();
}
