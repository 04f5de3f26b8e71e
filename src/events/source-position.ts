import type { NodeKind } from '../config/topology.ts';

type Obj = Record<string, unknown>;

const scalar = (v: unknown): string | number | null =>
  typeof v === 'string' || typeof v === 'number' ? v : v === undefined || v === null ? null : String(v);

/**
 * The connector-specific part of a source position: the tuple that orders changes within
 * one source and recognises a redelivered one (DESIGN §6, duplicates).
 * - PostgreSQL: lsn plus `sequence` (["last commit lsn","lsn"]) and txId;
 * - MariaDB/MySQL: binlog file, pos and row, plus gtid where enabled;
 * - MongoDB: ts (seconds) plus ord.
 */
export function sourcePosition(kind: NodeKind, source: Obj): Record<string, string | number | null> {
  switch (kind) {
    case 'postgres':
      return { lsn: scalar(source.lsn), sequence: scalar(source.sequence), txId: scalar(source.txId) };
    case 'mariadb':
    case 'mysql':
      return { file: scalar(source.file), pos: scalar(source.pos), row: scalar(source.row), gtid: scalar(source.gtid) };
    case 'mongodb':
      return { ts: scalar(source.ts_ms), ord: scalar(source.ord) };
  }
}

const pad = (v: string | number | null | undefined, w = 20) => String(v ?? '').padStart(w, '0');

/**
 * A string that sorts as the node's commit order, so "at or before the last applied
 * position" is one comparison (DESIGN §6, duplicates): PostgreSQL (commit lsn, lsn),
 * MariaDB (binlog file, pos, row), MongoDB (ts, ord).
 */
export function positionKey(kind: NodeKind, source: Record<string, string | number | null>): string {
  switch (kind) {
    case 'postgres': {
      let commit: string | number | null = source.lsn ?? null;
      if (typeof source.sequence === 'string') {
        try {
          const seq = JSON.parse(source.sequence) as Array<string | null>;
          commit = seq[0] ?? commit;
        } catch {
          // keep the lsn alone
        }
      }
      return `${pad(commit)}:${pad(source.lsn)}`;
    }
    case 'mariadb':
    case 'mysql':
      return `${source.file ?? ''}:${pad(source.pos)}:${pad(source.row, 6)}`;
    case 'mongodb':
      return `${pad(source.ts)}:${pad(source.ord, 10)}`;
  }
}
