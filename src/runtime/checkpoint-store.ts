import type pg from 'pg';
import { CheckpointFencedError, CheckpointGapError } from '../errors.ts';

/** The consumer position committed with the audit rows: the truth offsets follow (DESIGN §8). */
export interface Checkpoint {
  nextOffset: number;
  logId: string;
  lastSeq: number;
}

export class CheckpointStore {
  private readonly pool: pg.Pool;
  private readonly group: string;

  constructor(pool: pg.Pool, group: string) {
    this.pool = pool;
    this.group = group;
  }

  async load(topic: string, partition: number): Promise<Checkpoint | null> {
    const { rows } = await this.pool.query<{ next_offset: string; log_id: string; last_seq: string }>(
      'SELECT next_offset, log_id, last_seq FROM sync_checkpoints WHERE consumer_group = $1 AND topic = $2 AND partition = $3',
      [this.group, topic, partition],
    );
    const r = rows[0];
    return r ? { nextOffset: Number(r.next_offset), logId: r.log_id, lastSeq: Number(r.last_seq) } : null;
  }

  async loadAll(topics: string[]): Promise<Map<string, Checkpoint>> {
    const { rows } = await this.pool.query<{ topic: string; partition: number; next_offset: string; log_id: string; last_seq: string }>(
      'SELECT topic, partition, next_offset, log_id, last_seq FROM sync_checkpoints WHERE consumer_group = $1 AND topic = ANY($2)',
      [this.group, topics],
    );
    return new Map(rows.map((r) => [`${r.topic}/${r.partition}`, { nextOffset: Number(r.next_offset), logId: r.log_id, lastSeq: Number(r.last_seq) }]));
  }

  /**
   * Advances the checkpoint inside the caller's transaction, compare-and-set on the
   * offset this lane last saw committed. If another owner moved it meanwhile (a rebalance
   * raced us, or a zombie), nothing is written and the transaction must roll back.
   *
   * Batches commit contiguously (DESIGN §3, invariant 8): `firstOffset`, the batch's first
   * offset, must not lie past the checkpoint's next offset, or the offsets in between would
   * be skipped without ever being committed. The statement itself checks it, so no caller
   * can skip a batch, whatever path led there.
   */
  async advance(client: pg.PoolClient, topic: string, partition: number, expected: Checkpoint | null, next: Checkpoint, by: string, firstOffset: number): Promise<void> {
    if (expected !== null && firstOffset > expected.nextOffset) throw new CheckpointGapError(`${topic}/${partition}`, expected.nextOffset, firstOffset);
    const { rowCount } = await client.query(
      `INSERT INTO sync_checkpoints AS c (consumer_group, topic, partition, next_offset, log_id, last_seq, updated_by, updated_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7, now())
       ON CONFLICT (consumer_group, topic, partition) DO UPDATE
         SET next_offset = EXCLUDED.next_offset, log_id = EXCLUDED.log_id, last_seq = EXCLUDED.last_seq,
             updated_by = EXCLUDED.updated_by, updated_at = now()
       WHERE c.next_offset IS NOT DISTINCT FROM $8::bigint AND c.next_offset >= $9::bigint`,
      [this.group, topic, partition, next.nextOffset, next.logId, next.lastSeq, by, expected?.nextOffset ?? null, firstOffset],
    );
    if (rowCount !== 1) {
      throw new CheckpointFencedError(`checkpoint of ${topic}/${partition} moved past offset ${expected?.nextOffset ?? 'none'}: another owner committed`);
    }
  }
}
