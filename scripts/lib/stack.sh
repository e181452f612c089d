# Shared by scripts/run and scripts/test: a private PostgreSQL and the six services.
# Sourced, not run. Honours DATABASE_URL (a superuser URL of a server to use instead of a private
# one), JWT_SECRET, CLOCK, RUN_DIR, PG_PORT and CONTACTS_PORT … NOTIFICATIONS_PORT.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SERVICES=(contacts routing automation accountability smartplans notifications)
RUN_DIR=${RUN_DIR:-$ROOT/.run}
CLOCK=${CLOCK:-wall}
CRM_DATABASE=${CRM_DATABASE:-crm}
PG_PORT=${PG_PORT:-55432}
BUILD_CONFIGURATION=${BUILD_CONFIGURATION:-debug}
export CRM_DATABASE

log() { printf '[stack] %s\n' "$*" >&2; }
die() { printf '[stack] error: %s\n' "$*" >&2; exit 1; }

default_port() {
  case $1 in
    contacts) echo 8081 ;; routing) echo 8082 ;; automation) echo 8083 ;;
    accountability) echo 8084 ;; smartplans) echo 8085 ;; notifications) echo 8086 ;;
  esac
}

service_port() {
  local var="${1^^}_PORT"
  echo "${!var:-$(default_port "$1")}"
}

service_url() { echo "http://127.0.0.1:$(service_port "$1")"; }

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# Debian keeps initdb and pg_ctl in its versioned folder, not always on PATH.
pg_bindir() {
  local dir
  if command -v pg_ctl >/dev/null 2>&1 && command -v initdb >/dev/null 2>&1; then
    dirname "$(readlink -f "$(command -v pg_ctl)")"
    return
  fi
  dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
  [ -n "$dir" ] && echo "$dir"
}

ensure_postgres_installed() {
  if [ -z "$(pg_bindir)" ] || ! command -v psql >/dev/null 2>&1; then
    log "PostgreSQL is not installed; installing Debian's postgresql package"
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq postgresql postgresql-contrib >/dev/null
  fi
  [ -n "$(pg_bindir)" ] || die "PostgreSQL server binaries not found after install"
}

