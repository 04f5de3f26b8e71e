import type pg from 'pg';
import type mysql from 'mysql2/promise';
import { rowOf, type Workload } from './workload.ts';

/**
 * What the chaos suite checks after each scenario (issue 12):
 * - every source change is audited exactly once: no change without its row (lost), none
 *   with two (duplicated), no event id twice, no gap in any log's seq;
 * - both databases equal the source row by row, every column, at the last committed write;
 * - no dead letter the scenario did not intend.
 */
export interface Verdict {
  changes: number;
  lost: number;
  duplicated: number;
  diverged: number;
  seqGaps: number;
  deadLetters: number;
  /** Audit rows of these keys that match no committed write (an audited change that never was). */
  phantom: number;
  /** A few of the diverged rows, said in words. */
  divergedExamples: string[];
}

interface Row {
  name: string | null;
  email: string | null;
  balance: string | null;
  tags: string | null;
  updated_at: string | null;
}

const canonJson = (t: string | null) => (t === null ? null : JSON.stringify(JSON.parse(t)));

function same(a: Row | undefined, b: Row | undefined): boolean {
  if (!a || !b) return a === b;
  return a.name === b.name && a.email === b.email && a.balance === b.balance && canonJson(a.tags) === canonJson(b.tags) && a.updated_at === b.updated_at;
}

export async function pgRows(app: pg.Pool, ids: number[]): Promise<Map<number, Row>> {
  const { rows } = await app.query(
    `SELECT id, name, email, balance::text AS balance, tags::text AS tags, to_char(updated_at, 'YYYY-MM-DD HH24:MI:SS.US') AS updated_at FROM customers WHERE id = ANY($1)`,
    [ids]);
  return new Map(rows.map((r) => [Number(r.id), r as Row]));
}

export async function mariaRows(my: mysql.Pool, ids: number[]): Promise<Map<number, Row>> {
  const [rows] = await my.query(
    `SELECT id, name, email, CAST(balance AS CHAR) AS balance, CAST(tags AS CHAR) AS tags, DATE_FORMAT(updated_at, '%Y-%m-%d %H:%i:%s.%f') AS updated_at FROM customers WHERE id IN (?)`,
    [ids]);
  return new Map((rows as Array<Row & { id: number | string }>).map((r) => [Number(r.id), r]));
}

/** Rows that differ between the databases, or from the last committed write. */
export async function divergedRows(app: pg.Pool, my: mysql.Pool, w: Workload): Promise<number> {
  return (await divergence(app, my, w)).count;
}

/**
 * The rows that differ, with a few examples for the report: each key's source database,
 * the write it should hold, and the name (which says the write) each database holds.
 */
export async function divergence(app: pg.Pool, my: mysql.Pool, w: Workload, examples = 0): Promise<{ count: number; examples: string[] }> {
  const finals = w.finals();
  const ids = [...finals.keys()];
  if (ids.length === 0) return { count: 0, examples: [] };
  const [a, b] = await Promise.all([pgRows(app, ids), mariaRows(my, ids)]);
  let count = 0;
  const shown: string[] = [];
  for (const [id, n] of finals) {
    const r = rowOf(id, n);
    const want: Row = { name: r.name, email: r.email, balance: r.balance, tags: r.tags, updated_at: r.updated_at };
    const inPg = a.get(id);
    const inMaria = b.get(id);
    if (same(inPg, want) && same(inMaria, want)) continue;
    count++;
    if (shown.length < examples) {
      const held = (row: Row | undefined) => (row === undefined ? 'no row' : same(row, want) ? 'ok' : JSON.stringify(row.name));
      shown.push(`key ${id} (written in ${w.sourceOf(id)}) should hold "${r.name}": PostgreSQL ${held(inPg)}, MariaDB ${held(inMaria)}`);
    }
  }
  return { count, examples: shown };
}

