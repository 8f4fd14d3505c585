#!/usr/bin/env bash
# Local infrastructure for development, tests and the demo, without Docker:
# a single-node Apache Kafka (KRaft) from Maven Central, and FerretDB built from
# the Go module proxy on Debian's PostgreSQL 15, all on loopback.
#
#   deploy/local/infra.sh install   fetch/build what is missing (cached)
#   deploy/local/infra.sh start     install, start all three, wait until ready (idempotent)
#   deploy/local/infra.sh stop      stop them cleanly
#   deploy/local/infra.sh start|stop kafka|database|ferretdb|postgres
#                                   only that part (database: FerretDB and PostgreSQL), for
#                                   outages on purpose (python -m tools.chaos)
#   deploy/local/infra.sh status    say what runs where
#   deploy/local/infra.sh reset     stop and delete the data of this state dir
#
# Settings (environment):
#   HUITOU_CACHE        downloads and builds       (default ~/.cache/huitou)
#   HUITOU_STATE_DIR    data, logs, pid files      (default $HUITOU_CACHE/local)
#   HUITOU_KAFKA_PORT   broker listener            (default 9092)
#   HUITOU_KAFKA_CONTROLLER_PORT                   (default HUITOU_KAFKA_PORT+1)
#   HUITOU_MONGO_PORT   MongoDB wire protocol      (default 27017)
#   HUITOU_KAFKA_HEAP   broker JVM heap            (default 512m)
#   HUITOU_PG_BIN       PostgreSQL's programs      (default /usr/lib/postgresql/15/bin)
#   HUITOU_PG_POOL      FerretDB's PostgreSQL connection pool (default 200)
#   HUITOU_FERRETDB_GOGC  Go GC target of FerretDB (default 400)
#
# PostgreSQL listens on a Unix socket of its own only (no TCP port). It refuses
# to run as root, so as root it runs as the `postgres` user, and its cluster
# lives in /var/tmp/huitou-postgres/<id of the state dir> (linked from the state
# dir), because the postgres user cannot enter root's home.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
KAFKA_VERSION=3.9.1
cache=${HUITOU_CACHE:-$HOME/.cache/huitou}
state=${HUITOU_STATE_DIR:-$cache/local}
kafka_port=${HUITOU_KAFKA_PORT:-9092}
controller_port=${HUITOU_KAFKA_CONTROLLER_PORT:-$((kafka_port + 1))}
mongo_port=${HUITOU_MONGO_PORT:-27017}
kafka_heap=${HUITOU_KAFKA_HEAP:-512m}
kafka_libs=$cache/kafka-$KAFKA_VERSION/libs
pg_bin=${HUITOU_PG_BIN:-/usr/lib/postgresql/15/bin}
pg_pool=${HUITOU_PG_POOL:-200}
if [[ $(id -u) == 0 ]]; then
  pg_dir=/var/tmp/huitou-postgres/$(printf '%s' "$state" | sha256sum | cut -c1-12)
else
  pg_dir=$state/postgres
fi
pg_data=$pg_dir/data
pg_socket=$pg_dir/run
pg_database=ferretdb
ferretdb_bin=$cache/bin/ferretdb-launcher-$(sha256sum "$here/ferretdb/go.sum" "$here/ferretdb/main.go" | sha256sum | cut -c1-12)

