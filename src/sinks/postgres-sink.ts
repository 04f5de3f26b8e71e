import pg from 'pg';
import pgCopy from 'pg-copy-streams';
import { copyLine } from './copy-text.ts';
import type { EntityConfig, EntityNodeMapping } from '../config/topology.ts';
import type { ColumnType } from '../config/column-types.ts';
import type { Row } from '../events/change-event.ts';
import { decimalFromText, integerFrom, type Canonical } from '../events/values.ts';
import { quotePg, type DeleteRow, type PoolStats, type Sink, type SinkResult, type UpsertRow, type WriteOutcome } from './sink.ts';
import { failureKind, TargetError } from '../errors.ts';
import { guardedPool } from '../pg-pool.ts';
import { boolArray, ordinals, textArray } from '../pg-binary.ts';

/** The PostgreSQL type each canonical value is cast to from its text form. */
function pgCast(t: ColumnType): string {
  switch (t.kind) {
    case 'smallint': return 'int2';
    case 'integer': return 'int4';
    case 'bigint': return 'int8';
    case 'double': return 'float8';
    case 'float': return 'float4';
    case 'decimal': return 'numeric';
    case 'timestamp': return 'timestamp';
    case 'bytes': return 'bytea';
    default: return t.kind === 'boolean' ? 'bool' : t.kind;
  }
}

/** SQL expression turning input column `ref` (text) into the column's type. */
function fromText(ref: string, t: ColumnType): string {
  return t.kind === 'bytes' ? `decode(${ref}, 'base64')` : `${ref}::${pgCast(t)}`;
}

export function toPgText(v: Canonical | undefined, t: ColumnType): string | null {
  if (v === null || v === undefined) return null;
  if (t.kind === 'json') return JSON.stringify(v);
  return typeof v === 'string' ? v : String(v);
}

/** A value read back as text (`col::text`) to its canonical form. */
export function fromPgText(text: string | null, t: ColumnType): Canonical {
  if (text === null) return null;
  switch (t.kind) {
    case 'smallint': case 'integer': case 'bigint': return integerFrom(String(text), 'value', t.kind);
    case 'double': case 'float': return Number(text);
    case 'decimal': return decimalFromText(text, t);
    case 'boolean': return text === 't' || text === 'true';
    case 'json': return JSON.parse(text) as Canonical;
    case 'bytes': return Buffer.from(text.replace(/^\\x/, ''), 'hex').toString('base64');
    case 'timestamp': return pgTimestamp(text);
    case 'timestamptz': return `${pgTimestamp(text.replace(/[+-]\d{2}(:\d{2})?$/, ''))}Z`;
    case 'time': return text.includes('.') ? text.padEnd(15, '0') : `${text}.000000`;
    default: return text;
  }
}

function pgTimestamp(text: string): string {
  const [date, time = '00:00:00'] = text.split(' ');
  const [hms, frac = ''] = time.split('.');
  return `${date}T${hms}.${frac.padEnd(6, '0')}`;
}

interface Statements {
  upsert: string;
  /** The same upsert reading its rows from the session's staging table (COPY mode). */
  upsertStaged: string;
  stage: { name: string; ddl: string };
  del: string;
  read: string;
  columns: string[];
}

/**
 * How the upsert gets its rows: `unnest` of one text array per column in the statement's
 * parameters, or `copy` into a temporary staging table first, read by the same statement.
 * `npm run bench -- pg-sink` measures both side by side; `unnest` is the default (see
 * bench/RESULTS.md).
 */
export type PgUpsertMode = 'unnest' | 'copy';

/**
 * PostgreSQL sink. One upsert statement per batch over `unnest` of text arrays: a
 * compare-and-set UPDATE and an INSERT … ON CONFLICT DO NOTHING for expected-absent rows,
 * with the pre-statement snapshot telling `already` from `cas-skipped`. One DELETE …
 * USING unnest for deletes. Both in one transaction. Statements are built once per
 * entity from checked identifiers.
 */
export class PostgresSink implements Sink {
  readonly node: string;
  private readonly pool: pg.Pool;
  private readonly statements = new Map<string, Statements>();

