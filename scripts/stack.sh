#!/usr/bin/env bash
# The development stack, on loopback, with all state under .run/:
#   up      start PostgreSQL, the Temporal dev server and SoftHSM2's HSM token,
#           apply migrations and create the CA (idempotent: reuses what is there)
#   down    stop everything this script started
#   status  say what runs where
. "$(dirname "$0")/lib.sh"

PGDATA="$RUN/postgres/data"
PGSOCK="$RUN/postgres/socket"
TEMPORAL_DB="$RUN/temporal/temporal.db"
TEMPORAL_PID="$RUN/temporal/temporal.pid"
WORKER_PID="$RUN/worker.pid"
SOFTHSM_DIR="$RUN/softhsm"
SECRETS="$RUN/secrets"
CONFIG="$RUN/gridpay.yaml"
BIN="$ROOT/bin"

pg_running() { [ -f "$PGDATA/postmaster.pid" ] && as_pg "$PG_BIN/pg_ctl" -D "$PGDATA" status >/dev/null 2>&1; }
temporal_running() { [ -f "$TEMPORAL_PID" ] && kill -0 "$(cat "$TEMPORAL_PID")" 2>/dev/null; }
worker_running() { [ -f "$WORKER_PID" ] && kill -0 "$(cat "$WORKER_PID")" 2>/dev/null; }

# stop_pid stops the process in a pid file: TERM, then KILL after a grace period.
stop_pid() {
	local name="$1" file="$2" pid
	[ -f "$file" ] || { say "$name: not running"; return; }
	pid="$(cat "$file")"
	if kill -0 "$pid" 2>/dev/null; then
		say "$name: stopping"
		kill "$pid" 2>/dev/null || true
		for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
		kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null || true
	else
		say "$name: not running"
	fi
	rm -f "$file"
}
psql_admin() { psql -h "$PGSOCK" -p "$PG_PORT" -U postgres -d postgres -v ON_ERROR_STOP=1 -qtA "$@"; }

# random_secret writes a random numeric PIN to a 0600 file, once.
random_secret() {
	local file="$1" digits="$2"
	[ -s "$file" ] && return 0
	umask 077
	od -An -N16 -tu8 /dev/urandom | tr -dc '0-9' | head -c "$digits" >"$file"
}

start_postgres() {
	mkdir -p "$RUN/postgres" "$PGSOCK" "$LOGS"
	if [ ! -f "$PGDATA/PG_VERSION" ]; then
		say "PostgreSQL: creating a cluster in $PGDATA"
		mkdir -p "$PGDATA"
		[ "$(id -u)" -eq 0 ] && chown -R postgres: "$RUN/postgres"
		as_pg "$PG_BIN/initdb" -D "$PGDATA" -U postgres --auth=trust --encoding=UTF8 --locale=C.UTF-8 >"$LOGS/initdb.log" 2>&1 \
			|| { cat "$LOGS/initdb.log" >&2; die "initdb failed"; }
	fi
	if pg_running; then
		say "PostgreSQL: already running on 127.0.0.1:$PG_PORT (reusing)"
	else
		say "PostgreSQL: starting on 127.0.0.1:$PG_PORT"
		[ "$(id -u)" -eq 0 ] && chown -R postgres: "$RUN/postgres" && touch "$LOGS/postgres.log" && chown postgres: "$LOGS/postgres.log"
		as_pg "$PG_BIN/pg_ctl" -D "$PGDATA" -l "$LOGS/postgres.log" -w -t 60 \
			-o "-c listen_addresses=127.0.0.1 -p $PG_PORT -c unix_socket_directories=$PGSOCK" start >/dev/null \
			|| { tail -20 "$LOGS/postgres.log" >&2; die "PostgreSQL did not start (log: $LOGS/postgres.log)"; }
	fi
	if [ "$(psql_admin -c "select 1 from pg_roles where rolname='gridpay'")" != "1" ]; then
		psql_admin -c "create role gridpay login"
	fi
	if [ "$(psql_admin -c "select 1 from pg_database where datname='gridpay'")" != "1" ]; then
		psql_admin -c "create database gridpay owner gridpay"
		note "created database gridpay"
	fi
}

start_temporal() {
	mkdir -p "$RUN/temporal" "$LOGS"
	if temporal_running; then
		say "Temporal: already running on 127.0.0.1:$TEMPORAL_PORT (reusing)"
		return
	fi
	[ -x "$TEMPORAL_BIN" ] || die "Temporal CLI missing: run make tools"
	say "Temporal: starting the dev server on 127.0.0.1:$TEMPORAL_PORT (state in $TEMPORAL_DB)"
	nohup "$TEMPORAL_BIN" server start-dev --ip 127.0.0.1 --port "$TEMPORAL_PORT" \
		--ui-ip 127.0.0.1 --ui-port "$TEMPORAL_UI_PORT" --db-filename "$TEMPORAL_DB" \
		--namespace default --log-level warn >"$LOGS/temporal.log" 2>&1 &
	echo $! >"$TEMPORAL_PID"
	wait_for "Temporal" 60 "$TEMPORAL_BIN" operator cluster health --address "127.0.0.1:$TEMPORAL_PORT" \
		|| { tail -20 "$LOGS/temporal.log" >&2; die "Temporal did not start (log: $LOGS/temporal.log)"; }
}

