import { Binary, Decimal128, Double, Int32, Long } from 'mongodb';
import type { EntityConfig } from '../config/topology.ts';
import type { ColumnType } from '../config/column-types.ts';
import type { Row } from './change-event.ts';
import { checkJson, decimalFromText, deeperThan, integerFrom, MAX_JSON_DEPTH, microsToTimestamp, toCanonical, ValueError, type Canonical } from './values.ts';

/**
 * MongoDB values (DESIGN §5). Debezium's MongoDB connector emits documents as Extended
 * JSON text, canonical (`{"$numberLong": "7"}`), relaxed (`7`) or the legacy strict form
 * (`{"$binary": "…", "$type": "00"}`) depending on its version and settings: all three
 * read to the same canonical values here, by the entity's declared column type. The sink
 * writes canonical values back as the BSON types a MongoDB user expects (Long, Double,
 * Decimal128, Date, Binary).
 *
 * BSON dates hold milliseconds, so a timestamp(6) written to MongoDB comes back with its
 * microseconds cut: `mongoForm` is the row as MongoDB will emit it, which the echo digest
 * of a write there must cover.
 */
type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Date) && !Buffer.isBuffer(v);

/** One Extended JSON wrapper (`{"$numberLong": …}`, `{"$date": …}`, …) read to a tagged value; undefined when `v` is none. */
type Wrapped =
  | { t: 'number'; text: string }
  | { t: 'date'; ms: number }
  | { t: 'binary'; bytes: Buffer; subType: number }
  | { t: 'oid'; hex: string };

function unwrap(v: unknown, what: string): Wrapped | undefined {
  if (!isObj(v)) return undefined;
  const keys = Object.keys(v);
  if (keys.length === 0 || !keys[0]!.startsWith('$')) return undefined;
  if ('$numberInt' in v || '$numberLong' in v || '$numberDouble' in v || '$numberDecimal' in v) {
    const text = v.$numberInt ?? v.$numberLong ?? v.$numberDouble ?? v.$numberDecimal;
    if (typeof text !== 'string') throw new ValueError(`${what}: malformed Extended JSON number ${JSON.stringify(v)}`);
    return { t: 'number', text };
  }
  if ('$date' in v) {
    const d = v.$date;
    let ms: number;
    if (typeof d === 'number') ms = d;
    else if (typeof d === 'string' && /^-?\d+$/.test(d)) ms = Number(d);
    else if (typeof d === 'string') ms = Date.parse(d);
    else if (isObj(d) && typeof d.$numberLong === 'string') ms = Number(d.$numberLong);
    else ms = NaN;
    if (!Number.isFinite(ms)) throw new ValueError(`${what}: malformed Extended JSON date ${JSON.stringify(v)}`);
    return { t: 'date', ms };
  }
  if ('$binary' in v) {
    const b = v.$binary;
    // canonical/relaxed: {"$binary": {"base64", "subType"}}; legacy strict: {"$binary": "…", "$type": "00"}
    const [base64, sub] = isObj(b) ? [b.base64, b.subType] : [b, v.$type];
    if (typeof base64 !== 'string' || typeof sub !== 'string') throw new ValueError(`${what}: malformed Extended JSON binary ${JSON.stringify(v)}`);
    return { t: 'binary', bytes: Buffer.from(base64, 'base64'), subType: parseInt(sub, 16) };
  }
  if ('$uuid' in v && typeof v.$uuid === 'string') return { t: 'binary', bytes: Buffer.from(v.$uuid.replace(/-/g, ''), 'hex'), subType: 4 };
  if ('$oid' in v && typeof v.$oid === 'string') return { t: 'oid', hex: v.$oid };
  throw new ValueError(`${what}: unsupported Extended JSON value ${JSON.stringify(v).slice(0, 80)}`);
}

const isoOf = (ms: number) => microsToTimestamp(BigInt(ms) * 1000n);

function uuidText(bytes: Buffer): string {
  const h = bytes.toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/** A value inside a json column as plain JSON: numbers as numbers (int64 beyond 2^53 as digits), dates as ISO text, binary as base64. */
function plainJson(v: unknown, what: string): unknown {
  if (Array.isArray(v)) return v.map((x) => plainJson(x, what));
  const w = unwrap(v, what);
  if (w) {
    switch (w.t) {
      case 'number': {
        const n = Number(w.text);
        return Number.isSafeInteger(n) || !/^-?\d+$/.test(w.text) ? n : w.text;
      }
      case 'date': return `${isoOf(w.ms)}Z`;
      case 'binary': return w.subType === 4 ? uuidText(w.bytes) : w.bytes.toString('base64');
      case 'oid': return w.hex;
    }
  }
  if (isObj(v)) return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, plainJson(x, what)]));
  return v;
}

