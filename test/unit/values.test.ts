import { describe, expect, it } from 'vitest';
import { decimalFromText, deeperThan, formatDecimal, MAX_JSON_DEPTH, microsToTimestamp, toCanonical, unscaledFromBytes, zonedToUtc, daysToDate, ValueError } from '../../src/events/values.ts';
import { parseColumnType } from '../../src/config/column-types.ts';
import { copyField, copyLine } from '../../src/sinks/copy-text.ts';

const t = (s: string) => parseColumnType(s, 'test');

describe('decimal', () => {
  it('reads Connect Decimal bytes (two\'s complement, big-endian)', () => {
    expect(unscaledFromBytes(Buffer.from('AeJA', 'base64'))).toBe(123456n);
    expect(unscaledFromBytes(Buffer.from([0xff]))).toBe(-1n);
    expect(unscaledFromBytes(Buffer.from([0x80, 0x00]))).toBe(-32768n);
    expect(unscaledFromBytes(Buffer.alloc(0))).toBe(0n);
  });

  const d12 = { precision: 12, scale: 2 };

  it('formats at the column scale, exactly, and refuses what would need rounding', () => {
    expect(formatDecimal(123456n, 2, d12)).toBe('1234.56');
    expect(formatDecimal(-5n, 1, d12)).toBe('-0.50');
    expect(formatDecimal(999999999999n, 2, d12)).toBe('9999999999.99');
    expect(formatDecimal(12340n, 3, d12)).toBe('12.34'); // a trailing zero is not a digit lost
    expect(formatDecimal(0n, 9, d12)).toBe('0.00');
    expect(() => formatDecimal(12345n, 3, d12)).toThrow(/more than 2 fraction digits.*not rounded/);
    expect(decimalFromText('1e2', d12)).toBe('100.00');
    expect(decimalFromText('-0.00', d12)).toBe('0.00'); // one canonical zero
    expect(decimalFromText('+7', { precision: 3, scale: 0 })).toBe('7');
    expect(() => decimalFromText('-0.001', d12)).toThrow(ValueError);
    expect(() => decimalFromText('10000000000.00', d12)).toThrow(/does not fit decimal\(12,2\)/);
  });

  it('refuses decimal bombs at once: exponents and scales far beyond the declared precision (issue 12, defect 4)', () => {
    const type = t('decimal(12,2)');
    const vsd = { type: 'struct', name: 'io.debezium.data.VariableScaleDecimal' };
    // each of these took seconds to minutes in 10n ** exponent before
    expect(() => toCanonical('1.e10000000', type, undefined, 'balance')).toThrow(/does not fit/);
    expect(() => toCanonical('1e-100000000', type, undefined, 'balance')).toThrow(/fraction digits/);
    expect(toCanonical('0e-100000000', type, undefined, 'balance')).toBe('0.00');
    expect(() => toCanonical({ scale: 100_000_000, value: 'AQ==' }, type, vsd, 'balance')).toThrow(/fraction digits/);
    expect(() => toCanonical({ scale: -100_000_000, value: 'AQ==' }, type, vsd, 'balance')).toThrow(/does not fit/);
    expect(() => toCanonical('AQ==', type, { type: 'bytes', name: 'org.apache.kafka.connect.data.Decimal', parameters: { scale: '100000000' } }, 'balance')).toThrow(ValueError);
    expect(() => toCanonical('AQ==', type, { type: 'bytes', name: 'org.apache.kafka.connect.data.Decimal', parameters: { scale: 'lots' } }, 'balance')).toThrow(ValueError);
    // 900 KB of digits, and 600 KB of Connect Decimal bytes: refused by length, not converted
    expect(() => toCanonical(`1${'0'.repeat(900_000)}`, type, { type: 'string' }, 'balance')).toThrow(/does not fit/);
    expect(() => toCanonical(Buffer.alloc(600_000, 0x11).toString('base64'), type, undefined, 'balance')).toThrow(/bytes/);
  });

  it('reads schemas-on, schemas-off and string-mode decimals alike', () => {
    const type = t('decimal(12,2)');
    const viaSchema = toCanonical('AeJA', type, { type: 'bytes', name: 'org.apache.kafka.connect.data.Decimal', parameters: { scale: '2' } }, 'x');
    expect(viaSchema).toBe('1234.56');
    expect(toCanonical('AeJA', type, undefined, 'x')).toBe('1234.56');
    expect(toCanonical('1234.56', type, undefined, 'x')).toBe('1234.56');
    expect(toCanonical({ scale: 3, value: 'AeJE' }, type, { type: 'struct', name: 'io.debezium.data.VariableScaleDecimal' }, 'x')).toBe('123.46');
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

describe('values that do not fit their column (issue 12, defects 4 and 5)', () => {
  it('refuses integers outside the declared type instead of wrapping them', () => {
    expect(toCanonical('9223372036854775807', t('bigint'), undefined, 'x')).toBe('9223372036854775807');
    expect(() => toCanonical('9223372036854775808', t('bigint'), undefined, 'x')).toThrow(/outside bigint/);
    expect(() => toCanonical(`9${'9'.repeat(800_000)}`, t('bigint'), undefined, 'x')).toThrow(/outside bigint/);
    expect(() => toCanonical(2147483648, t('integer'), undefined, 'x')).toThrow(/outside integer/);
    expect(() => toCanonical(-32769, t('smallint'), undefined, 'x')).toThrow(/outside smallint/);
    expect(toCanonical(-32768, t('smallint'), undefined, 'x')).toBe(-32768);
  });

  it('refuses JSON nested deeper than MAX_JSON_DEPTH, as text or as an object', () => {
    const deep = (n: number) => `${'['.repeat(n)}${']'.repeat(n)}`;
    expect(toCanonical(deep(MAX_JSON_DEPTH), t('json'), undefined, 'x')).toEqual(JSON.parse(deep(MAX_JSON_DEPTH)));
    expect(() => toCanonical(deep(MAX_JSON_DEPTH + 1), t('json'), undefined, 'x')).toThrow(/deeper than 100/);
    expect(() => toCanonical(JSON.parse(deep(5000)), t('json'), undefined, 'x')).toThrow(/deeper than 100/);
    expect(() => toCanonical(JSON.parse(deep(5000)), t('text'), undefined, 'x')).toThrow(/deeper than 100/);
    expect(() => toCanonical('{"s": "nul\\u0000"}', t('json'), undefined, 'x')).toThrow(/NUL/);
    expect(() => toCanonical({ 'k\u0000': 1 }, t('json'), undefined, 'x')).toThrow(/NUL/);
    expect(toCanonical('{"$where": 1, "a.b": {"$gt": 2}}', t('json'), undefined, 'x')).toEqual({ $where: 1, 'a.b': { $gt: 2 } });
    expect(deeperThan({ a: [{ b: 1 }] }, 3)).toBe(false);
    expect(deeperThan({ a: [{ b: {} }] }, 3)).toBe(true);
  });

  it('refuses dates and times of day out of range', () => {
    expect(() => toCanonical(1e300, t('date'), undefined, 'x')).toThrow(ValueError);
    expect(() => toCanonical(1.5, t('date'), undefined, 'x')).toThrow(ValueError);
    expect(() => toCanonical(86_400_000_001, t('time'), { type: 'int64', name: 'io.debezium.time.MicroTime' }, 'x')).toThrow(/time of day/);
    expect(() => toCanonical(-1, t('time'), { type: 'int64', name: 'io.debezium.time.MicroTime' }, 'x')).toThrow(/time of day/);
    expect(toCanonical(86_400_000_000, t('time'), { type: 'int64', name: 'io.debezium.time.MicroTime' }, 'x')).toBe('24:00:00.000000');
    expect(() => toCanonical('2026-13-45T99:99:99', t('timestamp(6)'), undefined, 'x')).toThrow(/not a timestamp/);
    expect(() => toCanonical('2026-02-29 00:00:00', t('timestamp(6)'), undefined, 'x')).toThrow(/not a timestamp/);
    expect(toCanonical('2028-02-29 23:59:59.5', t('timestamp(6)'), undefined, 'x')).toBe('2028-02-29T23:59:59.500000');
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
