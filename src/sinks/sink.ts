import type { EntityConfig } from '../config/topology.ts';
import type { Row } from '../events/change-event.ts';

/**
 * A sink writes one batch of one entity to one node (DESIGN §2 apply, §6): the batch is
 * already reduced to the last state per key; the sink runs one compare-and-set upsert
 * statement and one delete statement in one transaction, and reports per row what
 * happened. Sinks know no policy: the expected and new versions come from the caller.
 */
export interface UpsertRow {
  /** Entity key columns and values. */
  key: Row;
  /** Every entity column (key included), canonical values. */
  row: Row;
  /** The encoded version vector to write into the version column. */
  version: Buffer;
  /** The version the row must hold for the write to happen (NULL-safe). */
  expected: Buffer | null;
  /** The row must be absent (an insert), instead of holding `expected`. */
  expectAbsent: boolean;
}

export interface DeleteRow {
  key: Row;
  expected: Buffer | null;
  /** Delete whatever version the row holds (a delete that must win). */
  anyVersion: boolean;
}

/**
 * - `applied`: the statement changed the row;
 * - `already`: the row already held the new version (upsert) or was already gone (delete),
 *   which is what a replay after a crash finds;
 * - `cas-skipped`: the row held another version; nothing was written.
 */
export type WriteOutcome = 'applied' | 'already' | 'cas-skipped';

/** A row the node refused on its own merits, where the database reports it per row (MongoDB's write errors). */
export interface RowRejected {
  rejected: string;
}

export type RowOutcome = WriteOutcome | RowRejected;

export interface SinkResult {
  upserts: RowOutcome[];
  deletes: RowOutcome[];
}

export interface Sink {
  readonly node: string;
  applyBatch(entity: EntityConfig, upserts: UpsertRow[], deletes: DeleteRow[]): Promise<SinkResult>;
  /** Reads rows by key, canonical values plus the raw version (tests, repair, digests). */
  read(entity: EntityConfig, keys: Row[]): Promise<Array<{ row: Row; version: Buffer | null } | null>>;
  ping(): Promise<void>;
  /** The connection pool's connections: open, idle, and callers waiting for one (undefined where the driver keeps it to itself). */
  poolStats(): PoolStats | undefined;
  close(): Promise<void>;
}

export interface PoolStats {
  total: number;
  idle: number;
  waiting: number;
}

export function quotePg(ident: string): string {
  return `"${ident.replace(/"/g, '""')}"`;
}

export function quoteMy(ident: string): string {
  return `\`${ident.replace(/`/g, '``')}\``;
}
