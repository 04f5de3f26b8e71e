import type pg from 'pg';
import { SYNC_METADATA_DDL } from '../sync/state-store.ts';
import { ConfigError } from '../errors.ts';

/**
 * Tables worker-sync keeps in its control database (the runbook's `sync_db`). Applied at
 * start-up under an advisory lock, so replicas starting together do not race; every
 * statement is idempotent.
 */
const STATEMENTS = [
  `CREATE TABLE IF NOT EXISTS audit_log (
     log_id          text        NOT NULL,
     seq             bigint      NOT NULL,
     kind            text        NOT NULL CHECK (kind IN ('change', 'conflict', 'resolve', 'admin')),
     event_id        text,
     entity          text,
     record_key      json,
     op              text,
     source_node     text,
     source_position json,
     source_ts       timestamptz,
     before          json,
     after           json,
     changed_columns json,
     version         bytea,
     hlc             bigint,
     writes          json,
     actor           text,
     executed_at     timestamptz NOT NULL DEFAULT now(),
     payload_hash    bytea,
     leaf_hash       bytea,
     PRIMARY KEY (log_id, seq)
   )`,
  `CREATE INDEX IF NOT EXISTS audit_log_executed_at_idx ON audit_log (executed_at)`,
  `CREATE TABLE IF NOT EXISTS sync_checkpoints (
     consumer_group text        NOT NULL,
     topic          text        NOT NULL,
     partition      integer     NOT NULL,
     next_offset    bigint      NOT NULL,
     log_id         text        NOT NULL,
     last_seq       bigint      NOT NULL,
     updated_by     text,
     updated_at     timestamptz NOT NULL DEFAULT now(),
     PRIMARY KEY (consumer_group, topic, partition)
   )`,
  `CREATE TABLE IF NOT EXISTS sync_dead_letters (
     id          bigserial   PRIMARY KEY,
     reason      text        NOT NULL,
     error       text        NOT NULL,
     topic       text        NOT NULL,
     partition   integer     NOT NULL,
     "offset"    bigint      NOT NULL,
     entity      text,
     source_node text,
     record_key  text,
     payload     bytea,
     status      text        NOT NULL DEFAULT 'open',
     created_at  timestamptz NOT NULL DEFAULT now(),
     replayed_at timestamptz
   )`,
  `CREATE INDEX IF NOT EXISTS sync_dead_letters_open_idx ON sync_dead_letters (status, created_at)`,
  // Which deployment parked it, and what the payload is: the Debezium message as it came
  // ('debezium') or a routed change that waited behind a parked key ('change').
  `ALTER TABLE sync_dead_letters ADD COLUMN IF NOT EXISTS consumer_group text`,
  `ALTER TABLE sync_dead_letters ADD COLUMN IF NOT EXISTS payload_kind text NOT NULL DEFAULT 'debezium'`,
  `ALTER TABLE sync_dead_letters DROP CONSTRAINT IF EXISTS sync_dead_letters_status_check`,
  `ALTER TABLE sync_dead_letters ADD CONSTRAINT sync_dead_letters_status_check CHECK (status IN ('open', 'replaying', 'replayed', 'discarded'))`,
  `CREATE INDEX IF NOT EXISTS sync_dead_letters_parked_idx ON sync_dead_letters (entity, record_key) WHERE status = 'open'`,
  // The payload of a dead letter too large to travel the changes topic (WS_TOO_LARGE, or an
  // undecodable message past KAFKA_MAX_MESSAGE_BYTES once base64): ingest keeps it here, the
  // dead letter's record travels without it, and the sync stage's commit moves it into
  // sync_dead_letters, in the same transaction as the dead letter itself.
  `CREATE TABLE IF NOT EXISTS sync_staged_payloads (
     consumer_group text        NOT NULL,
     topic          text        NOT NULL,
     partition      integer     NOT NULL,
     "offset"       bigint      NOT NULL,
     payload        bytea       NOT NULL,
     staged_at      timestamptz NOT NULL DEFAULT now(),
     PRIMARY KEY (consumer_group, topic, partition, "offset")
   )`,
  SYNC_METADATA_DDL,
  `CREATE TABLE IF NOT EXISTS sync_nodes (
     id   smallint PRIMARY KEY,
     name text     NOT NULL UNIQUE
   )`,
  `CREATE TABLE IF NOT EXISTS sync_control (
     key        text        PRIMARY KEY,
     value      jsonb       NOT NULL,
     updated_at timestamptz NOT NULL DEFAULT now(),
     updated_by text
   )`,
  // Conflicts (DESIGN §6): both sides with their versions, values and clocks, the policy
  // and its winner. Auto-resolved ones are resolved and converged when detected; a manual
  // one stays open (resolved_at NULL) until an operator resolves it through the API or the
  // runbook's UPDATE; the worker then writes the winner everywhere and sets converged_at.
  `CREATE TABLE IF NOT EXISTS sync_conflicts (
     id                    bigserial   PRIMARY KEY,
     consumer_group        text        NOT NULL,
     entity                text        NOT NULL,
     record_key            text        NOT NULL,
     local_node            text,
     local_version         bytea,
     local_value           jsonb,
     local_hlc             bigint,
     local_deleted         boolean     NOT NULL DEFAULT false,
     incoming_node         text        NOT NULL,
     incoming_version      bytea,
     incoming_value        jsonb,
     incoming_hlc          bigint,
     incoming_deleted      boolean     NOT NULL DEFAULT false,
     merged_version        bytea,
     strategy              text        NOT NULL,
     suggested_winner      text,
     winner_node           text,
     winner_value          jsonb,
     winner_deleted        boolean,
     detected_at           timestamptz NOT NULL DEFAULT now(),
     resolved_at           timestamptz,
     resolution_strategy   text,
     resolved_by           text,
     converge_requested_at timestamptz,
     converged_at          timestamptz,
     event_id              text
   )`,
  `CREATE INDEX IF NOT EXISTS sync_conflicts_open_idx ON sync_conflicts (consumer_group, id) WHERE resolved_at IS NULL`,
  `CREATE INDEX IF NOT EXISTS sync_conflicts_converge_idx ON sync_conflicts (consumer_group, id) WHERE resolved_at IS NOT NULL AND converged_at IS NULL`,
  `CREATE INDEX IF NOT EXISTS sync_conflicts_detected_idx ON sync_conflicts (detected_at)`,
  // The open manual conflict of a record, while there is one.
  `ALTER TABLE sync_metadata ADD COLUMN IF NOT EXISTS open_conflict bigint`,
  // The value and the per-node state in their compact binary form (state-codec.ts).
  `ALTER TABLE sync_metadata ADD COLUMN IF NOT EXISTS state bytea`,
  // The signed audit log (DESIGN §7). Per log: the owner's epoch (a zombie owner is
  // fenced at commit), the Merkle frontier of its leaves, and its last checkpoint.
  `CREATE TABLE IF NOT EXISTS audit_logs (
     log_id          text        PRIMARY KEY,
     epoch           bigint      NOT NULL DEFAULT 0,
     owner           text,
     tree_size       bigint      NOT NULL DEFAULT 0,
     frontier        bytea[]     NOT NULL DEFAULT '{}',
     checkpoint_size bigint      NOT NULL DEFAULT 0,
     checkpoint_hash bytea,
     checkpoint_at   timestamptz
   )`,
  `CREATE TABLE IF NOT EXISTS audit_checkpoints (
     log_id          text        NOT NULL,
     tree_size       bigint      NOT NULL,
     root            bytea       NOT NULL,
     prev_hash       bytea,
     signed_at       timestamptz NOT NULL,
     key_id          text        NOT NULL,
     signature       bytea       NOT NULL,
     checkpoint_hash bytea       NOT NULL,
     published_at    timestamptz,
     PRIMARY KEY (log_id, tree_size)
   )`,
  `CREATE INDEX IF NOT EXISTS audit_checkpoints_unpublished_idx ON audit_checkpoints (log_id) WHERE published_at IS NULL`,
  `CREATE TABLE IF NOT EXISTS audit_keys (
     key_id     text        PRIMARY KEY,
     algorithm  text        NOT NULL DEFAULT 'ed25519',
     public_key text        NOT NULL,
     created_at timestamptz NOT NULL DEFAULT now(),
     retired_at timestamptz
   )`,
  `CREATE INDEX IF NOT EXISTS audit_log_event_idx ON audit_log (event_id)`,
  // Leaf format 2 (leaf.ts): the payload enters the leaf through its own hash, kept when
  // `audit prune` clears the payload; the JSON columns are `json`, which keeps the text
  // that was hashed byte for byte (jsonb would re-serialize it).
  `ALTER TABLE audit_log ADD COLUMN IF NOT EXISTS payload_hash bytea`,
  `DO $$ BEGIN
     IF (SELECT data_type FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = 'audit_log' AND column_name = 'before') <> 'json' THEN
       ALTER TABLE audit_log ALTER COLUMN record_key TYPE json USING record_key::json, ALTER COLUMN source_position TYPE json USING source_position::json,
         ALTER COLUMN before TYPE json USING before::json, ALTER COLUMN after TYPE json USING after::json, ALTER COLUMN writes TYPE json USING writes::json,
         ALTER COLUMN changed_columns TYPE json USING array_to_json(changed_columns);
     END IF;
   END $$`,
  // C2SP checkpoints (note.ts): each checkpoint's signed note, the frontier it signed (a
  // consistency proof from it reads only the leaves after it), and a witness's
  // cosignature lines with when they came; audit_witness keeps what the witness cosigned last.
  `ALTER TABLE audit_checkpoints ADD COLUMN IF NOT EXISTS note text`,
  `ALTER TABLE audit_checkpoints ADD COLUMN IF NOT EXISTS frontier bytea[]`,
  `ALTER TABLE audit_checkpoints ADD COLUMN IF NOT EXISTS cosignatures text`,
  `ALTER TABLE audit_checkpoints ADD COLUMN IF NOT EXISTS witnessed_at timestamptz`,
  `CREATE TABLE IF NOT EXISTS audit_witness (
     log_id     text        NOT NULL,
     witness    text        NOT NULL,
     tree_size  bigint      NOT NULL,
     updated_at timestamptz NOT NULL DEFAULT now(),
     PRIMARY KEY (log_id, witness)
   )`,
];

