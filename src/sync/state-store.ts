import type pg from 'pg';
import { decodeVersion as decode, encodeVersion as encode } from '../clock/active.ts';
import type { VersionVector } from '../clock/version-vector.ts';
import type { Row } from '../events/change-event.ts';
import type { EchoEntry, NodeState, RecordState } from './record-state.ts';
import { decodeState, StateEncoder } from './state-codec.ts';
import { boolArray, byteaArray, int8Array, textArray } from '../pg-binary.ts';

/**
 * `sync_metadata`: one row per (entity, key) holding the record state of DESIGN §6.
 * Read once per batch for all keys of the batch, written in the checkpoint transaction.
 * The version is stored encoded (format 1) so SQL can compare it with the version
 * columns of the nodes. The value and the per-node state are one compact binary `state`
 * (state-codec.ts). Rows written before it hold them as jsonb in `value` and `nodes`, and
 * are read from there until their next write moves them to `state`.
 */
export const SYNC_METADATA_DDL = `CREATE TABLE IF NOT EXISTS sync_metadata (
  entity      text        NOT NULL,
  record_key  text        NOT NULL,
  version     bytea,
  hlc         bigint      NOT NULL DEFAULT 0,
  origin_node text,
  tombstone   boolean     NOT NULL DEFAULT false,
  value       jsonb,
  nodes       jsonb       NOT NULL DEFAULT '{}',
  state       bytea,
  updated_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (entity, record_key)
)`;

type Pair = [number, number];
interface NodeJson {
  seen: Pair[] | null;
  present: boolean;
  rv?: Pair[] | null;
  fifo: Array<{ e: Pair[] | null; a: boolean; p: Pair[]; d: string | null; x: boolean }>;
  pos: string | null;
}

const vv = (p: Pair[] | null): VersionVector | null => (p === null ? null : p.map(([i, c]) => [i, c] as const));

/** A row written before the `state` column: its per-node state as the jsonb it was. */
function nodesFromJson(json: Record<string, NodeJson>): Record<string, NodeState> {
  const out: Record<string, NodeState> = {};
  for (const [name, n] of Object.entries(json)) {
    out[name] = {
      seen: vv(n.seen), present: n.present, rowVersion: vv(n.rv ?? null), position: n.pos,
      fifo: n.fifo.map((e): EchoEntry => ({ expected: vv(e.e), expectedAbsent: e.a, pushed: vv(e.p)!, digest: e.d, delete: e.x })),
    };
  }
  return out;
}

/**
 * A batch's record states, each key read by the primary key whatever the statistics say.
 * `entity = $1 AND record_key = ANY($2)` lets the planner use the index for the entity
 * alone and filter every row of it when its statistics are stale: an entity that was not
 * there at the last ANALYZE looks like one row. That took 150 ms a call, 2.2 ms of
 * PostgreSQL a committed event, in a load run against an entity of 50,000 records
 * (bench/RESULTS.md, issue 13). The LIMIT keeps the lateral lookup from being flattened
 * into a join, which the same statistics would turn into a hash of the whole entity.
 */
export const STATE_LOAD_SQL = `SELECT m.record_key, m.version, m.hlc, m.origin_node, m.tombstone, m.state, m.value, m.nodes, m.open_conflict
  FROM unnest($2::text[]) AS k(record_key)
  CROSS JOIN LATERAL (SELECT * FROM sync_metadata s WHERE s.entity = $1 AND s.record_key = k.record_key LIMIT 1) m`;

export class StateStore {
  async load(db: pg.Pool | pg.PoolClient, entity: string, keys: string[]): Promise<Map<string, RecordState>> {
    const { rows } = await db.query<{ record_key: string; version: Buffer | null; hlc: string; origin_node: string | null; tombstone: boolean; state: Buffer | null; value: Row | null; nodes: Record<string, NodeJson>; open_conflict: string | null }>(
      STATE_LOAD_SQL, [entity, textArray(keys)]);
    const out = new Map<string, RecordState>();
    for (const r of rows) {
      const { value, nodes } = r.state !== null ? decodeState(r.state) : { value: r.value, nodes: nodesFromJson(r.nodes) };
      out.set(r.record_key, {
        version: r.version === null ? null : decode(r.version),
        hlc: BigInt(r.hlc),
        origin: r.origin_node,
        tombstone: r.tombstone,
        value,
        nodes,
        openConflict: r.open_conflict === null ? null : Number(r.open_conflict),
      });
    }
    return out;
  }

  /** Upserts the states of one entity in one statement, its arrays sent in binary (pg-binary.ts). */
  async save(db: pg.PoolClient, entity: string, states: Map<string, RecordState>): Promise<void> {
    if (states.size === 0) return;
    const keys: string[] = [];
    const versions: Array<Buffer | null> = [];
    const hlcs: bigint[] = [];
    const origins: Array<string | null> = [];
    const tombstones: boolean[] = [];
    const encoder = new StateEncoder(states.size);
    const conflicts: Array<number | null> = [];
    for (const [key, s] of states) {
      if (s.openConflict !== null && s.openConflict < 0) throw new Error(`record ${entity} ${key}: its open conflict was never numbered`);
      conflicts.push(s.openConflict);
      keys.push(key);
      versions.push(s.version === null ? null : encode(s.version));
      hlcs.push(s.hlc);
      origins.push(s.origin);
      tombstones.push(s.tombstone);
      encoder.add(s.value, s.nodes);
    }
    await db.query(
      `INSERT INTO sync_metadata (entity, record_key, version, hlc, origin_node, tombstone, value, nodes, state, open_conflict, updated_at)
       SELECT $1, k, v, h, o, t, NULL, '{}', s, c, now()
       FROM unnest($2::text[], $3::bytea[], $4::bigint[], $5::text[], $6::bool[], $7::bytea[], $8::bigint[]) AS u(k, v, h, o, t, s, c)
       ON CONFLICT (entity, record_key) DO UPDATE SET version = EXCLUDED.version, hlc = EXCLUDED.hlc, origin_node = EXCLUDED.origin_node,
         tombstone = EXCLUDED.tombstone, value = NULL, nodes = '{}', state = EXCLUDED.state, open_conflict = EXCLUDED.open_conflict, updated_at = now()`,
      [entity, textArray(keys), byteaArray(versions), int8Array(hlcs), textArray(origins), boolArray(tombstones), byteaArray(encoder.end()), int8Array(conflicts)],
    );
  }
}
