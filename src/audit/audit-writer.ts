import type pg from 'pg';
import { CheckpointFencedError, WorkerSyncError } from '../errors.ts';
import { append, rootOf, type Frontier } from './merkle.ts';
import { signCheckpoint, type SigningKey } from './signing.ts';

/** A log's owner changed since this writer claimed it: its commit must not land. */
export class EpochFencedError extends CheckpointFencedError {
  constructor(message: string) {
    super(message);
    this.name = 'EpochFencedError';
  }
}

interface LogRow {
  epoch: string;
  tree_size: string;
  frontier: Buffer[];
  checkpoint_size: string;
  checkpoint_hash: Buffer | null;
  checkpoint_at: Date | null;
}

/**
 * The writing side of the signed audit log (DESIGN §7), inside each batch's commit:
 * - a lane claims its log when it gains the partition, bumping the log's epoch;
 * - every commit locks the log's row, checks the epoch (a zombie owner is refused), appends
 *   the batch's leaf hashes to the stored Merkle frontier, and, every `leaves` leaves or
 *   `ms` milliseconds, signs a checkpoint (tree size, root, previous checkpoint's hash)
 *   with Ed25519 and stores it;
 * - `seal` signs what a log holds beyond its last checkpoint (idle logs, shutdown).
 * Hashing is per batch: O(batch + log n) per commit.
 */
export class AuditWriter {
  readonly key: SigningKey;
  private readonly every: { leaves: number; ms: number };

  constructor(key: SigningKey, every: { leaves: number; ms: number }) {
    this.key = key;
    this.every = every;
  }

  /** Takes ownership of a log: a new epoch, under which its commits are accepted. */
  async claim(db: pg.Pool | pg.Client, logId: string, owner: string): Promise<number> {
    const { rows } = await db.query<{ epoch: string }>(
      `INSERT INTO audit_logs (log_id, epoch, owner) VALUES ($1, 1, $2)
       ON CONFLICT (log_id) DO UPDATE SET epoch = audit_logs.epoch + 1, owner = EXCLUDED.owner
       RETURNING epoch`,
      [logId, owner],
    );
    return Number(rows[0]!.epoch);
  }

  /**
   * In the batch's transaction: append the leaves of seqs lastSeq+1.. and sign a
   * checkpoint at every multiple of the leaf interval they cross, and at the end when the
   * time interval has passed.
   */
  async append(client: pg.ClientBase, logId: string, epoch: number, lastSeq: number, leaves: Buffer[]): Promise<void> {
    if (leaves.length === 0) return;
    const { locked, fenced } = await this.lockMany(client, [{ logId, epoch }]);
    if (fenced.size > 0) throw fenced.get(logId)!;
    await this.appendLocked(client, locked, [{ logId, lastSeq, leaves }]);
  }

  /**
   * Locks the rows of a cycle's logs, in log order so that two transactions never wait on
   * each other's, and checks each one's epoch: a log whose owner changed is returned in
   * `fenced`, with its error, and must not be appended to in this transaction. With
   * `skipLocked`, a row another transaction holds is not waited for: its log is in `busy`.
   */
  async lockMany(client: pg.ClientBase, logs: Array<{ logId: string; epoch: number }>, skipLocked = false): Promise<{ locked: Map<string, LogRow>; fenced: Map<string, EpochFencedError>; busy: Set<string> }> {
    const locked = new Map<string, LogRow>();
    const fenced = new Map<string, EpochFencedError>();
    const busy = new Set<string>();
    if (logs.length === 0) return { locked, fenced, busy };
    const { rows } = await client.query<LogRow & { log_id: string }>(
      `SELECT log_id, epoch, tree_size, frontier, checkpoint_size, checkpoint_hash, checkpoint_at FROM audit_logs
       WHERE log_id = ANY($1::text[]) ORDER BY log_id FOR UPDATE${skipLocked ? ' SKIP LOCKED' : ''}`, [logs.map((l) => l.logId)]);
    const byId = new Map(rows.map((r) => [r.log_id, r]));
    for (const { logId, epoch } of logs) {
      const log = byId.get(logId);
      if (log && Number(log.epoch) === epoch) locked.set(logId, log);
      else if (!log && skipLocked) busy.add(logId); // held (a claimed log's row always exists)
      else fenced.set(logId, new EpochFencedError(`audit log ${logId}: epoch ${log?.epoch ?? 'none'} is not this writer's ${epoch}`));
    }
    return { locked, fenced, busy };
  }

