import mysql from 'mysql2/promise';
import type { EntityConfig } from '../config/topology.ts';
import type { ColumnType } from '../config/column-types.ts';
import type { Row } from '../events/change-event.ts';
import { decimalFromText, integerFrom, type Canonical } from '../events/values.ts';
import { quoteMy, type DeleteRow, type PoolStats, type Sink, type SinkResult, type UpsertRow, type WriteOutcome } from './sink.ts';
import { TargetError } from '../errors.ts';

/** Canonical value to a mysql2 parameter. Timestamps go without 'T' and zone (session is UTC). */
export function toMyParam(v: Canonical | undefined, t: ColumnType): unknown {
  if (v === null || v === undefined) return null;
  switch (t.kind) {
    case 'json': return JSON.stringify(v);
    case 'bytes': return Buffer.from(v as string, 'base64');
    case 'boolean': return v ? 1 : 0;
    case 'timestamp': return (v as string).replace('T', ' ');
    case 'timestamptz': return (v as string).replace('T', ' ').replace(/Z$/, '');
    default: return v;
  }
}

/** A value as mysql2 returns it (dateStrings, bigNumberStrings) to its canonical form. */
export function fromMyValue(v: unknown, t: ColumnType): Canonical {
  if (v === null || v === undefined) return null;
  switch (t.kind) {
    case 'smallint': case 'integer': case 'bigint': return integerFrom(String(v), 'value', t.kind);
    case 'double': case 'float': return Number(v);
    case 'decimal': return decimalFromText(String(v), t);
    case 'boolean': return Number(v) !== 0;
    case 'json': return (typeof v === 'string' ? JSON.parse(v) : v) as Canonical;
    case 'bytes': return Buffer.isBuffer(v) ? v.toString('base64') : Buffer.from(String(v)).toString('base64');
    case 'timestamp': case 'timestamptz': {
      const [date, time = '00:00:00'] = String(v).split(' ');
      const [hms, frac = ''] = time.split('.');
      return `${date}T${hms}.${frac.padEnd(6, '0')}${t.kind === 'timestamptz' ? 'Z' : ''}`;
    }
    case 'time': {
      const [hms, frac = ''] = String(v).split('.');
      return `${hms}.${frac.padEnd(6, '0')}`;
    }
    default: return Buffer.isBuffer(v) ? v.toString('utf8') : String(v);
  }
}

/**
 * MariaDB/MySQL sink. MariaDB cannot report per-row outcomes of an UPDATE, so the batch's
 * keys are read first under `SELECT … FOR UPDATE`; the outcomes follow from the locked
 * versions. Then one multi-row INSERT … ON DUPLICATE KEY UPDATE writes the present rows
 * that pass compare-and-set, one multi-row INSERT the absent ones, and one DELETE removes
 * the deletes that pass. One transaction.
 */
export class MySqlSink implements Sink {
  readonly node: string;
  private readonly pool: mysql.Pool;

  constructor(node: string, url: string, poolSize = 4) {
    this.node = node;
    this.pool = mysql.createPool({
      uri: url, connectionLimit: poolSize, dateStrings: true, supportBigNumbers: true, bigNumberStrings: true,
      decimalNumbers: false, timezone: 'Z', charset: 'utf8mb4', connectTimeout: 5000,
    });
    this.pool.on('connection', (conn) => {
      conn.query("SET time_zone = '+00:00'");
      // Under REPEATABLE READ, SELECT … FOR UPDATE of absent keys takes gap locks, and lanes
      // inserting into neighbouring gaps deadlock each other. READ COMMITTED locks only the
      // rows that exist; no other lane writes the same key (one key, one partition, one
      // lane), so the compare-and-set reasoning holds.
      conn.query('SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED');
    });
  }

