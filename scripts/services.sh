#!/usr/bin/env bash
# Development/CI services for stripe-ledger: PostgreSQL + a single-node Apache Kafka 4.3 (KRaft).
#
#   eval "$(scripts/services.sh up)"      # start (or reuse) both, export LEDGER_* for this shell
#   scripts/services.sh status            # what runs, on which port (always exits 0)
#   scripts/services.sh down [--purge]    # stop both (data kept; --purge deletes the state dir)
#   scripts/services.sh env               # print the exports without starting anything
#   scripts/services.sh stop-kafka | start-kafka | restart-kafka          # for outage tests
#   scripts/services.sh stop-postgres | start-postgres | restart-postgres
#   scripts/services.sh sasl-up | sasl-down   # a second broker, SASL/SCRAM only (issue 19 tests):
#     prints export LEDGER_KAFKA_SASL_BOOTSTRAP=127.0.0.1:<port> (user ledger, password ledger-sasl)
#   eval "$(scripts/services.sh up --sqs)"  # also an SQS-compatible server (ElasticMQ)
#   scripts/services.sh start-sqs | stop-sqs                              # ElasticMQ alone
#   eval "$(scripts/services.sh up --kafka-brokers 3)"  # PostgreSQL + a 3-node KRaft cluster
#   scripts/services.sh start-cluster | stop-cluster     # the cluster alone (start prints its export)
#   scripts/services.sh kill-broker N | start-broker N   # SIGKILL / restart node N (1-3): fault tests
#
# STDOUT of `up` is exactly two lines:
#   export LEDGER_DATABASE_URL=postgresql+psycopg://ledger:ledger@127.0.0.1:<pgport>/ledger
#   export LEDGER_KAFKA_BOOTSTRAP=127.0.0.1:<kafkaport>
# (with --kafka-brokers 3 the second line names the three brokers of the cluster,
#   export LEDGER_KAFKA_BOOTSTRAP=127.0.0.1:<p1>,127.0.0.1:<p2>,127.0.0.1:<p3>)
# and with --sqs (and from start-sqs, alone) one more:
#   export LEDGER_SQS_ENDPOINT=http://127.0.0.1:<sqsport>
# Everything else (progress, errors) goes to STDERR.
#
# If LEDGER_DATABASE_URL and LEDGER_KAFKA_BOOTSTRAP are both already set, `up` starts nothing and
# echoes them back (user-provided services are used as they are).
#
# No Docker needed (the native path): PostgreSQL from the Debian packages (installed with apt-get
# when missing, run as the `postgres` OS user, never as root), Kafka jars resolved from Maven
# Central with scripts/kafka/pom.xml and run with `java` (as an unprivileged OS user when root).
#
# Environment knobs:
#   LEDGER_SERVICES_DIR           state dir (data, logs, pid files)   [/var/tmp/stripe-ledger-services]
#   LEDGER_PG_PORT                PostgreSQL port                      [55432]
#   LEDGER_KAFKA_PORT             Kafka broker (PLAINTEXT) port        [59092]
#   LEDGER_KAFKA_CONTROLLER_PORT  Kafka KRaft controller port          [59093]
#   LEDGER_KAFKA_VERSION          Kafka version(s) to try, in order    ["4.3.1 4.3.0"]
#   LEDGER_KAFKA_HEAP_OPTS        broker JVM heap                      ["-Xms256m -Xmx512m"]
#   LEDGER_KAFKA_OS_USER          OS user running the broker when root [ledger-kafka]
#   LEDGER_KAFKA_SASL_PORT / LEDGER_KAFKA_SASL_CONTROLLER_PORT  the SASL broker (below the ephemeral port range: a client socket cannot take them) [30094 / 30095]
#   LEDGER_SERVICES_MODE          native | docker | auto               [auto: native unless java/mvn
#                                 are missing and a Docker engine answers `docker info`]
#   LEDGER_PG_START_TIMEOUT / LEDGER_KAFKA_START_TIMEOUT  bounded waits in seconds [60 / 120]
#   LEDGER_SQS_PORT               ElasticMQ (SQS API) port             [59324]
#   LEDGER_SQS_VERSION            ElasticMQ version                    [1.6.11]
#   LEDGER_SQS_OS_USER            OS user running ElasticMQ when root  [ledger-sqs]
#   LEDGER_SQS_START_TIMEOUT      bounded wait in seconds              [90]
#   LEDGER_KAFKA_CLUSTER_PORT / LEDGER_KAFKA_CLUSTER_CONTROLLER_PORT  the cluster's first broker /
#                                 controller port; node N takes port + N - 1 (below the ephemeral
#                                 range: a restarted broker must find its port free) [30101 / 30111]
#   LEDGER_KAFKA_CLUSTER_HEAP_OPTS  heap of each cluster node          ["-Xms128m -Xmx256m"]
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "$SCRIPT_DIR/.." && pwd)"

STATE_DIR="${LEDGER_SERVICES_DIR:-/var/tmp/stripe-ledger-services}"
PG_PORT="${LEDGER_PG_PORT:-55432}"
KAFKA_PORT="${LEDGER_KAFKA_PORT:-59092}"
KAFKA_CTRL_PORT="${LEDGER_KAFKA_CONTROLLER_PORT:-59093}"
KAFKA_VERSIONS="${LEDGER_KAFKA_VERSION:-4.3.1 4.3.0}"
KAFKA_HEAP_OPTS="${LEDGER_KAFKA_HEAP_OPTS:--Xms256m -Xmx512m}"
KAFKA_OS_USER="${LEDGER_KAFKA_OS_USER:-ledger-kafka}"
PG_OS_USER="postgres"
PG_START_TIMEOUT="${LEDGER_PG_START_TIMEOUT:-60}"
KAFKA_START_TIMEOUT="${LEDGER_KAFKA_START_TIMEOUT:-120}"
KAFKA_STOP_TIMEOUT="${LEDGER_KAFKA_STOP_TIMEOUT:-60}"
MODE="${LEDGER_SERVICES_MODE:-auto}"
SQS_PORT="${LEDGER_SQS_PORT:-59324}"
SQS_VERSION="${LEDGER_SQS_VERSION:-1.6.11}"
SQS_OS_USER="${LEDGER_SQS_OS_USER:-ledger-sqs}"
SQS_START_TIMEOUT="${LEDGER_SQS_START_TIMEOUT:-90}"
CLUSTER_NODES=3                          # a quorum is 2: one node may die, two stop the writes
CLUSTER_PORT="${LEDGER_KAFKA_CLUSTER_PORT:-30101}"
CLUSTER_CTRL_PORT="${LEDGER_KAFKA_CLUSTER_CONTROLLER_PORT:-30111}"
CLUSTER_HEAP_OPTS="${LEDGER_KAFKA_CLUSTER_HEAP_OPTS:--Xms128m -Xmx256m}"
CLUSTER_BASE="$STATE_DIR/kafka-cluster"