random_secret() { head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n'; }

# A value kept in RUN_DIR so restarts reuse it (tokens stay valid, roles keep their passwords).
stored_secret() {
  local file="$RUN_DIR/secrets/$1"
  mkdir -p "$RUN_DIR/secrets"
  chmod 700 "$RUN_DIR/secrets"
  [ -s "$file" ] || { random_secret >"$file"; chmod 600 "$file"; }
  cat "$file"
}

# PostgreSQL refuses to run as root: as root, the cluster belongs to the postgres user, in a
# folder that user can reach.
pg_user_run() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

pg_data_dir() {
  local dir="$RUN_DIR/pg"
  if [ "$(id -u)" = 0 ] && ! runuser -u postgres -- test -x "$RUN_DIR" 2>/dev/null; then
    dir="/var/tmp/crm-pg-$(echo "$RUN_DIR" | md5sum | cut -c1-12)"
  fi
  echo "$dir"
}

start_private_postgres() {
  ensure_postgres_installed
  local bin data
  bin=$(pg_bindir)
  data=$(pg_data_dir)
  mkdir -p "$RUN_DIR"
  if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres
    if ! runuser -u postgres -- test -x "$RUN_DIR"; then
      chmod o+x "$RUN_DIR" 2>/dev/null || true
    fi
  fi
  local superpass
  superpass=$(stored_secret postgres-superuser)
  if [ ! -s "$data/PG_VERSION" ]; then
    log "initialising a private PostgreSQL cluster in $data"
    mkdir -p "$data"
    [ "$(id -u)" = 0 ] && chown postgres:postgres "$data"
    chmod 700 "$data"
    local pwfile
    pwfile=$(mktemp)
    printf '%s\n' "$superpass" >"$pwfile"
    [ "$(id -u)" = 0 ] && chown postgres "$pwfile"
    pg_user_run "$bin/initdb" -D "$data" -U postgres --pwfile="$pwfile" --auth-local=scram-sha-256 --auth-host=scram-sha-256 \
      -E UTF8 --locale=C.UTF-8 >"$RUN_DIR/initdb.log" 2>&1 || { rm -f "$pwfile"; cat "$RUN_DIR/initdb.log" >&2; die "initdb failed"; }
    rm -f "$pwfile"
  fi
  [ "$data" != "$RUN_DIR/pg" ] && ln -sfn "$data" "$RUN_DIR/pg"
  # TLS on, with a self-signed certificate for 127.0.0.1 (openssl comes with Debian's
  # PostgreSQL): the services connect in the clear by default, and DATABASE_TLS=require or
  # verify-full (with DATABASE_TLS_CA_FILE=$RUN_DIR/tls/server.crt) can be tried against it.
  local tls_options=""
  if command -v openssl >/dev/null; then
    if [ ! -s "$data/server.crt" ]; then
      pg_user_run openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=127.0.0.1" \
        -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" -keyout "$data/server.key" -out "$data/server.crt" >/dev/null 2>&1 \
        && pg_user_run chmod 600 "$data/server.key"
    fi
    if [ -s "$data/server.crt" ]; then
      tls_options="-c ssl=on"
      mkdir -p "$RUN_DIR/tls" && cp "$data/server.crt" "$RUN_DIR/tls/server.crt"
    fi
  fi
  if ! pg_user_run "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1; then
    log "starting PostgreSQL on 127.0.0.1:$PG_PORT"
    # wal_init_zero=off: a new cluster has no used WAL segments to recycle until its first
    # checkpoints, so every 16 MB of WAL (about a thousand leads) a committing backend zero-fills
    # and fsyncs a whole new segment while it holds the WAL write lock, and every commit of every
    # service waits behind it: 60-90 ms stalls every two seconds at 500 leads/s. Off, a segment is
    # created by writing its last byte and ext4 allocates its blocks as WAL is written.
    # autovacuum_naptime=10s: a table that grows from nothing (an import of 10,000 contacts into a
    # new company, a replica catching up) is planned from its empty statistics until autovacuum
    # analyzes it; a minute of that picked a full scan of a partial index for every look-up by id
    # (6 ms instead of 0.1 ms).
    # max_wal_size=4GB: a campaign's steps write about 25 KB of WAL each, so at the default 1 GB a
    # checkpoint was forced every 40 s, and after each every page's next change wrote its whole
    # 8 KB image again (73,000-79,000 of them in bench smartplans, 4 % of its machine time).
    pg_user_run "$bin/pg_ctl" -D "$data" -l "$data/server.log" -w -t 60 \
      -o "-p $PG_PORT -c listen_addresses=127.0.0.1 -k $data -c max_connections=300 -c fsync=${PG_FSYNC:-on} -c shared_buffers=256MB -c wal_init_zero=off -c autovacuum_naptime=10s -c max_wal_size=4GB $tls_options ${PG_EXTRA_OPTIONS:-}" \
      start >/dev/null || { tail -20 "$data/server.log" >&2; die "PostgreSQL did not start"; }
  fi
  export PGHOST=127.0.0.1 PGPORT=$PG_PORT PGUSER=postgres PGPASSWORD=$superpass
  SUPERUSER_URL="postgres://postgres:$superpass@127.0.0.1:$PG_PORT/postgres"
}

stop_private_postgres() {
  local data
  data=$(pg_data_dir)
  [ -s "$data/PG_VERSION" ] || return 0
  pg_user_run "$(pg_bindir)/pg_ctl" -D "$data" -m fast -w stop >/dev/null 2>&1 || true
}

# Sets PGHOST … from DATABASE_URL (a superuser URL) or starts the private server.
prepare_database() {
  if [ -n "${DATABASE_URL:-}" ]; then
    command -v psql >/dev/null 2>&1 || ensure_postgres_installed
    eval "$(python3 - "$DATABASE_URL" <<'PY'
import sys, shlex
from urllib.parse import urlparse, unquote
u = urlparse(sys.argv[1])
print(f"export PGHOST={shlex.quote(u.hostname or '127.0.0.1')} PGPORT={u.port or 5432} "
      f"PGUSER={shlex.quote(unquote(u.username or 'postgres'))} PGPASSWORD={shlex.quote(unquote(u.password or ''))}")
PY
)"
    SUPERUSER_URL=$DATABASE_URL
    PRIVATE_PG=0
  else
    start_private_postgres
    PRIVATE_PG=1
  fi
  for svc in "${SERVICES[@]}"; do
    export "CRM_PASSWORD_${svc^^}=$(stored_secret "db-$svc")"
  done
  "$ROOT/deploy/postgres/init-db.sh"
}

