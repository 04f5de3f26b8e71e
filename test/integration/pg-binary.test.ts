import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { boolArray, byteaArray, int4Array, int8Array, ordinals, textArray } from '../../src/pg-binary.ts';
import { stack } from '../support/stack.ts';

/**
 * The binary array parameters (src/pg-binary.ts) against the real server: each array must
 * arrive as the same array node-postgres's own array literal gives, element for element,
 * NULLs, the empty array and text the literal must escape included.
 */
let client: pg.Client;

beforeAll(async () => {
  client = new pg.Client({ connectionString: stack().postgres.controlUrl });
  await client.connect();
});

afterAll(async () => {
  await client?.end();
});

/** The array as the server holds it, in its text form, for the binary and for the literal parameter. */
async function both(type: string, binary: Buffer, values: unknown[]): Promise<[string | null, string | null]> {
  const sql = `SELECT $1::${type}[]::text AS a, cardinality($1::${type}[]) AS n`;
  const b = (await client.query<{ a: string | null; n: number }>(sql, [binary])).rows[0]!;
  const l = (await client.query<{ a: string | null; n: number }>(sql, [values])).rows[0]!;
  expect(b.n).toBe(l.n);
  return [b.a, l.a];
}

describe('binary array parameters', () => {
  it('text[]: escapes, quotes, NULLs, empty strings, non-ASCII and long strings arrive as the literal gives them', async () => {
    const values = ['plain', '', null, 'with "quotes", commas, {braces} and \\ backslashes', 'NULL', ' spaced ', 'Zoë 😀 ünïcödé', 'x'.repeat(70_000), 'tab\tnew\nline'];
    const [b, l] = await both('text', textArray(values), values);
    expect(b).toBe(l);
    const { rows } = await client.query<{ v: string | null }>('SELECT unnest($1::text[]) AS v', [textArray(values)]);
    expect(rows.map((r) => r.v)).toEqual(values);
  });

  it('the empty array of each type', async () => {
    for (const [type, buf] of [['text', textArray([])], ['bytea', byteaArray([])], ['bigint', int8Array([])], ['int', int4Array([])], ['bool', boolArray([])], ['int', ordinals(0)]] as const) {
      const { rows } = await client.query<{ a: string; n: number }>(`SELECT $1::${type}[]::text AS a, cardinality($1::${type}[]) AS n`, [buf]);
      expect(rows[0]).toEqual({ a: '{}', n: 0 });
    }
  });

  it('bytea[]: bytes, empty and NULL elements, byte for byte', async () => {
    const values = [Buffer.from([0, 1, 2, 255]), Buffer.alloc(0), null, Buffer.from('\\x00'), Buffer.alloc(5000, 0xab)];
    const { rows } = await client.query<{ v: Buffer | null }>('SELECT unnest($1::bytea[]) AS v', [byteaArray(values)]);
    expect(rows.map((r) => r.v)).toEqual(values);
  });

  it('bigint[], int[] and bool[]: the range ends, negatives and NULLs', async () => {
    const big = [0n, -1n, 9223372036854775807n, -9223372036854775808n, null, 42];
    const [b8, l8] = await both('bigint', int8Array(big), big.map((v) => (v === null ? null : String(v))));
    expect(b8).toBe(l8);
    const ints = [0, -1, 2147483647, -2147483648, null];
    const [b4, l4] = await both('int', int4Array(ints), ints);
    expect(b4).toBe(l4);
    const bools = [true, false, null];
    const [bb, lb] = await both('bool', boolArray(bools), bools);
    expect(bb).toBe(lb);
    const { rows } = await client.query<{ a: string }>('SELECT $1::int[]::text AS a', [ordinals(4)]);
    expect(rows[0]!.a).toBe('{0,1,2,3}');
  });

  it('an element type that does not match the cast is refused by the server, not misread', async () => {
    await expect(client.query('SELECT $1::bigint[]', [int4Array([1])])).rejects.toThrow(/array element type 23 \(integer\) instead of expected 20 \(bigint\)/);
  });
});
