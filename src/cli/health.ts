import pg from 'pg';
import mysql from 'mysql2/promise';
import { MongoClient } from 'mongodb';
import Kafka from 'node-rdkafka';
import { errorMessage } from '../errors.ts';
import { redactUrl } from '../log.ts';
import type { Loaded } from './loaded.ts';
import { kafkaClientProps } from '../kafka/client-config.ts';

interface Check {
  name: string;
  ok: boolean;
  ms: number;
  detail: string;
}

async function timed(name: string, fn: () => Promise<string>): Promise<Check> {
  const t0 = performance.now();
  try {
    const detail = await fn();
    return { name, ok: true, ms: Math.round(performance.now() - t0), detail };
  } catch (err) {
    return { name, ok: false, ms: Math.round(performance.now() - t0), detail: errorMessage(err) };
  }
}

async function checkPostgres(url: string): Promise<string> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 3000 });
  await client.connect();
  try {
    const { rows } = await client.query<{ v: string }>('SELECT version() AS v');
    return `${redactUrl(url)}: ${rows[0]?.v.split(' ').slice(0, 2).join(' ')}`;
  } finally {
    await client.end();
  }
}

async function checkMysql(url: string): Promise<string> {
  const conn = await mysql.createConnection({ uri: url, connectTimeout: 3000 });
  try {
    const [rows] = await conn.query('SELECT VERSION() AS v');
    return `${redactUrl(url)}: ${(rows as Array<{ v: string }>)[0]?.v}`;
  } finally {
    await conn.end();
  }
}

async function checkMongo(url: string): Promise<string> {
  const client = new MongoClient(url, { serverSelectionTimeoutMS: 3000, connectTimeoutMS: 3000 });
  try {
    const info = await client.db('admin').command({ buildInfo: 1 });
    return `${redactUrl(url)}: MongoDB ${String(info.version)}`;
  } finally {
    await client.close();
  }
}

function checkKafka(brokers: string, topics: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const producer = new Kafka.Producer({ ...kafkaClientProps(), 'metadata.broker.list': brokers, 'socket.timeout.ms': 3000 });
    producer.connect({ timeout: 5000 }, (err, md) => {
      if (err) {
        reject(new Error(`cannot reach ${brokers}: ${err.message}`));
        return;
      }
      const known = new Set(md.topics.map((t) => t.name));
      const missing = topics.filter((t) => !known.has(t));
      producer.disconnect(() => {
        if (missing.length > 0) reject(new Error(`${md.brokers.length} broker(s) up, but topics missing: ${missing.join(', ')}`));
        else resolve(`${md.brokers.length} broker(s), ${topics.length} source topics present`);
      });
    });
  });
}

/** `worker-sync health db|kafka|full [--json]`: exit 0 when every check passes, 1 otherwise. */
/** The checks of `health db|kafka|full`, as the --json output reports them. */
export async function healthReport(what: 'db' | 'kafka' | 'full', cfg: Loaded): Promise<{ ok: boolean; checks: Check[] }> {
  const checks: Array<Promise<Check>> = [];
  if (what === 'db' || what === 'full') {
    checks.push(timed('control-db', () => checkPostgres(cfg.controlUrl)));
    for (const node of cfg.topology.nodes.values()) {
      if (node.role === 'source') continue; // a synthetic source has no database to check
      if (node.kind === 'postgres') checks.push(timed(`node:${node.name}`, () => checkPostgres(node.url)));
      else if (node.kind === 'mariadb' || node.kind === 'mysql') checks.push(timed(`node:${node.name}`, () => checkMysql(node.url)));
      else checks.push(timed(`node:${node.name}`, () => checkMongo(node.url)));
    }
  }
  if (what === 'kafka' || what === 'full') {
    checks.push(timed('kafka', () => checkKafka(cfg.brokers, [...cfg.topology.topics.keys()])));
  }
  const results = await Promise.all(checks);
  return { ok: results.every((r) => r.ok), checks: results };
}

export async function runHealth(args: string[], cfg: Loaded): Promise<number> {
  const what = args.find((a) => !a.startsWith('-')) ?? 'full';
  const asJson = args.includes('--json');
  if (what !== 'db' && what !== 'kafka' && what !== 'full') {
    process.stderr.write('usage: worker-sync health db|kafka|full [--json]\n');
    return 2;
  }
  const { ok, checks: results } = await healthReport(what, cfg);
  if (asJson) {
    process.stdout.write(`${JSON.stringify({ ok, checks: results })}\n`);
  } else {
    for (const r of results) process.stdout.write(`${r.ok ? 'ok  ' : 'FAIL'} ${r.name.padEnd(16)} ${String(r.ms).padStart(5)} ms  ${r.detail}\n`);
    process.stdout.write(ok ? 'healthy\n' : 'UNHEALTHY\n');
  }
  return ok ? 0 : 1;
}
