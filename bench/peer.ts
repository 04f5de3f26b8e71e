import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, mkdirSync, openSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import Kafka from 'node-rdkafka';
import pg from 'pg';
import { deleteTopic, ensureTopic } from '../src/kafka/producer.ts';
import { envelope, Keyspace, mixOp, step } from '../load/events.ts';
import { freePort, progress, ROOT, writeResults } from '../harness/common.ts';

/**
 * `npm run bench:peer` (issue 6): the same topic of Debezium change events (schemas on),
 * applied to fresh PostgreSQL tables by two pipelines, one after the other:
 *   1. Debezium's JDBC sink connector on the stack's Kafka Connect (insert.mode=upsert,
 *      primary.key.mode=record_key, delete.enabled=true);
 *   2. worker-sync, with the audit log on (a topology whose only target is the table).
 * It checks that both tables end with the same rows (and with what the generator expects),
 * then prints both throughputs and their ratio, and writes JSON.
 *
 * Throughput is events over the time from the pipeline's start (the connector created; the
 * worker ready) until its table holds the final state. Both pipelines see the whole topic
 * at once: this measures catch-up speed, not latency.
 * Exit codes: 0 both tables hold the rows the generator expects, 1 they differ or a pipeline did not
 * converge (timed out, or its task or worker died), 2 usage or set-up error.
 */

interface Options { events: number; keys: number; partitions: number; json?: string; keep: boolean; timeoutS: number }

const USAGE = `usage: npm run bench:peer -- [--events N] [--keys N] [--partitions N] [--timeout SECONDS] [--json FILE] [--keep]

Sends N change events (default 200,000; schemas on; 70 % updates, 20 % inserts, 10 %
deletes over a skewed key space, rows of about 1 KB) into a fresh topic, then applies that
topic to two fresh PostgreSQL tables, first with Debezium's JDBC sink connector and then
with worker-sync (audit log on). Prints both throughputs and worker-sync / JDBC sink.
--keep leaves the tables, the topics and the topology file in place.
Exit codes: 0 both tables hold the expected rows, 1 they differ or a pipeline did not converge, 2 usage or set-up error.
`;

const BROKERS = process.env.KAFKA_BROKERS ?? '127.0.0.1:19092';
const CONNECT_URL = process.env.CONNECT_URL ?? 'http://127.0.0.1:18083';
const PG_URL = process.env.LOAD_PG_URL ?? 'postgres://app:app@127.0.0.1:55432/loadtest';
/** The JDBC sink connects from the Connect JVM, on the same machine. */
const JDBC_URL = process.env.PEER_JDBC_URL ?? 'jdbc:postgresql://127.0.0.1:55432/loadtest';
const COLUMNS = 'id, name, qty, payload, updated_at';

