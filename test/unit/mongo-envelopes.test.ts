import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { BSON } from 'mongodb';
import { loadTopology, parseTopology, type Topology } from '../../src/config/topology.ts';
import { DebeziumDecoder } from '../../src/events/debezium.ts';
import type { ChangeEvent, Row } from '../../src/events/change-event.ts';
import { fromDriver, fromExtendedJson, mongoForm, toBson } from '../../src/events/mongo-values.ts';
import { positionKey } from '../../src/events/source-position.ts';
import { DecodeError } from '../../src/errors.ts';
import { parseJsonLossless } from '../../src/events/lossless-json.ts';

/**
 * MongoDB envelopes (test/fixtures/debezium/README.md): the same changes in the three
 * Extended JSON forms the connector can write, decoded against a topology with a MongoDB
 * node. No MongoDB server is needed; the sink and source tests that need one run when
 * MONGO_URL is set (test/integration/mongo-sink.test.ts, test/e2e/mongo.test.ts).
 */
const dir = path.resolve('test/fixtures/debezium');
const demo = loadTopology(path.resolve('deploy/local/worker-sync.yaml'));
const topology: Topology = parseTopology({
  nodes: { pg: { kind: 'postgres', url: 'postgres://x/app' }, mongo: { kind: 'mongodb', url: 'mongodb://x/app', topicPrefix: 'mongo' } },
  entities: {
    customers: {
      key: ['id'], columns: Object.fromEntries([...demo.entities.get('customers')!.columns].map(([c, t]) => [c, t.kind === 'decimal' ? 'decimal(12,2)' : t.kind === 'timestamp' ? 'timestamp(6)' : t.kind])),
      nodes: { pg: 'public.customers', mongo: 'app.customers' },
    },
  },
}, 'test');
const decoder = new DebeziumDecoder(topology);
const customers = topology.entities.get('customers')!;
const FORMS = ['mongo', 'mongo-relaxed', 'mongo-strict'] as const;

function load(form: (typeof FORMS)[number], name: string): ChangeEvent {
  const ev = decoder.decode({ topic: 'mongo.app.customers', partition: 0, offset: 1, value: readFileSync(path.join(dir, `${form}.customers.${name}.json`)) });
  if ('tombstone' in ev) throw new Error(`${form} ${name}: unexpected tombstone`);
  return ev;
}

describe('MongoDB envelopes', () => {
  it('maps the key column to _id', () => {
    expect(customers.nodes.get('mongo')!.columns.get('id')).toBe('_id');
    expect(() => parseTopology({
      nodes: { m: { kind: 'mongodb', url: 'mongodb://x' } },
      entities: { t: { key: ['a', 'b'], columns: { a: 'integer', b: 'integer' }, nodes: { m: 'db.t' } } },
    }, 'test')).toThrow(/the key must be one column, stored as _id/);
  });

  for (const form of FORMS) {
    it(`${form}: insert, update with pre- and post-image, delete with pre-image and snapshot read`, () => {
      const c = load(form, 'c');
      expect(c).toMatchObject({ op: 'c', node: 'mongo', entity: 'customers', key: { id: 1 }, keyText: '[1]', before: null });
      expect(c.after).toEqual({ id: 1, name: 'Zoë Ñandú', email: 'zoe@example.com', balance: '1234.56', tags: { vip: true, n: [1, 2] }, updated_at: '2026-11-30T12:34:56.123000' });
      expect(c.baseVersion?.toString('hex')).toBe('000000000000000001');

      const u = load(form, 'u');
      expect(u.changed).toEqual(['email', 'balance', 'tags', 'updated_at']);
      expect(u.after).toMatchObject({ email: 'zoe.nandu@example.com', balance: '2345.67', updated_at: '2026-11-30T12:35:01.654000', tags: { vip: true, n: [1, 2, 3] } });
      expect(u.baseVersion?.toString('hex')).toBe('000000000000000002');

      const d = load(form, 'd');
      expect(d).toMatchObject({ op: 'd', key: { id: 2 }, after: null });
      expect(d.before).toMatchObject({ name: 'Łukasz Ødegård 🚀', balance: '-0.05', updated_at: '2026-11-30T23:59:59.999000', tags: { vip: false, n: [] } });
      expect(d.baseVersion?.toString('hex')).toBe('deadbeef');

      expect(load(form, 'r')).toMatchObject({ op: 'r', key: { id: 1 } });
      const tomb = decoder.decode({ topic: 'mongo.app.customers', partition: 0, offset: 9, value: readFileSync(path.join(dir, `${form}.customers.tombstone.json`)) });
      expect(tomb).toMatchObject({ tombstone: true });
      expect(decoder.decodeKey('mongo.app.customers', readFileSync(path.join(dir, `${form}.customers.u.key.json`)))).toEqual({ entity: 'customers', keyText: '[1]' });
    });
  }

  it('the three forms decode to the same events, in the order of ts and ord', () => {
    for (const name of ['c', 'u', 'd', 'r']) {
      const [a, b, c] = FORMS.map((f) => load(f, name));
      expect(b).toEqual(a);
      expect(c).toEqual(a);
    }
    const keys = ['c', 'u', 'd'].map((n) => positionKey('mongodb', load('mongo', n).position.source));
    expect(load('mongo', 'u').position.source).toEqual({ ts: 1796013366000, ord: 1 });
    expect([...keys].sort()).toEqual(keys);
  });

  it('the same change from PostgreSQL, as MongoDB stores it, digests the same', () => {
    const pg = new DebeziumDecoder(demo).decode({ topic: 'pg.public.customers', partition: 0, offset: 1, value: readFileSync(path.join(dir, 'pg.customers.c.json')) }) as ChangeEvent;
    expect(mongoForm(pg.after!, customers)).toEqual(load('mongo', 'c').after);
  });

  it('dead-letters what it cannot use, with the setting to fix', () => {
    const value = (payload: object) => Buffer.from(JSON.stringify({ source: { connector: 'mongodb', ts_ms: 1, ord: 1 }, ts_ms: 1, ...payload }));
    const decode = (payload: object) => () => decoder.decode({ topic: 'mongo.app.customers', partition: 0, offset: 1, value: value(payload) });
    expect(decode({ op: 'u', before: null, after: null, updateDescription: { updatedFields: '{"email":"x"}' } })).toThrow(/capture.mode=change_streams_update_full_with_pre_image/);
    expect(decode({ op: 'd', before: null, after: null })).toThrow(/changeStreamPreAndPostImages/);
    expect(decode({ op: 'c', after: '{"_id": 5, "nickname": "x"}' })).toThrow(new DecodeError('WS_DECODE_UNKNOWN_COLUMN', 'field "nickname" of app.customers is not mapped in entity customers'));
    expect(decode({ op: 'c', after: '{"_id": 5, "balance": {"$numberDecimal": "abc"}}' })).toThrow(/not a decimal/);
    expect(decode({ op: 'c', after: '{"_id": 5, "name": {"$regularExpression": {"pattern": "x", "options": ""}}}' })).toThrow(/unsupported Extended JSON/);
    expect(decode({ op: 'c', after: '{"_id": 5' })).toThrow(/not Extended JSON/);
  });
});