PG_BASE="$STATE_DIR/pg"
PG_DATA="$PG_BASE/data"
PG_SOCK="$PG_BASE/run"
PG_LOG="$PG_BASE/postgresql.log"
kafka_paths() {  # kafka_paths <state dir of one broker>: where its data, logs, pid and config live
  KAFKA_BASE="$1"
  KAFKA_DATA="$KAFKA_BASE/data"
  KAFKA_LOGS="$KAFKA_BASE/logs"
  KAFKA_RUN="$KAFKA_BASE/run"
  KAFKA_PID="$KAFKA_RUN/kafka.pid"
  KAFKA_CONF="$KAFKA_BASE/server.properties"
  KAFKA_LOG4J="$KAFKA_BASE/log4j2.properties"
  KAFKA_LIB_BASE="$KAFKA_BASE"             # where lib-<version> (the resolved jars) lives
  KAFKA_CLUSTER_ID_FILE="$KAFKA_BASE/cluster.id"
}
kafka_paths "$STATE_DIR/kafka"
KAFKA_TEMPLATE="$SCRIPT_DIR/kafka/server.properties.template"
KAFKA_FORMAT_EXTRA=()
KAFKA_FORMAT_QUORUM=(--standalone)       # a single node: a dynamic quorum of itself
KAFKA_NODE_ID=1
KAFKA_VOTERS=""
SQS_BASE="$STATE_DIR/sqs"
SQS_RUN="$SQS_BASE/run"
SQS_PID="$SQS_RUN/elasticmq.pid"
SQS_CONF="$SQS_BASE/elasticmq.conf"
SQS_LOG="$SQS_BASE/elasticmq.out"
MARKER="$STATE_DIR/.stripe-ledger-services"
SASL_USER="ledger"
SASL_PASSWORD="ledger-sasl"              # dev/CI only, like PostgreSQL's ledger:ledger
SASL_ADMIN_PASSWORD="ledger-admin-sasl"

# Point every KAFKA_* setting at the SASL broker: its own state dir, ports, template, users.
use_sasl_broker() {
  kafka_paths "$STATE_DIR/kafka-sasl"
  KAFKA_PORT="${LEDGER_KAFKA_SASL_PORT:-30094}"
  KAFKA_CTRL_PORT="${LEDGER_KAFKA_SASL_CONTROLLER_PORT:-30095}"
  KAFKA_HEAP_OPTS="-Xms128m -Xmx256m"
  KAFKA_TEMPLATE="$SCRIPT_DIR/kafka/server-sasl.properties.template"
  KAFKA_FORMAT_EXTRA=(--add-scram "SCRAM-SHA-512=[name=ledger-admin,password=$SASL_ADMIN_PASSWORD]"
    --add-scram "SCRAM-SHA-512=[name=$SASL_USER,password=$SASL_PASSWORD]")
}

# Point every KAFKA_* setting at node N (1-3) of the cluster: own state dir, ports and node id;
# the jars of the single broker, one cluster id for the three, static voters.
use_cluster_node() {
  local n="$1" i voters=""
  case "$n" in 1|2|3) ;; *) die "a cluster node is 1, 2 or 3 (got '$n')" ;; esac
  kafka_paths "$CLUSTER_BASE/node-$n"
  KAFKA_LIB_BASE="$STATE_DIR/kafka"
  KAFKA_CLUSTER_ID_FILE="$CLUSTER_BASE/cluster.id"
  KAFKA_PORT=$((CLUSTER_PORT + n - 1))
  KAFKA_CTRL_PORT=$((CLUSTER_CTRL_PORT + n - 1))
  KAFKA_HEAP_OPTS="$CLUSTER_HEAP_OPTS"
  KAFKA_TEMPLATE="$SCRIPT_DIR/kafka/server-cluster.properties.template"
  KAFKA_FORMAT_QUORUM=()                 # static voters: formatted without --standalone
  KAFKA_NODE_ID="$n"
  for i in $(seq 1 "$CLUSTER_NODES"); do
    voters="${voters:+$voters,}$i@127.0.0.1:$((CLUSTER_CTRL_PORT + i - 1))"
  done
  KAFKA_VOTERS="$voters"
}

cluster_bootstrap() {  # host:p1,host:p2,host:p3
  local i out=""
  for i in $(seq 1 "$CLUSTER_NODES"); do out="${out:+$out,}127.0.0.1:$((CLUSTER_PORT + i - 1))"; done
  echo "$out"
}

COMPOSE_FILE="$REPO_DIR/docker-compose.yml"
COMPOSE_PROJECT="${LEDGER_COMPOSE_PROJECT:-stripe-ledger}"

# ----------------------------------------------------------------------------------------------
log() { printf '[services] %s\n' "$*" >&2; }
die() { printf '[services] ERROR: %s\n' "$*" >&2; exit 1; }
is_root() { [ "$(id -u)" -eq 0 ]; }

# Run a command as an unprivileged OS user when we are root; as ourselves otherwise.
as_user() {
  local user="$1"; shift
  if is_root; then
    runuser -u "$user" -- "$@"
  else
    "$@"
  fi
}

port_open() {  # port_open PORT -> 0 if something accepts TCP connections on 127.0.0.1:PORT
  timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" >/dev/null 2>&1
}

print_exports() {
  echo "export LEDGER_DATABASE_URL=postgresql+psycopg://ledger:ledger@127.0.0.1:${PG_PORT}/ledger"
  echo "export LEDGER_KAFKA_BOOTSTRAP=127.0.0.1:${KAFKA_PORT}"
}

ensure_os_user() {
  local user="$1"
  is_root || return 0
  if ! id -u "$user" >/dev/null 2>&1; then
    log "creating OS user $user"
    useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$user" >&2
  fi
}

apt_install() {
  is_root || die "need to install '$*' but not root; install it yourself (apt-get install -y $*)"
  command -v apt-get >/dev/null 2>&1 || die "need '$*' and apt-get is not available; install it yourself"
  log "installing $* with apt-get (one-off)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends "$@" >&2
}

init_state_dir() {
  mkdir -p "$STATE_DIR"
  # The postgres / kafka OS users must be able to traverse it.
  if is_root; then chmod 755 "$STATE_DIR"; fi
  [ -f "$MARKER" ] || echo "state dir of stripe-ledger scripts/services.sh" > "$MARKER"
}

