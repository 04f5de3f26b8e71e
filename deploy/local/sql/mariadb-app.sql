-- Source tables captured by the app-mariadb Debezium connector (database "app").
-- Idempotent: stack.sh runs this on every `up`.

CREATE DATABASE IF NOT EXISTS app CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;
USE app;

CREATE TABLE IF NOT EXISTS customers (
  id            bigint NOT NULL PRIMARY KEY,
  name          varchar(255),
  email         varchar(255),
  balance       decimal(12,2),
  tags          json,
  updated_at    datetime(6),
  _sync_version varbinary(255)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE IF NOT EXISTS orders (
  id          bigint NOT NULL PRIMARY KEY,
  customer_id bigint,
  total       decimal(12,2),
  status      varchar(32),
  created_at  datetime(6)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
