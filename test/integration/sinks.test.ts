import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseTopology, type EntityConfig, type Topology } from '../../src/config/topology.ts';
import { loadTopology } from '../../src/config/topology.ts';
import { PostgresSink } from '../../src/sinks/postgres-sink.ts';
import { MySqlSink } from '../../src/sinks/mysql-sink.ts';
import type { Sink, UpsertRow } from '../../src/sinks/sink.ts';
import { failureKind, TargetError } from '../../src/errors.ts';
import { encode } from '../../src/clock/codec.ts';
import { fromObject } from '../../src/clock/version-vector.ts';
import type { Row } from '../../src/events/change-event.ts';
import { createHandlesTables, freshKeyBase, stack } from '../support/stack.ts';

/** Compare-and-set writes against the stack's real PostgreSQL and MariaDB (DESIGN §6). */
let topology: Topology;
let customers: EntityConfig;
let handles: EntityConfig;
const sinks = new Map<string, Sink>();

beforeAll(async () => {
  const s = stack();
  const local = loadTopology(path.resolve('deploy/local/worker-sync.yaml'));
  // Same entities as the demo, with the URLs the running stack reports.
  topology = parseTopology({
    nodes: { pg: { kind: 'postgres', url: s.postgres.url }, maria: { kind: 'mariadb', url: s.mariadb.url } },
    entities: {
      handles: { key: ['id'], columns: { id: 'bigint', handle: 'text', qty: 'integer' }, nodes: { pg: 'public.ws_handles', maria: 'app.ws_handles' } },
      customers: {
        key: ['id'], versionColumn: '_sync_version',
        columns: Object.fromEntries([...local.entities.get('customers')!.columns.keys()].map((c) => [c, c === 'balance' ? 'decimal(12,2)' : c === 'updated_at' ? 'timestamp(6)' : c === 'tags' ? 'json' : c === 'id' ? 'bigint' : 'text'])),
        nodes: { pg: 'public.customers', maria: 'app.customers' },
      },
    },
  }, 'test');
  customers = topology.entities.get('customers')!;
  handles = topology.entities.get('handles')!;
  await createHandlesTables();
  sinks.set('PostgresSink (unnest)', new PostgresSink('pg', s.postgres.url));
  sinks.set('PostgresSink (COPY staging)', new PostgresSink('pg', s.postgres.url, 2, 'copy'));
  sinks.set('MySqlSink', new MySqlSink('maria', s.mariadb.url));
});

afterAll(async () => {
  for (const s of sinks.values()) await s.close();
});

const v1 = encode(fromObject({ 1: 1 }));
const v2 = encode(fromObject({ 1: 2 }));
const v3 = encode(fromObject({ 1: 2, 2: 1 }));

const row = (id: number, extra: Partial<Row> = {}): Row => ({
  id, name: 'Zoë Ñandú 🚀', email: `${id}@example.com`, balance: '-1234.56', tags: { vip: true, n: [1, 2], s: 'é' }, updated_at: '2026-11-30T12:34:56.123456', ...extra,
});

const up = (r: Row, version: Buffer, expected: Buffer | null, expectAbsent = false): UpsertRow => ({ key: { id: r.id! }, row: r, version, expected, expectAbsent });

