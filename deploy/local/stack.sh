#!/usr/bin/env bash
# worker-sync local development stack (no Docker).
#
#   bash deploy/local/stack.sh up              start everything (idempotent)
#   bash deploy/local/stack.sh down [--purge]  stop everything (--purge: also delete data)
#   bash deploy/local/stack.sh status [--json] one line per service, or one JSON object
#   bash deploy/local/stack.sh start|stop|restart|kill SERVICE
#                                              one service (kafka, connect, postgres, mariadb, redis, prometheus):
#                                              the chaos suite's outages; kill is SIGKILL
#
# Services (all on 127.0.0.1, all state under <repo>/.local/stack/):
#   Kafka 4.3 KRaft broker+controller  19092 / 19093   (STACK_KAFKA_PORT / STACK_KAFKA_CONTROLLER_PORT)
#   Kafka Connect (distributed)        18083           (STACK_CONNECT_PORT)
#   PostgreSQL                         55432           (STACK_PG_PORT)
#   MariaDB                            53306           (STACK_MARIADB_PORT)
#   Redis                              56379           (STACK_REDIS_PORT)
#   Prometheus (Debian's package)      19090           (STACK_PROMETHEUS_PORT): job worker-sync, the project's rules
# Debezium connectors app-postgres (topics pg.public.*) and app-mariadb (topics maria.app.*).
set -Eeuo pipefail

SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
REPO_ROOT=$(cd -- "$SCRIPT_DIR/../.." && pwd -P)
STACK_DIR="$REPO_ROOT/.local/stack"

HOST=127.0.0.1
KAFKA_PORT=${STACK_KAFKA_PORT:-19092}
KAFKA_CONTROLLER_PORT=${STACK_KAFKA_CONTROLLER_PORT:-19093}
CONNECT_PORT=${STACK_CONNECT_PORT:-18083}
PG_PORT=${STACK_PG_PORT:-55432}
MARIADB_PORT=${STACK_MARIADB_PORT:-53306}
REDIS_PORT=${STACK_REDIS_PORT:-56379}
PROM_PORT=${STACK_PROMETHEUS_PORT:-19090}

BOOTSTRAP="$HOST:$KAFKA_PORT"
CONNECT_URL="http://$HOST:$CONNECT_PORT"

KAFKA_LIBS="$STACK_DIR/kafka-libs"
CONNECT_PLUGINS="$STACK_DIR/connect-plugins"
MAVEN_STAMP="$STACK_DIR/.maven-stamp"
LOG_DIR="$STACK_DIR/logs"
RUN_DIR="$STACK_DIR/run"
KAFKA_HOME="$STACK_DIR/kafka"
KAFKA_DATA="$KAFKA_HOME/data"
CONNECT_HOME="$STACK_DIR/connect"
PG_DATA="$STACK_DIR/postgres"
MARIADB_HOME="$STACK_DIR/mariadb"
MARIADB_DATA="$MARIADB_HOME/data"
REDIS_HOME="$STACK_DIR/redis"
PROM_HOME="$STACK_DIR/prometheus"
PROM_RULES="$REPO_ROOT/deploy/prometheus/rules.yml"

POM="$SCRIPT_DIR/pom.xml"
LOG4J2_CONF="$SCRIPT_DIR/config/log4j2.properties"
JSON_TOOL="$SCRIPT_DIR/lib/stack-json.mjs"
CONNECTOR_NAMES=(app-postgres app-mariadb)
CDC_TOPICS=(pg.public.customers pg.public.orders pg.public.type_probe maria.app.customers maria.app.orders maria.app.type_probe)
REQUIRED_PLUGINS=(io.debezium.connector.postgresql.PostgresConnector io.debezium.connector.mariadb.MariaDbConnector)
PLUGIN_DIRS=(debezium-connector-postgres debezium-connector-mongodb debezium-connector-mariadb debezium-connector-jdbc)

