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