service_database_url() {
  local var="CRM_PASSWORD_${1^^}"
  echo "postgres://$1:${!var}@$PGHOST:$PGPORT/$CRM_DATABASE"
}

build_services() {
  log "building ($BUILD_CONFIGURATION)"
  (cd "$ROOT" && swift build -c "$BUILD_CONFIGURATION" >"$RUN_DIR/build.log" 2>&1) || { tail -40 "$RUN_DIR/build.log" >&2; die "swift build failed"; }
  BIN_DIR=$(cd "$ROOT" && swift build -c "$BUILD_CONFIGURATION" --show-bin-path)
}

start_services() {
  mkdir -p "$RUN_DIR/logs" "$RUN_DIR/pids" "$RUN_DIR/supervisors" "$RUN_DIR/restarts"
  JWT_SECRET=${JWT_SECRET:-$(stored_secret jwt)}
  PLATFORM_ADMIN_EMAIL=${PLATFORM_ADMIN_EMAIL:-platform-admin@example.com}
  PLATFORM_ADMIN_PASSWORD=${PLATFORM_ADMIN_PASSWORD:-$(stored_secret platform-admin)}
  # Without a Twilio account, a development token still lets inbound texts, STOP and the voice
  # flow be tried: scripts/inbound-text signs a webhook with it as Twilio would.
  TWILIO_AUTH_TOKEN=${TWILIO_AUTH_TOKEN:-$(stored_secret twilio-auth-token)}
  export JWT_SECRET PLATFORM_ADMIN_EMAIL PLATFORM_ADMIN_PASSWORD TWILIO_AUTH_TOKEN
  local svc
  for svc in "${SERVICES[@]}"; do start_service "$svc"; done
  wait_ready
}

# start_service SERVICE: (re)starts one service under its supervisor, with the environment as it
# is now (scripts/test starts notifications again with SMS_PROVIDER=none this way).
start_service() {
  local svc=$1 peers=() peer
  for peer in "${SERVICES[@]}"; do peers+=("PEERS_${peer^^}=$(service_url "$peer")"); done
  stop_service "$svc"
  rm -f "$RUN_DIR/restarts/$svc"
  supervise "$svc" env "${peers[@]}" PORT="$(service_port "$svc")" DATABASE_URL="$(service_database_url "$svc")" CLOCK="$CLOCK" \
    LOG_LEVEL="${LOG_LEVEL:-info}" BCRYPT_COST="${BCRYPT_COST:-12}" "$BIN_DIR/$svc" >>"$RUN_DIR/logs/stack.log" 2>&1 &
  echo $! >"$RUN_DIR/supervisors/$svc"
}