for (const name of ['PostgresSink (unnest)', 'PostgresSink (COPY staging)', 'MySqlSink']) {
  describe(`${name} on the real stack`, () => {
    const sink = () => sinks.get(name)!;

    it('inserts, replays, updates and deletes with compare-and-set on the version', async () => {
      const id = freshKeyBase();
      const key = { id };
      expect(await sink().applyBatch(customers, [up(row(id), v1, null, true)], [])).toEqual({ upserts: ['applied'], deletes: [] });
      // a replay after a crash finds the row already at the new version
      expect((await sink().applyBatch(customers, [up(row(id), v1, null, true)], [])).upserts).toEqual(['already']);
      // the wrong expected version writes nothing
      expect((await sink().applyBatch(customers, [up(row(id, { name: 'lost' }), v3, v2)], [])).upserts).toEqual(['cas-skipped']);
      expect((await sink().applyBatch(customers, [up(row(id, { balance: '0.01' }), v2, v1)], [])).upserts).toEqual(['applied']);
      const [read] = await sink().read(customers, [key]);
      expect(read?.row).toEqual(row(id, { balance: '0.01' }));
      expect(read?.version?.equals(v2)).toBe(true);
      expect((await sink().applyBatch(customers, [], [{ key, expected: v1, anyVersion: false }])).deletes).toEqual(['cas-skipped']);
      expect((await sink().applyBatch(customers, [], [{ key, expected: v2, anyVersion: false }])).deletes).toEqual(['applied']);
      expect((await sink().applyBatch(customers, [], [{ key, expected: v2, anyVersion: false }])).deletes).toEqual(['already']);
      expect(await sink().read(customers, [key])).toEqual([null]);
    });

    it('refuses an insert over a row it did not expect, and deletes any version when told to', async () => {
      const id = freshKeyBase();
      await sink().applyBatch(customers, [up(row(id), v1, null, true)], []);
      expect((await sink().applyBatch(customers, [up(row(id), v3, null, true)], [])).upserts).toEqual(['cas-skipped']);
      expect((await sink().applyBatch(customers, [], [{ key: { id }, expected: null, anyVersion: true }])).deletes).toEqual(['applied']);
    });

    it('applies a batch of 500 in one call and reports each row', async () => {
      const base = freshKeyBase();
      const first = Array.from({ length: 500 }, (_, i) => up(row(base + i, { balance: `${i}.50`, updated_at: `2026-01-01T00:00:00.${String(i).padStart(6, '0')}` }), v1, null, true));
      expect((await sink().applyBatch(customers, first, [])).upserts.every((o) => o === 'applied')).toBe(true);
      // even keys move on, odd ones are expected at a version they do not hold
      const second = first.map((u, i) => up({ ...u.row, name: `v2 ${i}` }, v2, i % 2 === 0 ? v1 : v3));
      const deletes = [{ key: { id: base + 499 }, expected: v1, anyVersion: false }];
      const res = await sink().applyBatch(customers, second.slice(0, 499), deletes);
      expect(res.upserts.filter((o) => o === 'applied')).toHaveLength(250);
      expect(res.upserts.filter((o) => o === 'cas-skipped')).toHaveLength(249);
      expect(res.upserts[0]).toBe('applied');
      expect(res.upserts[1]).toBe('cas-skipped');
      expect(res.deletes).toEqual(['applied']);
      const back = await sink().read(customers, [{ id: base }, { id: base + 1 }, { id: base + 7 }, { id: base + 499 }]);
      expect(back[0]?.row).toMatchObject({ name: 'v2 0', balance: '0.50', updated_at: '2026-01-01T00:00:00.000000' });
      expect(back[1]?.row).toMatchObject({ name: 'Zoë Ñandú 🚀', balance: '1.50' });
      expect(back[2]?.row.updated_at).toBe('2026-01-01T00:00:00.000007');
      expect(back[3]).toBeNull();
    });

    it('refuses, as a row error, an insert colliding on a secondary unique key, leaving the other row alone', async () => {
      const id = freshKeyBase();
      const handle = `h-${id}`;
      await sink().applyBatch(handles, [{ key: { id }, row: { id, handle, qty: 1 }, version: v1, expected: null, expectAbsent: true }], []);
      // MariaDB's ON DUPLICATE KEY UPDATE would have updated row `id` in place of inserting `id + 1`
      const err = await sink().applyBatch(handles, [{ key: { id: id + 1 }, row: { id: id + 1, handle, qty: 2 }, version: v1, expected: null, expectAbsent: true }], []).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(TargetError);
      expect((err as TargetError).kind).toBe('rows');
      expect((err as TargetError).code).toBe('WS_TARGET_REJECTED');
      expect(await sink().read(handles, [{ id }, { id: id + 1 }])).toEqual([{ row: { id, handle, qty: 1 }, version: v1 }, null]);
      // a check constraint is a row error too; a lost connection would not be
      const check = await sink().applyBatch(handles, [{ key: { id }, row: { id, handle, qty: -1 }, version: v2, expected: v1, expectAbsent: false }], []).catch((e: unknown) => e);
      expect(failureKind(check)).toBe('rows');
      expect(failureKind(Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }))).toBe('unavailable');
    });

    it('writes a batch whole or not at all: a refused insert undoes the update sent with it', async () => {
      const id = freshKeyBase();
      await sink().applyBatch(handles, [
        { key: { id }, row: { id, handle: `a-${id}`, qty: 1 }, version: v1, expected: null, expectAbsent: true },
        { key: { id: id + 1 }, row: { id: id + 1, handle: `b-${id}`, qty: 1 }, version: v1, expected: null, expectAbsent: true },
      ], []);
      // an update of `id`, and an insert of `id + 2` colliding with `id + 1` on the unique handle
      const err = await sink().applyBatch(handles, [
        { key: { id }, row: { id, handle: `a-${id}`, qty: 2 }, version: v2, expected: v1, expectAbsent: false },
        { key: { id: id + 2 }, row: { id: id + 2, handle: `b-${id}`, qty: 1 }, version: v1, expected: null, expectAbsent: true },
      ], [{ key: { id: id + 1 }, expected: v1, anyVersion: false }]).catch((e: unknown) => e);
      expect(failureKind(err)).toBe('rows');
      expect(await sink().read(handles, [{ id }, { id: id + 1 }, { id: id + 2 }])).toEqual([
        { row: { id, handle: `a-${id}`, qty: 1 }, version: v1 },
        { row: { id: id + 1, handle: `b-${id}`, qty: 1 }, version: v1 },
        null,
      ]);
    });

    it('round-trips edge values unchanged', async () => {
      const id = freshKeyBase();
      const edge = row(id, { name: '', email: null, balance: '9999999999.99', tags: {}, updated_at: '1970-01-01T00:00:00.000001' });
      await sink().applyBatch(customers, [up(edge, v1, null, true)], []);
      expect((await sink().read(customers, [{ id }]))[0]?.row).toEqual(edge);
    });
  });
}
