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
