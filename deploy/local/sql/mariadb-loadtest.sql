-- The load test's target tables (issue 6): database "loadtest", outside the connector's
-- database.include.list, so a load run measures the worker. Idempotent; run on `up`.
CREATE DATABASE IF NOT EXISTS loadtest CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;
GRANT ALL PRIVILEGES ON loadtest.* TO 'app'@'%', 'app'@'localhost';
CREATE TABLE IF NOT EXISTS loadtest.products  (id bigint PRIMARY KEY, name text, qty int, payload text, updated_at datetime(6), _sync_version varbinary(255));
CREATE TABLE IF NOT EXISTS loadtest.accounts  (id bigint PRIMARY KEY, name text, qty int, payload text, updated_at datetime(6), _sync_version varbinary(255));
CREATE TABLE IF NOT EXISTS loadtest.shipments (id bigint PRIMARY KEY, name text, qty int, payload text, updated_at datetime(6), _sync_version varbinary(255));
