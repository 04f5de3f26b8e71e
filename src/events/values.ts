import type { ColumnType } from '../config/column-types.ts';

/**
 * Conversion of Debezium field values to the canonical forms of column-types.ts.
 *
 * With schemas on, the Connect schema of the field names the logical type
 * (`io.debezium.time.MicroTimestamp`, `org.apache.kafka.connect.data.Decimal`, ...).
 * With schemas off the value arrives bare, so the column type from the topology decides
 * how to read it. Both paths end in the same canonical value.
 */
export interface FieldSchema {
  type: string;
  name?: string;
  parameters?: Record<string, string>;
  optional?: boolean;
  field?: string;
  fields?: FieldSchema[];
}

export type Canonical = null | boolean | number | string | CanonicalJson;
export type CanonicalJson = { [k: string]: unknown } | unknown[];

/** Thrown for a value that cannot be read as its declared type; the caller dead-letters the event. */
export class ValueError extends Error {}

/**
 * Thrown for an integer that JSON.parse could not read exactly (beyond 2^53): the decoder
 * parses that message again with parseJsonLossless. Rare, so ordinary messages keep the
 * native parser.
 */
export class PrecisionLost extends Error {}

function checkExact(n: number, what: string): void {
  if (Number.isInteger(n) && !Number.isSafeInteger(n)) throw new PrecisionLost(`${what}: ${n} is not exact as a double`);
}

const pad = (n: number, w: number) => String(n).padStart(w, '0');

/** Days since 1970-01-01 to "YYYY-MM-DD" (proleptic Gregorian, UTC). */
export function daysToDate(days: number): string {
  const d = new Date(days * 86_400_000);
  if (!Number.isInteger(days) || Number.isNaN(d.getTime())) throw new ValueError(`date out of range: ${days} days`);
  return `${pad(d.getUTCFullYear(), 4)}-${pad(d.getUTCMonth() + 1, 2)}-${pad(d.getUTCDate(), 2)}`;
}

/** Microseconds since the epoch to "YYYY-MM-DDTHH:MM:SS.ffffff", exact for the full int64 range JSON can carry. */
export function microsToTimestamp(micros: number | bigint): string {
  const us = BigInt(micros);
  let ms = us / 1000n;
  let rem = us % 1000n;
  if (rem < 0n) { rem += 1000n; ms -= 1n; }
  const d = new Date(Number(ms));
  if (Number.isNaN(d.getTime())) throw new ValueError(`timestamp out of range: ${micros}`);
  const frac = pad(d.getUTCMilliseconds(), 3) + pad(Number(rem), 3);
  return `${pad(d.getUTCFullYear(), 4)}-${pad(d.getUTCMonth() + 1, 2)}-${pad(d.getUTCDate(), 2)}T${pad(d.getUTCHours(), 2)}:${pad(d.getUTCMinutes(), 2)}:${pad(d.getUTCSeconds(), 2)}.${frac}`;
}

function microsToTime(micros: number): string {
  if (!Number.isInteger(micros) || micros < 0 || micros > 86_400_000_000) throw new ValueError(`time of day out of range: ${micros} µs`);
  const totalSec = Math.floor(micros / 1_000_000);
  const frac = micros - totalSec * 1_000_000;
  return `${pad(Math.floor(totalSec / 3600), 2)}:${pad(Math.floor(totalSec / 60) % 60, 2)}:${pad(totalSec % 60, 2)}.${pad(frac, 6)}`;
}

