import { describe, expect, it } from 'vitest';
import { parseTopology } from '../../src/config/topology.ts';
import { DebeziumDecoder } from '../../src/events/debezium.ts';
import type { ChangeEvent } from '../../src/events/change-event.ts';
import { DecodeError } from '../../src/errors.ts';

const topology = parseTopology({
  nodes: {
    pg: { kind: 'postgres', url: 'postgres://x@h/app', topicPrefix: 'pg' },
    maria: { kind: 'mariadb', url: 'mysql://x@h/app', topicPrefix: 'maria' },
  },
  entities: {
    customers: {
      key: ['id'],
      columns: { id: 'bigint', name: 'text', email: 'text', balance: 'decimal(12,2)', tags: 'json', updated_at: 'timestamp(6)' },
      nodes: { pg: 'public.customers', maria: 'app.customers' },
    },
  },
}, 'test');
const decoder = new DebeziumDecoder(topology);

const MICROS = BigInt(Date.UTC(2026, 10, 30, 12, 34, 56, 123)) * 1000n + 456n;
const row = (extra: Record<string, unknown> = {}) => ({
  id: 42, name: 'Zoë Ñandú', email: 'z@example.com', balance: 'AeJA', tags: '{"vip":true,"n":[1,2]}',
  updated_at: Number(MICROS), _sync_version: null, ...extra,
});

const rowSchema = (field: string) => ({
  type: 'struct', optional: true, field, name: 'pg.public.customers.Value',
  fields: [
    { type: 'int64', optional: false, field: 'id' },
    { type: 'string', optional: true, field: 'name' },
    { type: 'string', optional: true, field: 'email' },
    { type: 'bytes', optional: true, field: 'balance', name: 'org.apache.kafka.connect.data.Decimal', parameters: { scale: '2', 'connect.decimal.precision': '12' } },
    { type: 'string', optional: true, field: 'tags', name: 'io.debezium.data.Json' },
    { type: 'int64', optional: true, field: 'updated_at', name: 'io.debezium.time.MicroTimestamp' },
    { type: 'bytes', optional: true, field: '_sync_version' },
  ],
});

function envelope(op: string, before: unknown, after: unknown, source: Record<string, unknown> = {}) {
  return {
    before, after, op, ts_ms: 1764506096500, transaction: null,
    source: { version: '3.6.1.Final', connector: 'postgresql', name: 'pg', ts_ms: 1764506096123, db: 'app', schema: 'public', table: 'customers', lsn: 12345, sequence: '["100","12345"]', txId: 777, ...source },
  };
}

function withSchema(payload: unknown) {
  return { schema: { type: 'struct', name: 'pg.public.customers.Envelope', fields: [rowSchema('before'), rowSchema('after')] }, payload };
}

const msg = (topic: string, value: unknown, offset = 7) => ({
  topic, partition: 0, offset, value: value === null ? null : Buffer.from(JSON.stringify(value)),
});

function decodeEvent(topic: string, value: unknown): ChangeEvent {
  const ev = decoder.decode(msg(topic, value));
  if ('tombstone' in ev) throw new Error('unexpected tombstone');
  return ev;
}

describe('DebeziumDecoder, schemas on (PostgreSQL)', () => {
  it('decodes an insert with its logical types', () => {
    const ev = decodeEvent('pg.public.customers', withSchema(envelope('c', null, row())));
    expect(ev).toMatchObject({
      id: 'pg.public.customers/0/7', entity: 'customers', node: 'pg', op: 'c', key: { id: 42 }, keyText: '[42]', before: null,
      after: { id: 42, name: 'Zoë Ñandú', email: 'z@example.com', balance: '1234.56', tags: { vip: true, n: [1, 2] }, updated_at: '2026-11-30T12:34:56.123456' },
      sourceTsMs: 1764506096123, emittedTsMs: 1764506096500, baseVersion: null,
    });
    expect(ev.position).toEqual({ topic: 'pg.public.customers', partition: 0, offset: 7, source: { lsn: 12345, sequence: '["100","12345"]', txId: 777 } });
  });

  it('decodes an update, listing the changed columns', () => {
    const ev = decodeEvent('pg.public.customers', withSchema(envelope('u', row(), row({ email: 'new@example.com', balance: '/zg=' }))));
    expect(ev.op).toBe('u');
    expect(ev.after?.balance).toBe('-2.00');
    expect(ev.changed).toEqual(['email', 'balance']);
  });

  it('decodes a delete from its before image', () => {
    const ev = decodeEvent('pg.public.customers', withSchema(envelope('d', row({ _sync_version: 'AQIBAQIB' }), null)));
    expect(ev).toMatchObject({ op: 'd', key: { id: 42 }, after: null, before: { id: 42, balance: '1234.56' } });
    expect(ev.baseVersion?.toString('base64')).toBe('AQIBAQIB');
  });

  it('decodes a snapshot read', () => {
    expect(decodeEvent('pg.public.customers', withSchema(envelope('r', null, row()))).op).toBe('r');
  });

  it('decodes a truncate with no key', () => {
    const ev = decodeEvent('pg.public.customers', withSchema(envelope('t', null, null)));
    expect(ev).toMatchObject({ op: 't', key: null, keyText: '*' });
  });

  it('recognises tombstones as not data', () => {
    expect(decoder.decode(msg('pg.public.customers', null))).toEqual({ tombstone: true, topic: 'pg.public.customers', partition: 0, offset: 7 });
    expect(decoder.decode({ topic: 'pg.public.customers', partition: 0, offset: 8, value: Buffer.alloc(0) })).toMatchObject({ tombstone: true });
    expect(decoder.decode(msg('pg.public.customers', { schema: null, payload: null }))).toMatchObject({ tombstone: true });
  });
});

