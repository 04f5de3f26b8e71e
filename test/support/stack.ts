import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import mysql from 'mysql2/promise';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

export interface StackStatus {
  kafka: { up: boolean; bootstrap: string };
  connect: { up: boolean; url: string };
  postgres: { up: boolean; url: string; controlUrl: string };
  mariadb: { up: boolean; url: string };
  redis: { up: boolean; url: string };
  prometheus: { up: boolean; url: string; targets: string };
}

let cached: StackStatus | undefined;

/** The running local stack, as `stack.sh status --json` reports it. */
export function stack(): StackStatus {
  if (!cached) {
    const out = execFileSync('bash', [path.join(ROOT, 'deploy/local/stack.sh'), 'status', '--json'], { encoding: 'utf8' });
    cached = JSON.parse(out) as StackStatus;
  }
  return cached;
}

export function pgApp(): pg.Pool {
  return new pg.Pool({ connectionString: stack().postgres.url, max: 4 });
}

export function pgControl(): pg.Pool {
  return new pg.Pool({ connectionString: stack().postgres.controlUrl, max: 4 });
}

export function maria(): mysql.Pool {
  return mysql.createPool({ uri: stack().mariadb.url, connectionLimit: 4 });
}

/** The demo connectors' topics (deploy/local/stack.sh CDC_TOPICS). */
export const CDC_TOPICS = ['pg.public.customers', 'pg.public.orders', 'pg.public.type_probe', 'maria.app.customers', 'maria.app.orders', 'maria.app.type_probe'];

/** Keys unique to one test run, far from the demo's and from each other's. */
export function freshKeyBase(): number {
  return 1_000_000_000 + Math.floor(Math.random() * 8_000_000) * 1000;
}

export async function waitFor<T>(what: string, fn: () => Promise<T | undefined | false>, timeoutMs = 30_000, everyMs = 200): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const v = await fn();
      if (v !== undefined && v !== false) return v as T;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, everyMs));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
}

/**
 * `ws_handles` in both app databases: a secondary unique key (handle) and a check
 * (qty >= 0), for the tests of rows a target refuses. Debezium does not capture it.
 */
export async function createHandlesTables(): Promise<void> {
  const app = pgApp();
  const my = maria();
  try {
    await app.query('CREATE TABLE IF NOT EXISTS public.ws_handles (id bigint PRIMARY KEY, handle varchar(64) UNIQUE, qty int CHECK (qty >= 0), _sync_version bytea)');
    await my.query('CREATE TABLE IF NOT EXISTS app.ws_handles (id bigint NOT NULL PRIMARY KEY, handle varchar(64) UNIQUE, qty int CHECK (qty >= 0), _sync_version varbinary(255)) ENGINE=InnoDB');
  } finally {
    await Promise.all([app.end(), my.end()]);
  }
}