  private readonly mode: PgUpsertMode;
  /** Connections whose session already has the staging table of an entity. */
  private readonly staged = new WeakMap<pg.PoolClient, Set<string>>();

  constructor(node: string, url: string, poolSize = 4, mode: PgUpsertMode = 'unnest') {
    this.node = node;
    this.mode = mode;
    // a lost connection surfaces as the failed statement's TargetError; the listener only keeps it from being uncaught
    this.pool = guardedPool({ connectionString: url, max: poolSize, connectionTimeoutMillis: 5000 }, () => undefined);
  }

  private sql(entity: EntityConfig, mapping: EntityNodeMapping): Statements {
    const cached = this.statements.get(entity.name);
    if (cached) return cached;
    const [schema, table] = mapping.table.split('.') as [string, string];
    const target = `${quotePg(schema)}.${quotePg(table)}`;
    const columns = [...entity.columns.keys()];
    const col = (c: string) => quotePg(mapping.columns.get(c)!);
    const typed = (alias: string, c: string) => fromText(`${alias}.c${columns.indexOf(c)}`, entity.columns.get(c)!);
    const inputs = columns.map((_, n) => `c${n}`);
    const keyMatch = (x: string, i: string) => entity.key.map((k) => `${x}.${col(k)} = ${typed(i, k)}`).join(' AND ');
    const vcol = entity.versionColumn ? quotePg(mapping.columns.get(entity.versionColumn) ?? entity.versionColumn) : undefined;
    const n = columns.length;
    const unnestArgs = [...columns.map((_, k) => `$${k + 1}::text[]`), `$${n + 1}::text[]`, `$${n + 2}::text[]`, `$${n + 3}::bool[]`, `$${n + 4}::int[]`].join(', ');
    const insertCols = [...columns.map(col), ...(vcol ? [vcol] : [])].join(', ');
    const insertVals = [...columns.map((c) => typed('i', c)), ...(vcol ? [`decode(i._v, 'base64')`] : [])].join(', ');
    const setList = [...columns.filter((c) => !entity.key.includes(c)).map((c) => `${col(c)} = ${typed('i', c)}`), ...(vcol ? [`${vcol} = decode(i._v, 'base64')`] : [])].join(', ');
    const keyList = entity.key.map(col).join(', ');

    const fromUnnest = `SELECT * FROM unnest(${unnestArgs}) AS t(${inputs.join(', ')}, _v, _e, _a, _o)`;
    const stageName = `ws_stage_${entity.name}`;
    const fromStage = `SELECT ${inputs.join(', ')}, _v, _e, _a, _o FROM ${quotePg(stageName)}`;
    const stage = {
      name: stageName,
      ddl: `CREATE TEMP TABLE IF NOT EXISTS ${quotePg(stageName)} (${[...inputs, '_v', '_e'].map((c) => `${c} text`).join(', ')}, _a bool, _o int) ON COMMIT DELETE ROWS`,
    };
    const upsertOver = (rows: string) => vcol
      ? `WITH i AS (${rows}),
cur AS (SELECT i._o, x.${vcol} AS cv, x.${col(entity.key[0]!)} IS NOT NULL AS present FROM i LEFT JOIN ${target} x ON ${keyMatch('x', 'i')}),
upd AS (UPDATE ${target} x SET ${setList} FROM i WHERE ${keyMatch('x', 'i')} AND NOT i._a AND x.${vcol} IS NOT DISTINCT FROM decode(i._e, 'base64') RETURNING i._o),
ins AS (INSERT INTO ${target} AS x (${insertCols}) SELECT ${insertVals} FROM i WHERE i._a ON CONFLICT (${keyList}) DO NOTHING RETURNING ${entity.key.map((k) => `x.${col(k)}`).join(', ')})
SELECT i._o,
  CASE WHEN u._o IS NOT NULL OR EXISTS (SELECT 1 FROM ins x WHERE ${keyMatch('x', 'i')}) THEN 'applied'
       WHEN c.present AND c.cv IS NOT DISTINCT FROM decode(i._v, 'base64') THEN 'already'
       ELSE 'cas-skipped' END AS outcome
FROM i JOIN cur c ON c._o = i._o LEFT JOIN upd u ON u._o = i._o ORDER BY i._o`
      : `WITH i AS (${rows})
INSERT INTO ${target} AS x (${insertCols}) SELECT ${insertVals} FROM i
ON CONFLICT (${keyList}) DO UPDATE SET ${columns.filter((c) => !entity.key.includes(c)).map((c) => `${col(c)} = EXCLUDED.${col(c)}`).join(', ')}`;
    const upsert = upsertOver(fromUnnest);
    const upsertStaged = upsertOver(fromStage);

    const keyIdx = entity.key.map((k) => columns.indexOf(k));
    const dInputs = keyIdx.map((i) => `c${i}`);
    const dArgs = [...entity.key.map((_, k) => `$${k + 1}::text[]`), `$${entity.key.length + 1}::text[]`, `$${entity.key.length + 2}::bool[]`, `$${entity.key.length + 3}::int[]`].join(', ');
    const del = `WITH d AS (SELECT * FROM unnest(${dArgs}) AS t(${dInputs.join(', ')}, _e, _any, _o)),
cur AS (SELECT d._o, x.${col(entity.key[0]!)} IS NOT NULL AS present FROM d LEFT JOIN ${target} x ON ${keyMatch('x', 'd')}),
del AS (DELETE FROM ${target} x USING d WHERE ${keyMatch('x', 'd')}${vcol ? ` AND (d._any OR x.${vcol} IS NOT DISTINCT FROM decode(d._e, 'base64'))` : ''} RETURNING d._o)
SELECT d._o, CASE WHEN r._o IS NOT NULL THEN 'applied' WHEN NOT c.present THEN 'already' ELSE 'cas-skipped' END AS outcome
FROM d JOIN cur c ON c._o = d._o LEFT JOIN del r ON r._o = d._o ORDER BY d._o`;

    const read = `WITH k AS (SELECT * FROM unnest(${entity.key.map((_, i) => `$${i + 1}::text[]`).join(', ')}, $${entity.key.length + 1}::int[]) AS t(${dInputs.join(', ')}, _o))
SELECT k._o, ${columns.map((c) => `x.${col(c)}::text AS ${quotePg(c)}`).join(', ')}${vcol ? `, x.${vcol} AS _v` : ', NULL::bytea AS _v'}, x.${col(entity.key[0]!)} IS NOT NULL AS present
FROM k LEFT JOIN ${target} x ON ${keyMatch('x', 'k')} ORDER BY k._o`;

    const st = { upsert, upsertStaged, stage, del, read, columns };
    this.statements.set(entity.name, st);
    return st;
  }