take_lock() {
  init_state_dir
  # Servers are started with 9>&- so they never inherit (and keep holding) this lock.
  exec 9>"$STATE_DIR/services.lock"
  if ! flock -w 300 9; then die "could not lock $STATE_DIR/services.lock within 300 s (another services.sh running?)"; fi
}

# The cluster's own lock (on the same fd 9, which every server is started without): its verbs
# wait for brokers for up to a minute, and must not hold up everyone else's `up` meanwhile.
take_cluster_lock() {
  init_state_dir
  exec 9>"$STATE_DIR/kafka-cluster.lock"   # closes fd 9: a services.lock held is released
  if ! flock -w 300 9; then die "could not lock $STATE_DIR/kafka-cluster.lock within 300 s"; fi
}

# ---------------------------------------------------------------------------------- PostgreSQL
PG_BIN=""
find_pg_bin() {
  local d best
  best="$(for d in /usr/lib/postgresql/*/bin; do [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && echo "$d"; done | sort -V | tail -n 1)"
  if [ -z "$best" ] && command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
    best="$(dirname "$(command -v initdb)")"
  fi
  PG_BIN="$best"
}

ensure_pg_installed() {
  find_pg_bin
  if [ -z "$PG_BIN" ]; then
    apt_install postgresql
    find_pg_bin
    [ -n "$PG_BIN" ] || die "PostgreSQL installed but no initdb found under /usr/lib/postgresql/*/bin"
  fi
}

psql_bin() { if [ -x "$PG_BIN/psql" ]; then echo "$PG_BIN/psql"; else command -v psql; fi; }

pg_running() {
  [ -f "$PG_DATA/postmaster.pid" ] || return 1
  find_pg_bin
  [ -n "$PG_BIN" ] || return 1
  as_user "$PG_OS_USER" "$PG_BIN/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1
}

pg_pid() { head -n 1 "$PG_DATA/postmaster.pid" 2>/dev/null || true; }
pg_running_port() { sed -n 4p "$PG_DATA/postmaster.pid" 2>/dev/null || true; }

pg_write_conf() {
  # Rewritten on every start so that LEDGER_PG_PORT changes take effect.
  local conf="$PG_DATA/ledger_services.conf"
  cat > "$conf" <<EOF
# Written by scripts/services.sh on every start; edits are overwritten.
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$PG_SOCK'
max_connections = 200
shared_buffers = 128MB
logging_collector = off
log_min_messages = warning
log_line_prefix = '%m [%p] %q%u@%d '
EOF
  if is_root; then chown "$PG_OS_USER": "$conf"; fi
  grep -q "^include_if_exists = 'ledger_services.conf'" "$PG_DATA/postgresql.conf" ||
    echo "include_if_exists = 'ledger_services.conf'" >> "$PG_DATA/postgresql.conf"
}

pg_bootstrap_sql() {
  as_user "$PG_OS_USER" "$(psql_bin)" -X -q -v ON_ERROR_STOP=1 -h "$PG_SOCK" -p "$PG_PORT" -U postgres -d postgres <<'SQL'
DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'ledger') THEN
    CREATE ROLE ledger LOGIN CREATEDB CREATEROLE PASSWORD 'ledger';
  ELSE
    ALTER ROLE ledger LOGIN CREATEDB CREATEROLE PASSWORD 'ledger';
  END IF;
  -- The workers' login (issue 19): a member of ledger_runtime, which migration 0005 grants
  -- SELECT and INSERT on the event store only; `migrate` runs as ledger, the owner.
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'ledger_runtime') THEN
    CREATE ROLE ledger_runtime NOLOGIN;
  END IF;
  IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'ledger_worker') THEN
    CREATE ROLE ledger_worker LOGIN PASSWORD 'ledger_worker' IN ROLE ledger_runtime;
  END IF;
END
$$;
SELECT 'CREATE DATABASE ledger OWNER ledger'
 WHERE NOT EXISTS (SELECT FROM pg_catalog.pg_database WHERE datname = 'ledger')\gexec
SQL
}

pg_start() {
  if pg_running; then
    local running_port; running_port="$(pg_running_port)"
    if [ "$running_port" != "$PG_PORT" ]; then
      die "PostgreSQL from $PG_DATA already runs on port $running_port, not $PG_PORT; run '$0 stop-postgres' first"
    fi
    log "PostgreSQL already running on 127.0.0.1:$PG_PORT (pid $(pg_pid))"
    return 0
  fi
  ensure_pg_installed
  if is_root; then ensure_os_user "$PG_OS_USER"; fi
  if port_open "$PG_PORT"; then
    die "port 127.0.0.1:$PG_PORT is in use by something that is not our PostgreSQL ($PG_DATA); set LEDGER_PG_PORT or stop it"
  fi

  mkdir -p "$PG_BASE" "$PG_SOCK"
  if is_root; then chown "$PG_OS_USER": "$PG_BASE" "$PG_SOCK"; fi
  chmod 700 "$PG_BASE"
  if ! as_user "$PG_OS_USER" test -w "$PG_BASE"; then
    die "OS user $PG_OS_USER cannot write $PG_BASE (a parent dir is not traversable?); set LEDGER_SERVICES_DIR"
  fi

  if [ ! -s "$PG_DATA/PG_VERSION" ]; then
    log "initdb $PG_DATA ($("$PG_BIN/initdb" --version))"
    as_user "$PG_OS_USER" "$PG_BIN/initdb" -D "$PG_DATA" -U postgres -E UTF8 --locale=C \
      --auth-local=trust --auth-host=scram-sha-256 >"$PG_BASE/initdb.log" 2>&1 ||
      { tail -n 30 "$PG_BASE/initdb.log" >&2; die "initdb failed"; }
  else
    local data_major bin_major
    data_major="$(cat "$PG_DATA/PG_VERSION")"
    bin_major="$("$PG_BIN/postgres" --version | sed -E 's/.* ([0-9]+)(\.[0-9]+)*.*/\1/')"
    [ "$data_major" = "$bin_major" ] ||
      die "$PG_DATA was created by PostgreSQL $data_major but $PG_BIN is $bin_major; use '$0 down --purge' or another LEDGER_SERVICES_DIR"
  fi
  pg_write_conf
  rm -f "$PG_SOCK"/.s.PGSQL.* 2>/dev/null || true

  log "starting PostgreSQL on 127.0.0.1:$PG_PORT (log: $PG_LOG)"
  if ! as_user "$PG_OS_USER" "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$PG_LOG" -w -t "$PG_START_TIMEOUT" start \
      </dev/null >&2 2>&1 9>&-; then   # 9>&-: the server must not inherit the lock fd
    tail -n 40 "$PG_LOG" >&2 2>/dev/null || true
    die "PostgreSQL did not start (log above: $PG_LOG)"
  fi
  local deadline=$((SECONDS + PG_START_TIMEOUT))
  until "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" -t 2; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      tail -n 40 "$PG_LOG" >&2 2>/dev/null || true
      die "PostgreSQL not ready on 127.0.0.1:$PG_PORT after ${PG_START_TIMEOUT}s (log: $PG_LOG)"
    fi
    sleep 0.5
  done
  pg_bootstrap_sql >&2 || die "could not create role/database ledger"
  log "PostgreSQL ready: role ledger, database ledger"
}

