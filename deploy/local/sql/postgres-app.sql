-- Source tables captured by the app-postgres Debezium connector (database "app", schema public).
-- Idempotent: stack.sh runs this on every `up`, connected as role "app" so that "app" owns
-- the tables (required for publication.autocreate.mode=filtered).

CREATE TABLE IF NOT EXISTS public.customers (
  id            bigint PRIMARY KEY,
  name          text,
  email         text,
  balance       numeric(12,2),
  tags          json,
  updated_at    timestamp(6),
  _sync_version bytea
);

CREATE TABLE IF NOT EXISTS public.orders (
  id          bigint PRIMARY KEY,
  customer_id bigint,
  total       numeric(12,2),
  status      text,
  created_at  timestamp(6)
);

-- Full before-images on UPDATE/DELETE events.
ALTER TABLE public.customers REPLICA IDENTITY FULL;
ALTER TABLE public.orders REPLICA IDENTITY FULL;

-- One column per type of the README's type table; the type round-trip test syncs edge
-- values PostgreSQL -> MariaDB -> PostgreSQL through it.
CREATE TABLE IF NOT EXISTS public.type_probe (
  id            bigint PRIMARY KEY,
  c_smallint    smallint,
  c_integer     integer,
  c_bigint      bigint,
  c_double      double precision,
  c_decimal     numeric(20,6),
  c_text        text,
  c_uuid        uuid,
  c_boolean     boolean,
  c_json        jsonb,
  c_ts          timestamp(6),
  c_tstz        timestamptz(6),
  c_date        date,
  c_time        time(6),
  c_bytes       bytea,
  _sync_version bytea
);
ALTER TABLE public.type_probe REPLICA IDENTITY FULL;

-- Debezium's heartbeat row (heartbeat.action.query in connectors/app-postgres.json). The
-- replication slot belongs to this database, and logical decoding skips the WAL of every
-- other database of the cluster: the audit log's (sync_db), the load test's (loadtest).
-- When this database is quiet, the connector then confirms no newer position and the slot
-- keeps all of that WAL: the dev stack's pg_wal reached 57 GB in one day of load runs and
-- filled the disk. A write here every heartbeat gives the connector a change to confirm.
CREATE TABLE IF NOT EXISTS public.debezium_heartbeat (
  id integer PRIMARY KEY,
  at timestamptz NOT NULL
);