/** An ISO-8601 string with zone (Debezium ZonedTimestamp) to UTC with 6 fraction digits. */
export function zonedToUtc(iso: string): string {
  const m = /^(\d{4,})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}(?::?\d{2})?)$/.exec(iso);
  if (!m) throw new ValueError(`not a zoned timestamp: "${iso}"`);
  const fracDigits = (m[7] ?? '').padEnd(6, '0').slice(0, 6);
  const zone = m[8] === 'Z' ? 'Z' : m[8]!.length === 3 ? `${m[8]}:00` : m[8]!.replace(/^([+-]\d{2})(\d{2})$/, '$1:$2');
  const ms = Date.parse(`${m[1]}-${m[2]}-${m[3]}T${m[4]}:${m[5]}:${m[6]}${zone}`);
  if (Number.isNaN(ms)) throw new ValueError(`not a zoned timestamp: "${iso}"`);
  return `${microsToTimestamp(BigInt(ms) * 1000n).slice(0, 20)}${fracDigits}Z`;
}

/** The declared shape of a decimal column: at most `precision` digits, `scale` of them after the point. */
export interface DecimalShape {
  precision: number;
  scale: number;
}

/**
 * The longest Connect Decimal the worker reads, in bytes: 1,233 digits, past the 1,000 a
 * decimal column may declare (column-types.ts), with room for trailing zeros. Longer byte
 * strings are refused before any arithmetic: converting them costs time quadratic in their
 * length.
 */
const MAX_DECIMAL_BYTES = 512;

/** Big-endian two's complement bytes (Kafka Connect Decimal) to a bigint. */
export function unscaledFromBytes(buf: Buffer): bigint {
  if (buf.length === 0) return 0n;
  if (buf.length > MAX_DECIMAL_BYTES) throw new ValueError(`decimal of ${buf.length} bytes: longer than any declared precision`);
  const v = BigInt(`0x${buf.toString('hex')}`);
  return buf[0]! & 0x80 ? v - (1n << BigInt(buf.length * 8)) : v;
}

/**
 * The canonical text of (-1)^negative × digits × 10^-scale in a decimal(p,s) column:
 * exactly s fraction digits. A value that does not fit is refused, never rounded: more
 * fraction digits than s (other than trailing zeros), or more than p - s integer digits.
 * `scale` may be negative (an exponent) and arbitrarily large: the work done is bounded
 * by the length of `digits` and by p, so an exponent of 10^9 costs nothing (DESIGN §3,
 * invariant 7: numbers from events must not make the worker do unbounded work).
 */
export function fitDecimal(negative: boolean, digits: string, scale: number, shape: DecimalShape, what = 'value'): string {
  if (!Number.isFinite(scale) || !Number.isInteger(scale)) throw new ValueError(`${what}: decimal scale ${scale} is not an integer`);
  let lead = 0;
  while (lead < digits.length && digits.charCodeAt(lead) === 0x30) lead++;
  let end = digits.length;
  while (end > lead && digits.charCodeAt(end - 1) === 0x30) end--;
  const s = shape.scale;
  if (end === lead) return s > 0 ? `0.${'0'.repeat(s)}` : '0';
  const significant = digits.slice(lead, end);
  const fraction = scale - (digits.length - end); // fraction digits once trailing zeros are dropped
  const intDigits = significant.length - fraction;
  const shown = `${negative ? '-' : ''}${significant.length > 40 ? `${significant.slice(0, 40)}…` : significant}e${-fraction}`;
  if (fraction > s) throw new ValueError(`${what}: ${shown} has more than ${s} fraction digits for decimal(${shape.precision},${s}); it is not rounded`);
  if (intDigits > shape.precision - s) throw new ValueError(`${what}: ${shown} does not fit decimal(${shape.precision},${s})`);
  const full = significant + '0'.repeat(s - fraction); // s - fraction <= precision - 1
  const int = full.length > s ? full.slice(0, full.length - s) : '0';
  const frac = full.length > s ? full.slice(full.length - s) : full.padStart(s, '0');
  return `${negative ? '-' : ''}${int}${s > 0 ? `.${frac}` : ''}`;
}

/** An unscaled integer at `scale` rendered in canonical form for `shape` (exact, or refused). */
export function formatDecimal(unscaled: bigint, scale: number, shape: DecimalShape, what = 'value'): string {
  const negative = unscaled < 0n;
  return fitDecimal(negative, (negative ? -unscaled : unscaled).toString(), scale, shape, what);
}