pg_stop() {
  if ! pg_running; then
    log "PostgreSQL not running"
    return 0
  fi
  log "stopping PostgreSQL (pid $(pg_pid))"
  as_user "$PG_OS_USER" "$PG_BIN/pg_ctl" -D "$PG_DATA" -m fast -w -t 60 stop >&2 ||
    die "pg_ctl stop failed (log: $PG_LOG)"
}

# ---------------------------------------------------------------------------------------- Kafka
KAFKA_LIB=""
KAFKA_VERSION_USED=""

ensure_java_maven() {
  local missing=()
  command -v java >/dev/null 2>&1 || missing+=(openjdk-17-jre-headless)
  command -v mvn >/dev/null 2>&1 || missing+=(maven)
  if [ "${#missing[@]}" -gt 0 ]; then apt_install "${missing[@]}"; fi
}

# Resolve (once) kafka_2.13 + runtime deps + Log4j 2 into $KAFKA_BASE/lib-<version>.
resolve_kafka() {
  local v dir
  for v in $KAFKA_VERSIONS; do             # a cached version wins: no Maven run at all
    if [ -f "$KAFKA_LIB_BASE/lib-$v/.complete" ]; then
      KAFKA_LIB="$KAFKA_LIB_BASE/lib-$v"; KAFKA_VERSION_USED="$v"; return 0
    fi
  done
  ensure_java_maven
  mkdir -p "$KAFKA_LIB_BASE"
  for v in $KAFKA_VERSIONS; do
    dir="$KAFKA_LIB_BASE/lib-$v"
    rm -rf "$dir.tmp"
    log "resolving org.apache.kafka:kafka_2.13:$v and its runtime dependencies with Maven"
    if (cd "$SCRIPT_DIR/kafka" && mvn -B -q -Dstyle.color=never -f "$SCRIPT_DIR/kafka/pom.xml" -Dkafka.version="$v" \
          dependency:copy-dependencies -DoutputDirectory="$dir.tmp") >"$KAFKA_LIB_BASE/maven.log" 2>&1 \
       && ls "$dir.tmp"/kafka_2.13-"$v".jar >/dev/null 2>&1; then
      rm -rf "$dir"; mv "$dir.tmp" "$dir"; chmod -R a+rX "$dir"
      date -u +%FT%TZ > "$dir/.complete"
      KAFKA_LIB="$dir"; KAFKA_VERSION_USED="$v"
      log "Kafka $v: $(ls "$dir"/*.jar | wc -l) jars in $dir"
      return 0
    fi
    rm -rf "$dir.tmp"
    tail -n 30 "$KAFKA_LIB_BASE/maven.log" >&2 || true
    log "could not resolve Kafka $v from Maven Central (log above: $KAFKA_LIB_BASE/maven.log)"
  done
  die "could not resolve any of Kafka versions: $KAFKA_VERSIONS"
}

kafka_java() {  # kafka_java <main class> args... (foreground, as the kafka OS user)
  as_user "$KAFKA_OS_USER" java -Xmx256m -Dlog4j2.configurationFile="$KAFKA_LOG4J" \
    -Dkafka.logs.dir="$KAFKA_LOGS" -cp "$KAFKA_LIB/*" "$@"
}

kafka_pid() { cat "$KAFKA_PID" 2>/dev/null || true; }

# pid_runs PIDFILE PATTERN: the pid in PIDFILE is alive and its command line holds PATTERN
# (a guard against pid reuse: it must be our server).
pid_runs() {
  local pid; pid="$(cat "$1" 2>/dev/null || true)"
  [ -n "$pid" ] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$2" || return 1
}

kafka_running() { pid_runs "$KAFKA_PID" "kafka.Kafka $KAFKA_CONF"; }

kafka_running_port() {
  sed -n 's#^advertised.listeners=[A-Z_]*://127.0.0.1:\([0-9]*\).*#\1#p' "$KAFKA_CONF" 2>/dev/null || true
}

kafka_render_conf() {
  sed -e "s#@KAFKA_PORT@#$KAFKA_PORT#g" -e "s#@CONTROLLER_PORT@#$KAFKA_CTRL_PORT#g" \
      -e "s#@LOG_DIRS@#$KAFKA_DATA#g" -e "s#@ADMIN_PASSWORD@#$SASL_ADMIN_PASSWORD#g" \
      -e "s#@NODE_ID@#$KAFKA_NODE_ID#g" -e "s#@VOTERS@#$KAFKA_VOTERS#g" \
      "$KAFKA_TEMPLATE" > "$KAFKA_CONF.tmp"
  mv "$KAFKA_CONF.tmp" "$KAFKA_CONF"
  cp "$SCRIPT_DIR/kafka/log4j2.properties" "$KAFKA_LOG4J"
  chmod 644 "$KAFKA_CONF" "$KAFKA_LOG4J"
}

kafka_start() {
  kafka_launch
  if [ "$KAFKA_LAUNCHED" -eq 1 ]; then kafka_wait_started "$KAFKA_LAUNCH_OFFSET"; fi
}

