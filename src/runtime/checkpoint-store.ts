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
    const fenced = await this.advanceMany(client, [{ topic, partition, expected, next, firstOffset }], by);
    if (fenced.size > 0) throw checkpointFenced(topic, partition, expected);
  }

  /**
   * A cycle's checkpoints, advanced together inside its transaction: `advance` for every
   * partition at once, in two statements (partitions with a checkpoint, and partitions
   * committing their first). Each row is still compared-and-set on its own; the ones that
   * did not move (another owner committed) are returned, and the caller must leave their
   * partitions' work out of the transaction. A gap throws, as in `advance`.
   */
  async advanceMany(client: pg.PoolClient, items: Array<{ topic: string; partition: number; expected: Checkpoint | null; next: Checkpoint; firstOffset: number }>, by: string): Promise<Set<string>> {
    for (const it of items) {
      if (it.expected !== null && it.firstOffset > it.expected.nextOffset) throw new CheckpointGapError(`${it.topic}/${it.partition}`, it.expected.nextOffset, it.firstOffset);
    }
    const moved = new Set<string>();
    const known = items.filter((it) => it.expected !== null);
    const fresh = items.filter((it) => it.expected === null);
    const cols = (list: typeof items) => [list.map((it) => it.topic), list.map((it) => it.partition), list.map((it) => it.next.nextOffset), list.map((it) => it.next.logId), list.map((it) => it.next.lastSeq)];
    if (known.length > 0) {
      const { rows } = await client.query<{ topic: string; partition: number }>(
        `UPDATE sync_checkpoints AS c
           SET next_offset = u.next_offset, log_id = u.log_id, last_seq = u.last_seq, updated_by = $2, updated_at = now()
         FROM unnest($3::text[], $4::int[], $5::bigint[], $6::text[], $7::bigint[], $8::bigint[], $9::bigint[]) AS u(topic, partition, next_offset, log_id, last_seq, expected, first_offset)
         WHERE c.consumer_group = $1 AND c.topic = u.topic AND c.partition = u.partition
           AND c.next_offset = u.expected AND c.next_offset >= u.first_offset
         RETURNING c.topic, c.partition`,
        [this.group, by, ...cols(known), known.map((it) => it.expected!.nextOffset), known.map((it) => it.firstOffset)],
      );
      for (const r of rows) moved.add(`${r.topic}/${r.partition}`);
    }
    if (fresh.length > 0) {
      const { rows } = await client.query<{ topic: string; partition: number }>(
        `INSERT INTO sync_checkpoints (consumer_group, topic, partition, next_offset, log_id, last_seq, updated_by, updated_at)
         SELECT $1, u.topic, u.partition, u.next_offset, u.log_id, u.last_seq, $2, now()
         FROM unnest($3::text[], $4::int[], $5::bigint[], $6::text[], $7::bigint[]) AS u(topic, partition, next_offset, log_id, last_seq)
         ON CONFLICT (consumer_group, topic, partition) DO NOTHING
         RETURNING topic, partition`,
        [this.group, by, ...cols(fresh)],
      );
      for (const r of rows) moved.add(`${r.topic}/${r.partition}`);
    }
    return new Set(items.map((it) => `${it.topic}/${it.partition}`).filter((k) => !moved.has(k)));
  }
}

/** The error of a partition whose checkpoint another owner moved: its transaction must not commit its work. */
export function checkpointFenced(topic: string, partition: number, expected: Checkpoint | null): CheckpointFencedError {
  return new CheckpointFencedError(`checkpoint of ${topic}/${partition} moved past offset ${expected?.nextOffset ?? 'none'}: another owner committed`);
}
