import { describe, expect, it } from 'vitest';
import { parseJsonLossless } from '../../src/events/lossless-json.ts';
import { integerFrom, toCanonical } from '../../src/events/values.ts';
import { parseColumnType } from '../../src/config/column-types.ts';

describe('lossless JSON for int64', () => {
  it('keeps integers beyond 2^53 exact, outside strings only', () => {
    const doc = parseJsonLossless('{"a": 9223372036854775807, "b": -9223372036854775808, "c": 12, "d": "x 12345678901234567 y", "e": 1.2345678901234567e20, "f": [253402300799999999]}');
    expect(doc).toEqual({ a: '9223372036854775807', b: '-9223372036854775808', c: 12, d: 'x 12345678901234567 y', e: 1.2345678901234567e20, f: ['253402300799999999'] });
    expect(parseJsonLossless('{"s": "a\\"b 1234567890123456789", "n": 1}')).toEqual({ s: 'a"b 1234567890123456789', n: 1 });
  });

  it('gives integer columns a number while exact, else their digits', () => {
    expect(integerFrom(42, 'x')).toBe(42);
    expect(integerFrom('9007199254740991', 'x')).toBe(9007199254740991);
    expect(integerFrom('9223372036854775807', 'x')).toBe('9223372036854775807');
    expect(() => integerFrom(1.5, 'x')).toThrow(/integer/);
  });

  it('reads a far-future microsecond timestamp exactly', () => {
    const t = parseColumnType('timestamp(6)', 'x');
    expect(toCanonical('253402300799999999', t, { type: 'int64', name: 'io.debezium.time.MicroTimestamp' }, 'x')).toBe('9999-12-31T23:59:59.999999');
  });
});

describe('the decoder and int64', () => {
  it('re-reads a message whose integers JSON.parse would round, and only then', async () => {
    const { parseTopology } = await import('../../src/config/topology.ts');
    const { DebeziumDecoder } = await import('../../src/events/debezium.ts');
    const t = parseTopology({
      nodes: { maria: { kind: 'mariadb', url: 'x', topicPrefix: 'maria' } },
      entities: { big: { key: ['id'], versionColumn: null, columns: { id: 'bigint', n: 'bigint' }, nodes: { maria: 'app.big' } } },
    }, 't');
    const d = new DebeziumDecoder(t);
    const value = '{"before":null,"after":{"id":9223372036854775807,"n":42},"source":{"ts_ms":1,"file":"f","pos":4,"row":0},"op":"c","ts_ms":2,"ts_us":2000,"ts_ns":2000000000000000000}';
    const ev = d.decode({ topic: 'maria.app.big', partition: 0, offset: 0, value: Buffer.from(value) });
    expect(ev).toMatchObject({ key: { id: '9223372036854775807' }, keyText: '["9223372036854775807"]', after: { id: '9223372036854775807', n: 42 } });
    expect(d.decodeKey('maria.app.big', Buffer.from('{"id":-9223372036854775808}'))).toEqual({ entity: 'big', keyText: '["-9223372036854775808"]' });
  });
});
