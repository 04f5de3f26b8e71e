import { describe, expect, it } from 'vitest';
import { decimalFromText, formatDecimal, microsToTimestamp, toCanonical, unscaledFromBytes, zonedToUtc, daysToDate, ValueError } from '../../src/events/values.ts';
import { parseColumnType } from '../../src/events/column-types.ts';
import { copyField, copyLine } from '../../src/sinks/copy-text.ts';

const t = (s: string) => parseColumnType(s, 'test');

describe('decimal', () => {
  it('reads Connect Decimal bytes (two\'s complement, big-endian)', () => {
    expect(unscaledFromBytes(Buffer.from('AeJA', 'base64'))).toBe(123456n);
    expect(unscaledFromBytes(Buffer.from([0xff]))).toBe(-1n);
    expect(unscaledFromBytes(Buffer.from([0x80, 0x00]))).toBe(-32768n);
    expect(unscaledFromBytes(Buffer.alloc(0))).toBe(0n);
  });

  it('formats at the column scale, exactly', () => {
    expect(formatDecimal(123456n, 2, 2)).toBe('1234.56');
    expect(formatDecimal(-5n, 1, 2)).toBe('-0.50');
    expect(formatDecimal(999999999999n, 2, 2)).toBe('9999999999.99');
    expect(formatDecimal(12345n, 3, 2)).toBe('12.35');
    expect(decimalFromText('1e2', 2)).toBe('100.00');
    expect(decimalFromText('-0.001', 2)).toBe('0.00');
  });

  it('reads schemas-on, schemas-off and string-mode decimals alike', () => {
    const type = t('decimal(12,2)');
    const viaSchema = toCanonical('AeJA', type, { type: 'bytes', name: 'org.apache.kafka.connect.data.Decimal', parameters: { scale: '2' } }, 'x');
    expect(viaSchema).toBe('1234.56');
    expect(toCanonical('AeJA', type, undefined, 'x')).toBe('1234.56');
    expect(toCanonical('1234.56', type, undefined, 'x')).toBe('1234.56');
    expect(toCanonical({ scale: 3, value: 'AeJA' }, type, { type: 'struct', name: 'io.debezium.data.VariableScaleDecimal' }, 'x')).toBe('123.46');
  });
});

describe('time', () => {
  it('renders microsecond timestamps exactly, before and after the epoch', () => {
    expect(microsToTimestamp(0)).toBe('1970-01-01T00:00:00.000000');
    expect(microsToTimestamp(-1)).toBe('1969-12-31T23:59:59.999999');
    expect(microsToTimestamp(1764506096123456n)).toBe('2025-11-30T12:34:56.123456');
  });

  it('normalises zoned timestamps to UTC', () => {
    expect(zonedToUtc('2026-11-30T12:34:56.5+02:00')).toBe('2026-11-30T10:34:56.500000Z');
    expect(zonedToUtc('2026-11-30T00:00:00Z')).toBe('2026-11-30T00:00:00.000000Z');
    expect(() => zonedToUtc('yesterday')).toThrow(ValueError);
  });

  it('reads the io.debezium.time types', () => {
    expect(daysToDate(0)).toBe('1970-01-01');
    expect(toCanonical(20422, t('date'), { type: 'int32', name: 'io.debezium.time.Date' }, 'x')).toBe('2025-11-30');
    expect(toCanonical(1000, t('timestamp(3)'), { type: 'int64', name: 'io.debezium.time.Timestamp' }, 'x')).toBe('1970-01-01T00:00:01.000000');
    expect(toCanonical(1000, t('timestamp(3)'), undefined, 'x')).toBe('1970-01-01T00:00:01.000000');
    expect(toCanonical(1000, t('timestamp(6)'), undefined, 'x')).toBe('1970-01-01T00:00:00.001000');
    expect(toCanonical(3_600_000_001, t('time'), { type: 'int64', name: 'io.debezium.time.MicroTime' }, 'x')).toBe('01:00:00.000001');
  });
});

describe('other types', () => {
  it('reads booleans, uuids and JSON text', () => {
    expect(toCanonical(1, t('boolean'), undefined, 'x')).toBe(true);
    expect(toCanonical('A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11', t('uuid'), undefined, 'x')).toBe('a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11');
    expect(toCanonical('{}', t('json'), undefined, 'x')).toEqual({});
    expect(() => toCanonical('maybe', t('boolean'), undefined, 'x')).toThrow(ValueError);
  });
});

describe('COPY text encoding', () => {
  it('escapes what COPY treats specially and writes NULL as \\N', () => {
    expect(copyField('a\tb\nc\\d\re')).toBe('a\\tb\\nc\\\\d\\re');
    expect(copyField(null)).toBe('\\N');
    expect(copyField(Buffer.from([1, 255]))).toBe('\\\\x01ff');
    expect(copyField(['a', 'b"c'])).toBe('{"a","b\\\\"c"}');
    expect(copyLine(['x', 1, null])).toBe('x\t1\t\\N\n');
  });
});