  private target(entity: EntityConfig): { table: string; col: (c: string) => string; vcol: string | undefined } {
    const mapping = entity.nodes.get(this.node);
    if (!mapping) throw new Error(`entity ${entity.name} has no table on node ${this.node}`);
    const [db, table] = mapping.table.split('.') as [string, string];
    return {
      table: `${quoteMy(db)}.${quoteMy(table)}`,
      col: (c) => quoteMy(mapping.columns.get(c)!),
      vcol: entity.versionColumn ? quoteMy(mapping.columns.get(entity.versionColumn) ?? entity.versionColumn) : undefined,
    };
  }

  private keyText(entity: EntityConfig, row: Row): string {
    return JSON.stringify(entity.key.map((k) => row[k]));
  }

  private async lockedVersions(conn: mysql.PoolConnection, entity: EntityConfig, keys: Row[]): Promise<Map<string, Buffer | null>> {
    const { table, col, vcol } = this.target(entity);
    const tuple = `(${entity.key.map(col).join(', ')})`;
    const params: unknown[] = [];
    for (const k of keys) for (const c of entity.key) params.push(toMyParam(k[c], entity.columns.get(c)!));
    const placeholders = keys.map(() => `(${entity.key.map(() => '?').join(', ')})`).join(', ');
    const [rows] = await conn.query(
      `SELECT ${entity.key.map(col).join(', ')}, ${vcol ?? 'NULL'} AS _v FROM ${table} WHERE ${tuple} IN (${placeholders}) FOR UPDATE`,
      params,
    );
    const out = new Map<string, Buffer | null>();
    for (const r of rows as Array<Record<string, unknown>>) {
      const key: Row = {};
      for (const k of entity.key) key[k] = fromMyValue(r[entity.nodes.get(this.node)!.columns.get(k)!], entity.columns.get(k)!);
      out.set(this.keyText(entity, key), (r._v as Buffer | null) ?? null);
    }
    return out;
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
    const { table, col, vcol } = this.target(entity);
    const conn = await this.pool.getConnection();
    try {
      await conn.beginTransaction();
      const current = await this.lockedVersions(conn, entity, [...upserts.map((u) => u.key), ...deletes.map((d) => d.key)]);
      const same = (a: Buffer | null | undefined, b: Buffer | null) => (a ?? null) === null ? b === null : b !== null && a!.equals(b);

      const up: WriteOutcome[] = [];
      const writes: UpsertRow[] = [];
      for (const u of upserts) {
        const k = this.keyText(entity, u.key);
        const present = current.has(k);
        const cv = current.get(k) ?? null;
        let outcome: WriteOutcome;
        if (!vcol) outcome = 'applied';
        else if (present && same(cv, u.version)) outcome = 'already';
        else if (u.expectAbsent ? !present : present && same(cv, u.expected)) outcome = 'applied';
        else outcome = 'cas-skipped';
        up.push(outcome);
        if (outcome === 'applied') writes.push(u);
      }
      // Rows present by primary key are updated through ON DUPLICATE KEY UPDATE; absent
      // ones go through a plain INSERT. One upsert statement for both would let a row that
      // collides on a secondary unique key silently update that other row (DESIGN §6:
      // such a no-op is a failure); the plain INSERT fails instead, and the row is
      // retried alone, then dead-lettered.
      const columns = [...entity.columns.keys()];
      const names = [...columns.map(col), ...(vcol ? [vcol] : [])];
      const tuple = `(${names.map(() => '?').join(', ')})`;
      const values = (rows: UpsertRow[]) => {
        const params: unknown[] = [];
        for (const w of rows) {
          for (const c of columns) params.push(toMyParam(w.row[c], entity.columns.get(c)!));
          if (vcol) params.push(w.version);
        }
        return params;
      };
      const updates = writes.filter((w) => current.has(this.keyText(entity, w.key)));
      const inserts = writes.filter((w) => !current.has(this.keyText(entity, w.key)));
      if (updates.length > 0) {
        const update = names.filter((_, i) => i >= columns.length || !entity.key.includes(columns[i]!)).map((n) => `${n} = VALUES(${n})`).join(', ');
        await conn.query(`INSERT INTO ${table} (${names.join(', ')}) VALUES ${updates.map(() => tuple).join(', ')} ON DUPLICATE KEY UPDATE ${update}`, values(updates));
      }
      if (inserts.length > 0) {
        await conn.query(`INSERT INTO ${table} (${names.join(', ')}) VALUES ${inserts.map(() => tuple).join(', ')}`, values(inserts));
      }

      const dl: WriteOutcome[] = [];
      const removals: DeleteRow[] = [];
      for (const d of deletes) {
        const k = this.keyText(entity, d.key);
        let outcome: WriteOutcome;
        if (!current.has(k)) outcome = 'already';
        else if (!vcol || d.anyVersion || same(current.get(k), d.expected)) outcome = 'applied';
        else outcome = 'cas-skipped';
        dl.push(outcome);
        if (outcome === 'applied') removals.push(d);
      }
      if (removals.length > 0) {
        const params: unknown[] = [];
        for (const d of removals) for (const c of entity.key) params.push(toMyParam(d.key[c], entity.columns.get(c)!));
        await conn.query(
          `DELETE FROM ${table} WHERE (${entity.key.map(col).join(', ')}) IN (${removals.map(() => `(${entity.key.map(() => '?').join(', ')})`).join(', ')})`,
          params,
        );
      }
      await conn.commit();
      return { upserts: up, deletes: dl };
    } catch (err) {
      await conn.rollback().catch(() => undefined);
      throw err;
    } finally {
      conn.release();
    }
  }