/** A decimal written as text ("12.5", "-3", "1e2") to canonical form for `shape`. */
export function decimalFromText(raw: string, shape: DecimalShape, what = 'value'): string {
  const m = /^([+-])?(\d*)(?:\.(\d*))?(?:[eE]([+-]?\d+))?$/.exec(raw.trim());
  if (!m || (m[2] === '' && (m[3] ?? '') === '')) throw new ValueError(`${what}: not a decimal: "${raw.length > 60 ? `${raw.slice(0, 60)}…` : raw}"`);
  const exp = Number(m[4] ?? 0);
  return fitDecimal(m[1] === '-', `${m[2] ?? ''}${m[3] ?? ''}`, (m[3] ?? '').length - exp, shape, what);
}

function base64(raw: unknown, what: string): Buffer {
  if (typeof raw !== 'string') throw new ValueError(`${what}: expected base64 text, got ${typeof raw}`);
  return Buffer.from(raw, 'base64');
}

function asNumber(raw: unknown, what: string): number {
  if (typeof raw === 'number' && Number.isFinite(raw)) return raw;
  if (typeof raw === 'string' && raw.trim() !== '' && Number.isFinite(Number(raw))) return Number(raw);
  throw new ValueError(`${what}: expected a number, got ${JSON.stringify(raw)}`);
}

const INT_RANGE: Record<'smallint' | 'integer' | 'bigint', [bigint, bigint]> = {
  smallint: [-32768n, 32767n],
  integer: [-2147483648n, 2147483647n],
  bigint: [-9223372036854775808n, 9223372036854775807n],
};

/**
 * An integer column's canonical form: a number while it is exact as a double, else its
 * decimal digits as a string (int64 beyond 2^53, read exactly by parseJsonLossless). A
 * value outside the declared type's range is refused, never wrapped.
 */
export function integerFrom(raw: unknown, what: string, kind: 'smallint' | 'integer' | 'bigint' = 'bigint'): number | string {
  const [min, max] = INT_RANGE[kind];
  if (typeof raw === 'string' && /^-?\d+$/.test(raw)) {
    if (raw.length > 21 && raw.replace(/^(-?)0+(?=\d)/, '$1').length > 21) throw new ValueError(`${what}: ${raw.slice(0, 24)}… is outside ${kind}`);
    const b = BigInt(raw);
    if (b < min || b > max) throw new ValueError(`${what}: ${raw} is outside ${kind}`);
    const n = Number(raw);
    return Number.isSafeInteger(n) ? n : b.toString();
  }
  const n = asNumber(raw, what);
  if (!Number.isInteger(n)) throw new ValueError(`${what}: expected an integer, got ${n}`);
  checkExact(n, what);
  if (BigInt(n) < min || BigInt(n) > max) throw new ValueError(`${what}: ${n} is outside ${kind}`);
  return n;
}

/** Microseconds (or another unit) given as a number or as exact digits. */
function exactInt(raw: unknown, what: string): bigint {
  if (typeof raw === 'string' && /^-?\d+$/.test(raw)) {
    if (raw.length > 21) throw new ValueError(`${what}: ${raw.slice(0, 24)}… is beyond int64`);
    return BigInt(raw);
  }
  const n = asNumber(raw, what);
  checkExact(n, what);
  return BigInt(Math.round(n));
}

function parseJsonText(raw: unknown, what: string): Canonical {
  if (typeof raw !== 'string') return raw as Canonical;
  let v: Canonical;
  try {
    v = JSON.parse(raw) as Canonical;
  } catch {
    throw new ValueError(`${what}: invalid JSON text`);
  }
  checkJson(v, what);
  return v;
}