function parseArgs(argv: string[]): Options | string {
  const get = (name: string) => {
    const i = argv.indexOf(name);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  if (argv.includes('--help') || argv.includes('-h')) return '';
  const o = {
    events: Number(get('--events') ?? 200_000), keys: Number(get('--keys') ?? 20_000), partitions: Number(get('--partitions') ?? 6),
    timeoutS: Number(get('--timeout') ?? 1800), json: get('--json'), keep: argv.includes('--keep'),
  };
  for (const k of ['events', 'keys', 'partitions', 'timeoutS'] as const) {
    if (!Number.isInteger(o[k]) || o[k] <= 0) return `--${k === 'timeoutS' ? 'timeout' : k} must be a positive integer`;
  }
  if (o.keys > o.events) return '--keys cannot exceed --events (the first events insert the keys)';
  return o;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const bar = (done: number, total: number) => `[${'#'.repeat(Math.round((done / total) * 30)).padEnd(30)}]`;

/** The final state the generator expects: live rows and the sum of their versions (qty). */
interface Expected { rows: number; qtySum: number; ids: number[]; qtys: number[] }

/** Writes the topic: `keys` inserts, then the 70/20/10 mix. Every delete is followed by its tombstone. */
async function produceTopic(prefix: string, o: Options): Promise<Expected> {
  const producer = new Kafka.Producer({
    'metadata.broker.list': BROKERS, 'client.id': 'worker-sync-bench-peer', 'linger.ms': 20, 'batch.num.messages': 10_000,
    'compression.codec': 'lz4', 'queue.buffering.max.messages': 200_000, 'dr_cb': true,
  }, {});
  let delivered = 0;
  let failed = 0;
  producer.on('delivery-report', (err) => { if (err) failed++; else delivered++; });
  producer.setPollInterval(10);
  await new Promise<void>((resolve, reject) => producer.connect({}, (err) => (err ? reject(err) : resolve())));
  const ks = new Keyspace(1);
  let lsn = BigInt(Date.now()) * 1000n;
  let sent = 0;
  const send = async (topic: string, key: Buffer, value: Buffer | null): Promise<void> => {
    for (;;) {
      try {
        producer.produce(topic, null, value, key, Date.now());
        sent++;
        return;
      } catch (err) {
        if ((err as { code?: number }).code !== Kafka.CODES.ERRORS.ERR__QUEUE_FULL) throw err;
        await sleep(5); // the local queue is full: let deliveries drain
      }
    }
  };
  for (let i = 0; i < o.events; i++) {
    const now = Date.now();
    const c = step(ks, i < o.keys ? 'c' : mixOp(Math.random()), now * 1000);
    lsn += 8n;
    const e = envelope('products', c.op, c.before, c.after, { lsn, txId: i + 1, now, schemas: true, prefix });
    await send(e.topic, e.key, e.value);
    if (c.op === 'd') await send(e.topic, e.key, null);
    if (i % 5000 === 0) progress(`producing ${bar(i, o.events)} ${i}/${o.events}   `);
  }
  while (delivered + failed < sent) await sleep(50);
  progress(`producing ${bar(1, 1)} ${o.events}/${o.events}, ${sent - o.events} tombstones`, true);
  await new Promise<void>((resolve) => producer.disconnect(() => resolve()));
  if (failed > 0) throw new Error(`${failed} messages were not delivered to Kafka`);
  let qtySum = 0;
  const ids: number[] = [];
  const qtys: number[] = [];
  for (const [id, v] of ks.version) {
    qtySum += v;
    ids.push(id);
    qtys.push(v);
  }
  return { rows: ks.version.size, qtySum, ids, qtys };
}

/** Polls the table until it holds the expected state; returns the seconds from `t0`, and when the first row appeared. */
async function waitFor(db: pg.Pool, table: string, want: Expected, t0: number, o: Options, label: string, alive: () => string | null): Promise<{ seconds: number; firstRowS: number | null } | string> {
  let firstRowS: number | null = null;
  for (;;) {
    const { rows } = await db.query<{ n: string; q: string | null }>(`SELECT count(*) AS n, sum(qty) AS q FROM ${table}`);
    const n = Number(rows[0]!.n);
    const q = Number(rows[0]!.q ?? 0);
    const s = (performance.now() - t0) / 1000;
    if (n > 0 && firstRowS === null) firstRowS = s;
    progress(`${label} ${s.toFixed(0)} s: ${n} rows, qty sum ${q} of ${want.qtySum}   `);
    if (n === want.rows && q === want.qtySum) {
      if (process.stderr.isTTY) process.stderr.write('\n');
      return { seconds: s, firstRowS };
    }
    const dead = alive();
    if (dead) return dead;
    if (s > o.timeoutS) return `${label} did not reach the final state in ${o.timeoutS} s (${n} rows, qty sum ${q})`;
    await sleep(200);
  }
}

async function connect(method: string, pathname: string, body?: unknown): Promise<{ status: number; json: unknown }> {
  const res = await fetch(`${CONNECT_URL}${pathname}`, {
    method, headers: { 'content-type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, json: text ? JSON.parse(text) as unknown : null };
}

async function runJdbcSink(topic: string, table: string, name: string, db: pg.Pool, want: Expected, o: Options) {
  const config = {
    'connector.class': 'io.debezium.connector.jdbc.JdbcSinkConnector',
    'tasks.max': '1',
    topics: topic,
    'connection.url': JDBC_URL,
    'connection.username': process.env.PEER_JDBC_USER ?? 'app',
    'connection.password': process.env.PEER_JDBC_PASSWORD ?? 'app',
    'insert.mode': 'upsert',
    'primary.key.mode': 'record_key',
    'delete.enabled': 'true',
    'schema.evolution': 'none',
    'collection.name.format': table,
    'database.time_zone': 'UTC',
    'consumer.override.auto.offset.reset': 'earliest',
  };
  const t0 = performance.now();
  const put = await connect('PUT', `/connectors/${name}/config`, config);
  if (put.status >= 300) throw new Error(`Kafka Connect refused the JDBC sink connector (${put.status}): ${JSON.stringify(put.json)}`);
  let lastCheck = 0;
  let failure: string | null = null;
  const alive = () => {
    if (performance.now() - lastCheck > 2000) {
      lastCheck = performance.now();
      void connect('GET', `/connectors/${name}/status`).then((r) => {
        const s = r.json as { tasks?: Array<{ state: string; trace?: string }> } | null;
        const bad = s?.tasks?.find((t) => t.state === 'FAILED');
        if (bad) failure = `the JDBC sink task failed: ${(bad.trace ?? '').split('\n').slice(0, 3).join(' | ')}`;
      }, () => undefined);
    }
    return failure;
  };
  try {
    return await waitFor(db, table, want, t0, o, 'JDBC sink  ', alive);
  } finally {
    await connect('DELETE', `/connectors/${name}`).catch(() => undefined);
  }
}

async function runWorker(prefix: string, table: string, group: string, db: pg.Pool, want: Expected, o: Options) {
  const dir = path.join(ROOT, '.local/peer');
  mkdirSync(dir, { recursive: true });
  const topologyFile = path.join(dir, `${prefix}.yaml`);
  // The load topology's control database, Redis and Kafka; one source node and one target table.
  writeFileSync(topologyFile, [
    '# written by bench/peer.ts for one run', 'kafka:', `  bootstrap: ${BROKERS}`,
    'control:', '  url: postgres://sync_user:sync_pass@127.0.0.1:55432/sync_db', 'redis:', '  url: redis://127.0.0.1:56379',
    'nodes:', `  ${prefix}:`, '    kind: postgres', '    role: source', `    topicPrefix: ${prefix}`, '    priority: 1',
    '  pg:', '    kind: postgres', '    role: target', `    url: ${PG_URL}`, '    priority: 2',
    // an entity of its own, so no earlier run's record states (sync_metadata) meet this run's keys
    'entities:', `  ${prefix}:`, '    key: [id]', '    columns: { id: bigint, name: text, qty: integer, payload: text, updated_at: timestamp(6) }',
    `    nodes: { ${prefix}: loadtest.products, pg: ${table} }`, '',
  ].join('\n'));
  const port = await freePort();
  const logFile = path.join(dir, `${prefix}.log`);
  const fd = openSync(logFile, 'a');
  // WORKER_SYNC_BIN: another build's bin/worker-sync.js, for an A/B under the same harness
  const bin = process.env.WORKER_SYNC_BIN ? path.resolve(process.env.WORKER_SYNC_BIN) : path.join(ROOT, 'bin/worker-sync.js');
  const proc: ChildProcess = spawn(process.execPath, [bin, 'run'], {
    stdio: ['ignore', fd, fd],
    env: { ...process.env, WORKER_SYNC_CONFIG: topologyFile, KAFKA_GROUP_ID: group, HTTP_HOST: '127.0.0.1', HTTP_PORT: String(port), LOG_LEVEL: process.env.LOG_LEVEL ?? 'warn' },
  });
  closeSync(fd);
  try {
    const deadline = Date.now() + 120_000;
    for (;;) {
      if (proc.exitCode !== null) throw new Error(`the worker exited with ${proc.exitCode}; see ${logFile}`);
      if (await fetch(`http://127.0.0.1:${port}/ready`).then((r) => r.status === 200, () => false)) break;
      if (Date.now() > deadline) throw new Error(`the worker did not get ready in 120 s; see ${logFile}`);
      await sleep(100);
    }
    const t0 = performance.now();
    const exited = () => (proc.exitCode !== null || proc.signalCode !== null ? `the worker exited (${proc.exitCode ?? proc.signalCode}); see ${logFile}` : null);
    return await waitFor(db, table, want, t0, o, 'worker-sync', exited);
  } finally {
    if (proc.exitCode === null && proc.signalCode === null) {
      proc.kill('SIGTERM');
      await new Promise((r) => proc.once('exit', r));
    }
  }
}

async function main(): Promise<number> {
  const o = parseArgs(process.argv.slice(2));
  if (typeof o === 'string') {
    process.stderr.write(o === '' ? USAGE : `${o}\n\n${USAGE}`);
    return o === '' ? 0 : 2;
  }
  const run = Date.now().toString(36);
  const prefix = `peer_${run}`;
  const topic = `${prefix}.loadtest.products`;
  const jdbcTable = `loadtest.peer_jdbc_${run}`;
  const wsTable = `loadtest.peer_ws_${run}`;
  const group = `worker-sync-peer-${run}`;
  const db = new pg.Pool({ connectionString: PG_URL, max: 2 });
  try {
    const plugins = await connect('GET', '/connector-plugins').catch((err: Error) => { throw new Error(`Kafka Connect is not reachable at ${CONNECT_URL} (${err.message}): run \`npm run stack:up\``); });
    if (!(plugins.json as Array<{ class: string }>).some((p) => p.class === 'io.debezium.connector.jdbc.JdbcSinkConnector')) {
      throw new Error('Kafka Connect has no io.debezium.connector.jdbc.JdbcSinkConnector plugin: re-run `npm run stack:up`');
    }
    for (const t of [jdbcTable, wsTable]) {
      await db.query(`CREATE TABLE ${t} (id bigint PRIMARY KEY, name text, qty integer, payload text, updated_at timestamp(6), _sync_version bytea)`);
    }
    await ensureTopic(BROKERS, topic, o.partitions, 1);
    process.stderr.write(`run ${run}: topic ${topic} (${o.partitions} partitions), tables ${jdbcTable} and ${wsTable}\n`);
    const want = await produceTopic(prefix, o);
    process.stderr.write(`expected final state: ${want.rows} rows, qty sum ${want.qtySum}\n`);

    const jdbc = await runJdbcSink(topic, jdbcTable, `bench-peer-jdbc-${run}`, db, want, o);
    if (typeof jdbc === 'string') return failed(jdbc);
    const ws = await runWorker(prefix, wsTable, group, db, want, o);
    if (typeof ws === 'string') return failed(ws);

    const diff = async (a: string, b: string) => Number((await db.query<{ n: string }>(`SELECT count(*) AS n FROM (SELECT ${COLUMNS} FROM ${a} EXCEPT SELECT ${COLUMNS} FROM ${b}) d`)).rows[0]!.n);
    const onlyJdbc = await diff(jdbcTable, wsTable);
    const onlyWs = await diff(wsTable, jdbcTable);
    // and row by row against the generator: each live key, at its last version
    const unexpected = async (t: string) => Number((await db.query<{ n: string }>(
      `SELECT count(*) AS n FROM ((SELECT id, qty FROM ${t} EXCEPT SELECT * FROM unnest($1::bigint[], $2::int[]))
        UNION ALL (SELECT * FROM unnest($1::bigint[], $2::int[]) EXCEPT SELECT id, qty FROM ${t})) d`, [want.ids, want.qtys])).rows[0]!.n);
    const offJdbc = await unexpected(jdbcTable);
    const offWs = await unexpected(wsTable);
    const same = onlyJdbc === 0 && onlyWs === 0 && offJdbc === 0 && offWs === 0;
    const result = {
      events: o.events, partitions: o.partitions, keys: o.keys, final_rows: want.rows, same_rows: same, rows_only_in_jdbc: onlyJdbc, rows_only_in_worker: onlyWs,
      rows_off_expected: { jdbc_sink: offJdbc, worker_sync: offWs },
      jdbc_sink: { seconds: round(jdbc.seconds), events_per_s: Math.round(o.events / jdbc.seconds), first_row_s: jdbc.firstRowS === null ? null : round(jdbc.firstRowS) },
      worker_sync: { seconds: round(ws.seconds), events_per_s: Math.round(o.events / ws.seconds), first_row_s: ws.firstRowS === null ? null : round(ws.firstRowS), audit_log: true },
      ratio_worker_to_jdbc: Math.round((jdbc.seconds / ws.seconds) * 100) / 100,
    };
    process.stdout.write([
      `${o.events.toLocaleString('en-US')} events (schemas on, ${o.partitions} partitions) into fresh PostgreSQL tables:`,
      `  Debezium JDBC sink:       ${result.jdbc_sink.events_per_s.toLocaleString('en-US')} events/s (${result.jdbc_sink.seconds} s)`,
      `  worker-sync (audit on):   ${result.worker_sync.events_per_s.toLocaleString('en-US')} events/s (${result.worker_sync.seconds} s)`,
      `  worker-sync / JDBC sink:  ${result.ratio_worker_to_jdbc}`,
      same ? `  final rows: identical, and each key at the version the generator expects (${want.rows} rows)`
        : `  final rows DIFFER: ${onlyJdbc} only in the JDBC sink's table, ${onlyWs} only in worker-sync's; off the expected (id, version): JDBC sink ${offJdbc}, worker-sync ${offWs}`,
      '',
    ].join('\n'));
    process.stderr.write(`results: ${writeResults('peer', result)}\n`);
    if (o.json) writeFileSync(o.json, `${JSON.stringify(result, null, 2)}\n`);
    return same ? 0 : 1;
  } finally {
    if (!o.keep) {
      for (const t of [jdbcTable, wsTable]) await db.query(`DROP TABLE IF EXISTS ${t}`).catch(() => undefined);
      for (const t of [topic, `${group}.changes`]) await deleteTopic(BROKERS, t);
      rmSync(path.join(ROOT, '.local/peer', `${prefix}.yaml`), { force: true });
    }
    await db.end();
  }
}

/** A pipeline that did not converge (timed out, or its task or worker died): exit code 1. */
function failed(why: string): number {
  process.stderr.write(`\nbench:peer: ${why}\n`);
  return 1;
}

const round = (x: number) => Math.round(x * 10) / 10;

main().then((code) => process.exit(code), (err: unknown) => {
  process.stderr.write(`\nbench:peer: ${(err as Error).message}\n`);
  process.exit(2);
});