/** One field of an Extended JSON document to the canonical form of its column type. */
export function fromExtendedJson(raw: unknown, type: ColumnType, what: string): Canonical {
  if (raw === null || raw === undefined) return null;
  if (type.kind === 'json') {
    // Extended JSON wraps scalars in one more level ({"$numberLong": …}): allow for it
    if (deeperThan(raw, MAX_JSON_DEPTH + 1)) throw new ValueError(`${what}: JSON nested deeper than ${MAX_JSON_DEPTH} levels`);
    const v = plainJson(raw, what) as Canonical;
    checkJson(v, what);
    return v;
  }
  const w = unwrap(raw, what);
  if (!w) return toCanonical(raw, type, undefined, what);
  switch (w.t) {
    case 'number':
      switch (type.kind) {
        case 'smallint': case 'integer': case 'bigint': return integerFrom(w.text, what, type.kind);
        case 'double': case 'float': {
          const n = Number(w.text);
          if (!Number.isFinite(n)) throw new ValueError(`${what}: ${w.text} has no SQL double`);
          return n;
        }
        case 'decimal': return decimalFromText(w.text, type, what);
        case 'text': return w.text;
        case 'boolean': return Number(w.text) !== 0;
        default: throw new ValueError(`${what}: a number cannot be a ${type.kind}`);
      }
    case 'date':
      switch (type.kind) {
        case 'timestamp': return isoOf(w.ms);
        case 'timestamptz': return `${isoOf(w.ms)}Z`;
        case 'date': return isoOf(w.ms).slice(0, 10);
        case 'text': return `${isoOf(w.ms)}Z`;
        default: throw new ValueError(`${what}: a date cannot be a ${type.kind}`);
      }
    case 'binary':
      if (type.kind === 'bytes') return w.bytes.toString('base64');
      if (type.kind === 'uuid' && w.subType === 4 && w.bytes.length === 16) return uuidText(w.bytes);
      throw new ValueError(`${what}: binary data cannot be a ${type.kind}`);
    case 'oid':
      if (type.kind === 'text') return w.hex;
      throw new ValueError(`${what}: an ObjectId maps to a text column, not ${type.kind}`);
  }
}

/** Binary version bytes from an Extended JSON field (the version column); null when absent. */
export function versionFromExtendedJson(raw: unknown, what: string): Buffer | null {
  if (raw === null || raw === undefined) return null;
  const w = unwrap(raw, what);
  if (w?.t === 'binary') return w.bytes.length > 0 ? w.bytes : null;
  if (typeof raw === 'string' && raw !== '') return Buffer.from(raw, 'base64');
  return null;
}

/** A canonical value as the BSON value the sink writes. */
export function toBson(v: Canonical | undefined, type: ColumnType): unknown {
  if (v === null || v === undefined) return null;
  switch (type.kind) {
    case 'smallint': case 'integer': case 'bigint': {
      const n = typeof v === 'number' ? v : Number(v);
      if (Number.isSafeInteger(n) && n >= -2147483648 && n <= 2147483647 && type.kind !== 'bigint') return new Int32(n);
      // Long.fromString wraps silently beyond int64: check first
      return Long.fromString(String(integerFrom(typeof v === 'number' ? v : String(v), 'value', 'bigint')));
    }
    case 'double': case 'float': return new Double(v as number);
    case 'decimal': return Decimal128.fromString(v as string);
    case 'timestamp': return new Date(`${(v as string).slice(0, 23)}Z`);
    case 'timestamptz': return new Date((v as string).slice(0, 23) + 'Z');
    case 'date': return new Date(`${v as string}T00:00:00.000Z`);
    case 'bytes': return new Binary(Buffer.from(v as string, 'base64'), 0);
    default: return v;
  }
}

/** A value the driver returned (promoteLongs off) to its canonical form. */
export function fromDriver(v: unknown, type: ColumnType, what: string): Canonical {
  if (v === null || v === undefined) return null;
  if (v instanceof Long) return fromExtendedJson({ $numberLong: v.toString() }, type, what);
  if (v instanceof Decimal128) return fromExtendedJson({ $numberDecimal: v.toString() }, type, what);
  if (v instanceof Double || v instanceof Int32) return fromExtendedJson(v.valueOf(), type, what);
  if (v instanceof Date) return fromExtendedJson({ $date: v.getTime() }, type, what);
  if (v instanceof Binary) return fromExtendedJson({ $binary: { base64: Buffer.from(v.buffer).toString('base64'), subType: v.sub_type.toString(16).padStart(2, '0') } }, type, what);
  if (type.kind === 'json') return JSON.parse(JSON.stringify(v, (_k, x: unknown) => (x instanceof Long ? Number(x.toString()) : x))) as Canonical;
  return fromExtendedJson(v, type, what);
}

/**
 * The row as MongoDB will emit it after the sink wrote it: timestamps cut to
 * milliseconds (BSON dates). The echo digest of a write to a MongoDB node covers this.
 */
export function mongoForm(row: Row, entity: EntityConfig): Row {
  let out: Row | undefined;
  for (const [col, type] of entity.columns) {
    const v = row[col];
    if ((type.kind === 'timestamp' || type.kind === 'timestamptz') && typeof v === 'string' && !/\.\d{3}000Z?$/.test(v)) {
      out ??= { ...row };
      out[col] = v.replace(/(\.\d{3})\d{3}(Z?)$/, '$1000$2');
    }
  }
  return out ?? row;
}
