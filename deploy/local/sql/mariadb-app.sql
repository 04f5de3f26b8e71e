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

-- One column per type of the README's type table (see postgres-app.sql).
CREATE TABLE IF NOT EXISTS type_probe (
  id            bigint NOT NULL PRIMARY KEY,
  c_smallint    smallint,
  c_integer     int,
  c_bigint      bigint,
  c_double      double,
  c_decimal     decimal(20,6),
  c_text        text,
  c_uuid        char(36),
  c_boolean     tinyint(1),
  c_json        json,
  c_ts          datetime(6),
  c_tstz        timestamp(6) NULL DEFAULT NULL,
  c_date        date,
  c_time        time(6),
  c_bytes       varbinary(255),
  _sync_version varbinary(255)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