# kafka_launch: start the broker of the current KAFKA_* settings in the background, without
# waiting (a cluster node cannot finish starting before a quorum runs). Sets KAFKA_LAUNCHED (0:
# it already ran) and KAFKA_LAUNCH_OFFSET (where this start's server.log lines begin). Always
# returns 0, so that `set -e` keeps applying inside it (a function in a condition loses it).
KAFKA_LAUNCH_OFFSET=0
KAFKA_LAUNCHED=0
kafka_launch() {
  KAFKA_LAUNCHED=0
  if kafka_running; then
    local running_port; running_port="$(kafka_running_port)"
    if [ "$running_port" != "$KAFKA_PORT" ]; then
      die "our Kafka already runs on port $running_port, not $KAFKA_PORT; run '$0 stop-kafka' first"
    fi
    log "Kafka already running on 127.0.0.1:$KAFKA_PORT (pid $(kafka_pid))"
    return 0
  fi
  local p
  for p in "$KAFKA_PORT" "$KAFKA_CTRL_PORT"; do
    if port_open "$p"; then
      die "port 127.0.0.1:$p is in use by something that is not our Kafka; set LEDGER_KAFKA_PORT / LEDGER_KAFKA_CONTROLLER_PORT or stop it"
    fi
  done
  resolve_kafka
  command -v java >/dev/null 2>&1 || ensure_java_maven
  if is_root; then ensure_os_user "$KAFKA_OS_USER"; fi
  mkdir -p "$KAFKA_BASE" "$KAFKA_DATA" "$KAFKA_LOGS" "$KAFKA_RUN"
  chmod 755 "$KAFKA_BASE"
  if is_root; then chown -R "$KAFKA_OS_USER": "$KAFKA_DATA" "$KAFKA_LOGS" "$KAFKA_RUN"; fi
  if ! as_user "$KAFKA_OS_USER" test -w "$KAFKA_DATA"; then
    die "OS user $KAFKA_OS_USER cannot write $KAFKA_DATA (a parent dir is not traversable?); set LEDGER_SERVICES_DIR"
  fi
  kafka_render_conf

  if [ ! -f "$KAFKA_DATA/meta.properties" ]; then
    local id_file="$KAFKA_CLUSTER_ID_FILE"
    if [ ! -s "$id_file" ]; then
      kafka_java kafka.tools.StorageTool random-uuid 2>>"$KAFKA_LOGS/storage-tool.log" | tail -n 1 > "$id_file.tmp"
      [ -s "$id_file.tmp" ] || die "StorageTool random-uuid failed (see $KAFKA_LOGS/storage-tool.log)"
      mv "$id_file.tmp" "$id_file"
    fi
    local quorum="standalone KRaft"
    if [ -n "$KAFKA_VOTERS" ]; then quorum="node $KAFKA_NODE_ID of static voters $KAFKA_VOTERS"; fi
    log "formatting Kafka storage $KAFKA_DATA (cluster id $(cat "$id_file"), $quorum)"
    if ! kafka_java kafka.tools.StorageTool format ${KAFKA_FORMAT_QUORUM[@]+"${KAFKA_FORMAT_QUORUM[@]}"} \
          -t "$(cat "$id_file")" \
          -c "$KAFKA_CONF" ${KAFKA_FORMAT_EXTRA[@]+"${KAFKA_FORMAT_EXTRA[@]}"} \
          >>"$KAFKA_LOGS/storage-tool.log" 2>&1; then
      tail -n 30 "$KAFKA_LOGS/storage-tool.log" >&2 || true
      die "kafka StorageTool format failed"
    fi
  fi

  local server_log="$KAFKA_LOGS/server.log" offset=0
  [ -f "$server_log" ] && offset="$(stat -c %s "$server_log")"
  rm -f "$KAFKA_PID"
  log "starting Kafka $KAFKA_VERSION_USED on 127.0.0.1:$KAFKA_PORT (controller $KAFKA_CTRL_PORT; log: $server_log)"
  # shellcheck disable=SC2086  # KAFKA_HEAP_OPTS is a word list on purpose
  local -a cmd=(java $KAFKA_HEAP_OPTS -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:+ExitOnOutOfMemoryError
    -Djava.awt.headless=true -Dkafka.logs.dir="$KAFKA_LOGS" -Dlog4j2.configurationFile="$KAFKA_LOG4J"
    -cp "$KAFKA_LIB/*" kafka.Kafka "$KAFKA_CONF")
  # The inner sh records its own pid and execs java, so the pid file holds the JVM's pid.
  # All fds are redirected so `$(services.sh up)` and subprocess pipes do not wait on the broker.
  if is_root; then
    setsid runuser -u "$KAFKA_OS_USER" -- sh -c 'echo $$ > "$0"; exec "$@"' "$KAFKA_PID" "${cmd[@]}" \
      </dev/null >>"$KAFKA_LOGS/kafka.out" 2>&1 9>&- &
  else
    setsid sh -c 'echo $$ > "$0"; exec "$@"' "$KAFKA_PID" "${cmd[@]}" \
      </dev/null >>"$KAFKA_LOGS/kafka.out" 2>&1 9>&- &
  fi
  KAFKA_LAUNCH_OFFSET="$offset"
  KAFKA_LAUNCHED=1
}

# kafka_wait_started OFFSET: bounded wait until the launched broker logged its start (after
# OFFSET in server.log) and takes connections; dies with the log's tail otherwise.
kafka_wait_started() {
  local offset="$1" server_log="$KAFKA_LOGS/server.log"
  local deadline=$((SECONDS + KAFKA_START_TIMEOUT)) started=0 pid=""
  while :; do
    pid="$(kafka_pid)"
    if [ "$started" -eq 0 ] && [ -f "$server_log" ]; then
      if [ "$(stat -c %s "$server_log")" -lt "$offset" ]; then offset=0; fi   # rolled over
      # grep -c reads all of its input: `grep -q` would exit at the match, tail would die of
      # SIGPIPE when more than a pipe's worth of log follows it, and pipefail would make the
      # start look missed (it did, once the broker's start-up logged a long partition list).
      if [ "$(tail -c +"$((offset + 1))" "$server_log" | grep -c "Kafka Server started" || true)" -gt 0 ]; then
        started=1
      fi
    fi
    if [ "$started" -eq 1 ] && port_open "$KAFKA_PORT"; then break; fi
    if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
      { echo "---- $server_log (tail)"; tail -n 40 "$server_log" 2>/dev/null
        echo "---- $KAFKA_LOGS/kafka.out (tail)"; tail -n 20 "$KAFKA_LOGS/kafka.out" 2>/dev/null; } >&2 || true
      die "Kafka exited during startup"
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      { echo "---- $server_log (tail)"; tail -n 40 "$server_log" 2>/dev/null
        echo "---- $KAFKA_LOGS/kafka.out (tail)"; tail -n 20 "$KAFKA_LOGS/kafka.out" 2>/dev/null; } >&2 || true
      die "Kafka not ready on 127.0.0.1:$KAFKA_PORT after ${KAFKA_START_TIMEOUT}s (pid ${pid:-?} left running; '$0 stop-kafka' stops it)"
    fi
    sleep 0.5
  done
  echo "$KAFKA_VERSION_USED" > "$KAFKA_BASE/running.version"
  local banner
  banner="$(tail -c +"$((offset + 1))" "$server_log" | grep -o '\[KafkaRaftServer[^]]*\] Kafka Server started' || true)"
  log "Kafka ready (pid $pid): ${banner%%$'\n'*}"
}