  /** Failures leave as TargetError, classified here, where the driver's error is understood. */
  async applyBatch(entity: EntityConfig, upserts: UpsertRow[], deletes: DeleteRow[]): Promise<SinkResult> {
    try {
      return await this.write(entity, upserts, deletes);
    } catch (err) {
      throw TargetError.from(this.node, err);
    }
  }

  private async write(entity: EntityConfig, upserts: UpsertRow[], deletes: DeleteRow[]): Promise<SinkResult> {
    const mapping = entity.nodes.get(this.node);
    if (!mapping) throw new Error(`entity ${entity.name} has no table on node ${this.node}`);
    const st = this.sql(entity, mapping);
    const client = await this.pool.connect();
    let broken: Error | undefined;
    try {
      await client.query('BEGIN');
      let up: WriteOutcome[] = [];
      if (upserts.length > 0) {
        const res = this.mode === 'copy'
          ? await this.upsertStaged(client, entity, st, upserts)
          : await client.query<{ outcome: WriteOutcome }>(st.upsert, this.upsertParams(entity, st, upserts));
        up = entity.versionColumn ? res.rows.map((r) => r.outcome) : upserts.map(() => 'applied');
      }
      let dl: WriteOutcome[] = [];
      if (deletes.length > 0) {
        const params: unknown[] = entity.key.map((k) => textArray(deletes.map((d) => toPgText(d.key[k], entity.columns.get(k)!))));
        params.push(textArray(deletes.map((d) => (d.expected ? d.expected.toString('base64') : null))));
        params.push(boolArray(deletes.map((d) => d.anyVersion)));
        params.push(ordinals(deletes.length));
        const res = await client.query<{ outcome: WriteOutcome }>(st.del, params);
        dl = res.rows.map((r) => r.outcome);
      }
      await client.query('COMMIT');
      return { upserts: up, deletes: dl };
    } catch (err) {
      await client.query('ROLLBACK').catch(() => undefined);
      this.staged.delete(client); // a staging table created in this transaction is gone
      if (failureKind(err) === 'unavailable') broken = err as Error; // the pool drops the client
      throw err;
    } finally {
      client.release(broken);
    }
  }