/** Year, month, day, hour, minute, second (regex groups 1-6) name a real moment. */
function validDateTime(m: RegExpExecArray): boolean {
  const [y, mo, d, h, mi, sec] = [1, 2, 3, 4, 5, 6].map((i) => Number(m[i]));
  const t = new Date(Date.UTC(y!, mo! - 1, d!, h!, mi!, sec!));
  return t.getUTCFullYear() === y && t.getUTCMonth() === mo! - 1 && t.getUTCDate() === d && h! < 24 && mi! < 60 && sec! < 60;
}

function timestampFrom(raw: unknown, schemaName: string | undefined, precision: number, what: string): string {
  if (typeof raw === 'string' && !/^-?\d+$/.test(raw)) {
    // Some connectors (and time.precision.mode=connect adapters) emit ISO text.
    const m = /^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?Z?$/.exec(raw);
    if (!m || !validDateTime(m)) throw new ValueError(`${what}: not a timestamp: "${raw.slice(0, 60)}"`);
    return `${m[1]}-${m[2]}-${m[3]}T${m[4]}:${m[5]}:${m[6]}.${(m[7] ?? '').padEnd(6, '0').slice(0, 6)}`;
  }
  const n = exactInt(raw, what);
  switch (schemaName) {
    case 'io.debezium.time.Timestamp':
    case 'org.apache.kafka.connect.data.Timestamp':
      return microsToTimestamp(n * 1000n);
    case 'io.debezium.time.NanoTimestamp':
      return microsToTimestamp(n / 1000n);
    case 'io.debezium.time.MicroTimestamp':
      return microsToTimestamp(n);
    default:
      // Schemas off: Debezium uses Timestamp (ms) for precision 0..3 and MicroTimestamp above.
      return precision <= 3 ? microsToTimestamp(n * 1000n) : microsToTimestamp(n);
  }
}

/**
 * Converts one field. `schema` is the Connect field schema when the converter had
 * schemas on, else undefined. Null stays null.
 */
export function toCanonical(raw: unknown, type: ColumnType, schema: FieldSchema | undefined, what: string): Canonical {
  if (raw === null || raw === undefined) return null;
  // PostgreSQL text and jsonb cannot hold NUL, so such a value could be neither audited
  // nor synced to PostgreSQL: refuse it here, where it becomes a dead letter.
  if (typeof raw === 'string' && raw.includes('\u0000') && type.kind !== 'bytes') throw new ValueError(`${what}: text contains a NUL character`);
  if (typeof raw === 'object') checkJson(raw, what);
  const logical = schema?.name;
  switch (type.kind) {
    case 'smallint':
    case 'integer':
    case 'bigint':
      return integerFrom(raw, what, type.kind);
    case 'double':
    case 'float':
      return asNumber(raw, what);
    case 'text':
      if (typeof raw === 'string') return raw;
      return typeof raw === 'object' ? JSON.stringify(raw) : String(raw);
    case 'uuid':
      if (typeof raw !== 'string') throw new ValueError(`${what}: expected uuid text`);
      return raw.toLowerCase();
    case 'boolean':
      if (typeof raw === 'boolean') return raw;
      if (raw === 0 || raw === 1) return raw === 1;
      throw new ValueError(`${what}: expected a boolean, got ${JSON.stringify(raw)}`);
    case 'json':
      return parseJsonText(raw, what);
    case 'bytes':
      return typeof raw === 'string' ? raw : Buffer.from(raw as Uint8Array).toString('base64');
    case 'date':
      if (typeof raw === 'string' && /^\d{4}-\d{2}-\d{2}$/.test(raw)) return raw;
      return daysToDate(asNumber(raw, what));
    case 'time': {
      if (typeof raw === 'string') return raw;
      const n = asNumber(raw, what);
      if (logical === 'io.debezium.time.Time' || logical === 'org.apache.kafka.connect.data.Time') return microsToTime(n * 1000);
      if (logical === 'io.debezium.time.NanoTime') return microsToTime(Math.round(n / 1000));
      return microsToTime(n);
    }
    case 'timestamptz':
      if (typeof raw === 'string') return zonedToUtc(raw);
      return `${timestampFrom(raw, logical ?? 'io.debezium.time.Timestamp', 3, what)}Z`;
    case 'timestamp':
      return timestampFrom(raw, logical, type.precision, what);
    case 'decimal':
      return decimalFrom(raw, type, schema, what);
  }
}