describe('DebeziumDecoder, schemas off (MariaDB)', () => {
  const mariaSource = { connector: 'mariadb', name: 'maria', ts_ms: 1764506096000, db: 'app', table: 'customers', file: 'mysql-bin.000003', pos: 1234, row: 0, gtid: '0-1-99' };

  it('decodes by the topology column types when the payload is bare', () => {
    const ev = decodeEvent('maria.app.customers', envelope('c', null, row(), mariaSource));
    expect(ev.after).toEqual({ id: 42, name: 'Zoë Ñandú', email: 'z@example.com', balance: '1234.56', tags: { vip: true, n: [1, 2] }, updated_at: '2026-11-30T12:34:56.123456' });
    expect(ev.position.source).toEqual({ file: 'mysql-bin.000003', pos: 1234, row: 0, gtid: '0-1-99' });
    expect(ev.node).toBe('maria');
  });

  it('gives the same event as the schemas-on form of the same change', () => {
    const on = decodeEvent('pg.public.customers', withSchema(envelope('u', row(), row({ name: 'Zoe' }))));
    const off = decodeEvent('pg.public.customers', envelope('u', row(), row({ name: 'Zoe' })));
    expect(off).toEqual(on);
  });

  it('reads string-mode decimals too', () => {
    const ev = decodeEvent('maria.app.customers', envelope('c', null, row({ balance: '-12.5' }), mariaSource));
    expect(ev.after?.balance).toBe('-12.50');
  });
});

describe('DebeziumDecoder, malformed input', () => {
  const cases: Array<[string, Buffer, string]> = [
    ['not JSON', Buffer.from('{"op": "c", '), 'WS_DECODE_MALFORMED'],
    ['a JSON array', Buffer.from('[1,2]'), 'WS_DECODE_MALFORMED'],
    ['no op', Buffer.from(JSON.stringify({ after: row(), source: {} })), 'WS_DECODE_MALFORMED'],
    ['an unknown op', Buffer.from(JSON.stringify(envelope('x', null, row()))), 'WS_DECODE_MALFORMED'],
    ['no source', Buffer.from(JSON.stringify({ op: 'c', after: row() })), 'WS_DECODE_MALFORMED'],
    ['an insert without after', Buffer.from(JSON.stringify(envelope('c', null, null))), 'WS_DECODE_MALFORMED'],
    ['a delete without before', Buffer.from(JSON.stringify(envelope('d', null, null))), 'WS_DECODE_MALFORMED'],
    ['an unknown column', Buffer.from(JSON.stringify(envelope('c', null, row({ ssn: '123' })))), 'WS_DECODE_UNKNOWN_COLUMN'],
    ['a bad decimal', Buffer.from(JSON.stringify(envelope('c', null, row({ balance: 12 as unknown as string, id: 'x' })))), 'WS_DECODE_BAD_VALUE'],
    ['invalid JSON column text', Buffer.from(JSON.stringify(envelope('c', null, row({ tags: '{nope' })))), 'WS_DECODE_BAD_VALUE'],
    ['a missing key', Buffer.from(JSON.stringify(envelope('c', null, row({ id: null })))), 'WS_DECODE_MALFORMED'],
    // issue 12, defects 4 and 5: values that used to cost unbounded work, or overflow the stack later on
    ['JSON text nested 3,000 deep', Buffer.from(JSON.stringify(envelope('c', null, row({ tags: `${'['.repeat(3000)}${']'.repeat(3000)}` })))), 'WS_DECODE_BAD_VALUE'],
    ['a decimal exponent bomb', Buffer.from(JSON.stringify(envelope('c', null, row({ balance: '1.e10000000' })))), 'WS_DECODE_BAD_VALUE'],
    ['a float where an exact integer belongs', Buffer.from(`{"op":"c","source":{},"after":{"id":1e300,"name":"n"}}`), 'WS_DECODE_BAD_VALUE'],
    ['a NUL inside a JSON column', Buffer.from(JSON.stringify(envelope('c', null, row({ tags: '{"s":"a\\u0000b"}' })))), 'WS_DECODE_BAD_VALUE'],
    ['an id beyond int64', Buffer.from(`{"op":"c","source":{},"after":{"id":99999999999999999999999,"name":"n"}}`), 'WS_DECODE_BAD_VALUE'],
  ];
  for (const [what, value, code] of cases) {
    it(`rejects ${what} with ${code}`, () => {
      let caught: unknown;
      try {
        decoder.decode({ topic: 'maria.app.customers', partition: 0, offset: 1, value });
      } catch (err) {
        caught = err;
      }
      expect(caught).toBeInstanceOf(DecodeError);
      expect((caught as DecodeError).code).toBe(code);
    });
  }

  it('rejects a scale bomb in the schema (schemas on) without doing the arithmetic', () => {
    const bomb = withSchema(envelope('c', null, row({ balance: 'AQ==' })));
    const fields = (bomb.schema.fields[1] as { fields: Array<{ field: string; parameters?: Record<string, string> }> }).fields;
    fields.find((f) => f.field === 'balance')!.parameters = { scale: '100000000' };
    const started = Date.now();
    let caught: unknown;
    try {
      decoder.decode(msg('pg.public.customers', bomb));
    } catch (err) {
      caught = err;
    }
    expect((caught as DecodeError).code).toBe('WS_DECODE_BAD_VALUE');
    expect(Date.now() - started).toBeLessThan(1000); // it spent over 8 minutes in BigInt exponentiation before
  });

  it('rejects a topic no entity maps', () => {
    expect(() => decoder.decode(msg('other.topic', envelope('c', null, row())))).toThrow(/not mapped/);
  });
});