kafka_stop() {
  if ! kafka_running; then
    log "Kafka not running"
    rm -f "$KAFKA_PID"
    return 0
  fi
  local pid; pid="$(kafka_pid)"
  log "stopping Kafka (pid $pid, SIGTERM, up to ${KAFKA_STOP_TIMEOUT}s)"
  kill -TERM "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + KAFKA_STOP_TIMEOUT))
  while kill -0 "$pid" 2>/dev/null; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      log "Kafka did not stop in time; SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      sleep 1
      break
    fi
    sleep 0.3
  done
  rm -f "$KAFKA_PID"
  # Wait (briefly) until the ports are released so an immediate start-kafka works.
  local i
  for i in $(seq 1 50); do
    port_open "$KAFKA_PORT" || port_open "$KAFKA_CTRL_PORT" || break
    sleep 0.2
  done
}

# -------------------------------------------------------------------------------- Kafka cluster
# Three combined broker+controller nodes (issue 17). With static voters no node logs "Kafka
# Server started" before a quorum (2 of 3) runs, so all three are launched first, then each is
# waited for (each wait bounded by LEDGER_KAFKA_START_TIMEOUT).
cluster_start() {
  local n offsets=()
  for n in $(seq 1 "$CLUSTER_NODES"); do
    use_cluster_node "$n"
    kafka_launch
    if [ "$KAFKA_LAUNCHED" -eq 1 ]; then offsets[n]="$KAFKA_LAUNCH_OFFSET"; else offsets[n]=-1; fi
  done
  for n in $(seq 1 "$CLUSTER_NODES"); do
    use_cluster_node "$n"
    if [ "${offsets[n]}" -ge 0 ]; then kafka_wait_started "${offsets[n]}"; fi
  done
  kafka_paths "$STATE_DIR/kafka"   # back to the single broker's paths (status, down)
  log "Kafka cluster ready: $(cluster_bootstrap) (replication factor 3, min.insync.replicas 2)"
}

# All nodes are sent SIGTERM at once: stopped one after the other, the last two would wait for a
# quorum that is already gone (controlled shutdown), up to the stop timeout each.
cluster_stop() {
  local n pid pids=()
  for n in $(seq 1 "$CLUSTER_NODES"); do
    use_cluster_node "$n"
    if kafka_running; then
      pid="$(kafka_pid)"; pids+=("$pid")
      log "stopping cluster node $n (pid $pid, SIGTERM)"
      kill -TERM "$pid" 2>/dev/null || true
    fi
    rm -f "$KAFKA_PID"   # removed only after the signal: kafka_running needs it above
  done
  local deadline=$((SECONDS + KAFKA_STOP_TIMEOUT))
  for pid in ${pids[@]+"${pids[@]}"}; do
    while kill -0 "$pid" 2>/dev/null; do
      if [ "$SECONDS" -ge "$deadline" ]; then
        log "cluster node pid $pid did not stop in time; SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        sleep 1
        break
      fi
      sleep 0.3
    done
  done
  kafka_paths "$STATE_DIR/kafka"
}

# kill-broker N: SIGKILL (no controlled shutdown: the crash the fault tests need), bounded wait
# until the process is gone and its ports are free.
cluster_kill_broker() {
  use_cluster_node "$1"
  if ! kafka_running; then log "cluster node $1 not running"; rm -f "$KAFKA_PID"; return 0; fi
  local pid; pid="$(kafka_pid)"
  log "SIGKILL cluster node $1 (pid $pid)"
  kill -KILL "$pid" 2>/dev/null || true
  local i
  for i in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -0 "$pid" 2>/dev/null && die "cluster node $1 (pid $pid) still runs 10 s after SIGKILL"
  rm -f "$KAFKA_PID"
}

cluster_status() {
  local n
  if [ ! -d "$CLUSTER_BASE" ]; then
    echo "kafka-cluster: down (ports $(cluster_bootstrap); started by 'up --kafka-brokers 3' or 'start-cluster')"
    return 0
  fi
  for n in $(seq 1 "$CLUSTER_NODES"); do
    use_cluster_node "$n"
    if kafka_running; then
      echo "kafka-$n:  up   127.0.0.1:$(kafka_running_port) pid=$(kafka_pid) (cluster node $n) data=$KAFKA_DATA"
    else
      echo "kafka-$n:  down (cluster node $n, port $KAFKA_PORT, data=$KAFKA_DATA)"
    fi
  done
  kafka_paths "$STATE_DIR/kafka"
}

cluster_verb() {  # the cluster's own commands; native only, like the SASL broker
  local cmd="$1"; shift
  use_docker && die "$cmd: the Kafka cluster is native only (LEDGER_SERVICES_MODE=native)"
  take_cluster_lock
  case "$cmd" in
    start-cluster) cluster_start; echo "export LEDGER_KAFKA_BOOTSTRAP=$(cluster_bootstrap)" ;;
    stop-cluster) cluster_stop ;;
    kill-broker) cluster_kill_broker "${1:-}" ;;
    start-broker) use_cluster_node "${1:-}"; kafka_start ;;
  esac
}

# ------------------------------------------------------------------------------- SQS (ElasticMQ)
# ElasticMQ speaks the SQS API (query and JSON protocols) that boto3 uses; queues live in memory,
# so a restart empties them (tests create their own queues, uniquely named).
SQS_LIB=""

print_sqs_export() { echo "export LEDGER_SQS_ENDPOINT=http://127.0.0.1:${SQS_PORT}"; }

resolve_elasticmq() {
  local dir="$SQS_BASE/lib-$SQS_VERSION"
  if [ -f "$dir/.complete" ]; then SQS_LIB="$dir"; return 0; fi   # cached: no Maven run
  ensure_java_maven
  mkdir -p "$SQS_BASE"
  rm -rf "$dir.tmp"
  log "resolving org.elasticmq:elasticmq-server_2.13:$SQS_VERSION and its runtime dependencies with Maven"
  if (cd "$SCRIPT_DIR/elasticmq" && mvn -B -q -Dstyle.color=never -f "$SCRIPT_DIR/elasticmq/pom.xml" \
        -Delasticmq.version="$SQS_VERSION" dependency:copy-dependencies -DoutputDirectory="$dir.tmp") \
        >"$SQS_BASE/maven.log" 2>&1 \
     && ls "$dir.tmp"/elasticmq-server_2.13-"$SQS_VERSION".jar >/dev/null 2>&1; then
    rm -rf "$dir"; mv "$dir.tmp" "$dir"; chmod -R a+rX "$dir"
    date -u +%FT%TZ > "$dir/.complete"
    SQS_LIB="$dir"
    log "ElasticMQ $SQS_VERSION: $(ls "$dir"/*.jar | wc -l) jars in $dir"
    return 0
  fi
  rm -rf "$dir.tmp"
  tail -n 30 "$SQS_BASE/maven.log" >&2 || true
  die "could not resolve ElasticMQ $SQS_VERSION from Maven Central (log above: $SQS_BASE/maven.log)"
}