setup_softhsm() {
	local module
	module="$(softhsm_module)" || die "SoftHSM2 module not found: run make deps"
	mkdir -p "$SOFTHSM_DIR/tokens" "$SECRETS"
	cat >"$SOFTHSM_DIR/softhsm2.conf" <<CONF
directories.tokendir = $SOFTHSM_DIR/tokens
objectstore.backend = file
log.level = ERROR
slots.removable = false
CONF
	export SOFTHSM2_CONF="$SOFTHSM_DIR/softhsm2.conf"
	random_secret "$SECRETS/hsm.pin" 8
	random_secret "$SECRETS/hsm.so-pin" 12
	if softhsm2-util --show-slots 2>/dev/null | grep -q "Label:[[:space:]]*$HSM_TOKEN_LABEL[[:space:]]*$"; then
		say "HSM token \"$HSM_TOKEN_LABEL\": present (reusing)"
	else
		say "HSM token \"$HSM_TOKEN_LABEL\": initialising in $SOFTHSM_DIR/tokens"
		softhsm2-util --init-token --free --label "$HSM_TOKEN_LABEL" \
			--so-pin "$(cat "$SECRETS/hsm.so-pin")" --pin "$(cat "$SECRETS/hsm.pin")" >/dev/null
	fi
	cat >"$RUN/env" <<ENV
# Written by scripts/stack.sh: 'source .run/env' points GridPay's programs at the development stack.
export GRIDPAY_CONFIG="$CONFIG"
export SOFTHSM2_CONF="$SOFTHSM_DIR/softhsm2.conf"
ENV
	cat >"$CONFIG" <<YAML
# Written by scripts/stack.sh for the development stack; regenerated on each 'make demo'.
log:
  level: info
  format: console
database:
  dsn: postgres://gridpay@127.0.0.1:$PG_PORT/gridpay?sslmode=disable
hsm:
  module: $module
  token_label: $HSM_TOKEN_LABEL
  pin:
    file: $SECRETS/hsm.pin
temporal:
  address: 127.0.0.1:$TEMPORAL_PORT
  namespace: default
  task_queue: gridpay
  ui_address: http://127.0.0.1:$TEMPORAL_UI_PORT
pki:
  dir: $RUN/pki
  crl_url: http://127.0.0.1:8443/crl/customer.crl
YAML
}

setup_gridpay() {
	export SOFTHSM2_CONF="$SOFTHSM_DIR/softhsm2.conf"
	say "database: applying migrations"
	"$BIN/adminctl" --config "$CONFIG" db migrate
	say "CA: creating (or reusing) the CA keys in the HSM"
	"$BIN/adminctl" --config "$CONFIG" ca init
}

start_worker() {
	if worker_running; then
		# A rebuilt binary should serve: restart it.
		stop_pid "worker" "$WORKER_PID"
	fi
	say "worker: starting (task queue gridpay)"
	GRIDPAY_CONFIG="$CONFIG" SOFTHSM2_CONF="$SOFTHSM_DIR/softhsm2.conf" nohup "$BIN/worker" >"$LOGS/worker.log" 2>&1 &
	echo $! >"$WORKER_PID"
	wait_for "the worker's schedule" 30 "$TEMPORAL_BIN" schedule describe --address "127.0.0.1:$TEMPORAL_PORT" --schedule-id crl-publish \
		|| { tail -20 "$LOGS/worker.log" >&2; die "the worker did not start (log: $LOGS/worker.log)"; }
}

up() {
	[ -x "$BIN/adminctl" ] || die "programs not built: run make build"
	start_postgres
	start_temporal
	setup_softhsm
	setup_gridpay
	start_worker
	status
}

down() {
	stop_pid "worker" "$WORKER_PID"
	stop_pid "Temporal" "$TEMPORAL_PID"
	if pg_running; then
		say "PostgreSQL: stopping"
		as_pg "$PG_BIN/pg_ctl" -D "$PGDATA" -m fast -w stop >/dev/null
	else
		say "PostgreSQL: not running"
	fi
}

status() {
	echo
	say "GridPay development stack"
	if pg_running; then note "PostgreSQL       127.0.0.1:$PG_PORT  database gridpay (data: $PGDATA)"; else note "PostgreSQL       stopped"; fi
	if temporal_running; then
		note "Temporal         127.0.0.1:$TEMPORAL_PORT  namespace default (state: $TEMPORAL_DB)"
		note "Temporal Web UI  http://127.0.0.1:$TEMPORAL_UI_PORT"
	else
		note "Temporal         stopped"
	fi
	if worker_running; then note "worker           pid $(cat "$WORKER_PID"), schedule crl-publish (log: $LOGS/worker.log)"; else note "worker           stopped"; fi
	note "HSM (SoftHSM2)   token \"$HSM_TOKEN_LABEL\", SOFTHSM2_CONF=$SOFTHSM_DIR/softhsm2.conf"
	note "CA files         $RUN/pki"
	note "config           $CONFIG"
	note "environment      source $RUN/env   (then: bin/adminctl db status, bin/adminctl ca show, ...)"
	note "logs             $LOGS"
	note "stop with        make down"
}

case "${1:-}" in
	up) up ;;
	down) down ;;
	status) status ;;
	*) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