export async function verdict(control: pg.Pool, app: pg.Pool, my: mysql.Pool, group: string, w: Workload, deadSince: Date): Promise<Verdict> {
  const ids = w.ids;
  const { rows } = await control.query(
    `SELECT (record_key->>'id')::bigint AS id, after->>'name' AS name FROM audit_log
     WHERE log_id LIKE $1 AND kind = 'change' AND entity = 'customers' AND (record_key->>'id')::bigint = ANY($2)`,
    [`${group}:%`, ids]);
  // a change is known by the write it made (each write names itself), whatever its event id:
  // the same change delivered twice by Debezium has two event ids and must be audited once
  const audited = new Map<string, number>();
  for (const r of rows as Array<{ id: string; name: string | null }>) {
    const name = r.name ?? `deleted ${r.id}`;
    audited.set(name, (audited.get(name) ?? 0) + 1);
  }
  let lost = 0;
  let duplicated = 0;
  const expected = new Set<string>();
  for (const c of w.committed) {
    const name = rowOf(c.id, c.n).name;
    expected.add(name);
    const n = audited.get(name) ?? 0;
    if (n === 0) lost++;
    if (n > 1) duplicated += n - 1;
  }
  let phantom = 0;
  for (const name of audited.keys()) if (!expected.has(name)) phantom++;
  const gaps = await control.query(
    `SELECT count(*)::int AS n FROM (SELECT log_id FROM audit_log WHERE log_id LIKE $1 GROUP BY log_id HAVING count(*) <> max(seq) OR min(seq) <> 1) g`,
    [`${group}:%`]);
  const dead = await control.query('SELECT count(*)::int AS n FROM sync_dead_letters WHERE consumer_group = $1 AND created_at >= $2', [group, deadSince]);
  const diverged = await divergence(app, my, w, 5);
  return {
    changes: w.committed.length, lost, duplicated, diverged: diverged.count, seqGaps: gaps.rows[0].n,
    deadLetters: dead.rows[0].n, phantom, divergedExamples: diverged.examples,
  };
}

/** Whether every committed change is audited and both databases hold the last write of every key. */
export async function converged(control: pg.Pool, app: pg.Pool, my: mysql.Pool, group: string, w: Workload): Promise<boolean> {
  const { rows } = await control.query(
    `SELECT count(DISTINCT after->>'name')::int AS n FROM audit_log WHERE log_id LIKE $1 AND kind = 'change' AND entity = 'customers' AND (record_key->>'id')::bigint = ANY($2)`,
    [`${group}:%`, w.ids]);
  if (rows[0].n < w.committed.length) return false;
  return (await divergedRows(app, my, w)) === 0;
}

/**
 * Polls a replica's /health every 250 ms and keeps the longest time it went unanswered,
 * leaving out the windows in which the scenario had killed the process (from the kill to
 * its replacement's first answer).
 */
export class HealthWatch {
  maxGapMs = 0;
  private urls: () => string[];
  private last = new Map<string, number>();
  private excused = new Set<string>();
  private timer: NodeJS.Timeout | undefined;

  constructor(urls: () => string[]) {
    this.urls = urls;
  }

  start(): void {
    const tick = async () => {
      await Promise.all(this.urls().map(async (url) => {
        const started = Date.now();
        try {
          const res = await fetch(`${url}/health`, { signal: AbortSignal.timeout(2500) });
          if (res.status !== 200) throw new Error(String(res.status));
          const prev = this.last.get(url);
          if (prev !== undefined && !this.excused.has(url)) this.maxGapMs = Math.max(this.maxGapMs, Date.now() - prev);
          this.last.set(url, Date.now());
          this.excused.delete(url);
        } catch {
          const prev = this.last.get(url) ?? started;
          if (!this.excused.has(url)) this.maxGapMs = Math.max(this.maxGapMs, Date.now() - prev);
        }
      }));
      this.timer = setTimeout(() => void tick(), 250);
    };
    void tick();
  }

  /** The process behind `url` was killed on purpose: its silence until it answers again is not counted. */
  excuse(url: string): void {
    this.excused.add(url);
  }

  forget(url: string): void {
    this.last.delete(url);
    this.excused.delete(url);
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
  }
}
