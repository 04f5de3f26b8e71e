import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type pg from 'pg';
import type mysql from 'mysql2/promise';
import { freshKeyBase, maria, pgApp, pgControl, waitFor } from '../support/stack.ts';
import { settle, startWorker, type WorkerHandle } from '../support/worker-process.ts';

/**
 * Every type of the README's type table, with edge values, goes PostgreSQL -> MariaDB ->
 * PostgreSQL and comes back unchanged: a row is written in PostgreSQL, the worker copies
 * it to MariaDB, an application copies it there under a new key, and the worker brings
 * that copy back to PostgreSQL, where it must equal the original column for column.
 */
const group = `e2e-types-${Date.now().toString(36)}`;
let worker: WorkerHandle;
let app: pg.Pool;
let control: pg.Pool;
let my: mysql.Pool;

const COLUMNS = ['c_smallint', 'c_integer', 'c_bigint', 'c_double', 'c_decimal', 'c_text', 'c_uuid', 'c_boolean', 'c_json', 'c_ts', 'c_tstz', 'c_date', 'c_time', 'c_bytes'];

/** Edge values per row, as PostgreSQL literals (NULL for SQL NULL). */
const ROWS: Array<Record<string, string | null>> = [
  // all NULL
  Object.fromEntries(COLUMNS.map((c) => [c, null])),
  // minimums and empties
  {
    c_smallint: '-32768', c_integer: '-2147483648', c_bigint: '-9223372036854775808', c_double: '-1.5e300', c_decimal: '-99999999999999.999999',
    c_text: '', c_uuid: '00000000-0000-0000-0000-000000000000', c_boolean: 'false', c_json: '{}',
    c_ts: '1000-01-01 00:00:00', c_tstz: '1970-01-01 00:00:01+00', c_date: '1000-01-01', c_time: '00:00:00', c_bytes: '\\x',
  },
  // maximums and precision limits
  {
    c_smallint: '32767', c_integer: '2147483647', c_bigint: '9223372036854775807', c_double: '1.7976931348623157e308', c_decimal: '99999999999999.999999',
    c_text: 'x'.repeat(2000), c_uuid: 'ffffffff-ffff-ffff-ffff-ffffffffffff', c_boolean: 'true', c_json: '[]',
    c_ts: '9999-12-31 23:59:59.999999', c_tstz: '2038-01-19 03:14:07.999999+00', c_date: '9999-12-31', c_time: '23:59:59.999999', c_bytes: '\\x00ff10',
  },
  // unicode, zones, nested JSON, small fractions
  {
    c_smallint: '0', c_integer: '1', c_bigint: '-1', c_double: '0.000001', c_decimal: '0.000001',
    c_text: 'Zoë Ñandú 日本語 🚀 "quoted" \\ back\tslash\nnewline', c_uuid: 'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11', c_boolean: 'true',
    c_json: '{"b": [1, "ü", null, true, {"z": 1.5}], "a": {"nested": "🚀"}}',
    c_ts: '2026-11-30 12:34:56.123456', c_tstz: '2026-11-30 12:34:56.654321+05:30', c_date: '2024-02-29', c_time: '12:00:00.000001', c_bytes: '\\xdeadbeef',
  },
];

beforeAll(async () => {
  app = pgApp();
  control = pgControl();
  my = maria();
  worker = await startWorker(group);
  await settle(group, worker, app, control);
});

afterAll(async () => {
  expect((await worker?.kill('SIGTERM'))?.code).toBe(0);
  await Promise.all([app?.end(), control?.end(), my?.end()]);
});

async function pgText(id: number): Promise<Record<string, string | null> | undefined> {
  const { rows } = await app.query(`SELECT ${COLUMNS.map((c) => `${c}::text AS ${c}`).join(', ')} FROM type_probe WHERE id = $1`, [id]);
  return rows[0];
}

async function myText(id: number): Promise<Record<string, unknown> | undefined> {
  const [rows] = await my.query(`SELECT ${COLUMNS.map((c) => `CAST(${c} AS CHAR) AS ${c}`).join(', ')} FROM type_probe WHERE id = ?`, [id]);
  return (rows as Array<Record<string, unknown>>)[0];
}

describe('type round trip PostgreSQL -> MariaDB -> PostgreSQL', () => {
  for (let n = 0; n < ROWS.length; n++) {
    it(`row ${n + 1} of ${ROWS.length} comes back unchanged`, async () => {
      const original = freshKeyBase();
      const copy = original + 1;
      const values = ROWS[n]!;
      await app.query(
        `INSERT INTO type_probe (id, ${COLUMNS.join(', ')}) VALUES ($1, ${COLUMNS.map((_, i) => `$${i + 2}`).join(', ')})`,
        [original, ...COLUMNS.map((c) => values[c])],
      );
      const atMaria = await waitFor('the row in MariaDB', async () => myText(original), 15_000, 100);
      // an application copies it, as MariaDB holds it, under a new key
      await my.query(`INSERT INTO type_probe (id, ${COLUMNS.join(', ')}) SELECT ?, ${COLUMNS.join(', ')} FROM type_probe WHERE id = ?`, [copy, original]);
      const back = await waitFor('the copy back in PostgreSQL', async () => pgText(copy), 15_000, 100);
      expect(back).toEqual(await pgText(original));
      expect(await myText(copy)).toEqual(atMaria);
      // and nothing looped: exactly the two source changes were audited
      await new Promise((r) => setTimeout(r, 1500));
      const { rows } = await control.query(`SELECT count(*)::int AS n FROM audit_log WHERE log_id LIKE $1 AND entity = 'type_probe' AND (record_key->>'id')::bigint IN ($2, $3)`, [`${group}:%`, original, copy]);
      expect(rows[0].n).toBe(2);
    });
  }
});
