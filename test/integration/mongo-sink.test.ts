import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MongoClient } from 'mongodb';
import { parseTopology, type EntityConfig } from '../../src/config/topology.ts';
import { MongoSink } from '../../src/sinks/mongo-sink.ts';
import type { UpsertRow } from '../../src/sinks/sink.ts';
import { encode } from '../../src/clock/codec.ts';
import { fromObject } from '../../src/clock/version-vector.ts';
import { mongoForm } from '../../src/events/mongo-values.ts';
import type { Row } from '../../src/events/change-event.ts';
import { freshKeyBase } from '../support/stack.ts';

/**
 * MongoSink against a real MongoDB (DESIGN §6): compare-and-set through unordered
 * bulkWrite, per-row outcomes, and a document MongoDB refuses. This machine has no
 * MongoDB server; the suite runs where MONGO_URL names one.
 */
const url = process.env.MONGO_URL;
const db = `worker_sync_test_${Date.now().toString(36)}`;
let sink: MongoSink;
let client: MongoClient;
let customers: EntityConfig;

describe.skipIf(!url)('MongoSink on a real server (needs MONGO_URL; skipped without it: no MongoDB server on this machine)', () => {
  beforeAll(async () => {
    customers = parseTopology({
      nodes: { mongo: { kind: 'mongodb', url: url! } },
      entities: {
        customers: {
          key: ['id'], columns: { id: 'bigint', name: 'text', email: 'text', balance: 'decimal(12,2)', tags: 'json', updated_at: 'timestamp(6)' },
          nodes: { mongo: `${db}.customers` },
        },
      },
    }, 'test').entities.get('customers')!;
    client = new MongoClient(url!);
    await client.connect();
    await client.db(db).collection('customers').createIndex({ email: 1 }, { unique: true, sparse: true });
    sink = new MongoSink('mongo', url!);
  });

  afterAll(async () => {
    await sink?.close();
    await client?.db(db).dropDatabase().catch(() => undefined);
    await client?.close();
  });

  const v1 = encode(fromObject({ 1: 1 }));
  const v2 = encode(fromObject({ 1: 2 }));
  const v3 = encode(fromObject({ 1: 2, 2: 1 }));
  const row = (id: number, extra: Partial<Row> = {}): Row => ({
    id, name: 'Zoë Ñandú 🚀', email: `${id}@example.com`, balance: '-1234.56', tags: { vip: true, n: [1, 2] }, updated_at: '2026-11-30T12:34:56.123456', ...extra,
  });
  const up = (r: Row, version: Buffer, expected: Buffer | null, expectAbsent = false): UpsertRow => ({ key: { id: r.id! }, row: r, version, expected, expectAbsent });

  it('inserts, replays, updates and deletes with compare-and-set on the version', async () => {
    const id = freshKeyBase();
    const key = { id };
    expect(await sink.applyBatch(customers, [up(row(id), v1, null, true)], [])).toEqual({ upserts: ['applied'], deletes: [] });
    expect((await sink.applyBatch(customers, [up(row(id), v1, null, true)], [])).upserts).toEqual(['already']);
    expect((await sink.applyBatch(customers, [up(row(id, { name: 'lost' }), v3, v2)], [])).upserts).toEqual(['cas-skipped']);
    expect((await sink.applyBatch(customers, [up(row(id, { balance: '0.01' }), v2, v1)], [])).upserts).toEqual(['applied']);
    const [read] = await sink.read(customers, [key]);
    expect(read?.row).toEqual(mongoForm(row(id, { balance: '0.01' }), customers));
    expect(read?.version?.equals(v2)).toBe(true);
    expect((await sink.applyBatch(customers, [], [{ key, expected: v1, anyVersion: false }])).deletes).toEqual(['cas-skipped']);
    expect((await sink.applyBatch(customers, [], [{ key, expected: v2, anyVersion: false }])).deletes).toEqual(['applied']);
    expect((await sink.applyBatch(customers, [], [{ key, expected: v2, anyVersion: false }])).deletes).toEqual(['already']);
    expect(await sink.read(customers, [key])).toEqual([null]);
  });

  it('refuses an insert over a document it did not expect, and deletes any version when told to', async () => {
    const id = freshKeyBase();
    await sink.applyBatch(customers, [up(row(id), v1, null, true)], []);
    expect((await sink.applyBatch(customers, [up(row(id), v3, null, true)], [])).upserts).toEqual(['cas-skipped']);
    expect((await sink.applyBatch(customers, [], [{ key: { id }, expected: null, anyVersion: true }])).deletes).toEqual(['applied']);
  });

  it('applies a batch of 500 in one call and reports each row', async () => {
    const base = freshKeyBase();
    const first = Array.from({ length: 500 }, (_, i) => up(row(base + i, { balance: `${i}.50` }), v1, null, true));
    expect((await sink.applyBatch(customers, first, [])).upserts.every((o) => o === 'applied')).toBe(true);
    const second = first.map((u, i) => up({ ...u.row, name: `v2 ${i}` }, v2, i % 2 === 0 ? v1 : v3));
    const res = await sink.applyBatch(customers, second.slice(0, 499), [{ key: { id: base + 499 }, expected: v1, anyVersion: false }]);
    expect(res.upserts.filter((o) => o === 'applied')).toHaveLength(250);
    expect(res.upserts.filter((o) => o === 'cas-skipped')).toHaveLength(249);
    expect(res.deletes).toEqual(['applied']);
  });

  it('reports a document refused on a secondary unique index as rejected, and writes the others', async () => {
    const id = freshKeyBase();
    await sink.applyBatch(customers, [up(row(id, { email: `taken-${id}` }), v1, null, true)], []);
    const res = await sink.applyBatch(customers, [up(row(id + 1, { email: `taken-${id}` }), v1, null, true), up(row(id + 2), v1, null, true)], []);
    expect(res.upserts[0]).toEqual({ rejected: expect.stringMatching(/duplicate key/) as string });
    expect(res.upserts[1]).toBe('applied');
    expect((await sink.read(customers, [{ id }]))[0]?.row.email).toBe(`taken-${id}`);
  });
});
