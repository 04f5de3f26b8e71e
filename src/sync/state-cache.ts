import type { RecordState } from './record-state.ts';

/**
 * The committed record states of one owned partition, kept between its batches (DESIGN §6,
 * "Record state"; issue 13), so that a batch reads `sync_metadata` only for the keys it has
 * not seen since its lane started. Each record lives in exactly one partition of the
 * changes topic, and only the partition's owner writes its state, in the commit that
 * advances the partition's checkpoint: what that commit wrote is what the table holds.
 *
 * A batch takes its states out and its commit puts them back. A state in flight is
 * therefore never in the cache, and a batch that fails, is split, is fenced or is retried
 * leaves nothing stale behind: its records are read from the table again. The cache is
 * dropped with its lane (a revoke), and cleared when the partition's checkpoint moved
 * under it (another owner committed). Bounded: past `capacity` records the least recently
 * committed go.
 */
/** What the cache reports: records held (a change in their number) and lookups. */
export interface StateCacheObserver {
  records(change: number): void;
  lookups(hits: number, misses: number): void;
}

const UNOBSERVED: StateCacheObserver = { records: () => undefined, lookups: () => undefined };

export class StateCache {
  private readonly states = new Map<string, RecordState>();
  private closed = false;

  constructor(readonly capacity: number, private readonly observe: StateCacheObserver = UNOBSERVED) {}

  get size(): number {
    return this.states.size;
  }

  /** Takes out the cached states of `keys` of `entity`; the rest are to be read from the table. */
  take(entity: string, keys: Iterable<string>): { hits: Map<string, RecordState>; misses: string[] } {
    const hits = new Map<string, RecordState>();
    const misses: string[] = [];
    for (const key of keys) {
      const id = `${entity}\u0000${key}`;
      const s = this.states.get(id);
      if (s === undefined) {
        misses.push(key);
      } else {
        this.states.delete(id);
        hits.set(key, s);
      }
    }
    if (hits.size > 0) this.observe.records(-hits.size);
    this.observe.lookups(hits.size, misses.length);
    return { hits, misses };
  }

  /** Puts back the states a batch committed, as the most recently used. */
  put(byEntity: Map<string, Map<string, RecordState>>): void {
    if (this.capacity <= 0 || this.closed) return;
    const before = this.states.size;
    for (const [entity, states] of byEntity) {
      for (const [key, s] of states) {
        const id = `${entity}\u0000${key}`;
        this.states.delete(id); // a key put twice moves to the end
        this.states.set(id, s);
      }
    }
    let over = this.states.size - this.capacity;
    if (over > 0) {
      for (const id of this.states.keys()) {
        this.states.delete(id);
        if (--over === 0) break;
      }
    }
    this.observe.records(this.states.size - before);
  }

  clear(): void {
    this.observe.records(-this.states.size);
    this.states.clear();
  }

  /** The lane is gone: cleared, and a batch still in flight puts nothing back. */
  close(): void {
    this.clear();
    this.closed = true;
  }
}
