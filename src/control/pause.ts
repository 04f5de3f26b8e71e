import type pg from 'pg';

/**
 * POST /sync/pause and /sync/resume (DESIGN §8, §9): the sync stage holds its batches
 * while paused; ingest keeps routing, so nothing is lost and the held changes apply in
 * order on resume. The flag's durable copy is a sync_control row per deployment, which
 * every replica reads, so neither a restart nor a Redis FLUSHALL resumes a paused fleet.
 *
 * Its own folder, below the three that use it: the HTTP API sets it, the control loop
 * (src/sync/conflict-service.ts) follows the durable flag, and the sync stage waits on
 * it. None of them imports the others for it.
 */
export class PauseGate {
  private paused = false;
  private stopped = false;
  private waiters: Array<() => void> = [];
  /** Bumped by every local change, so a poll that started before one cannot undo it. */
  private generation = 0;

  get version(): number {
    return this.generation;
  }

  /** The durable flag as a poll read it; ignored when a local change came after the poll began. */
  setFromPoll(paused: boolean, versionAtStart: number): boolean {
    return versionAtStart === this.generation ? this.apply(paused) : false;
  }

  get isPaused(): boolean {
    return this.paused;
  }

  set(paused: boolean): boolean {
    this.generation++;
    return this.apply(paused);
  }

  private apply(paused: boolean): boolean {
    if (this.paused === paused) return false;
    this.paused = paused;
    if (!paused) this.flush();
    return true;
  }

  /**
   * Resolves true when not paused, false when the worker stops while paused: the caller
   * then commits nothing, and what it holds is read again after the restart.
   */
  wait(): Promise<boolean> {
    if (!this.paused) return Promise.resolve(true);
    if (this.stopped) return Promise.resolve(false);
    return new Promise((resolve) => this.waiters.push(() => resolve(!this.paused)));
  }

  get stopping(): boolean {
    return this.stopped;
  }

  stop(): void {
    this.stopped = true;
    this.flush();
  }

  private flush(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const r of w) r();
  }
}

const key = (group: string) => `paused:${group}`;

export async function readPaused(db: pg.Pool, group: string): Promise<{ paused: boolean; by: string | null; at: Date | null }> {
  const { rows } = await db.query<{ value: { paused?: boolean }; updated_by: string | null; updated_at: Date }>(
    'SELECT value, updated_by, updated_at FROM sync_control WHERE key = $1', [key(group)]);
  const r = rows[0];
  return { paused: r?.value.paused === true, by: r?.updated_by ?? null, at: r?.updated_at ?? null };
}

export async function writePaused(db: pg.Pool, group: string, paused: boolean, by: string): Promise<void> {
  await db.query(
    `INSERT INTO sync_control (key, value, updated_at, updated_by) VALUES ($1, $2, now(), $3)
     ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = now(), updated_by = EXCLUDED.updated_by`,
    [key(group), JSON.stringify({ paused }), by],
  );
}