log() { printf '[infra] %s\n' "$*" >&2; }
die() { printf '[infra] error: %s\n' "$*" >&2; exit 1; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

pid_alive() { [[ -f $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

install_kafka() {
  if [[ -f $kafka_libs/.complete ]]; then return; fi
  command -v java >/dev/null || die "java not found: install a JDK 17 (apt-get install openjdk-17-jre-headless)"
  command -v mvn >/dev/null || die "mvn not found: install Maven (apt-get install maven)"
  log "fetching Kafka $KAFKA_VERSION and its dependencies from Maven Central"
  rm -rf "$kafka_libs" && mkdir -p "$kafka_libs"
  (cd "$here/kafka" && mvn -q -B -Dstyle.color=never -Dmaven.repo.local="$cache/m2" \
      org.apache.maven.plugins:maven-dependency-plugin:3.6.1:copy-dependencies \
      -DincludeScope=runtime -DoutputDirectory="$kafka_libs") \
    || die "Maven could not fetch Kafka (see the output above)"
  [[ -f $kafka_libs/kafka_2.13-$KAFKA_VERSION.jar ]] || die "kafka_2.13-$KAFKA_VERSION.jar missing after Maven ran"
  touch "$kafka_libs/.complete"
}

install_ferretdb() {
  if [[ -x $ferretdb_bin ]]; then return; fi
  command -v go >/dev/null || die "go not found: install Go 1.22 or newer"
  log "building the FerretDB launcher (first time only, about a minute)"
  mkdir -p "$cache/bin"
  (cd "$here/ferretdb" && GOTOOLCHAIN=local GOFLAGS=-mod=mod GOMODCACHE="$cache/gomod" \
      GOCACHE="$cache/gocache" go build -o "$ferretdb_bin.tmp" .) \
    || die "could not build the FerretDB launcher (see the output above)"
  mv "$ferretdb_bin.tmp" "$ferretdb_bin"
}

install_postgres() {
  if [[ -x $pg_bin/postgres ]]; then return; fi
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    log "installing PostgreSQL 15 from Debian's packages"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends postgresql-15 >/dev/null \
      || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends postgresql-15 >/dev/null; } \
      || die "could not install postgresql-15 with apt-get"
  fi
  [[ -x $pg_bin/postgres ]] || die "PostgreSQL 15 not found in $pg_bin: install postgresql-15 (apt-get install postgresql-15) or set HUITOU_PG_BIN"
}

# PostgreSQL's programs run as the postgres user when we are root.
as_pg() {
  if [[ $(id -u) == 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}

psql_ferretdb() {
  "$pg_bin/psql" -X -q -v ON_ERROR_STOP=1 -h "$pg_socket" -U postgres "$@"
}

postgres_config() {
  mkdir -p "$state/logs"
  if [[ ! -f $pg_data/PG_VERSION ]]; then
    mkdir -p "$pg_dir"
    [[ $(id -u) == 0 ]] && chown postgres: "$pg_dir" && chmod 700 "$pg_dir"
    [[ $pg_dir == "$state/postgres" ]] || ln -sfn "$pg_dir" "$state/postgres"
    as_pg "$pg_bin/initdb" -D "$pg_data" -U postgres -E UTF8 --locale=C.UTF-8 --auth=trust \
      >"$state/logs/postgres-initdb.log" 2>&1 \
      || die "initdb failed: $(tail -5 "$state/logs/postgres-initdb.log")"
    echo "include = 'huitou.conf'" | as_pg tee -a "$pg_data/postgresql.conf" >/dev/null
  fi
  as_pg mkdir -p "$pg_socket"
  # A local test server: durability off, equality pushdown planned with its real values,
  # large documents compressed with lz4 (cheaper to read back than pglz; docs/infrastructure.md).
  as_pg tee "$pg_data/huitou.conf" >/dev/null <<CONF
listen_addresses = ''
unix_socket_directories = '$pg_socket'
max_connections = $((pg_pool + 50))
shared_buffers = 256MB
work_mem = 16MB
fsync = off
synchronous_commit = off
full_page_writes = off
plan_cache_mode = force_custom_plan
default_toast_compression = lz4
log_min_duration_statement = -1
CONF
}

start_postgres() {
  if as_pg "$pg_bin/pg_ctl" -D "$pg_data" status >/dev/null 2>&1; then
    log "postgresql already running ($pg_data)"; return
  fi
  postgres_config
  log "starting postgresql (socket $pg_socket, log: $state/logs/postgres.log)"
  as_pg "$pg_bin/pg_ctl" -D "$pg_data" -l "$pg_dir/postgres.log" -w -t 60 start >/dev/null \
    || die "postgresql did not start: $(tail -5 "$pg_dir/postgres.log")"
  ln -sfn "$pg_dir/postgres.log" "$state/logs/postgres.log"
  if [[ -z $(psql_ferretdb -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$pg_database'") ]]; then
    psql_ferretdb -d postgres -c "CREATE DATABASE $pg_database"
  fi
  psql_ferretdb -d "$pg_database" -f "$here/postgres/mirror-indexes.sql" >/dev/null
}

stop_postgres() {
  [[ -f $pg_data/PG_VERSION ]] || return 0
  as_pg "$pg_bin/pg_ctl" -D "$pg_data" status >/dev/null 2>&1 || return 0
  log "stopping postgresql"
  as_pg "$pg_bin/pg_ctl" -D "$pg_data" -m fast -w -t 60 stop >/dev/null
}

kafka_config() {
  local dir=$state/kafka
  mkdir -p "$dir/data" "$state/logs"
  cat > "$dir/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$controller_port
listeners=PLAINTEXT://127.0.0.1:$kafka_port,CONTROLLER://127.0.0.1:$controller_port
advertised.listeners=PLAINTEXT://127.0.0.1:$kafka_port
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$dir/data
# The project creates its topics itself from shared/contracts/topics.py.
auto.create.topics.enable=false
num.partitions=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
log.retention.check.interval.ms=60000
log.cleaner.backoff.ms=5000
PROPS
  if [[ ! -f $dir/data/meta.properties ]]; then
    local cluster_id
    cluster_id=$(python3 -c 'import base64, uuid
while True:
    s = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode()[:22]
    if not s.startswith("-"):
        print(s); break')
    java -cp "$kafka_libs/*" -Dlog4j.configuration="file:$here/kafka/log4j.properties" \
      -Dkafka.logs.dir="$state/logs/kafka" \
      kafka.tools.StorageTool format -t "$cluster_id" -c "$dir/server.properties" -g \
      >"$state/logs/kafka-format.log" 2>&1 \
      || die "formatting Kafka storage failed: $(tail -5 "$state/logs/kafka-format.log")"
  fi
}

start_kafka() {
  local pidfile=$state/kafka.pid
  if pid_alive "$pidfile"; then log "kafka already running (pid $(cat "$pidfile"), port $kafka_port)"; return; fi
  port_open "$kafka_port" && die "port $kafka_port is taken by another process; set HUITOU_KAFKA_PORT"
  port_open "$controller_port" && die "port $controller_port is taken; set HUITOU_KAFKA_CONTROLLER_PORT"
  kafka_config
  log "starting kafka on 127.0.0.1:$kafka_port (logs: $state/logs/kafka/)"
  # Keep the last run's logs aside: readiness looks for this run's start line only.
  mkdir -p "$state/logs/kafka/previous"
  mv -f "$state/logs/kafka/"server.log* "$state/logs/kafka/previous/" 2>/dev/null || true
  nohup java -Xms"$kafka_heap" -Xmx"$kafka_heap" -XX:+UseG1GC -Djava.awt.headless=true \
    -cp "$kafka_libs/*" \
    -Dlog4j.configuration="file:$here/kafka/log4j.properties" \
    -Dkafka.logs.dir="$state/logs/kafka" \
    kafka.Kafka "$state/kafka/server.properties" \
    >"$state/logs/kafka/stdout.log" 2>&1 &
  echo $! > "$pidfile"
}

start_ferretdb() {
  local pidfile=$state/ferretdb.pid
  if pid_alive "$pidfile"; then log "ferretdb already running (pid $(cat "$pidfile"), port $mongo_port)"; return; fi
  port_open "$mongo_port" && die "port $mongo_port is taken by another process; set HUITOU_MONGO_PORT"
  mkdir -p "$state/logs"
  log "starting ferretdb on 127.0.0.1:$mongo_port (log: $state/logs/ferretdb.log)"
  # Go's collector at GOGC=400 instead of 100: ~15% less FerretDB CPU per command
  # (measured on 5,000 lookups and updates), for a heap that stays small.
  GOGC=${HUITOU_FERRETDB_GOGC:-400} nohup "$ferretdb_bin" -listen "127.0.0.1:$mongo_port" \
    -postgresql-url "postgres://postgres@/$pg_database?host=$pg_socket&pool_max_conns=$pg_pool" \
    >"$state/logs/ferretdb.log" 2>&1 &
  echo $! > "$pidfile"
}

wait_ferretdb() {
  local deadline=$((SECONDS + ${HUITOU_READY_TIMEOUT:-90}))
  until port_open "$mongo_port"; do
    pid_alive "$state/ferretdb.pid" || die "ferretdb exited: $(tail -5 "$state/logs/ferretdb.log")"
    ((SECONDS < deadline)) || die "ferretdb not ready after ${HUITOU_READY_TIMEOUT:-90}s"
    sleep 0.2
  done
}

wait_kafka() {
  local deadline=$((SECONDS + ${HUITOU_READY_TIMEOUT:-90}))
  # The log rolls over at 20 MB, so the start line may sit in server.log.N by now.
  until port_open "$kafka_port" && grep -qs "Kafka Server started" "$state/logs/kafka/"server.log*; do
    pid_alive "$state/kafka.pid" || die "kafka exited: $(tail -5 "$state/logs/kafka/stdout.log")"
    ((SECONDS < deadline)) || die "kafka not ready after ${HUITOU_READY_TIMEOUT:-90}s"
    sleep 0.3
  done
}

wait_ready() {
  wait_ferretdb; wait_kafka
  log "ready: kafka 127.0.0.1:$kafka_port, mongodb://127.0.0.1:$mongo_port"
}

# One part only (start|stop kafka|database|ferretdb|postgres): the others keep running.
start_part() {
  install_kafka; install_ferretdb; install_postgres
  mkdir -p "$state"
  case $1 in
    kafka) start_kafka; wait_kafka ;;
    ferretdb) start_ferretdb; wait_ferretdb ;;
    postgres) start_postgres ;;
    database) start_postgres; start_ferretdb; wait_ferretdb ;;
    *) die "unknown part $1: kafka, database, ferretdb or postgres" ;;
  esac
  log "started $1"
}

stop_part() {
  case $1 in
    kafka|ferretdb) stop_one "$1" ;;
    postgres) stop_postgres ;;
    database) stop_one ferretdb; stop_postgres ;;
    *) die "unknown part $1: kafka, database, ferretdb or postgres" ;;
  esac
}