  private upsertParams(entity: EntityConfig, st: Statements, upserts: UpsertRow[]): unknown[] {
    const params: unknown[] = st.columns.map((c) => textArray(upserts.map((u) => toPgText(u.row[c], entity.columns.get(c)!))));
    params.push(textArray(upserts.map((u) => u.version.toString('base64'))));
    params.push(textArray(upserts.map((u) => (u.expected ? u.expected.toString('base64') : null))));
    params.push(boolArray(upserts.map((u) => u.expectAbsent)));
    params.push(ordinals(upserts.length));
    return params;
  }

  /** COPY mode: the rows go into the session's staging table (emptied at commit), then the same upsert reads them. */
  private async upsertStaged(client: pg.PoolClient, entity: EntityConfig, st: Statements, upserts: UpsertRow[]): Promise<pg.QueryResult<{ outcome: WriteOutcome }>> {
    let tables = this.staged.get(client);
    if (!tables) this.staged.set(client, (tables = new Set()));
    if (!tables.has(st.stage.name)) {
      await client.query(st.stage.ddl);
      tables.add(st.stage.name);
    }
    let text = '';
    upserts.forEach((u, i) => {
      text += copyLine([
        ...st.columns.map((c) => toPgText(u.row[c], entity.columns.get(c)!)),
        u.version.toString('base64'), u.expected ? u.expected.toString('base64') : null, u.expectAbsent ? 't' : 'f', i,
      ]);
    });
    await new Promise<void>((resolve, reject) => {
      const stream = client.query(pgCopy.from(`COPY ${quotePg(st.stage.name)} FROM STDIN`));
      stream.on('error', reject);
      stream.on('finish', () => resolve());
      stream.end(text);
    });
    return client.query<{ outcome: WriteOutcome }>(st.upsertStaged);
  }

  async read(entity: EntityConfig, keys: Row[]): Promise<Array<{ row: Row; version: Buffer | null } | null>> {
    const mapping = entity.nodes.get(this.node)!;
    const st = this.sql(entity, mapping);
    const params: unknown[] = entity.key.map((k) => textArray(keys.map((key) => toPgText(key[k], entity.columns.get(k)!))));
    params.push(ordinals(keys.length));
    const res = await this.pool.query<Record<string, string | null> & { present: boolean; _v: Buffer | null }>(st.read, params);
    return res.rows.map((r) => {
      if (!r.present) return null;
      const row: Row = {};
      for (const c of st.columns) row[c] = fromPgText(r[c] ?? null, entity.columns.get(c)!);
      return { row, version: r._v };
    });
  }

  /** Answers, and takes writes: a standby (after a failover, say) answers SELECT 1 but refuses every write. */
  async ping(): Promise<void> {
    const { rows } = await this.pool.query<{ standby: boolean }>('SELECT pg_is_in_recovery() AS standby');
    if (rows[0]?.standby) throw new TargetError(this.node, 'unavailable', 'the node is a standby (read-only)');
  }

  poolStats(): PoolStats {
    return { total: this.pool.totalCount, idle: this.pool.idleCount, waiting: this.pool.waitingCount };
  }

  async close(): Promise<void> {
    await this.pool.end();
  }
}
