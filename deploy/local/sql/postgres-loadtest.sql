-- The load test's target tables (issue 6): database "loadtest", not captured by any
-- connector, so a load run measures the worker. Idempotent; stack.sh runs it on `up` as "app".
CREATE SCHEMA IF NOT EXISTS loadtest AUTHORIZATION app;
CREATE TABLE IF NOT EXISTS loadtest.products  (id bigint PRIMARY KEY, name text, qty integer, payload text, updated_at timestamp(6), _sync_version bytea);
CREATE TABLE IF NOT EXISTS loadtest.accounts  (id bigint PRIMARY KEY, name text, qty integer, payload text, updated_at timestamp(6), _sync_version bytea);
CREATE TABLE IF NOT EXISTS loadtest.shipments (id bigint PRIMARY KEY, name text, qty integer, payload text, updated_at timestamp(6), _sync_version bytea);
