import type { Canonical } from './values.ts';

export type Op = 'c' | 'u' | 'd' | 'r' | 't';

/** Entity column name -> canonical value. */
export type Row = Record<string, Canonical>;

/** Where a change came from, precise enough to recognise a redelivery (DESIGN §6). */
export interface SourcePosition {
  /** Kafka coordinates of the Debezium message. */
  topic: string;
  partition: number;
  offset: number;
  /** Connector-specific position: PostgreSQL lsn+sequence, MariaDB file/pos/row/gtid, MongoDB ts+ord. */
  source: Record<string, string | number | null>;
}

/** One normalised source change: the unit the rest of the worker reasons about. */
export interface ChangeEvent {
  /** Stable id of this source change: its Debezium topic/partition/offset. */
  id: string;
  entity: string;
  node: string;
  op: Op;
  /** Key columns in the entity's key order; null only for a truncate. */
  key: Row | null;
  /** Canonical text of the key (JSON of the key values in key order). */
  keyText: string;
  before: Row | null;
  after: Row | null;
  /** Columns whose value differs between before and after (updates with a before image). */
  changed: string[] | null;
  /** The version column as the row held it (the event's base), if the image carried it. */
  baseVersion: Buffer | null;
  /** Source commit time, ms (MariaDB: whole seconds). */
  sourceTsMs: number;
  /** When Debezium emitted the event (envelope ts_ms). */
  emittedTsMs: number;
  position: SourcePosition;
  transactionId: string | null;
  /**
   * Set on the command that converges a resolved conflict (DESIGN §6, manual): it travels
   * the changes topic like a change, so its record's lane applies it in order.
   */
  resolve?: ResolveCommand;
}

/** An operator's resolution of an open conflict, carried to the record's lane through the changes topic. */
export interface ResolveCommand {
  conflictId: number;
  /** The winning value; null when the winner is a delete. */
  value: Row | null;
  winnerNode: string | null;
  by: string;
  strategy: string;
  atMs: number;
}

/** The null value Debezium writes after a delete so compaction can drop the key. Never data. */
export interface Tombstone {
  tombstone: true;
  topic: string;
  partition: number;
  offset: number;
}
