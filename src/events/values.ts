import type { ColumnType } from './column-types.ts';

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

function checkExact(n: number): void {
  if (Number.isInteger(n) && !Number.isSafeInteger(n)) throw new PrecisionLost();
}

const pad = (n: number, w: number) => String(n).padStart(w, '0');

/** Days since 1970-01-01 to "YYYY-MM-DD" (proleptic Gregorian, UTC). */
export function daysToDate(days: number): string {
  const d = new Date(days * 86_400_000);
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

/** Big-endian two's complement bytes (Kafka Connect Decimal) to a bigint. */
export function unscaledFromBytes(buf: Buffer): bigint {
  if (buf.length === 0) return 0n;
  let v = 0n;
  for (const b of buf) v = (v << 8n) | BigInt(b);
  if (buf[0]! & 0x80) v -= 1n << BigInt(buf.length * 8);
  return v;
}

/** An unscaled integer at `scale` rendered as a decimal string at `targetScale` (exact, half-up when narrowing). */
export function formatDecimal(unscaled: bigint, scale: number, targetScale: number): string {
  let v = unscaled;
  if (targetScale > scale) v *= 10n ** BigInt(targetScale - scale);
  else if (targetScale < scale) {
    const div = 10n ** BigInt(scale - targetScale);
    const q = v / div;
    const r = v % div;
    const half = div / 2n;
    v = r >= half ? q + 1n : r <= -half ? q - 1n : q;
  }
  const neg = v < 0n;
  const digits = (neg ? -v : v).toString().padStart(targetScale + 1, '0');
  const int = digits.slice(0, digits.length - targetScale);
  const frac = targetScale > 0 ? `.${digits.slice(digits.length - targetScale)}` : '';
  return `${neg ? '-' : ''}${int}${frac}`;
}

/** A decimal written as text ("12.5", "-3", "1e2") to canonical form at `scale`. */
export function decimalFromText(raw: string, scale: number): string {
  const m = /^([+-])?(\d*)(?:\.(\d*))?(?:[eE]([+-]?\d+))?$/.exec(raw.trim());
  if (!m || (m[2] === '' && (m[3] ?? '') === '')) throw new ValueError(`not a decimal: "${raw}"`);
  const digits = `${m[2] ?? ''}${m[3] ?? ''}` || '0';
  const exp = Number(m[4] ?? 0);
  const srcScale = (m[3] ?? '').length - exp;
  let unscaled = BigInt(digits);
  if (m[1] === '-') unscaled = -unscaled;
  if (srcScale < 0) return formatDecimal(unscaled * 10n ** BigInt(-srcScale), 0, scale);
  return formatDecimal(unscaled, srcScale, scale);
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

/**
 * An integer column's canonical form: a number while it is exact as a double, else its
 * decimal digits as a string (int64 beyond 2^53, read exactly by parseJsonLossless).
 */
export function integerFrom(raw: unknown, what: string): number | string {
  if (typeof raw === 'string' && /^-?\d+$/.test(raw)) {
    const n = Number(raw);
    return Number.isSafeInteger(n) ? n : BigInt(raw).toString();
  }
  const n = asNumber(raw, what);
  if (!Number.isInteger(n)) throw new ValueError(`${what}: expected an integer, got ${n}`);
  checkExact(n);
  return n;
}

/** Microseconds (or another unit) given as a number or as exact digits. */
function exactInt(raw: unknown, what: string): bigint {
  if (typeof raw === 'string' && /^-?\d+$/.test(raw)) return BigInt(raw);
  const n = asNumber(raw, what);
  checkExact(n);
  return BigInt(Math.round(n));
}

function parseJsonText(raw: unknown, what: string): Canonical {
  if (typeof raw !== 'string') return raw as Canonical;
  try {
    return JSON.parse(raw) as Canonical;
  } catch {
    throw new ValueError(`${what}: invalid JSON text`);
  }
}

function timestampFrom(raw: unknown, schemaName: string | undefined, precision: number, what: string): string {
  if (typeof raw === 'string' && !/^-?\d+$/.test(raw)) {
    // Some connectors (and time.precision.mode=connect adapters) emit ISO text.
    const m = /^(\d{4,}-\d{2}-\d{2})[T ](\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?Z?$/.exec(raw);
    if (!m) throw new ValueError(`${what}: not a timestamp: "${raw}"`);
    return `${m[1]}T${m[2]}.${(m[3] ?? '').padEnd(6, '0').slice(0, 6)}`;
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
  const logical = schema?.name;
  switch (type.kind) {
    case 'smallint':
    case 'integer':
    case 'bigint':
      return integerFrom(raw, what);
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
      return decimalFrom(raw, type.scale, schema, what);
  }
}

function decimalFrom(raw: unknown, scale: number, schema: FieldSchema | undefined, what: string): string {
  if (schema?.name === 'io.debezium.data.VariableScaleDecimal' || (typeof raw === 'object' && raw !== null && 'scale' in raw && 'value' in raw)) {
    const s = raw as { scale: unknown; value: unknown };
    return formatDecimal(unscaledFromBytes(base64(s.value, what)), asNumber(s.scale, what), scale);
  }
  if (typeof raw === 'number') return decimalFromText(String(raw), scale);
  if (typeof raw !== 'string') throw new ValueError(`${what}: expected a decimal, got ${JSON.stringify(raw)}`);
  if (schema === undefined || schema.name === 'org.apache.kafka.connect.data.Decimal') {
    if (schema?.type === 'string') return decimalFromText(raw, scale);
    const srcScale = schema?.parameters?.scale === undefined ? scale : Number(schema.parameters.scale);
    // Schemas off: precise mode sends base64 bytes, whose alphabet has no '.' or '-';
    // text with either is string mode. Digits alone are read as base64 (precise mode).
    if (schema === undefined && /[.-]/.test(raw)) return decimalFromText(raw, scale);
    return formatDecimal(unscaledFromBytes(base64(raw, what)), srcScale, scale);
  }
  return decimalFromText(raw, scale);
}
