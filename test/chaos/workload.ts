import type pg from 'pg';
import type mysql from 'mysql2/promise';

/**
 * The chaos suite's load: inserts and updates of `customers` in both databases, each key
 * written by one database only, so no change is concurrent with another and every source
 * change has exactly one audit row to find (DESIGN §3). Each write names itself in the row
 * (`chaos <key> <n>`), so the audit log and both tables can be checked against the exact
 * list of changes that committed.
 *
 * A write that fails is settled by reading the row back once its database answers: the
 * row holds write n only if it committed. A scenario holds a database's writes around the
 * moment it breaks that database, so what is in doubt stays rare.
 */
export type Db = 'pg' | 'maria';

export interface Write {
  id: number;
  n: number;
  db: Db;
}

interface KeyState {
  id: number;
  db: Db;
  n: number;
  inserted: boolean;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The row's values for write n of a key: what both databases must hold in the end. */
export function rowOf(id: number, n: number): { name: string; email: string; balance: string; tags: string; updated_at: string } {
  const us = String(n % 1_000_000).padStart(6, '0');
  return {
    name: `chaos ${id} ${n}`,
    email: `k${id}@chaos.test`,
    balance: `${n}.${String(n % 100).padStart(2, '0')}`,
    tags: JSON.stringify({ n, k: id % 7 }),
    updated_at: `2026-12-01 10:${String(Math.floor(n / 60) % 60).padStart(2, '0')}:${String(n % 60).padStart(2, '0')}.${us}`,
  };
}

export class Workload {
  readonly committed: Write[] = [];
  /** Writes whose outcome a failure left unknown until the row was read back (counted for the report). */
  settled = 0;
  failures = 0;
  private readonly keys: KeyState[] = [];
  private readonly held = new Set<Db>();
  private running = false;
  private loops: Promise<void>[] = [];

  constructor(
    private readonly app: pg.Pool,
    private readonly my: mysql.Pool,
    base: number,
    keysPerDb: number,
    /** Writes per second per database. */
    private readonly rate: number,
  ) {
    for (let i = 0; i < keysPerDb; i++) {
      this.keys.push({ id: base + i, db: 'pg', n: 0, inserted: false });
      this.keys.push({ id: base + keysPerDb + i, db: 'maria', n: 0, inserted: false });
    }
  }

  get ids(): number[] {
    return this.keys.map((k) => k.id);
  }

  /** The database a key is written in. */
  sourceOf(id: number): Db | undefined {
    return this.keys.find((k) => k.id === id)?.db;
  }

  /** The last committed write per key: the value every node must converge to. */
  finals(): Map<number, number> {
    const m = new Map<number, number>();
    for (const w of this.committed) m.set(w.id, w.n);
    return m;
  }

  hold(db: Db): void {
    this.held.add(db);
  }

  release(db: Db): void {
    this.held.delete(db);
  }

  start(): void {
    this.running = true;
    this.loops = (['pg', 'maria'] as const).map((db) => this.loop(db));
  }

  /** Runs until `changes` writes have committed (or `maxMs` passes). */
  async until(changes: number, maxMs: number): Promise<void> {
    const deadline = Date.now() + maxMs;
    while (this.committed.length < changes && Date.now() < deadline) await sleep(100);
  }

  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.loops);
  }

  private async loop(db: Db): Promise<void> {
    const mine = this.keys.filter((k) => k.db === db);
    const gap = 1000 / this.rate;
    let next = Date.now();
    while (this.running) {
      if (this.held.has(db)) {
        await sleep(50);
        next = Date.now();
        continue;
      }
      const fresh = mine.filter((k) => !k.inserted);
      const live = mine.filter((k) => k.inserted);
      // a fifth inserts while keys are left, the rest updates
      const k = fresh.length > 0 && (live.length === 0 || Math.random() < 0.2) ? fresh[0]! : live[Math.floor(Math.random() * live.length)]!;
      await this.write(k);
      next += gap;
      const wait = next - Date.now();
      if (wait > 0) await sleep(wait);
      else next = Date.now();
    }
  }

  private async write(k: KeyState): Promise<void> {
    const n = k.n + 1;
    const r = rowOf(k.id, n);
    try {
      if (k.db === 'pg') {
        if (k.inserted) await this.app.query('UPDATE customers SET name = $2, balance = $3, tags = $4, updated_at = $5 WHERE id = $1', [k.id, r.name, r.balance, r.tags, r.updated_at]);
        else await this.app.query('INSERT INTO customers (id, name, email, balance, tags, updated_at) VALUES ($1, $2, $3, $4, $5, $6)', [k.id, r.name, r.email, r.balance, r.tags, r.updated_at]);
      } else if (k.inserted) {
        await this.my.query('UPDATE customers SET name = ?, balance = ?, tags = ?, updated_at = ? WHERE id = ?', [r.name, r.balance, r.tags, r.updated_at, k.id]);
      } else {
        await this.my.query('INSERT INTO customers (id, name, email, balance, tags, updated_at) VALUES (?, ?, ?, ?, ?, ?)', [k.id, r.name, r.email, r.balance, r.tags, r.updated_at]);
      }
      this.commit(k, n);
    } catch {
      this.failures++;
      // did it commit? read the row back once the database answers again
      const held = await this.readBack(k);
      if (held === r.name) this.commit(k, n);
      else if (held === null && !k.inserted) { /* the insert did not happen: the key stays fresh */ } else k.n = n; // n is skipped: never committed
      this.settled++;
    }
  }

  private commit(k: KeyState, n: number): void {
    k.n = n;
    k.inserted = true;
    this.committed.push({ id: k.id, n, db: k.db });
  }

  private async readBack(k: KeyState): Promise<string | null> {
    for (;;) {
      try {
        if (k.db === 'pg') return ((await this.app.query('SELECT name FROM customers WHERE id = $1', [k.id])).rows[0]?.name as string | undefined) ?? null;
        const [rows] = await this.my.query('SELECT name FROM customers WHERE id = ?', [k.id]);
        return (rows as Array<{ name: string }>)[0]?.name ?? null;
      } catch {
        await sleep(250);
      }
    }
  }
}
