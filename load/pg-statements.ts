import type pg from 'pg';

/**
 * Time per statement from PostgreSQL's pg_stat_statements (the local stack preloads it),
 * between two snapshots: where the database's share of a load run's CPU goes, per
 * statement and per committed event. Every database of the server is covered (the
 * targets', the control database's).
 */
interface Row { key: string; db: string; query: string; calls: number; totalMs: number; rows: number }

export interface StatementCost {
  db: string;
  query: string;
  calls: number;
  rows: number;
  total_ms: number;
  ms_per_call: number;
  /** exec time per event the worker committed in the window */
  us_per_event: number;
}

/** The server's statements now, or why they cannot be read. */
export async function statementsSnapshot(db: pg.Pool): Promise<Map<string, Row> | string> {
  try {
    const { rows } = await db.query<{ key: string; db: string; query: string; calls: string; total: number; nrows: string }>(
      `SELECT s.dbid::text || '/' || s.userid::text || '/' || s.queryid::text AS key, d.datname AS db, s.query, s.calls, s.total_exec_time AS total, s.rows AS nrows
       FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid WHERE s.queryid IS NOT NULL`);
    return new Map(rows.map((r) => [r.key, { key: r.key, db: r.db, query: r.query, calls: Number(r.calls), totalMs: r.total, rows: Number(r.nrows) }]));
  } catch (err) {
    return `pg_stat_statements cannot be read (${(err as Error).message}); the local stack preloads it from its next PostgreSQL start (bash deploy/local/stack.sh restart postgres)`;
  }
}

/** The statements that took the most time between the snapshots. */
export function statementsBetween(a: Map<string, Row>, b: Map<string, Row>, events: number, top = 12): StatementCost[] {
  const out: StatementCost[] = [];
  for (const [k, y] of b) {
    const x = a.get(k);
    const calls = y.calls - (x?.calls ?? 0);
    const totalMs = y.totalMs - (x?.totalMs ?? 0);
    if (calls <= 0 || totalMs <= 0) continue;
    out.push({
      db: y.db, query: y.query.replace(/\s+/g, ' ').trim(), calls, rows: y.rows - (x?.rows ?? 0), total_ms: Math.round(totalMs),
      ms_per_call: Number((totalMs / calls).toFixed(3)), us_per_event: events > 0 ? Math.round((totalMs * 1000) / events) : 0,
    });
  }
  return out.sort((p, q) => q.total_ms - p.total_ms).slice(0, top);
}
