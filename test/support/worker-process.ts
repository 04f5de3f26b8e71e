import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, openSync, closeSync, readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import type pg from 'pg';
import mysql from 'mysql2/promise';
import { ROOT, freshKeyBase, stack, waitFor } from './stack.ts';
import { StateStore } from '../../src/sync/state-store.ts';

export interface WorkerHandle {
  proc: ChildProcess;
  port: number;
  url: string;
  logFile: string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  ready(timeoutMs?: number): Promise<void>;
  metrics(): Promise<string>;
  kill(signal?: NodeJS.Signals): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

/** Starts `worker-sync run` as a real child process against the local stack. */
export async function startWorker(group: string, env: Record<string, string> = {}): Promise<WorkerHandle> {
  const port = await freePort();
  const dir = path.join(ROOT, '.local/test-logs');
  mkdirSync(dir, { recursive: true });
  const logFile = path.join(dir, `${group}-${Date.now()}.log`);
  const fd = openSync(logFile, 'a');
  const s = stack();
  const proc = spawn(process.execPath, [path.join(ROOT, 'bin/worker-sync.js'), 'run'], {
    stdio: ['ignore', fd, fd],
    env: {
      PATH: process.env.PATH ?? '',
      HOME: process.env.HOME ?? '/root',
      KAFKA_BROKERS: s.kafka.bootstrap,
      DATABASE_URL: s.postgres.controlUrl,
      KAFKA_GROUP_ID: group,
      HTTP_HOST: '127.0.0.1',
      HTTP_PORT: String(port),
      LOG_LEVEL: 'info',
      LOG_FILE: 'off', // its stdout is the log file above; a suite that needs LOG_FILE sets it
      WORKER_ID: `${group}-${Math.random().toString(36).slice(2, 8)}`,
      ...env,
    },
  });
  closeSync(fd);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    proc.once('exit', (code, signal) => resolve({ code, signal }));
  });
  const url = `http://127.0.0.1:${port}`;
  return {
    proc, port, url, logFile, exited,
    async ready(timeoutMs = 60_000) {
      await waitFor(`worker ready on ${url} (log ${logFile})`, async () => {
        if (proc.exitCode !== null || proc.signalCode !== null) throw new Error(`worker exited (${proc.exitCode ?? proc.signalCode}); see ${logFile}`);
        const res = await fetch(`${url}/ready`);
        return res.status === 200;
      }, timeoutMs, 250);
    },
    async metrics() {
      return (await fetch(`${url}/metrics`)).text();
    },
    async kill(signal: NodeJS.Signals = 'SIGTERM') {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
      const exit = await exited;
      // a graceful stop that did not exit 0 (died by a signal of its own, or failed): say how, with the log's end
      if (signal !== 'SIGKILL' && exit.code !== 0) {
        const tail = readFileSync(logFile, 'utf8').trimEnd().split('\n').slice(-20).join('\n');
        process.stderr.write(`worker ${group} stopped by ${signal} ended with ${JSON.stringify(exit)}; last lines of ${logFile}:\n${tail}\n`);
      }
      return exit;
    },
  };
}

/** Sum of a counter over all its series in Prometheus text, or over those containing `labels`. */
export function counterSum(metricsText: string, name: string, labels = ''): number {
  let sum = 0;
  for (const line of metricsText.split('\n')) {
    if ((line.startsWith(`${name}{`) || line.startsWith(`${name} `)) && line.includes(labels)) sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return sum;
}

/**
 * Waits until a worker of `group` has caught up with the topics and nothing it wrote is
 * still on its way back: a marker order is audited and its echo from MariaDB consumed.
 * After this, the group's next batches are the test's own.
 */
export async function settle(group: string, w: WorkerHandle, app: pg.Pool, control: pg.Pool): Promise<void> {
  await w.ready();
  // A new group reads every connector topic from its start: on a stack that has run other
  // suites (the chaos suite's fuzzing above all) the customers topics hold far more than
  // orders, so each busy topic gets a marker of its own.
  const marker = freshKeyBase();
  const my = mysql.createPool({ uri: stack().mariadb.url, connectionLimit: 1 });
  try {
    await app.query(`INSERT INTO orders (id, customer_id, total, status, created_at) VALUES ($1, 0, 0, 'marker', now())`, [marker]);
    await app.query(`INSERT INTO customers (id, name, balance, tags, updated_at) VALUES ($1, 'settle marker', 0, '{}', now())`, [marker + 1]);
    await my.query(`INSERT INTO customers (id, name, balance, tags, updated_at) VALUES (?, 'settle marker', 0, '{}', now())`, [marker + 2]);
  } finally {
    await my.end();
  }
  await waitFor('the markers in the audit log', async () => {
    const { rows } = await control.query(
      `SELECT count(DISTINCT (entity, record_key::text))::int AS n FROM audit_log WHERE log_id LIKE $1 AND ((entity = 'orders' AND record_key->>'id' = $2) OR (entity = 'customers' AND record_key->>'id' = ANY($3)))`,
      [`${group}:%`, String(marker), [String(marker + 1), String(marker + 2)]]);
    return rows[0].n === 3;
  }, 180_000);
  await waitFor('the marker\'s echo from MariaDB', async () => {
    const state = (await new StateStore().load(control, 'orders', [`[${marker}]`])).get(`[${marker}]`);
    return state?.nodes.maria !== undefined && state.nodes.maria.fifo.length === 0;
  }, 60_000);
  await new Promise((r) => setTimeout(r, 500));
}
