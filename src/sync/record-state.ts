import { createHash } from 'node:crypto';
import type { Row } from '../events/change-event.ts';
import { stableJson } from '../events/debezium.ts';
import type { VersionVector } from '../clock/version-vector.ts';

/**
 * Per-record sync state (DESIGN §6, "Record state"), kept in `sync_metadata` and read
 * once per batch for all keys of the batch.
 */
export interface EchoEntry {
  /** What the node held before the worker's write (null with `expectedAbsent`). */
  expected: VersionVector | null;
  expectedAbsent: boolean;
  /** The version written; for a delete, the tombstone version. */
  pushed: VersionVector;
  /** Digest of the after image written; null for a delete. */
  digest: string | null;
  delete: boolean;
}

export interface NodeState {
  /**
   * What this node is known to have seen: the version of its last genuine change, or the
   * pushed version of its last echo. The base of its next event that carries no usable
   * version (an insert, a key-only delete, a row an application inserted).
   */
  seen: VersionVector | null;
  /** What the node's row holds, as of the last event seen back: present, and its version column. */
  present: boolean;
  rowVersion: VersionVector | null;
  /** Writes made there whose echoes have not come back yet, oldest first. */
  fifo: EchoEntry[];
  /** The last source position applied from this node. */
  position: string | null;
}

export interface RecordState {
  version: VersionVector | null;
  /** Hybrid logical clock of `version`: 48-bit milliseconds, 16-bit counter (beyond 2^53, so a bigint). */
  hlc: bigint;
  origin: string | null;
  tombstone: boolean;
  /** The record's current value (the last winning after image); null when deleted. */
  value: Row | null;
  nodes: Record<string, NodeState>;
  /**
   * The open `manual` conflict of this record, by its sync_conflicts id, until it is
   * resolved and converged; PENDING_CONFLICT between detection and the commit that
   * numbers it.
   */
  openConflict: number | null;
}

export const PENDING_CONFLICT = -1;

export function emptyState(): RecordState {
  return { version: null, hlc: 0n, origin: null, tombstone: false, value: null, nodes: {}, openConflict: null };
}

export function nodeState(state: RecordState, node: string): NodeState {
  let n = state.nodes[node];
  if (!n) {
    n = { seen: null, present: false, rowVersion: null, fifo: [], position: null };
    state.nodes[node] = n;
  }
  return n;
}

/**
 * Digest of an after image as a node will emit it. Values are already canonical per
 * declared type (decimal scale, 6-digit timestamps, parsed JSON), and JSON objects are
 * compared with sorted keys, so the same row from any node digests the same.
 */
export function rowDigest(row: Row): string {
  return createHash('sha256').update(stableJson(row)).digest('hex').slice(0, 32);
}