# Unix sockets are limited to ~107 bytes; fall back to a short /tmp path for deep clones.
if ((${#RUN_DIR} <= 80)); then
  SOCK_DIR="$RUN_DIR"
else
  SOCK_DIR="/tmp/worker-sync-stack-$(printf '%s' "$STACK_DIR" | sha256sum | cut -c1-12)"
fi
PG_SOCK_DIR="$SOCK_DIR/pg"
MARIADB_SOCK="$SOCK_DIR/mariadb.sock"

KAFKA_PID="$RUN_DIR/kafka.pid"
CONNECT_PID="$RUN_DIR/connect.pid"
MARIADB_PID="$RUN_DIR/mariadb.pid"
REDIS_PID="$RUN_DIR/redis.pid"
PROM_PID="$RUN_DIR/prometheus.pid"

JAVA_TOOL_OPTS=(-Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Djava.awt.headless=true)

# ---------------------------------------------------------------------------- helpers

log() { printf '[stack] %s\n' "$*"; }
warn() { printf '[stack] %s\n' "$*" >&2; }
now() { date +%s; }

# fail <service> <logfile|-> <message>: report and exit non-zero.
fail() {
  local svc=$1 logfile=$2
  shift 2
  warn "FAILED: $svc: $*"
  if [[ $logfile != - && -f $logfile ]]; then
    warn "---- last 30 lines of $logfile ----"
    tail -n 30 -- "$logfile" >&2 || true
    warn "----"
  fi
  exit 1
}

is_root() { [[ $(id -u) -eq 0 ]]; }

port_open() { timeout 1 bash -c "exec 3<>/dev/tcp/$HOST/$1" 2>/dev/null; }

# pid_alive <pidfile> <cmdline-substring>: pid file names a live process of ours.
pid_alive() {
  local pidfile=$1 marker=$2 pid
  [[ -s $pidfile ]] || return 1
  pid=$(head -n1 -- "$pidfile" 2>/dev/null | tr -dc '0-9')
  [[ -n $pid ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$marker"
}

read_pid() { head -n1 -- "$1" 2>/dev/null | tr -dc '0-9'; }

# stop_pid <name> <pidfile> <marker> <timeout-seconds>
stop_pid() {
  local name=$1 pidfile=$2 marker=$3 timeout=$4 pid i
  if ! pid_alive "$pidfile" "$marker"; then
    rm -f -- "$pidfile"
    log "$name: not running"
    return 0
  fi
  pid=$(read_pid "$pidfile")
  log "$name: stopping (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < timeout * 5; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.2
  done
  if kill -0 "$pid" 2>/dev/null; then
    warn "$name: did not stop within ${timeout}s, killing"
    kill -KILL "$pid" 2>/dev/null || true
    sleep 0.5
  fi
  rm -f -- "$pidfile"
}

# spawn <pidfile> <stdout-log> <cmd...>: start detached in its own session, pid file = real pid.
spawn() {
  local pidfile=$1 out=$2
  shift 2
  # 9>&- : do not leak the stack lock fd into long-lived daemons
  setsid bash -c 'echo $$ >"$0"; exec "$@"' "$pidfile" "$@" </dev/null >>"$out" 2>&1 9>&- &
  disown || true
  local i
  for ((i = 0; i < 50; i++)); do
    [[ -s $pidfile ]] && return 0
    sleep 0.1
  done
  return 1
}

json_tool() { node "$JSON_TOOL" "$@"; }

# ---------------------------------------------------------------------------- step 1: packages

pg_bin_dir() {
  local p d
  if p=$(command -v pg_ctl 2>/dev/null) && p=$(readlink -f -- "$p") && [[ -x $(dirname -- "$p")/initdb ]]; then
    dirname -- "$p"
    return 0
  fi
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    [[ -x $d/pg_ctl && -x $d/initdb ]] && { echo "$d"; return 0; }
  done
  return 1
}

find_bin() { command -v "$1" 2>/dev/null || { [[ -x /usr/sbin/$1 ]] && echo "/usr/sbin/$1"; } || return 1; }

ensure_packages() {
  local -a missing=()
  command -v java >/dev/null || missing+=(openjdk-17-jre-headless)
  command -v mvn >/dev/null || missing+=(maven)
  pg_bin_dir >/dev/null || missing+=(postgresql)
  { find_bin mariadbd && find_bin mariadb-install-db && find_bin mariadb; } >/dev/null || missing+=(mariadb-server mariadb-client)
  { find_bin redis-server && find_bin redis-cli; } >/dev/null || missing+=(redis-server)
  command -v curl >/dev/null || missing+=(curl)
  { command -v prometheus && command -v promtool; } >/dev/null || missing+=(prometheus)
  { command -v gcc && command -v g++ && command -v make; } >/dev/null || missing+=(build-essential)
  command -v python3 >/dev/null || missing+=(python3)
  command -v node >/dev/null || fail packages - "node (>= 20) is required but not found on PATH"
  ((${#missing[@]} == 0)) && return 0
  is_root || fail packages - "missing packages (${missing[*]}); run as root or install them"
  log "packages: installing ${missing[*]}"
  mkdir -p "$LOG_DIR"
  {
    DEBIAN_FRONTEND=noninteractive apt-get update -q &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
  } >>"$LOG_DIR/apt.log" 2>&1 || fail packages "$LOG_DIR/apt.log" "apt-get install failed"
  # Debian starts the system services on install; this stack never uses them (own ports).
}

# ---------------------------------------------------------------------------- step 2: maven layout

layout_ok() {
  compgen -G "$KAFKA_LIBS/kafka_2.13-*.jar" >/dev/null || return 1
  compgen -G "$KAFKA_LIBS/connect-runtime-*.jar" >/dev/null || return 1
  compgen -G "$KAFKA_LIBS/kafka-tools-*.jar" >/dev/null || return 1
  local d
  for d in "${PLUGIN_DIRS[@]}"; do
    compgen -G "$CONNECT_PLUGINS/$d/*.jar" >/dev/null || return 1
  done
}

ensure_layout() {
  local hash
  hash=$(sha256sum -- "$POM" | cut -d' ' -f1)
  if layout_ok && [[ -f $MAVEN_STAMP && $(cat -- "$MAVEN_STAMP") == "$hash" ]]; then
    log "jars: up to date (maven skipped)"
    return 0
  fi
  log "jars: resolving Kafka + Debezium with maven (first run downloads from Maven Central)"
  # Never swap jars under running JVMs: they restart below with the new layout.
  if pid_alive "$CONNECT_PID" ConnectDistributed || pid_alive "$KAFKA_PID" kafka.Kafka; then
    log "jars: pom.xml changed, restarting Kafka and Connect on the new jars"
    stop_connect
    stop_kafka
  fi
  rm -rf -- "$KAFKA_LIBS" "$CONNECT_PLUGINS" "$MAVEN_STAMP"
  mkdir -p "$LOG_DIR"
  if ! mvn -q -B -Dstyle.color=never -f "$POM" process-resources \
    -Dstack.kafka.libs="$KAFKA_LIBS" -Dstack.connect.plugins="$CONNECT_PLUGINS" \
    >"$LOG_DIR/maven.log" 2>&1; then
    fail maven "$LOG_DIR/maven.log" "dependency resolution failed"
  fi
  layout_ok || fail maven "$LOG_DIR/maven.log" "maven finished but the jar layout is incomplete"
  echo "$hash" >"$MAVEN_STAMP"
}

# ---------------------------------------------------------------------------- PostgreSQL

PG_BIN=""
PG_OS_USER=""
PG_SUPERUSER=""

PG_SERVER_LOG="$LOG_DIR/postgres.log"
# Where the cluster lives when the postgres OS user cannot reach the clone (a clone under
# /root, say): a folder of its own outside the clone, linked from .local/stack/postgres.
# Named by an id kept in the stack folder, not by its path: a fresh clone at a path used
# before must not pick up an old cluster (its data would not match a fresh Kafka).
PG_OUTSIDE_ROOT=/var/lib/worker-sync-stack
PG_OUTSIDE=""

pg_outside_dir() {
  local idf="$STACK_DIR/.instance-id" d owner
  [[ -s $idf ]] || head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$idf"
  PG_OUTSIDE="$PG_OUTSIDE_ROOT/$(cat "$idf")"
  # Clusters left by clones that are gone (and not running) are removed.
  for d in "$PG_OUTSIDE_ROOT"/*/; do
    [[ -d $d && ${d%/} != "$PG_OUTSIDE" ]] || continue
    owner=$(cat "$d/.owner" 2>/dev/null || true)
    [[ -n $owner && -d $owner ]] && continue
    [[ -f $d/postgres/postmaster.pid ]] && pid_alive "$d/postgres/postmaster.pid" "${d%/}/postgres" && continue
    rm -rf -- "$d"
  done
}

pg_init_vars() {
  PG_BIN=$(pg_bin_dir) || fail postgres - "PostgreSQL binaries not found"
  if is_root; then PG_OS_USER=postgres; else PG_OS_USER=$(id -un); fi
  PG_SUPERUSER=$PG_OS_USER
  if is_root && id -u "$PG_OS_USER" >/dev/null 2>&1 && { [[ -L $STACK_DIR/postgres ]] || ! (cd / && runuser -u "$PG_OS_USER" -- test -x "$STACK_DIR"); }; then
    pg_outside_dir
    mkdir -p "$PG_OUTSIDE/postgres" "$PG_OUTSIDE/sock"
    printf '%s\n' "$STACK_DIR" >"$PG_OUTSIDE/.owner"
    chown "$PG_OS_USER" "$PG_OUTSIDE" "$PG_OUTSIDE/postgres" "$PG_OUTSIDE/sock"
    chmod 755 "$PG_OUTSIDE"
    [[ -L $STACK_DIR/postgres ]] || { rm -rf -- "$STACK_DIR/postgres"; ln -s "$PG_OUTSIDE/postgres" "$STACK_DIR/postgres"; }
    PG_DATA="$PG_OUTSIDE/postgres"
    PG_SOCK_DIR="$PG_OUTSIDE/sock"
    PG_SERVER_LOG="$PG_OUTSIDE/postgres.log"
    ln -sfn "$PG_SERVER_LOG" "$LOG_DIR/postgres-server.log"
  fi
}

as_pg() {
  if is_root; then
    (cd / && runuser -u "$PG_OS_USER" -- "$@")
  else
    (cd / && "$@")
  fi
}

pg_running() {
  [[ -f $PG_DATA/postmaster.pid ]] && pid_alive "$PG_DATA/postmaster.pid" "$PG_DATA" && port_open "$PG_PORT"
}

pg_super_psql() {
  as_pg "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$PG_SOCK_DIR" -p "$PG_PORT" -U "$PG_SUPERUSER" "$@"
}

start_postgres() {
  local logf="$LOG_DIR/postgres.log"
  pg_init_vars
  if pg_running; then
    log "postgres: already up on $HOST:$PG_PORT"
  else
    port_open "$PG_PORT" && fail postgres - "port $PG_PORT is in use by another process"
    mkdir -p "$PG_SOCK_DIR"
    touch "$logf"
    if is_root; then
      id -u "$PG_OS_USER" >/dev/null 2>&1 || fail postgres - "OS user $PG_OS_USER does not exist"
      chown "$PG_OS_USER" "$PG_SOCK_DIR" "$logf"
      touch "$PG_SERVER_LOG" && chown "$PG_OS_USER" "$PG_SERVER_LOG"
    fi
    if [[ ! -s $PG_DATA/PG_VERSION ]]; then
      log "postgres: initdb $PG_DATA"
      mkdir -p "$PG_DATA"
      is_root && chown "$PG_OS_USER" "$PG_DATA"
      chmod 700 "$PG_DATA"
      as_pg "$PG_BIN/initdb" -D "$PG_DATA" -U "$PG_SUPERUSER" -E UTF8 --no-locale \
        --auth-local=peer --auth-host=scram-sha-256 --no-instructions >>"$logf" 2>&1 ||
        fail postgres "$logf" "initdb failed"
    fi
    is_root && chown -R "$PG_OS_USER" "$PG_DATA"
    # pg_stat_statements, where this PostgreSQL has it (contrib): `npm run load -- --pg-statements`
    # reads time per statement from it
    local preload=""
    [[ -f $PG_BIN/../lib/pg_stat_statements.so ]] && preload="-c shared_preload_libraries=pg_stat_statements"
    log "postgres: starting on $HOST:$PG_PORT${preload:+ (with pg_stat_statements)}"
    as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$PG_SERVER_LOG" -w -t 60 -s \
      -o "-p $PG_PORT -k $PG_SOCK_DIR -c listen_addresses=$HOST -c wal_level=logical -c max_wal_senders=10 -c max_replication_slots=10 -c password_encryption=scram-sha-256 $preload" \
      start </dev/null >>"$logf" 2>&1 9>&- || fail postgres "$logf" "pg_ctl start failed"
    pg_running || fail postgres "$logf" "not answering on port $PG_PORT"
  fi
  provision_postgres
}

provision_postgres() {
  local logf="$LOG_DIR/postgres.log"
  pg_super_psql -d postgres >>"$logf" 2>&1 <<'SQL' || fail postgres "$logf" "creating roles/databases failed"
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'app') THEN
    CREATE ROLE app LOGIN REPLICATION PASSWORD 'app';
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'sync_user') THEN
    CREATE ROLE sync_user LOGIN PASSWORD 'sync_pass';
  END IF;
END
$$;
ALTER ROLE app LOGIN REPLICATION;
ALTER ROLE sync_user LOGIN;
SELECT 'CREATE DATABASE app OWNER app' WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = 'app')\gexec
SELECT 'CREATE DATABASE sync_db OWNER sync_user' WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = 'sync_db')\gexec
SELECT 'CREATE DATABASE loadtest OWNER app' WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = 'loadtest')\gexec
ALTER DATABASE app OWNER TO app;
ALTER DATABASE sync_db OWNER TO sync_user;
-- the local stack's load harness reads every database's statements (pg_stat_statements)
GRANT pg_read_all_stats TO sync_user;
SQL
  # the view, where the library is loaded (a server started before the preload gets it at its next restart)
  if [[ $(pg_super_psql -d sync_db -Atc "SHOW shared_preload_libraries" 2>>"$logf") == *pg_stat_statements* ]]; then
    pg_super_psql -d sync_db -c "CREATE EXTENSION IF NOT EXISTS pg_stat_statements" >>"$logf" 2>&1 ||
      fail postgres "$logf" "CREATE EXTENSION pg_stat_statements failed"
  fi
  PGPASSWORD=app PGCONNECT_TIMEOUT=5 "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 \
    -h "$HOST" -p "$PG_PORT" -U app -d app -f "$SCRIPT_DIR/sql/postgres-app.sql" >>"$logf" 2>&1 ||
    fail postgres "$logf" "applying sql/postgres-app.sql failed"
  PGPASSWORD=app PGCONNECT_TIMEOUT=5 "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 \
    -h "$HOST" -p "$PG_PORT" -U app -d loadtest -f "$SCRIPT_DIR/sql/postgres-loadtest.sql" >>"$logf" 2>&1 ||
    fail postgres "$logf" "applying sql/postgres-loadtest.sql failed"
  log "postgres: roles app, sync_user; databases app, sync_db, loadtest; tables ready"
}

stop_postgres() {
  pg_init_vars
  if [[ -f $PG_DATA/postmaster.pid ]] && pid_alive "$PG_DATA/postmaster.pid" "$PG_DATA"; then
    log "postgres: stopping"
    as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -m fast -w -t 60 -s stop >>"$LOG_DIR/postgres.log" 2>&1 ||
      warn "postgres: pg_ctl stop reported an error (see $LOG_DIR/postgres.log)"
  else
    log "postgres: not running"
  fi
}

# ---------------------------------------------------------------------------- MariaDB

mariadb_running() { pid_alive "$MARIADB_PID" mariadbd && port_open "$MARIADB_PORT"; }

mariadb_root() {
  mariadb --no-defaults --protocol=socket -S "$MARIADB_SOCK" -u root --default-character-set=utf8mb4 "$@"
}

start_mariadb() {
  local logf="$LOG_DIR/mariadb.log" i mysqld_user
  mysqld_user=$(id -un)
  if mariadb_running; then
    log "mariadb: already up on $HOST:$MARIADB_PORT"
  else
    port_open "$MARIADB_PORT" && fail mariadb - "port $MARIADB_PORT is in use by another process"
    mkdir -p "$MARIADB_DATA" "$MARIADB_HOME/tmp" "$SOCK_DIR"
    if [[ ! -d $MARIADB_DATA/mysql ]]; then
      log "mariadb: mariadb-install-db $MARIADB_DATA"
      "$(find_bin mariadb-install-db)" --no-defaults --datadir="$MARIADB_DATA" --user="$mysqld_user" \
        --auth-root-authentication-method=normal --skip-test-db >>"$logf" 2>&1 ||
        fail mariadb "$logf" "mariadb-install-db failed"
    fi
    log "mariadb: starting on $HOST:$MARIADB_PORT"
    rm -f -- "$MARIADB_PID" "$MARIADB_SOCK"
    spawn "$MARIADB_PID.launcher" "$logf" "$(find_bin mariadbd)" --no-defaults \
      --user="$mysqld_user" --datadir="$MARIADB_DATA" --tmpdir="$MARIADB_HOME/tmp" \
      --socket="$MARIADB_SOCK" --pid-file="$MARIADB_PID" --log-error="$logf" \
      --port="$MARIADB_PORT" --bind-address="$HOST" --skip-name-resolve \
      --log-bin=mysql-bin --binlog-format=ROW --binlog-row-image=FULL --server-id=1 \
      --character-set-server=utf8mb4 --collation-server=utf8mb4_unicode_ci \
      --innodb-buffer-pool-size=128M ||
      fail mariadb "$logf" "could not launch mariadbd"
    rm -f -- "$MARIADB_PID.launcher"
    for ((i = 0; i < 300; i++)); do
      if [[ -S $MARIADB_SOCK ]] && mariadb-admin --no-defaults -S "$MARIADB_SOCK" -u root ping >/dev/null 2>&1 &&
        mariadb_running; then
        break
      fi
      sleep 0.2
    done
    mariadb_running || fail mariadb "$logf" "not answering on port $MARIADB_PORT"
  fi
  provision_mariadb
}

provision_mariadb() {
  local logf="$LOG_DIR/mariadb.log"
  mariadb_root >>"$logf" 2>&1 <<'SQL' || fail mariadb "$logf" "creating database/user failed"
CREATE DATABASE IF NOT EXISTS app CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;
CREATE USER IF NOT EXISTS 'app'@'%' IDENTIFIED BY 'app';
CREATE USER IF NOT EXISTS 'app'@'localhost' IDENTIFIED BY 'app';
GRANT ALL PRIVILEGES ON app.* TO 'app'@'%', 'app'@'localhost';
-- What Debezium needs: snapshot (SELECT, RELOAD, SHOW DATABASES, LOCK TABLES) and binlog
-- streaming (REPLICATION SLAVE; REPLICATION CLIENT is an alias of BINLOG MONITOR in 10.5+).
GRANT SELECT, RELOAD, SHOW DATABASES, LOCK TABLES, REPLICATION SLAVE, BINLOG MONITOR
  ON *.* TO 'app'@'%', 'app'@'localhost';
FLUSH PRIVILEGES;
SQL
  mariadb_root <"$SCRIPT_DIR/sql/mariadb-app.sql" >>"$logf" 2>&1 ||
    fail mariadb "$logf" "applying sql/mariadb-app.sql failed"
  mariadb_root <"$SCRIPT_DIR/sql/mariadb-loadtest.sql" >>"$logf" 2>&1 ||
    fail mariadb "$logf" "applying sql/mariadb-loadtest.sql failed"
  log "mariadb: databases app, loadtest, user app, tables ready"
}

stop_mariadb() { stop_pid mariadb "$MARIADB_PID" mariadbd 60; }

# ---------------------------------------------------------------------------- Redis

redis_running() { pid_alive "$REDIS_PID" redis-server && port_open "$REDIS_PORT"; }

start_redis() {
  local logf="$LOG_DIR/redis.log" i
  if redis_running; then
    log "redis: already up on $HOST:$REDIS_PORT"
    return 0
  fi
  port_open "$REDIS_PORT" && fail redis - "port $REDIS_PORT is in use by another process"
  mkdir -p "$REDIS_HOME"
  log "redis: starting on $HOST:$REDIS_PORT"
  rm -f -- "$REDIS_PID"
  "$(find_bin redis-server)" --port "$REDIS_PORT" --bind "$HOST" --protected-mode yes \
    --save "" --appendonly no --dir "$REDIS_HOME" --daemonize yes \
    --pidfile "$REDIS_PID" --logfile "$logf" </dev/null >>"$logf" 2>&1 9>&- ||
    fail redis "$logf" "redis-server failed to start"
  for ((i = 0; i < 100; i++)); do
    redis_running && break
    sleep 0.1
  done
  redis_running || fail redis "$logf" "not answering on port $REDIS_PORT"
}

stop_redis() { stop_pid redis "$REDIS_PID" redis-server 20; } # SIGTERM: clean shutdown, no RDB (save "")

# ---------------------------------------------------------------------------- Prometheus

prometheus_running() { pid_alive "$PROM_PID" prometheus && port_open "$PROM_PORT"; }

# Job worker-sync scrapes `npm start` (127.0.0.1:3003) and whatever a test or the load tool
# lists in $PROM_HOME/targets/*.json (file_sd, read every 5 s); the rules are the project's.
write_prometheus_config() {
  mkdir -p "$PROM_HOME/targets" "$PROM_HOME/data"
  cat >"$PROM_HOME/prometheus.yml" <<EOF
# written by deploy/local/stack.sh
global:
  scrape_interval: 5s
  evaluation_interval: 5s
rule_files:
  - $PROM_RULES
scrape_configs:
  - job_name: worker-sync
    static_configs:
      - targets: ['$HOST:3003']
    file_sd_configs:
      - files: ['$PROM_HOME/targets/*.json']
        refresh_interval: 5s
EOF
}

start_prometheus() {
  local logf="$LOG_DIR/prometheus.log" i
  write_prometheus_config
  if prometheus_running; then
    # the rules or targets may have changed: reload rather than restart
    curl -sf -m 5 -X POST "http://$HOST:$PROM_PORT/-/reload" >/dev/null || warn "prometheus: reload failed"
    log "prometheus: already up on $HOST:$PROM_PORT (reloaded)"
    return 0
  fi
  port_open "$PROM_PORT" && fail prometheus - "port $PROM_PORT is in use by another process"
  log "prometheus: starting on $HOST:$PROM_PORT"
  spawn "$PROM_PID" "$logf" "$(command -v prometheus)" --config.file="$PROM_HOME/prometheus.yml" \
    --storage.tsdb.path="$PROM_HOME/data" --storage.tsdb.retention.time=1d \
    --web.listen-address="$HOST:$PROM_PORT" --web.enable-lifecycle ||
    fail prometheus "$logf" "could not launch prometheus"
  for ((i = 0; i < 150; i++)); do
    prometheus_running && curl -sf -m 2 "http://$HOST:$PROM_PORT/-/ready" >/dev/null && break
    sleep 0.2
  done
  prometheus_running || fail prometheus "$logf" "not answering on port $PROM_PORT"
}

stop_prometheus() { stop_pid prometheus "$PROM_PID" prometheus 20; }

# ---------------------------------------------------------------------------- Kafka

kafka_java() {
  # kafka_java <log-file> <jvm/main args...>
  local logfile=$1
  shift
  java -Dlog4j2.configurationFile="$LOG4J2_CONF" -Dstack.log.file="$logfile" \
    -Dkafka.logs.dir="$LOG_DIR" -cp "$KAFKA_LIBS/*" "$@"
}

kafka_running() { pid_alive "$KAFKA_PID" kafka.Kafka && port_open "$KAFKA_PORT"; }

write_kafka_config() {
  mkdir -p "$KAFKA_HOME" "$KAFKA_DATA"
  cat >"$KAFKA_HOME/server.properties" <<EOF
# Generated by deploy/local/stack.sh - single node KRaft (combined broker + controller).
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@$HOST:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://$HOST:$KAFKA_PORT,CONTROLLER://$HOST:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://$HOST:$KAFKA_PORT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$KAFKA_DATA
num.network.threads=2
num.io.threads=4
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
auto.create.topics.enable=true
delete.topic.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
log.retention.hours=168
log.segment.bytes=104857600
EOF
  cat >"$KAFKA_HOME/admin.properties" <<EOF
request.timeout.ms=5000
default.api.timeout.ms=10000
EOF
}

# topic_cmd <args...>: org.apache.kafka.tools.TopicCommand against the local broker.
topic_cmd() {
  kafka_java "$LOG_DIR/kafka-tools.log" "${JAVA_TOOL_OPTS[@]}" org.apache.kafka.tools.TopicCommand \
    --bootstrap-server "$BOOTSTRAP" --command-config "$KAFKA_HOME/admin.properties" "$@"
}

start_kafka() {
  local logf="$LOG_DIR/kafka.log" out="$LOG_DIR/kafka.out" i cid
  write_kafka_config
  if kafka_running; then
    log "kafka: already up on $BOOTSTRAP"
    return 0
  fi
  port_open "$KAFKA_PORT" && fail kafka - "port $KAFKA_PORT is in use by another process"
  port_open "$KAFKA_CONTROLLER_PORT" && fail kafka - "port $KAFKA_CONTROLLER_PORT is in use by another process"
  if [[ ! -s $KAFKA_HOME/cluster.id ]]; then
    kafka_java "$LOG_DIR/kafka-tools.log" "${JAVA_TOOL_OPTS[@]}" kafka.tools.StorageTool random-uuid \
      >"$KAFKA_HOME/cluster.id.tmp" 2>>"$out" || fail kafka "$out" "StorageTool random-uuid failed"
    tr -d '[:space:]' <"$KAFKA_HOME/cluster.id.tmp" >"$KAFKA_HOME/cluster.id"
    rm -f -- "$KAFKA_HOME/cluster.id.tmp"
  fi
  cid=$(cat -- "$KAFKA_HOME/cluster.id")
  if [[ ! -f $KAFKA_DATA/meta.properties ]]; then
    log "kafka: formatting storage (cluster id $cid)"
    kafka_java "$LOG_DIR/kafka-tools.log" "${JAVA_TOOL_OPTS[@]}" kafka.tools.StorageTool format \
      -t "$cid" -c "$KAFKA_HOME/server.properties" --ignore-formatted >>"$out" 2>&1 ||
      fail kafka "$out" "StorageTool format failed"
  fi
  log "kafka: starting on $BOOTSTRAP (controller $HOST:$KAFKA_CONTROLLER_PORT)"
  rm -f -- "$KAFKA_PID"
  spawn "$KAFKA_PID" "$out" java -Xms256m -Xmx1g -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -Djava.awt.headless=true -Dlog4j2.configurationFile="$LOG4J2_CONF" -Dstack.log.file="$logf" \
    -Dkafka.logs.dir="$LOG_DIR" -cp "$KAFKA_LIBS/*" kafka.Kafka "$KAFKA_HOME/server.properties" ||
    fail kafka "$out" "could not launch the broker"
  for ((i = 0; i < 600; i++)); do
    pid_alive "$KAFKA_PID" kafka.Kafka || { tail -n 30 "$out" >>"$logf" 2>/dev/null; fail kafka "$logf" "broker process exited"; }
    port_open "$KAFKA_PORT" && break
    sleep 0.1
  done
  kafka_running || fail kafka "$logf" "broker not listening on $BOOTSTRAP after 60s"
}

# Wait until the broker serves metadata, then pre-create the CDC topics (1 partition each).
ensure_topics() {
  local logf="$LOG_DIR/kafka.log" deadline existing t rc=0
  local -a missing=() pids=()
  deadline=$(($(now) + 60))
  until existing=$(topic_cmd --list 2>>"$LOG_DIR/kafka-tools.log"); do
    (($(now) < deadline)) || fail kafka "$logf" "broker does not answer metadata requests"
    pid_alive "$KAFKA_PID" kafka.Kafka || fail kafka "$logf" "broker process exited"
    sleep 1
  done
  for t in "${CDC_TOPICS[@]}"; do
    grep -qxF -- "$t" <<<"$existing" || missing+=("$t")
  done
  if ((${#missing[@]} == 0)); then
    log "kafka: up; topics present: ${CDC_TOPICS[*]}"
    return 0
  fi
  log "kafka: up; creating topics ${missing[*]}"
  for t in "${missing[@]}"; do
    topic_cmd --create --if-not-exists --topic "$t" --partitions 1 --replication-factor 1 \
      >>"$LOG_DIR/kafka-tools.log" 2>&1 &
    pids+=($!)
  done
  for t in "${pids[@]}"; do wait "$t" || rc=1; done
  ((rc == 0)) || fail kafka "$LOG_DIR/kafka-tools.log" "topic creation failed"
}

stop_kafka() { stop_pid kafka "$KAFKA_PID" kafka.Kafka 90; }

# ---------------------------------------------------------------------------- Kafka Connect

connect_running() { pid_alive "$CONNECT_PID" ConnectDistributed && port_open "$CONNECT_PORT"; }

write_connect_config() {
  mkdir -p "$CONNECT_HOME"
  cat >"$CONNECT_HOME/connect-distributed.properties" <<EOF
# Generated by deploy/local/stack.sh - one-worker distributed Kafka Connect.
bootstrap.servers=$BOOTSTRAP
group.id=worker-sync-connect
listeners=http://$HOST:$CONNECT_PORT
rest.advertised.host.name=$HOST
rest.advertised.port=$CONNECT_PORT
rest.advertised.listener=http
plugin.path=$CONNECT_PLUGINS
# every Debezium plugin ships ServiceLoader manifests: skip the slow reflective scan
plugin.discovery=service_load
key.converter=org.apache.kafka.connect.json.JsonConverter
value.converter=org.apache.kafka.connect.json.JsonConverter
key.converter.schemas.enable=true
value.converter.schemas.enable=true
config.storage.topic=worker-sync-connect-configs
offset.storage.topic=worker-sync-connect-offsets
status.storage.topic=worker-sync-connect-status
config.storage.replication.factor=1
offset.storage.replication.factor=1
status.storage.replication.factor=1
offset.storage.partitions=1
status.storage.partitions=1
offset.flush.interval.ms=1000
# a restarted single worker gets its connectors back at once (default waits up to 5 min)
scheduled.rebalance.max.delay.ms=0
EOF
}

plugins_listed() {
  local body p
  body=$(curl -sf -m 3 "$CONNECT_URL/connector-plugins") || return 1
  for p in "${REQUIRED_PLUGINS[@]}"; do
    grep -qF -- "\"$p\"" <<<"$body" || return 1
  done
}

start_connect() {
  local logf="$LOG_DIR/connect.log" out="$LOG_DIR/connect.out" deadline
  write_connect_config
  if connect_running && plugins_listed; then
    log "connect: already up on $CONNECT_URL"
    return 0
  fi
  if ! pid_alive "$CONNECT_PID" ConnectDistributed; then
    port_open "$CONNECT_PORT" && fail connect - "port $CONNECT_PORT is in use by another process"
    log "connect: starting on $CONNECT_URL (distributed, plugin.path=.local/stack/connect-plugins)"
    rm -f -- "$CONNECT_PID"
    spawn "$CONNECT_PID" "$out" java -Xms256m -Xmx1g -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
      -Djava.awt.headless=true -Dlog4j2.configurationFile="$LOG4J2_CONF" -Dstack.log.file="$logf" \
      -Dkafka.logs.dir="$LOG_DIR" -cp "$KAFKA_LIBS/*" \
      org.apache.kafka.connect.cli.ConnectDistributed "$CONNECT_HOME/connect-distributed.properties" ||
      fail connect "$out" "could not launch the worker"
  fi
  deadline=$(($(now) + 180))
  until plugins_listed; do
    pid_alive "$CONNECT_PID" ConnectDistributed || { tail -n 30 "$out" >>"$logf" 2>/dev/null; fail connect "$logf" "worker process exited"; }
    (($(now) < deadline)) || fail connect "$logf" "REST API did not list the Debezium connectors within 180s"
    sleep 0.5
  done
  log "connect: up; Debezium Postgres + MariaDB plugins loaded"
}

stop_connect() { stop_pid connect "$CONNECT_PID" ConnectDistributed 60; }

# ---------------------------------------------------------------------------- connectors

connector_state() { # prints state word (+ traces) for one connector
  curl -sf -m 3 "$CONNECT_URL/connectors/$1/status" 2>/dev/null | json_tool connector-state
}

register_connectors() {
  local name file desired current code
  for name in "${CONNECTOR_NAMES[@]}"; do
    file="$SCRIPT_DIR/connectors/$name.json"
    case $name in
      app-postgres) desired=$(STACK_OVR_DB_PORT=$PG_PORT json_tool render-connector "$file") ;;
      app-mariadb) desired=$(STACK_OVR_DB_PORT=$MARIADB_PORT STACK_OVR_BOOTSTRAP=$BOOTSTRAP json_tool render-connector "$file") ;;
      *) desired=$(json_tool render-connector "$file") ;;
    esac
    current=$(curl -sf -m 5 "$CONNECT_URL/connectors/$name/config" 2>/dev/null || true)
    if json_tool config-equal "$desired" "$current"; then
      log "connector $name: config unchanged"
      continue
    fi
    code=$(curl -s -m 30 -o "$CONNECT_HOME/put-$name.json" -w '%{http_code}' -X PUT \
      -H 'Content-Type: application/json' --data-binary "$desired" "$CONNECT_URL/connectors/$name/config") || code=000
    case $code in
      200 | 201) log "connector $name: registered (HTTP $code)" ;;
      *)
        # Connect's answer can hide the cause (e.g. a validation NPE); show the last exceptions too.
        warn "connector $name: recent exceptions in $LOG_DIR/connect.log:"
        grep -E '^([a-z0-9_]+\.)+[A-Za-z0-9_$]*(Exception|Error)(: |$)' "$LOG_DIR/connect.log" 2>/dev/null |
          tail -n 5 | cut -c1-400 >&2 || true
        fail "connector $name" "$LOG_DIR/connect.log" "PUT /connectors/$name/config returned HTTP $code: $(head -c 2000 "$CONNECT_HOME/put-$name.json" 2>/dev/null)"
        ;;
    esac
  done
}

wait_connectors_running() {
  local name deadline st state restarted
  for name in "${CONNECTOR_NAMES[@]}"; do
    deadline=$(($(now) + 120))
    restarted=0
    while :; do
      st=$(connector_state "$name" || true)
      state=$(head -n1 <<<"$st")
      [[ $state == RUNNING ]] && break
      if [[ $state == FAILED ]]; then
        if ((restarted == 0)); then
          # A task that failed earlier (e.g. its database was down) gets one restart.
          warn "connector $name: FAILED, restarting failed instances once"
          curl -s -m 10 -o /dev/null -X POST "$CONNECT_URL/connectors/$name/restart?includeTasks=true&onlyFailed=true" || true
          restarted=1
          sleep 2
          continue
        fi
        warn "connector $name FAILED; Connect trace:"
        tail -n +2 <<<"$st" | head -c 20000 >&2
        fail "connector $name" "$LOG_DIR/connect.log" "connector or task FAILED"
      fi
      (($(now) < deadline)) || fail "connector $name" "$LOG_DIR/connect.log" "not RUNNING after 120s (state: ${state:-unknown})"
      sleep 0.5
    done
    log "connector $name: RUNNING"
  done
}

# ---------------------------------------------------------------------------- commands

with_lock() {
  mkdir -p "$STACK_DIR"
  exec 9>"$STACK_DIR/.lock"
  flock -w 900 9 || fail stack - "another stack.sh is running (lock $STACK_DIR/.lock)"
}

cmd_up() {
  local t0
  t0=$(now)
  ensure_packages
  with_lock
  mkdir -p "$LOG_DIR" "$RUN_DIR" "$SOCK_DIR"
  ensure_layout
  start_postgres
  start_mariadb
  start_redis
  start_prometheus
  start_kafka
  ensure_topics
  start_connect
  register_connectors
  wait_connectors_running
  log "up: all services ready in $(($(now) - t0))s (status: bash deploy/local/stack.sh status)"
}

cmd_down() {
  local purge=0 arg
  for arg in "$@"; do
    case $arg in
      --purge) purge=1 ;;
      *) fail down - "unknown option $arg" ;;
    esac
  done
  if [[ ! -d $STACK_DIR ]]; then
    log "nothing to stop ($STACK_DIR does not exist)"
    return 0
  fi
  with_lock
  mkdir -p "$LOG_DIR"
  stop_connect
  stop_kafka
  stop_postgres
  stop_mariadb
  stop_redis
  stop_prometheus
  if ((purge)); then
    log "purging $STACK_DIR (keeping kafka-libs/, connect-plugins/)"
    if [[ -L $STACK_DIR/postgres ]]; then rm -rf -- "$(dirname "$(readlink "$STACK_DIR/postgres")")"; fi
    find "$STACK_DIR" -mindepth 1 -maxdepth 1 \
      ! -name kafka-libs ! -name connect-plugins ! -name .maven-stamp ! -name .lock \
      -exec rm -rf -- {} +
    [[ $SOCK_DIR == "$RUN_DIR" ]] || rm -rf -- "$SOCK_DIR"
  fi
  log "down: done"
}

cmd_status() {
  local json=0 arg all=0 name key st
  for arg in "$@"; do
    case $arg in
      --json) json=1 ;;
      *) fail status - "unknown option $arg" ;;
    esac
  done
  local kafka=0 connect=0 postgres=0 mariadb=0 redis=0 prometheus=0
  pid_alive "$KAFKA_PID" kafka.Kafka && port_open "$KAFKA_PORT" && kafka=1
  pid_alive "$CONNECT_PID" ConnectDistributed && curl -sf -m 2 -o /dev/null "$CONNECT_URL/" && connect=1
  local pgdata=$PG_DATA
  [[ -L $pgdata ]] && pgdata=$(readlink "$pgdata")
  pid_alive "$pgdata/postmaster.pid" "$pgdata" && port_open "$PG_PORT" && postgres=1
  pid_alive "$MARIADB_PID" mariadbd && port_open "$MARIADB_PORT" && mariadb=1
  pid_alive "$REDIS_PID" redis-server && port_open "$REDIS_PORT" && redis=1
  prometheus_running && prometheus=1
  ((kafka && connect && postgres && mariadb && redis && prometheus)) && all=1
  local -A cstate=()
  for name in "${CONNECTOR_NAMES[@]}"; do
    if ((connect)); then
      st=$(connector_state "$name" || true)
      cstate[$name]=$(head -n1 <<<"$st")
      [[ -n ${cstate[$name]} ]] || cstate[$name]=UNKNOWN
    else
      cstate[$name]=UNKNOWN
    fi
    [[ ${cstate[$name]} == RUNNING ]] || all=0
  done
  if ((json)); then
    local -a envs=(STACK_HOST="$HOST" STACK_KAFKA_PORT="$KAFKA_PORT" STACK_CONNECT_PORT="$CONNECT_PORT"
      STACK_PG_PORT="$PG_PORT" STACK_MARIADB_PORT="$MARIADB_PORT" STACK_REDIS_PORT="$REDIS_PORT"
      STACK_KAFKA_UP=$kafka STACK_CONNECT_UP=$connect STACK_POSTGRES_UP=$postgres
      STACK_MARIADB_UP=$mariadb STACK_REDIS_UP=$redis STACK_CONNECTOR_NAMES="${CONNECTOR_NAMES[*]}"
      STACK_PROMETHEUS_PORT="$PROM_PORT" STACK_PROMETHEUS_UP=$prometheus STACK_PROMETHEUS_TARGETS="$PROM_HOME/targets")
    for name in "${CONNECTOR_NAMES[@]}"; do
      key=${name//[^A-Za-z0-9]/_}
      envs+=("STACK_CONNECTOR_${key^^}=${cstate[$name]}")
    done
    env "${envs[@]}" node "$JSON_TOOL" status-json
  else
    local updown
    updown() { if (($1)); then echo up; else echo down; fi; }
    printf '%-10s %-5s %s\n' kafka "$(updown $kafka)" "$BOOTSTRAP"
    printf '%-10s %-5s %s\n' connect "$(updown $connect)" "$CONNECT_URL"
    for name in "${CONNECTOR_NAMES[@]}"; do
      printf '%-10s %-5s %s\n' "" "" "connector $name: ${cstate[$name]}"
    done
    printf '%-10s %-5s %s\n' postgres "$(updown $postgres)" "postgres://app:app@$HOST:$PG_PORT/app"
    printf '%-10s %-5s %s\n' mariadb "$(updown $mariadb)" "mysql://app:app@$HOST:$MARIADB_PORT/app"
    printf '%-10s %-5s %s\n' redis "$(updown $redis)" "redis://$HOST:$REDIS_PORT"
    printf '%-10s %-5s %s\n' prometheus "$(updown $prometheus)" "http://$HOST:$PROM_PORT"
  fi
  ((all)) && return 0 || return 1
}

# pid of a running service, for kill
service_pid() {
  case $1 in
    kafka) read_pid "$KAFKA_PID" ;;
    connect) read_pid "$CONNECT_PID" ;;
    mariadb) read_pid "$MARIADB_PID" ;;
    redis) read_pid "$REDIS_PID" ;;
    prometheus) read_pid "$PROM_PID" ;;
    postgres) pg_init_vars && read_pid "$PG_DATA/postmaster.pid" ;;
  esac
}

cmd_service() {
  local action=$1 svc=${2:-} pid
  case $svc in
    kafka | connect | postgres | mariadb | redis | prometheus) ;;
    *) fail "$action" - "unknown service '${svc}' (kafka, connect, postgres, mariadb, redis, prometheus)" ;;
  esac
  with_lock
  mkdir -p "$LOG_DIR" "$RUN_DIR" "$SOCK_DIR"
  case $action in
    start) "start_$svc" ;;
    stop) "stop_$svc" ;;
    restart) "stop_$svc" && "start_$svc" ;;
    kill)
      pid=$(service_pid "$svc")
      if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
        log "$svc: SIGKILL (pid $pid)"
        kill -KILL "$pid"
        while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
      else
        log "$svc: not running"
      fi
      ;;
  esac
  if [[ $action == start || $action == restart ]] && [[ $svc == kafka ]]; then ensure_topics; fi
}

usage() {
  cat >&2 <<EOF
usage: bash deploy/local/stack.sh <command>
  up                start the local stack (idempotent)
  down [--purge]    stop it; --purge also deletes .local/stack data (keeps resolved jars)
  status [--json]   service status; exit 0 when everything is up and connectors RUNNING
  start|stop|restart|kill SERVICE
                    one of kafka, connect, postgres, mariadb, redis, prometheus (kill: SIGKILL)
EOF
}

main() {
  local cmd=${1:-}
  (($#)) && shift
  case $cmd in
    up) cmd_up "$@" ;;
    down) cmd_down "$@" ;;
    status) cmd_status "$@" ;;
    start | stop | restart | kill) cmd_service "$cmd" "$@" ;;
    -h | --help | help) usage ;;
    *)
      usage
      exit 2
      ;;
  esac
}

main "$@"
