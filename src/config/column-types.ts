import { ConfigError } from '../errors.ts';

/**
 * The logical column types a topology can declare. Every value is normalised to one
 * canonical JavaScript form per type, so the same value read from PostgreSQL, MariaDB
 * or MongoDB compares equal (DESIGN §5):
 *
 * | type            | canonical form                                      |
 * |-----------------|-----------------------------------------------------|
 * | smallint, integer, bigint | number (bigint beyond 2^53 arrives rounded by JSON) |
 * | double, float   | number                                              |
 * | decimal(p,s)    | string with exactly s fraction digits: "1234.50"    |
 * | text, uuid      | string (uuid lower-cased)                           |
 * | boolean         | boolean                                             |
 * | json            | the parsed JSON value                               |
 * | timestamp(p)    | "YYYY-MM-DDTHH:MM:SS.ffffff" (no zone, 6 digits)    |
 * | timestamptz     | "YYYY-MM-DDTHH:MM:SS.ffffffZ" (UTC, 6 digits)       |
 * | date            | "YYYY-MM-DD"                                        |
 * | time            | "HH:MM:SS.ffffff"                                   |
 * | bytes           | base64 string                                       |
 */
export type ColumnType =
  | { kind: 'smallint' | 'integer' | 'bigint' | 'double' | 'float' | 'text' | 'uuid' | 'boolean' | 'json' | 'timestamptz' | 'date' | 'time' | 'bytes' }
  | { kind: 'decimal'; precision: number; scale: number }
  | { kind: 'timestamp'; precision: number };

const SIMPLE = new Set(['smallint', 'integer', 'bigint', 'double', 'float', 'text', 'uuid', 'boolean', 'json', 'timestamptz', 'date', 'time', 'bytes']);
const ALIASES: Record<string, string> = {
  int: 'integer', int2: 'smallint', int4: 'integer', int8: 'bigint', bool: 'boolean', varchar: 'text',
  string: 'text', jsonb: 'json', bytea: 'bytes', binary: 'bytes', numeric: 'decimal', datetime: 'timestamp',
  'double precision': 'double', real: 'float',
};

export function parseColumnType(raw: string, at: string): ColumnType {
  const m = /^([a-z ]+?)\s*(?:\(\s*(\d+)\s*(?:,\s*(\d+)\s*)?\))?$/i.exec(raw.trim());
  if (!m) {
    // `{ balance: decimal(12,2) }`: YAML's flow map splits at the comma
    const hint = /\(\s*\d+\s*$/.test(raw) ? ' (inside a YAML flow map { ... } a type with a comma must be quoted: "decimal(12,2)"; or use block style)' : '';
    throw new ConfigError(at, `unknown column type "${raw}"${hint}`);
  }
  const base = (m[1] ?? '').toLowerCase();
  const name = ALIASES[base] ?? base;
  const a = m[2] === undefined ? undefined : Number(m[2]);
  const b = m[3] === undefined ? undefined : Number(m[3]);
  if (name === 'decimal') {
    if (a === undefined) throw new ConfigError(at, 'decimal needs a precision and scale, e.g. decimal(12,2)');
    const scale = b ?? 0;
    if (a < 1 || a > 1000 || scale > a) throw new ConfigError(at, `invalid decimal(${a},${scale})`);
    return { kind: 'decimal', precision: a, scale };
  }
  if (name === 'timestamp') {
    const precision = a ?? 6;
    if (precision > 6) throw new ConfigError(at, 'timestamp precision must be 0..6');
    return { kind: 'timestamp', precision };
  }
  if (name === 'text' || SIMPLE.has(name)) {
    // varchar(255) and friends: the length limit is the database's business.
    return { kind: name as 'text' };
  }
  throw new ConfigError(at, `unknown column type "${raw}"`);
}