  /**
   * Appends each log's leaves (seqs lastSeq+1..) to its locked row, signing a checkpoint at
   * every multiple of the leaf interval they cross and at the end when the time interval
   * has passed; then stores every log's frontier in one statement.
   */
  async appendLocked(client: pg.ClientBase, locked: Map<string, LogRow>, appends: Array<{ logId: string; lastSeq: number; leaves: Buffer[] }>): Promise<void> {
    const saved: Array<{ logId: string; f: Frontier; signed: Signed }> = [];
    for (const { logId, lastSeq, leaves } of appends) {
      if (leaves.length === 0) continue;
      const log = locked.get(logId);
      if (!log) throw new Error(`audit log ${logId} was not locked for this append`);
      if (Number(log.tree_size) !== lastSeq) {
        // Both move in one transaction, so they differ only when sync_db was restored in part.
        // The control database's state, not a record's fault: the lane retries in order (it
        // stops here) until an operator restores the rest, and nothing is dead-lettered.
        throw new WorkerSyncError('WS_CONTROL_DB', `audit log ${logId} holds ${log.tree_size} leaves but its checkpoint says ${lastSeq}: `
          + 'was sync_db restored without audit_logs and audit_checkpoints? Restore them with the rest of the backup', { retryable: true });
      }
      let f: Frontier = { size: lastSeq, roots: log.frontier };
      let signed: Signed = { size: Number(log.checkpoint_size), hash: log.checkpoint_hash, at: log.checkpoint_at?.getTime() ?? 0 };
      for (let i = 0; i < leaves.length;) {
        const room = Math.max(1, this.every.leaves - (f.size - signed.size));
        const take = Math.min(leaves.length - i, room);
        f = append(f, leaves.slice(i, i + take));
        i += take;
        if (f.size - signed.size >= this.every.leaves) signed = await this.sign(client, logId, f, signed);
      }
      if (f.size > signed.size && Date.now() - signed.at >= this.every.ms) signed = await this.sign(client, logId, f, signed);
      saved.push({ logId, f, signed });
    }
    if (saved.length > 0) await this.save(client, saved);
  }

  /**
   * Signs a checkpoint for everything the log holds beyond its last one (when due, or
   * always with force). Returns whether it did, or 'busy' when a commit holds the log: the
   * timer does not wait behind it, since that commit signs the log itself once the
   * interval has passed (appendLocked). A forced seal (shutdown) waits.
   */
  async seal(pool: pg.Pool, logId: string, epoch: number, onlyIfDue = true): Promise<boolean | 'busy'> {
    const client = await pool.connect();
    let broken: Error | undefined;
    try {
      await client.query('BEGIN');
      const log = await this.lock(client, logId, epoch, onlyIfDue);
      if (log === undefined) {
        await client.query('ROLLBACK');
        return 'busy';
      }
      const f: Frontier = { size: Number(log.tree_size), roots: log.frontier };
      const last: Signed = { size: Number(log.checkpoint_size), hash: log.checkpoint_hash, at: log.checkpoint_at?.getTime() ?? 0 };
      const due = f.size > last.size && (!onlyIfDue || Date.now() - last.at >= this.every.ms);
      if (due) await this.save(client, [{ logId, f, signed: await this.sign(client, logId, f, last) }]);
      await client.query('COMMIT');
      return due;
    } catch (err) {
      await client.query('ROLLBACK').catch(() => undefined);
      if (err instanceof EpochFencedError) return false;
      broken = err as Error; // the pool drops a client whose transaction failed
      throw err;
    } finally {
      client.release(broken);
    }
  }

  /** One log's row, locked and its epoch checked; undefined when `skipLocked` and another transaction holds it. */
  private async lock(client: pg.ClientBase, logId: string, epoch: number, skipLocked = false): Promise<LogRow | undefined> {
    const { locked, fenced } = await this.lockMany(client, [{ logId, epoch }], skipLocked);
    if (fenced.size > 0) throw fenced.get(logId)!;
    return locked.get(logId);
  }

  private async sign(client: pg.ClientBase, logId: string, f: Frontier, prev: Signed): Promise<Signed> {
    const now = Date.now();
    const signedAt = new Date(now).toISOString();
    const c = signCheckpoint(this.key, { logId, treeSize: f.size, root: rootOf(f), prevHash: prev.hash, signedAt });
    await client.query(
      `INSERT INTO audit_checkpoints (log_id, tree_size, root, prev_hash, signed_at, key_id, signature, checkpoint_hash, note, frontier)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
      [logId, f.size, c.body.root, c.body.prevHash, signedAt, c.body.keyId, c.signature, c.hash, c.note, f.roots],
    );
    return { size: f.size, hash: c.hash, at: now };
  }

  /** Each log's frontier and last checkpoint, all in one statement (a cycle's logs, or one sealed log). */
  private async save(client: pg.ClientBase, saved: Array<{ logId: string; f: Frontier; signed: Signed }>): Promise<void> {
    // A frontier is an array of hashes; the statement takes each as one bytea of its
    // concatenated 32-byte roots, split again in SQL.
    await client.query(
      `UPDATE audit_logs AS l SET tree_size = u.size, checkpoint_size = u.cp_size, checkpoint_hash = u.cp_hash, checkpoint_at = u.cp_at,
         frontier = COALESCE((SELECT array_agg(substring(u.roots FROM i * 32 + 1 FOR 32) ORDER BY i) FROM generate_series(0, length(u.roots) / 32 - 1) AS i), '{}')
       FROM unnest($1::text[], $2::bigint[], $3::bytea[], $4::bigint[], $5::bytea[], $6::timestamptz[]) AS u(log_id, size, roots, cp_size, cp_hash, cp_at)
       WHERE l.log_id = u.log_id`,
      [saved.map((s) => s.logId), saved.map((s) => s.f.size), saved.map((s) => Buffer.concat(s.f.roots)), saved.map((s) => s.signed.size),
        saved.map((s) => s.signed.hash), saved.map((s) => (s.signed.at === 0 ? null : new Date(s.signed.at)))],
    );
  }
}


interface Signed {
  size: number;
  hash: Buffer | null;
  /** ms since the epoch; 0: never signed */
  at: number;
}
