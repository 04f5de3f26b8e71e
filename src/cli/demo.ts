import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, openSync } from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import mysql from 'mysql2/promise';
import { PROJECT_ROOT } from '../config/env.ts';
import { loadConfig } from './loaded.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function httpOk(url: string): Promise<boolean> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(1000) });
    return res.ok;
  } catch {
    return false;
  }
}

interface AuditRow {
  seq: string;
  source_node: string;
  entity: string;
  op: string;
  record_key: unknown;
  after: Record<string, unknown> | null;
  latency_ms: number;
}

/**
 * `npm run demo`: the stack, the worker, and real changes in both databases, ending in
 * the audit log. Leaves the stack running.
 */
export async function runDemo(_args: string[]): Promise<number> {
  const say = (s: string) => process.stdout.write(`${s}\n`);
  say('==> Bringing the local stack up (deploy/local/stack.sh up)');
  const up = spawnSync('bash', [path.join(PROJECT_ROOT, 'deploy/local/stack.sh'), 'up'], { stdio: 'inherit' });
  if (up.status !== 0) {
    say('The local stack did not come up; see the messages above.');
    return 1;
  }
  const cfg = loadConfig();
  const surface = `http://127.0.0.1:${cfg.env.httpPort}`;
  let worker: ChildProcess | undefined;
  if (await httpOk(`${surface}/health`)) {
    say(`==> A worker already answers on ${surface}; using it`);
  } else {
    mkdirSync(path.join(PROJECT_ROOT, '.local'), { recursive: true });
    const logFile = path.join(PROJECT_ROOT, '.local/demo-worker.log');
    say(`==> Starting the worker (npm start), log in ${path.relative(process.cwd(), logFile)}`);
    const out = openSync(logFile, 'a');
    worker = spawn(process.execPath, [path.join(PROJECT_ROOT, 'bin/worker-sync.js'), 'run'], { stdio: ['ignore', out, out], env: process.env });
  }
  try {
    const deadline = Date.now() + 60_000;
    while (!(await httpOk(`${surface}/ready`))) {
      if (Date.now() > deadline) {
        say(`The worker did not become ready within 60 s; see ${surface}/ready`);
        return 1;
      }
      if (worker && worker.exitCode !== null) {
        say(`The worker exited with code ${worker.exitCode}; see .local/demo-worker.log`);
        return 1;
      }
      await sleep(500);
    }
    const pgNode = [...cfg.topology.nodes.values()].find((n) => n.kind === 'postgres');
    const myNode = [...cfg.topology.nodes.values()].find((n) => n.kind === 'mariadb' || n.kind === 'mysql');
    if (!pgNode || !myNode) {
      say('The demo needs a postgres and a mariadb node in the topology.');
      return 2;
    }
    const base = 900_000_000 + (Date.now() % 90_000_000) * 10;
    const [a, b] = [base, base + 1];
    const app = new pg.Client({ connectionString: pgNode.url });
    await app.connect();
    const my = await mysql.createConnection({ uri: myNode.url });
    say(`==> Changes in PostgreSQL (customer ${a}) and MariaDB (customer ${b})`);
    const steps: Array<[string, () => Promise<unknown>]> = [
      ['PostgreSQL INSERT customer', () => app.query(`INSERT INTO customers (id, name, email, balance, tags, updated_at) VALUES ($1, 'Zoë Ñandú', 'zoe@example.com', 1234.56, '{"vip": true}', '2026-11-30 12:34:56.123456')`, [a])],
      ['PostgreSQL UPDATE customer', () => app.query('UPDATE customers SET balance = balance + 10.01 WHERE id = $1', [a])],
      ['PostgreSQL INSERT order', () => app.query(`INSERT INTO orders (id, customer_id, total, status, created_at) VALUES ($1, $2, 99.90, 'new', now())`, [a, a])],
      ['PostgreSQL DELETE customer', () => app.query('DELETE FROM customers WHERE id = $1', [a])],
      ['MariaDB INSERT customer', () => my.query(`INSERT INTO customers (id, name, email, balance, tags, updated_at) VALUES (?, 'Åsa Lindqvist', 'asa@example.com', 10.50, '{"tier": 2}', '2026-11-30 08:00:00.000001')`, [b])],
      ['MariaDB UPDATE customer', () => my.query(`UPDATE customers SET email = 'asa@example.org' WHERE id = ?`, [b])],
      ['MariaDB INSERT order', () => my.query(`INSERT INTO orders (id, customer_id, total, status, created_at) VALUES (?, ?, 5.00, 'paid', NOW(6))`, [b, b])],
    ];
    for (const [label, fn] of steps) {
      await fn();
      say(`    ${label}`);
    }
    await app.end();
    await my.end();

    say('==> Waiting for the audit log (sync_db.audit_log)');
    const control = new pg.Client({ connectionString: cfg.controlUrl });
    await control.connect();
    const expected = steps.length;
    let rows: AuditRow[] = [];
    const until = Date.now() + 60_000;
    while (Date.now() < until) {
      const res = await control.query<AuditRow>(
        `SELECT seq, source_node, entity, op, record_key, after,
                round(extract(epoch FROM executed_at - source_ts) * 1000)::int AS latency_ms
         FROM audit_log WHERE kind = 'change' AND record_key->>'id' IN ($1, $2) ORDER BY source_ts, log_id, seq`,
        [String(a), String(b)],
      );
      rows = res.rows;
      if (rows.length >= expected) break;
      await sleep(500);
    }
    await control.end();
    say('');
    const keyWidth = Math.max(3, ...rows.map((r) => JSON.stringify(r.record_key).length));
    say(`  ${'source'.padEnd(7)} ${'entity'.padEnd(10)} ${'op'.padEnd(3)} ${'key'.padEnd(keyWidth)} ${'ms'.padStart(5)}  after`);
    for (const r of rows) {
      const after = r.after ? JSON.stringify(r.after).slice(0, 60) : '(deleted)';
      say(`  ${r.source_node.padEnd(7)} ${r.entity.padEnd(10)} ${r.op.padEnd(3)} ${JSON.stringify(r.record_key).padEnd(keyWidth)} ${String(r.latency_ms).padStart(5)}  ${after}`);
    }
    say('  (ms: from the source commit to the audit commit; MariaDB commit times have whole-second resolution)');
    say('');
    // The other direction: what each database now holds of the other's changes.
    const app2 = new pg.Client({ connectionString: pgNode.url });
    await app2.connect();
    const my2 = await mysql.createConnection({ uri: myNode.url });
    let crossed = false;
    const crossUntil = Date.now() + 15_000;
    let inPg: { name: string; email: string } | undefined;
    let inMy: { total: string; status: string } | undefined;
    while (Date.now() < crossUntil) {
      inPg = (await app2.query<{ name: string; email: string }>('SELECT name, email FROM customers WHERE id = $1', [b])).rows[0];
      const [myRows] = await my2.query('SELECT CAST(total AS CHAR) AS total, status FROM orders WHERE id = ?', [a]);
      inMy = (myRows as Array<{ total: string; status: string }>)[0];
      const [gone] = await my2.query('SELECT 1 FROM customers WHERE id = ?', [a]);
      crossed = inPg?.email === 'asa@example.org' && inMy !== undefined && (gone as unknown[]).length === 0;
      if (crossed) break;
      await sleep(300);
    }
    await app2.end();
    await my2.end();
    say(`MariaDB's customer ${b} in PostgreSQL: ${inPg ? `${inPg.name} <${inPg.email}>` : '(not there)'}`);
    say(`PostgreSQL's order ${a} in MariaDB: ${inMy ? `${inMy.total} ${inMy.status}` : '(not there)'}; its deleted customer ${a}: ${crossed ? 'gone from MariaDB too' : 'still there'}`);
    say('');
    const ok = rows.length === expected && crossed;
    say(rows.length === expected ? `All ${expected} changes are in the audit log.` : `Only ${rows.length} of ${expected} changes reached the audit log.`);
    if (!crossed) say('The changes did not all arrive in the other database within 15 s.');
    const metrics = await fetch(`${surface}/metrics`).then((r) => r.text(), () => '');
    say(`From ${surface}/metrics:`);
    for (const line of metrics.split('\n')) if (/^sync_(events|errors)_total\{/.test(line)) say(`  ${line}`);
    say('Run the worker yourself with `npm start` (port 3003: /health, /ready, /metrics).');
    return ok ? 0 : 1;
  } finally {
    if (worker && worker.exitCode === null) {
      worker.kill('SIGTERM');
      await new Promise((r) => worker!.once('exit', r));
      say('==> Worker stopped.');
    }
    say('The local stack is still running: `npm run stack:status` to see it, `npm run stack:down` to stop it.');
  }
}