sqs_pid() { cat "$SQS_PID" 2>/dev/null || true; }

sqs_running() { pid_runs "$SQS_PID" "-Dconfig.file=$SQS_CONF "; }

sqs_running_port() {
  sed -n 's#^rest-sqs { enabled = true, bind-port = \([0-9]*\),.*#\1#p' "$SQS_CONF" 2>/dev/null || true
}

sqs_render_conf() {
  cat > "$SQS_CONF.tmp" <<EOF
# Written by scripts/services.sh on every start; edits are overwritten.
include classpath("application.conf")
node-address { protocol = http, host = "127.0.0.1", port = $SQS_PORT, context-path = "" }
rest-sqs { enabled = true, bind-port = $SQS_PORT, bind-hostname = "127.0.0.1", sqs-limits = strict }
rest-stats { enabled = false }
generate-node-address = false
aws { region = us-east-1, accountId = 000000000000 }
queues {}
EOF
  mv "$SQS_CONF.tmp" "$SQS_CONF"
  chmod 644 "$SQS_CONF"
}

sqs_start() {
  if sqs_running; then
    local running_port; running_port="$(sqs_running_port)"
    if [ "$running_port" != "$SQS_PORT" ]; then
      die "our ElasticMQ already runs on port $running_port, not $SQS_PORT; run '$0 stop-sqs' first"
    fi
    log "ElasticMQ already running on 127.0.0.1:$SQS_PORT (pid $(sqs_pid))"
    return 0
  fi
  if port_open "$SQS_PORT"; then
    die "port 127.0.0.1:$SQS_PORT is in use by something that is not our ElasticMQ; set LEDGER_SQS_PORT or stop it"
  fi
  resolve_elasticmq
  command -v java >/dev/null 2>&1 || ensure_java_maven
  if is_root; then ensure_os_user "$SQS_OS_USER"; fi
  mkdir -p "$SQS_BASE" "$SQS_RUN"
  chmod 755 "$SQS_BASE"
  if is_root; then chown -R "$SQS_OS_USER": "$SQS_RUN"; fi
  sqs_render_conf
  : >> "$SQS_LOG"
  if is_root; then chown "$SQS_OS_USER": "$SQS_LOG"; fi
  local offset; offset="$(stat -c %s "$SQS_LOG")"
  rm -f "$SQS_PID"
  log "starting ElasticMQ $SQS_VERSION on 127.0.0.1:$SQS_PORT (log: $SQS_LOG)"
  local -a cmd=(java -Xms64m -Xmx256m -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true
    -Dconfig.file="$SQS_CONF" -cp "$SQS_LIB/*" org.elasticmq.server.Main)
  # As for Kafka: the inner sh records its pid and execs java; every fd is redirected, the lock
  # fd 9 included (a subshell around this would keep holding the lock as long as java runs).
  if is_root; then
    setsid runuser -u "$SQS_OS_USER" -- sh -c 'cd "$1" && echo $$ > "$0" && shift && exec "$@"' \
      "$SQS_PID" "$SQS_RUN" "${cmd[@]}" </dev/null >>"$SQS_LOG" 2>&1 9>&- &
  else
    setsid sh -c 'cd "$1" && echo $$ > "$0" && shift && exec "$@"' \
      "$SQS_PID" "$SQS_RUN" "${cmd[@]}" </dev/null >>"$SQS_LOG" 2>&1 9>&- &
  fi
  local deadline=$((SECONDS + SQS_START_TIMEOUT)) pid=""
  while :; do
    pid="$(sqs_pid)"
    if [ "$(tail -c +"$((offset + 1))" "$SQS_LOG" | grep -c "ElasticMQ server ($SQS_VERSION) started" || true)" -gt 0 ] &&
       port_open "$SQS_PORT"; then
      break
    fi
    if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
      tail -n 30 "$SQS_LOG" >&2 2>/dev/null || true
      die "ElasticMQ exited during startup (log above: $SQS_LOG)"
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      tail -n 30 "$SQS_LOG" >&2 2>/dev/null || true
      die "ElasticMQ not ready on 127.0.0.1:$SQS_PORT after ${SQS_START_TIMEOUT}s (pid ${pid:-?} left running; '$0 stop-sqs' stops it)"
    fi
    sleep 0.5
  done
  log "ElasticMQ ready (pid $pid) on http://127.0.0.1:$SQS_PORT"
}

sqs_stop() {
  if ! sqs_running; then
    log "ElasticMQ not running"
    rm -f "$SQS_PID"
    return 0
  fi
  local pid; pid="$(sqs_pid)"
  log "stopping ElasticMQ (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  local i
  for i in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.2
  done
  kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
  rm -f "$SQS_PID"
}

# ------------------------------------------------------------------------------ Docker (optional)
use_docker() {
  case "$MODE" in
    native) return 1 ;;
    docker) return 0 ;;
    auto)
      if command -v java >/dev/null 2>&1 && command -v mvn >/dev/null 2>&1; then return 1; fi
      command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1 &&
        docker compose version >/dev/null 2>&1 ;;
    *) die "LEDGER_SERVICES_MODE must be native, docker or auto (got '$MODE')" ;;
  esac
}

compose() {
  # The app services need STRIPE_WEBHOOK_SECRET for interpolation; the infra ones do not use it.
  STRIPE_WEBHOOK_SECRET="${STRIPE_WEBHOOK_SECRET:-unused-by-services-sh}" \
  LEDGER_PG_PORT="$PG_PORT" LEDGER_KAFKA_PORT="$KAFKA_PORT" \
    docker compose -f "$COMPOSE_FILE" -p "$COMPOSE_PROJECT" "$@"
}

docker_cmd() {
  case "$1" in
    up)             compose up -d --wait postgres kafka >&2; print_exports ;;
    down)           compose stop postgres kafka >&2
                    if [ "${2:-}" = "--purge" ]; then compose down -v >&2; fi ;;
    status)         compose ps postgres kafka || true ;;
    stop-kafka)     compose stop kafka >&2 ;;
    start-kafka)    compose up -d --wait kafka >&2 ;;
    restart-kafka)  compose stop kafka >&2; compose up -d --wait kafka >&2 ;;
    stop-postgres)  compose stop postgres >&2 ;;
    start-postgres) compose up -d --wait postgres >&2 ;;
    restart-postgres) compose stop postgres >&2; compose up -d --wait postgres >&2 ;;
  esac
}