describe('MongoDB values', () => {
  const types = parseTopology({
    nodes: { m: { kind: 'mongodb', url: 'mongodb://x' } },
    entities: {
      t: {
        key: ['id'],
        columns: {
          id: 'bigint', c_smallint: 'smallint', c_integer: 'integer', c_bigint: 'bigint', c_double: 'double', c_decimal: 'decimal(20,6)', c_text: 'text',
          c_uuid: 'uuid', c_boolean: 'boolean', c_json: 'json', c_ts: 'timestamp(6)', c_tstz: 'timestamptz', c_date: 'date', c_time: 'time', c_bytes: 'bytes',
        },
        nodes: { m: 'db.t' },
      },
    },
  }, 'test').entities.get('t')!;
  const rows: Row[] = [
    Object.fromEntries([...types.columns.keys()].map((c) => [c, c === 'id' ? 1 : null])),
    {
      id: '9223372036854775807', c_smallint: -32768, c_integer: 2147483647, c_bigint: '-9223372036854775808', c_double: -1.5e300, c_decimal: '-99999999999999.999999',
      c_text: '', c_uuid: 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', c_boolean: false, c_json: {}, c_ts: '1000-01-01T00:00:00.000000',
      c_tstz: '2038-01-19T03:14:07.999999Z', c_date: '9999-12-31', c_time: '23:59:59.999999', c_bytes: '',
    },
    {
      id: 3, c_smallint: 0, c_integer: -1, c_bigint: 12345678901, c_double: 0.000001, c_decimal: '0.000001', c_text: 'Zoë 日本語 🚀 "q" \\ \n',
      c_uuid: '00000000-0000-0000-0000-000000000000', c_boolean: true, c_json: { b: [1, 'ü', null, true, { z: 1.5 }], a: { n: '🚀' } },
      c_ts: '2026-11-30T12:34:56.123456', c_tstz: '2026-11-30T07:04:56.654321Z', c_date: '2024-02-29', c_time: '12:00:00.000001', c_bytes: '3q2+7w==',
    },
  ];

  it('every column type survives BSON and both Extended JSON forms, as MongoDB keeps it (milliseconds)', () => {
    for (const row of rows) {
      const doc = Object.fromEntries([...types.columns].map(([c, t]) => [c, toBson(row[c], t)]));
      const back = BSON.deserialize(BSON.serialize(doc), { promoteLongs: false });
      const expected = mongoForm(row, types);
      expect(Object.fromEntries([...types.columns].map(([c, t]) => [c, fromDriver(back[c], t, c)]))).toEqual(expected);
      for (const relaxed of [false, true]) {
        // relaxed integers as plain digits, exact, as the Java driver writes them (js-bson's
        // relaxed mode would round an int64 beyond 2^53 itself)
        const canonical = BSON.EJSON.stringify(back, { relaxed: false });
        const text = relaxed ? canonical.replace(/\{"\$number(?:Long|Int)":"(-?\d+)"\}/g, '$1') : canonical;
        const parsed = parseJsonLossless(text) as Record<string, unknown>; // as the decoder reads it
        expect(Object.fromEntries([...types.columns].map(([c, t]) => [c, fromExtendedJson(parsed[c], t, c)]))).toEqual(expected);
      }
    }
  });
});