  async read(entity: EntityConfig, keys: Row[]): Promise<Array<{ row: Row; version: Buffer | null } | null>> {
    if (keys.length === 0) return [];
    const { table, col, vcol } = this.target(entity);
    const columns = [...entity.columns.keys()];
    const params: unknown[] = [];
    for (const k of keys) for (const c of entity.key) params.push(toMyParam(k[c], entity.columns.get(c)!));
    const [rows] = await this.pool.query(
      `SELECT ${columns.map((c) => `${col(c)} AS ${quoteMy(c)}`).join(', ')}, ${vcol ?? 'NULL'} AS _v FROM ${table}
       WHERE (${entity.key.map(col).join(', ')}) IN (${keys.map(() => `(${entity.key.map(() => '?').join(', ')})`).join(', ')})`,
      params,
    );
    const found = new Map<string, { row: Row; version: Buffer | null }>();
    for (const r of rows as Array<Record<string, unknown>>) {
      const row: Row = {};
      for (const c of columns) row[c] = fromMyValue(r[c], entity.columns.get(c)!);
      found.set(this.keyText(entity, row), { row, version: (r._v as Buffer | null) ?? null });
    }
    return keys.map((k) => found.get(this.keyText(entity, k)) ?? null);
  }

  /** Answers, and takes writes: a read-only server (a replica, a demoted primary) answers SELECT 1 but refuses every write. */
  async ping(): Promise<void> {
    const [rows] = await this.pool.query('SELECT @@global.read_only AS ro');
    if (Number((rows as Array<{ ro: number | string }>)[0]?.ro) === 1) throw new TargetError(this.node, 'unavailable', 'the node is read-only (read_only=1)');
  }

  /** mysql2 exposes no pool counters; these are its pool's own arrays (mysql2 3.x). */
  poolStats(): PoolStats | undefined {
    const core = (this.pool as unknown as { pool?: { _allConnections?: { length: number }; _freeConnections?: { length: number }; _connectionQueue?: { length: number } } }).pool;
    if (!core?._allConnections || !core._freeConnections || !core._connectionQueue) return undefined;
    return { total: core._allConnections.length, idle: core._freeConnections.length, waiting: core._connectionQueue.length };
  }

  async close(): Promise<void> {
    await this.pool.end();
  }
}
