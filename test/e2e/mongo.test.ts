import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Decimal128, Long, MongoClient, type Collection, type Document } from 'mongodb';
import { parse, stringify } from 'yaml';
import type pg from 'pg';
import type mysql from 'mysql2/promise';
import { ensureTopic } from '../../src/kafka/producer.ts';
import { ROOT, freshKeyBase, maria, pgApp, pgControl, stack, waitFor } from '../support/stack.ts';
import { settle, startWorker, type WorkerHandle } from '../support/worker-process.ts';

/**
 * MongoDB as a source and a target (DESIGN §2, §6), end to end: a Debezium MongoDB
 * connector on the stack's Kafka Connect reads a collection with pre- and post-images,
 * and the worker syncs it with PostgreSQL and MariaDB. Needs MONGO_URL: a replica set
 * (change streams), MongoDB 6 or later (pre-images). This machine has none.
 */
const mongoUrl = process.env.MONGO_URL;
const run = Date.now().toString(36);
const db = `ws_${run}`;
const prefix = `mongo${run}`;
const connector = `ws-mongo-${run}`;
const group = `e2e-mongo-${run}`;
let client: MongoClient;
interface CustomerDoc extends Document { _id: Long }
let coll: Collection<CustomerDoc>;
let worker: WorkerHandle;
let app: pg.Pool;
let control: pg.Pool;
let my: mysql.Pool;

describe.skipIf(!mongoUrl)('MongoDB as a source and a target (needs MONGO_URL, a replica set of MongoDB 6+; skipped without it: no MongoDB server on this machine)', () => {
  beforeAll(async () => {
    app = pgApp();
    control = pgControl();
    my = maria();
    client = new MongoClient(mongoUrl!);
    await client.connect();
    coll = await client.db(db).createCollection<CustomerDoc>('customers', { changeStreamPreAndPostImages: { enabled: true } });
    await ensureTopic(stack().kafka.bootstrap, `${prefix}.${db}.customers`, 1, 1);
    const res = await fetch(`${stack().connect.url}/connectors/${connector}/config`, {
      method: 'PUT', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        'connector.class': 'io.debezium.connector.mongodb.MongoDbConnector', 'tasks.max': '1',
        'mongodb.connection.string': mongoUrl, 'topic.prefix': prefix, 'collection.include.list': `${db}.customers`,
        'capture.mode': 'change_streams_update_full_with_pre_image', 'capture.mode.full.update.type': 'post_image',
        'snapshot.mode': 'no_data', 'tombstones.on.delete': 'true',
        'key.converter': 'org.apache.kafka.connect.json.JsonConverter', 'key.converter.schemas.enable': 'false',
        'value.converter': 'org.apache.kafka.connect.json.JsonConverter', 'value.converter.schemas.enable': 'false',
      }),
    });
    expect(res.status).toBeLessThan(300);
    await waitFor('the MongoDB connector RUNNING', async () => {
      const s = await (await fetch(`${stack().connect.url}/connectors/${connector}/status`)).json() as { connector?: { state?: string }; tasks?: Array<{ state?: string }> };
      return s.connector?.state === 'RUNNING' && s.tasks?.[0]?.state === 'RUNNING';
    }, 120_000);

    const topology = parse(readFileSync(path.join(ROOT, 'deploy/local/worker-sync.yaml'), 'utf8')) as { nodes: Record<string, unknown>; entities: { customers: { nodes: Record<string, string> } } };
    topology.nodes.mongo = { kind: 'mongodb', urlEnv: 'MONGO_URL', topicPrefix: prefix, priority: 3 };
    topology.entities.customers.nodes.mongo = `${db}.customers`;
    const config = path.join(mkdtempSync(path.join(os.tmpdir(), 'ws-mongo-')), 'worker-sync.yaml');
    writeFileSync(config, stringify(topology));
    worker = await startWorker(group, { WORKER_SYNC_CONFIG: config, MONGO_URL: mongoUrl! });
    await settle(group, worker, app, control);
  });

  afterAll(async () => {
    expect((await worker?.kill('SIGTERM'))?.code).toBe(0);
    await fetch(`${stack().connect.url}/connectors/${connector}`, { method: 'DELETE' }).catch(() => undefined);
    await client?.db(db).dropDatabase().catch(() => undefined);
    await client?.close();
    await Promise.all([app?.end(), control?.end(), my?.end()]);
  });

  const inPg = async (id: number) => (await app.query('SELECT name, balance::text AS balance FROM customers WHERE id = $1', [id])).rows[0] as { name: string; balance: string } | undefined;
  const inMaria = async (id: number) => ((await my.query('SELECT name, balance FROM customers WHERE id = ?', [id]))[0] as Array<{ name: string; balance: string }>)[0];
  const byId = (id: number) => ({ _id: Long.fromNumber(id) });

  it('a document inserted, updated and deleted in MongoDB appears, changes and disappears in PostgreSQL and MariaDB', async () => {
    const id = freshKeyBase();
    await coll.insertOne({ ...byId(id), name: 'from mongo', email: null, balance: Decimal128.fromString('10.50'), tags: { k: [1] }, updated_at: new Date('2026-11-30T01:02:03.004Z') });
    await waitFor('the document in both databases', async () => (await inPg(id))?.name === 'from mongo' && (await inMaria(id))?.name === 'from mongo', 60_000);
    expect((await inPg(id))?.balance).toBe('10.50');
    await coll.updateOne(byId(id), { $set: { name: 'changed in mongo' } });
    await waitFor('the update in both databases', async () => (await inPg(id))?.name === 'changed in mongo' && (await inMaria(id))?.name === 'changed in mongo', 60_000);
    await coll.deleteOne(byId(id));
    await waitFor('the delete in both databases', async () => (await inPg(id)) === undefined && (await inMaria(id)) === undefined, 60_000);
  });

  it('a row inserted in PostgreSQL reaches MongoDB, and MongoDB\'s echo of it loops nowhere', async () => {
    const id = freshKeyBase();
    await app.query(`INSERT INTO customers (id, name, balance, tags, updated_at) VALUES ($1, 'from pg', 1.25, '{}', '2026-11-30 01:02:03.456789')`, [id]);
    const doc = await waitFor('the row in MongoDB', async () => (await coll.findOne(byId(id))) ?? undefined, 60_000);
    expect(doc.name).toBe('from pg');
    expect((doc.updated_at as Date).toISOString()).toBe('2026-11-30T01:02:03.456Z');
    await new Promise((r) => setTimeout(r, 5000));
    const { rows } = await control.query(`SELECT count(*)::int AS n FROM audit_log WHERE log_id LIKE $1 AND kind = 'change' AND record_key->>'id' = $2`, [`${group}:%`, String(id)]);
    expect(rows[0].n).toBe(1);
    expect(await worker.metrics()).toMatch(/sync_echoes_total\{node="mongo"\} [1-9]/);
  });
});