# supervise SERVICE COMMAND…: runs the service and starts it again whenever it exits without being
# asked to stop (as compose's `restart: unless-stopped` and Kubernetes do), after a back-off that
# doubles from 0.25 s up to 15 s while it keeps dying young and starts again from 0.25 s once it
# has run a minute. The service's pid is in RUN_DIR/pids/SERVICE, its restarts are counted in
# RUN_DIR/restarts/SERVICE and logged on its standard output (RUN_DIR/logs/stack.log). A TERM stops the service (TERM,
# then KILL after 10 s) and this loop.
supervise() {
  local svc=$1; shift
  local child="" stopping=0 started status delay=0.25 restarts=0
  trap 'stopping=1; [ -n "$child" ] && kill -TERM "$child" 2>/dev/null' TERM INT
  while [ $stopping = 0 ]; do
    started=$SECONDS
    "$@" >>"$RUN_DIR/logs/$svc.log" 2>&1 &
    child=$!
    echo "$child" >"$RUN_DIR/pids/$svc"
    status=0
    wait "$child" || status=$?
    if [ $stopping = 1 ]; then
      # The TERM interrupted the wait: give the service its grace period, then make sure.
      for _ in $(seq 1 100); do kill -0 "$child" 2>/dev/null || break; sleep 0.1; done
      kill -KILL "$child" 2>/dev/null || true
      break
    fi
    restarts=$((restarts + 1))
    echo "$restarts" >"$RUN_DIR/restarts/$svc"
    if [ $((SECONDS - started)) -ge 60 ]; then delay=0.25; fi
    printf '[stack] %s %s exited with status %s after %s s; restart %s in %s s\n' "$(date -u +%FT%TZ)" "$svc" "$status" \
      "$((SECONDS - started))" "$restarts" "$delay"
    sleep "$delay" & wait $! || true
    delay=$(awk -v d="$delay" 'BEGIN { d *= 2; if (d > 15) d = 15; print d }')
  done
  rm -f "$RUN_DIR/pids/$svc"
}

wait_ready() {
  local svc deadline=$((SECONDS + ${READY_TIMEOUT:-120}))
  for svc in "${SERVICES[@]}"; do
    until curl -fsS "$(service_url "$svc")/health/ready" >/dev/null 2>&1; do
      if [ -s "$RUN_DIR/restarts/$svc" ] || ! kill -0 "$(cat "$RUN_DIR/supervisors/$svc")" 2>/dev/null; then
        tail -20 "$RUN_DIR/logs/$svc.log" >&2
        stop_stack
        die "$svc exited during start (log: $RUN_DIR/logs/$svc.log)"
      fi
      [ $SECONDS -lt $deadline ] || die "$svc not ready in time (log: $RUN_DIR/logs/$svc.log)"
      sleep 0.2
    done
  done
  log "all six services are ready"
}

# Stops a service and its supervisor (also one a stack of an earlier version started alone).
stop_service() {
  local pid pids=()
  for file in "$RUN_DIR/supervisors/$1" "$RUN_DIR/pids/$1"; do
    [ -f "$file" ] || continue
    pid=$(cat "$file")
    rm -f "$file"
    kill -0 "$pid" 2>/dev/null || continue
    pids+=("$pid")
    kill -TERM "$pid" 2>/dev/null || true
    # The supervisor stops its service; only a service without one is signalled directly.
    [ "$file" = "$RUN_DIR/supervisors/$1" ] && break
  done
  [ ${#pids[@]} -gt 0 ] || return 0
  for _ in $(seq 1 110); do
    local alive=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ $alive = 0 ] && break
    sleep 0.1
  done
  for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
}

stop_stack() {
  local svc stopping=()
  for svc in "${SERVICES[@]}"; do stop_service "$svc" & stopping+=($!); done
  # Only these: a caller's other background jobs (its supervisors' own waits, a sleep) are not ours.
  wait "${stopping[@]}"
  [ "${PRIVATE_PG:-0}" = 1 ] && stop_private_postgres
  return 0
}

# JSON over HTTP with curl; prints the body, fails on a non-2xx answer.
api() {
  local method=$1 url=$2 token=${3:-} body=${4:-}
  local args=(-sS -X "$method" -H 'Content-Type: application/json' -w '\n%{http_code}')
  [ -n "$token" ] && args+=(-H "Authorization: Bearer $token")
  [ -n "$body" ] && args+=(--data "$body")
  local out code
  out=$(curl "${args[@]}" "$url")
  code=${out##*$'\n'}
  out=${out%$'\n'*}
  printf '%s' "$out"
  [[ $code == 2* ]]
}

json_field() { python3 -c 'import json,sys; d=json.load(sys.stdin)
for k in sys.argv[1].split("."): d=d[k]
print(d)' "$1"; }

platform_admin_token() {
  api POST "$(service_url contacts)/v1/auth/login" "" \
    "{\"email\":\"$PLATFORM_ADMIN_EMAIL\",\"password\":\"$PLATFORM_ADMIN_PASSWORD\"}" | json_field token
}