const LOCK_KEY = 0x57_53_59_4e; // "WSYN"

export async function migrateControlSchema(pool: pg.Pool): Promise<void> {
  const client = await pool.connect();
  try {
    const { rows } = await client.query<{ server_encoding: string }>('SHOW server_encoding');
    if (rows[0]?.server_encoding !== 'UTF8') {
      throw new ConfigError('DATABASE_URL', `the control database's encoding is ${rows[0]?.server_encoding}; the audit log's leaf hashes need UTF8 (create it with ENCODING 'UTF8')`);
    }
    await client.query('SELECT pg_advisory_lock($1)', [LOCK_KEY]);
    try {
      for (const sql of STATEMENTS) await client.query(sql);
    } finally {
      await client.query('SELECT pg_advisory_unlock($1)', [LOCK_KEY]);
    }
  } finally {
    client.release();
  }
}

/** Gives every configured node a small integer id (used by version vectors), stable once assigned. */
export async function registerNodes(pool: pg.Pool, names: string[]): Promise<Map<string, number>> {
  await pool.query(
    `INSERT INTO sync_nodes (id, name)
     SELECT COALESCE((SELECT max(id) FROM sync_nodes), 0) + row_number() OVER (ORDER BY n), n
     FROM unnest($1::text[]) AS n
     WHERE n NOT IN (SELECT name FROM sync_nodes)
     ON CONFLICT (name) DO NOTHING`,
    [names],
  );
  const { rows } = await pool.query<{ id: number; name: string }>('SELECT id, name FROM sync_nodes');
  return new Map(rows.map((r) => [r.name, r.id]));
}