# ---------------------------------------------------------------------------------------- main
status() {
  if pg_running; then
    echo "postgres: up   127.0.0.1:$(pg_running_port) pid=$(pg_pid) data=$PG_DATA"
  else
    echo "postgres: down (port $PG_PORT, data=$PG_DATA)"
  fi
  if kafka_running; then
    echo "kafka:    up   127.0.0.1:$(kafka_running_port) pid=$(kafka_pid) version=$(cat "$KAFKA_BASE/running.version" 2>/dev/null || echo '?') data=$KAFKA_DATA"
  else
    echo "kafka:    down (port $KAFKA_PORT, data=$KAFKA_DATA)"
  fi
  (cluster_status)
  if sqs_running; then
    echo "sqs:      up   http://127.0.0.1:$(sqs_running_port) pid=$(sqs_pid) (ElasticMQ $SQS_VERSION)"
  else
    echo "sqs:      down (port $SQS_PORT; started by 'up --sqs' or 'start-sqs')"
  fi
}

usage() {
  sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

main() {
  local cmd="${1:-}"
  [ -n "$cmd" ] || usage
  shift || true
  case "$cmd" in
    up|down|status|env|stop-kafka|start-kafka|restart-kafka|stop-postgres|start-postgres|restart-postgres) ;;
    sasl-up|sasl-down) ;;
    start-cluster|stop-cluster|kill-broker|start-broker) ;;
    start-sqs) ;;
    stop-sqs) ;;
    -h|--help|help) usage ;;
    *) log "unknown command: $cmd"; usage ;;
  esac
  local with_sqs=0 brokers=1
  if [ "$cmd" = "up" ]; then
    local rest=()
    while [ "$#" -gt 0 ]; do
      case "$1" in
        --sqs) with_sqs=1 ;;
        --kafka-brokers) [ "$#" -ge 2 ] || die "--kafka-brokers needs a count (1 or 3)"; brokers="$2"; shift ;;
        --kafka-brokers=*) brokers="${1#*=}" ;;
        *) rest+=("$1") ;;
      esac
      shift
    done
    case "$brokers" in 1|3) ;; *) die "--kafka-brokers is 1 (the default) or 3 (got '$brokers')" ;; esac
    set -- ${rest[@]+"${rest[@]}"}
  fi
  case "$cmd" in
    start-cluster|stop-cluster|kill-broker|start-broker) cluster_verb "$cmd" "$@"; return 0 ;;
  esac

  # ElasticMQ runs natively whatever the mode (java only); it has its own lock-protected verbs.
  if [ "$cmd" = "start-sqs" ] || [ "$cmd" = "stop-sqs" ]; then
    take_lock
    if [ "$cmd" = "start-sqs" ]; then sqs_start; print_sqs_export; else sqs_stop; fi
    return 0
  fi
  if [ "$cmd" = "up" ] && [ "$with_sqs" -eq 1 ]; then
    # The two-line contract of `up` stays; --sqs adds the third line after them.
    bash "${BASH_SOURCE[0]}" up --kafka-brokers "$brokers" "$@"
    if [ -n "${LEDGER_SQS_ENDPOINT:-}" ]; then
      log "LEDGER_SQS_ENDPOINT already set: using it, starting no ElasticMQ"
      printf 'export LEDGER_SQS_ENDPOINT=%q\n' "$LEDGER_SQS_ENDPOINT"
    else
      take_lock
      sqs_start
      print_sqs_export
    fi
    return 0
  fi

  if [ "$cmd" = "sasl-up" ] || [ "$cmd" = "sasl-down" ]; then
    use_docker && die "$cmd: the SASL broker is native only (LEDGER_SERVICES_MODE=native)"
    take_lock
    use_sasl_broker
    if [ "$cmd" = "sasl-down" ]; then kafka_stop; return 0; fi
    kafka_start
    echo "export LEDGER_KAFKA_SASL_BOOTSTRAP=127.0.0.1:${KAFKA_PORT}"
    return 0
  fi

  if [ "$cmd" = "env" ]; then
    if [ -n "${LEDGER_DATABASE_URL:-}" ] && [ -n "${LEDGER_KAFKA_BOOTSTRAP:-}" ]; then
      printf 'export LEDGER_DATABASE_URL=%q\nexport LEDGER_KAFKA_BOOTSTRAP=%q\n' "$LEDGER_DATABASE_URL" "$LEDGER_KAFKA_BOOTSTRAP"
    else
      print_exports
    fi
    return 0
  fi

  if [ "$cmd" = "up" ] && [ -n "${LEDGER_DATABASE_URL:-}" ] && [ -n "${LEDGER_KAFKA_BOOTSTRAP:-}" ]; then
    log "LEDGER_DATABASE_URL and LEDGER_KAFKA_BOOTSTRAP already set: using those services, starting nothing"
    printf 'export LEDGER_DATABASE_URL=%q\nexport LEDGER_KAFKA_BOOTSTRAP=%q\n' "$LEDGER_DATABASE_URL" "$LEDGER_KAFKA_BOOTSTRAP"
    return 0
  fi

  if [ "$cmd" = "up" ] && [ "$brokers" -eq 3 ]; then
    use_docker && die "up --kafka-brokers 3: the Kafka cluster is native only (LEDGER_SERVICES_MODE=native)"
    take_lock
    pg_start
    take_cluster_lock
    cluster_start
    echo "export LEDGER_DATABASE_URL=postgresql+psycopg://ledger:ledger@127.0.0.1:${PG_PORT}/ledger"
    echo "export LEDGER_KAFKA_BOOTSTRAP=$(cluster_bootstrap)"
    return 0
  fi

  if use_docker; then
    log "using docker compose ($COMPOSE_FILE)"
    docker_cmd "$cmd" "$@"
    return 0
  fi

  if [ "$cmd" = "status" ]; then status; return 0; fi

  take_lock
  case "$cmd" in
    up)
      # Fast path: both already run -> only the exports.
      if pg_running && kafka_running && [ "$(pg_running_port)" = "$PG_PORT" ] &&
         [ "$(kafka_running_port)" = "$KAFKA_PORT" ]; then
        log "PostgreSQL and Kafka already running"
      else
        pg_start
        kafka_start
      fi
      print_exports
      ;;
    down)
      sqs_stop
      kafka_stop
      (use_sasl_broker; kafka_stop)
      cluster_stop
      pg_stop
      if [ "${1:-}" = "--purge" ]; then
        [ -f "$MARKER" ] || die "$STATE_DIR has no $MARKER; refusing to delete it"
        log "removing $STATE_DIR"
        rm -rf "$STATE_DIR"
      fi
      ;;
    stop-kafka) kafka_stop ;;
    start-kafka) kafka_start ;;
    restart-kafka) kafka_stop; kafka_start ;;
    stop-postgres) pg_stop ;;
    start-postgres) pg_start ;;
    restart-postgres) pg_stop; pg_start ;;
  esac
}

main "$@"