function decimalFrom(raw: unknown, shape: DecimalShape, schema: FieldSchema | undefined, what: string): string {
  if (schema?.name === 'io.debezium.data.VariableScaleDecimal' || (typeof raw === 'object' && raw !== null && 'scale' in raw && 'value' in raw)) {
    const s = raw as { scale: unknown; value: unknown };
    return formatDecimal(unscaledFromBytes(base64(s.value, what)), asNumber(s.scale, what), shape, what);
  }
  if (typeof raw === 'number') return decimalFromText(String(raw), shape, what);
  if (typeof raw !== 'string') throw new ValueError(`${what}: expected a decimal, got ${JSON.stringify(raw)?.slice(0, 80)}`);
  if (schema === undefined || schema.name === 'org.apache.kafka.connect.data.Decimal') {
    if (schema?.type === 'string') return decimalFromText(raw, shape, what);
    const srcScale = schema?.parameters?.scale === undefined ? shape.scale : asNumber(schema.parameters.scale, `${what} (schema scale)`);
    // Schemas off: precise mode sends base64 bytes, whose alphabet has no '.' or '-';
    // text with either is string mode. Digits alone are read as base64 (precise mode).
    if (schema === undefined && /[.-]/.test(raw)) return decimalFromText(raw, shape, what);
    return formatDecimal(unscaledFromBytes(base64(raw, what)), srcScale, shape, what);
  }
  return decimalFromText(raw, shape, what);
}

/**
 * The deepest JSON a json column takes: MySQL's limit for its JSON type, and well inside
 * what every recursive step downstream (digests, key sorting, JSON.stringify) handles.
 * A deeper document is a bad value, not a stack overflow in the sync stage.
 */
export const MAX_JSON_DEPTH = 100;

/** Whether a parsed JSON value nests deeper than `max` (iterative, and stops at the first too deep). */
export function deeperThan(v: unknown, max: number): boolean {
  return jsonFault(v, max) === 'depth';
}

/**
 * The first reason a parsed JSON value cannot be stored: nested deeper than `max`, or a NUL
 * in a string or a key (PostgreSQL's jsonb, which the record state and the targets use,
 * cannot hold one). Iterative, so a deep document cannot overflow the stack here.
 */
export function jsonFault(v: unknown, max: number): 'depth' | 'nul' | undefined {
  if (typeof v === 'string') return v.includes('\u0000') ? 'nul' : undefined;
  if (typeof v !== 'object' || v === null) return undefined;
  const stack: Array<{ v: object; d: number }> = [{ v, d: 1 }];
  while (stack.length > 0) {
    const { v: x, d } = stack.pop()!;
    if (d > max) return 'depth';
    if (!Array.isArray(x)) for (const k of Object.keys(x)) if (k.includes('\u0000')) return 'nul';
    for (const c of Array.isArray(x) ? x : Object.values(x)) {
      if (typeof c === 'string') {
        if (c.includes('\u0000')) return 'nul';
      } else if (typeof c === 'object' && c !== null) stack.push({ v: c as object, d: d + 1 });
    }
  }
  return undefined;
}

/** Refuses a JSON value that cannot be stored (jsonFault). */
export function checkJson(v: unknown, what: string): void {
  const fault = jsonFault(v, MAX_JSON_DEPTH);
  if (fault === 'depth') throw new ValueError(`${what}: JSON nested deeper than ${MAX_JSON_DEPTH} levels`);
  if (fault === 'nul') throw new ValueError(`${what}: JSON holds a NUL character, which PostgreSQL's jsonb cannot store`);
}