stop_one() {
  local name=$1 pidfile=$state/$1.pid
  if ! pid_alive "$pidfile"; then rm -f "$pidfile"; return; fi
  local pid; pid=$(cat "$pidfile")
  log "stopping $name (pid $pid)"
  kill -TERM "$pid"
  for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  if kill -0 "$pid" 2>/dev/null; then
    log "$name did not stop within 30s; killing it"
    kill -KILL "$pid"
  fi
  rm -f "$pidfile"
}

status() {
  for name in kafka ferretdb; do
    if pid_alive "$state/$name.pid"; then echo "$name: running (pid $(cat "$state/$name.pid"))"
    else echo "$name: stopped"; fi
  done
  if [[ -f $pg_data/PG_VERSION ]] && as_pg "$pg_bin/pg_ctl" -D "$pg_data" status >/dev/null 2>&1; then
    echo "postgresql: running ($pg_data)"
  else echo "postgresql: stopped"; fi
  echo "state dir: $state"
}

case ${1:-} in
  install) install_kafka; install_ferretdb; install_postgres ;;
  start)
    if [[ -n ${2:-} ]]; then start_part "$2"; exit; fi
    install_kafka; install_ferretdb; install_postgres
    mkdir -p "$state"
    start_postgres; start_ferretdb; start_kafka; wait_ready ;;
  stop)
    if [[ -n ${2:-} ]]; then stop_part "$2"; exit; fi
    stop_one kafka; stop_one ferretdb; stop_postgres ;;
  status) status ;;
  reset)
    stop_one kafka; stop_one ferretdb; stop_postgres
    rm -rf "$state" "$pg_dir"; log "removed $state" ;;
  *) sed -n '2,30p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
