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
GATEWAY_PID="$RUN/gateway.pid"
SIM_PID="$RUN/platform-sim.pid"
UP_PID="$RUN/unionpay-sim.pid"
UP_DIR="$RUN/unionpay-sim"
UP_DSN="postgres://gridpay@127.0.0.1:$PG_PORT/unionpay?sslmode=disable"
UP_PORT="${GRIDPAY_DEV_UNIONPAY_PORT:-8710}"
UP_ADMIN_PORT="${GRIDPAY_DEV_UNIONPAY_ADMIN_PORT:-8711}"
PUBLIC_PORT="${GRIDPAY_DEV_PUBLIC_PORT:-8444}"
MERCHANT_ID="898310048160001"
SIM_DIR="$RUN/platform-sim"
SIM_DSN="postgres://gridpay@127.0.0.1:$PG_PORT/platform?sslmode=disable"
GATEWAY_PORT="${GRIDPAY_DEV_GATEWAY_PORT:-8443}"
# The worker's codec endpoint, through which the Web UI decrypts payloads.
CODEC_PORT="${GRIDPAY_DEV_CODEC_PORT:-8089}"
CODEC_ENDPOINT="http://127.0.0.1:$CODEC_PORT"
UI_ORIGIN="http://127.0.0.1:$TEMPORAL_UI_PORT"
SIM_PORT="${GRIDPAY_DEV_SIM_PORT:-8700}"
DEMO_KEY_LABEL="GridPay Demo Key"
DEMO_CARD_LABEL="GridPay Demo Meter Card"
CLIENT_CONFIG="$RUN/client.yaml"
SOFTHSM_DIR="$RUN/softhsm"
SECRETS="$RUN/secrets"
CONFIG="$RUN/gridpay.yaml"
BIN="$ROOT/bin"

pg_running() { [ -f "$PGDATA/postmaster.pid" ] && as_pg "$PG_BIN/pg_ctl" -D "$PGDATA" status >/dev/null 2>&1; }
temporal_running() { [ -f "$TEMPORAL_PID" ] && kill -0 "$(cat "$TEMPORAL_PID")" 2>/dev/null; }
running() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
worker_running() { running "$WORKER_PID"; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
# worker_ready: the worker logged that it runs; a worker that exited fails at once.
worker_ready() {
	worker_running || { tail -5 "$LOGS/worker.log" >&2; die "the worker exited (log: $LOGS/worker.log)"; }
	grep -q "worker running" "$LOGS/worker.log"
}

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
	for db in gridpay platform unionpay; do
		if [ "$(psql_admin -c "select 1 from pg_database where datname='$db'")" != "1" ]; then
			psql_admin -c "create database $db owner gridpay"
			note "created database $db"
		fi
	done
}

# temporal_has_codec: the running dev server's Web UI decodes through the
# worker's codec endpoint (servers started before the codec existed do not).
temporal_has_codec() { tr '\0' ' ' <"/proc/$(cat "$TEMPORAL_PID")/cmdline" 2>/dev/null | grep -q -- "--ui-codec-endpoint $CODEC_ENDPOINT"; }

start_temporal() {
	mkdir -p "$RUN/temporal" "$LOGS"
	if temporal_running; then
		if temporal_has_codec; then
			say "Temporal: already running on 127.0.0.1:$TEMPORAL_PORT (reusing)"
			return
		fi
		# Its state is in $TEMPORAL_DB: nothing is lost.
		say "Temporal: restarting the dev server so that its Web UI decrypts payloads through $CODEC_ENDPOINT"
		stop_pid "Temporal" "$TEMPORAL_PID"
	fi
	[ -x "$TEMPORAL_BIN" ] || die "Temporal CLI missing: run make tools"
	say "Temporal: starting the dev server on 127.0.0.1:$TEMPORAL_PORT (state in $TEMPORAL_DB)"
	nohup "$TEMPORAL_BIN" server start-dev --ip 127.0.0.1 --port "$TEMPORAL_PORT" \
		--ui-ip 127.0.0.1 --ui-port "$TEMPORAL_UI_PORT" --ui-codec-endpoint "$CODEC_ENDPOINT" --db-filename "$TEMPORAL_DB" \
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
	random_secret "$SECRETS/pay-link.key" 48
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
  codec:
    # Payloads are encrypted with this HSM key (adminctl ca init creates it);
    # the worker serves the codec endpoint the Web UI decrypts them through.
    key_label: gridpay-payload-key
    listen: 127.0.0.1:$CODEC_PORT
    ui_origin: $UI_ORIGIN
pki:
  dir: $RUN/pki
  crl_url: http://127.0.0.1:8443/crl/customer.crl
audit:
  # The worker anchors the audit log's head here (signed by the "audit" key
  # in the HSM); adminctl audit verify checks the log against the files. In
  # production: WORM storage the database's administrators cannot write.
  anchor_dir: $RUN/audit-anchors
platform:
  url: https://127.0.0.1:$SIM_PORT
  ca_file: $SIM_DIR/ca.pem
unionpay:
  merchant_id: "$MERCHANT_ID"
  front_url: http://127.0.0.1:$UP_PORT/gateway/api/frontTransReq.do
  back_url: http://127.0.0.1:$UP_PORT/gateway/api/backTransReq.do
  query_url: http://127.0.0.1:$UP_PORT/gateway/api/queryTrans.do
  file_url: http://127.0.0.1:$UP_PORT/gateway/api/fileTransReq.do
  merchant_key_file: $RUN/unionpay/merchant-key.pem
  merchant_cert_file: $RUN/unionpay/merchant.pem
  root_file: $UP_DIR/root.pem
  notify_url: http://127.0.0.1:$PUBLIC_PORT/unionpay/notify
  return_url: http://127.0.0.1:$PUBLIC_PORT/pay/return
listen: 127.0.0.1:$GATEWAY_PORT
public_listen: 127.0.0.1:$PUBLIC_PORT
public_url: http://127.0.0.1:$PUBLIC_PORT
pay_link_secret:
  file: $SECRETS/pay-link.key
YAML
}

setup_gridpay() {
	export SOFTHSM2_CONF="$SOFTHSM_DIR/softhsm2.conf"
	say "database: applying migrations"
	"$BIN/adminctl" --config "$CONFIG" db migrate
	say "CA: creating (or reusing) the CA keys and the Temporal payload key in the HSM"
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
	wait_for "the worker" 30 worker_ready \
		|| { tail -20 "$LOGS/worker.log" >&2; die "the worker did not start (log: $LOGS/worker.log)"; }
}

# start_platform_sim seeds the power company's platform simulator once and
# starts it (mutual TLS; it admits GridPay's services CA certificates only).
start_platform_sim() {
	if running "$SIM_PID"; then stop_pid "platform simulator" "$SIM_PID"; fi
	say "platform simulator: seeding (once) and starting on 127.0.0.1:$SIM_PORT"
	"$BIN/platform-sim" seed --if-empty --dsn "$SIM_DSN" --customers 200 --months 24 --seed 42 --log-level warn >"$LOGS/platform-sim-seed.log" 2>&1 \
		|| { cat "$LOGS/platform-sim-seed.log" >&2; die "seeding the platform simulator failed"; }
	nohup "$BIN/platform-sim" serve --dsn "$SIM_DSN" --state-dir "$SIM_DIR" --listen "127.0.0.1:$SIM_PORT" \
		--client-ca "$RUN/pki/services-ca.pem" >"$LOGS/platform-sim.log" 2>&1 &
	echo $! >"$SIM_PID"
	wait_for "the platform simulator" 30 port_open "$SIM_PORT" \
		|| { tail -20 "$LOGS/platform-sim.log" >&2; die "the platform simulator did not start (log: $LOGS/platform-sim.log)"; }
}

# start_unionpay_sim makes the development merchant key (once) and starts
# the UnionPay gateway simulator.
start_unionpay_sim() {
	if running "$UP_PID"; then stop_pid "UnionPay simulator" "$UP_PID"; fi
	if [ ! -s "$RUN/unionpay/merchant.pem" ]; then
		say "UnionPay: development merchant key and certificate for merId $MERCHANT_ID"
		"$BIN/unionpay-sim" merchant-cert --state-dir "$UP_DIR" --out-dir "$RUN/unionpay" --mer-id "$MERCHANT_ID" --log-level warn >/dev/null
	fi
	say "UnionPay simulator: starting on 127.0.0.1:$UP_PORT (pay page in the browser; admin 127.0.0.1:$UP_ADMIN_PORT)"
	nohup "$BIN/unionpay-sim" serve --dsn "$UP_DSN" --state-dir "$UP_DIR" --listen "127.0.0.1:$UP_PORT" \
		--admin-listen "127.0.0.1:$UP_ADMIN_PORT" --time-scale 0.05 >"$LOGS/unionpay-sim.log" 2>&1 &
	echo $! >"$UP_PID"
	wait_for "the UnionPay simulator" 30 port_open "$UP_PORT" \
		|| { tail -20 "$LOGS/unionpay-sim.log" >&2; die "the UnionPay simulator did not start (log: $LOGS/unionpay-sim.log)"; }
}

# demo_payment pays the demo customer's oldest overdue bill end to end: the
# client signs and sends it, the simulator plays the payer's browser, and
# the client follows it until the power company has posted it.
demo_payment() {
	export SOFTHSM2_CONF="$SOFTHSM_DIR/softhsm2.conf"
	local bill link key
	bill="$("$BIN/client" --config "$CLIENT_CONFIG" arrears --json 2>/dev/null | sed -n 's/.*"id": "\(B[0-9]*\)".*/\1/p' | head -1)"
	if [ -z "$bill" ]; then
		say "demo payment: the demo customer has no overdue bill left (paid in an earlier run)"
		return
	fi
	say "demo payment: client pay --bill $bill"
	"$BIN/client" --config "$CLIENT_CONFIG" pay --bill "$bill" --no-wait --json >"$RUN/demo-payment.json"
	link="$(sed -n 's/.*"pay_url": "\(.*\)".*/\1/p' "$RUN/demo-payment.json")"
	key="$(sed -n 's/.*"key": "\(.*\)".*/\1/p' "$RUN/demo-payment.json")"
	note "pay link: $link"
	"$BIN/unionpay-sim" pay "$link" | sed 's/^/    payer: /'
	"$BIN/client" --config "$CLIENT_CONFIG" pay --status "$key" --wait 2m 2>/dev/null | sed 's/^/    /' || true
	note "in the Temporal Web UI: http://127.0.0.1:$TEMPORAL_UI_PORT/namespaces/default/workflows/payment%2F$(cat "$RUN/demo-customer")%2F$key"
}

# demo_load tops up the demo customer's prepaid account through UnionPay,
# loads part of it onto the USB key's wallet (the signed load exchange),
# and passes some on to a demo meter card (a second SoftHSM2 token).
demo_load() {
	export SOFTHSM2_CONF="$SOFTHSM_DIR/softhsm2.conf"
	local link key
	say "demo load: client pay --prepay 300.00 (through UnionPay), then client load --amount 200.00"
	"$BIN/client" --config "$CLIENT_CONFIG" pay --prepay 300.00 --no-wait --json >"$RUN/demo-prepay.json"
	link="$(sed -n 's/.*"pay_url": "\(.*\)".*/\1/p' "$RUN/demo-prepay.json")"
	key="$(sed -n 's/.*"key": "\(.*\)".*/\1/p' "$RUN/demo-prepay.json")"
	"$BIN/unionpay-sim" pay "$link" >/dev/null
	"$BIN/client" --config "$CLIENT_CONFIG" pay --status "$key" --wait 2m >/dev/null 2>&1 || true
	"$BIN/client" --config "$CLIENT_CONFIG" load --amount 200.00 --yes | sed 's/^/    /'
	random_secret "$SECRETS/demo-card.pin" 6
	random_secret "$SECRETS/demo-card.so-pin" 10
	local card=(--card-label "$DEMO_CARD_LABEL" --card-pin-file "$SECRETS/demo-card.pin")
	if ! softhsm2-util --show-slots 2>/dev/null | grep -q "Label:[[:space:]]*$DEMO_CARD_LABEL[[:space:]]*$"; then
		say "demo meter card \"$DEMO_CARD_LABEL\": adminctl token init, client card issue"
		"$BIN/adminctl" --config "$CONFIG" token init --token-label "$DEMO_CARD_LABEL" \
			--so-pin-file "$SECRETS/demo-card.so-pin" --pin-file "$SECRETS/demo-card.pin" >/dev/null
		"$BIN/client" --config "$CLIENT_CONFIG" card issue "${card[@]}" --card-number "3301-0000-0001" >/dev/null
	fi
	say "demo card transfer: client card transfer --amount 50.00"
	"$BIN/client" --config "$CLIENT_CONFIG" card transfer "${card[@]}" --amount 50.00 --yes | sed 's/^/    /'
	note "loads waiting for their key in the Temporal Web UI: http://127.0.0.1:$TEMPORAL_UI_PORT/namespaces/default/workflows?query=OperationKind%3D%22load%22"
}

# issue_service_certs gives the gateway its TLS server certificate and the
# gateway and worker their client certificates for the platform, and the
# worker the keys that sign load-allow commands and audit anchors; keys in the HSM.
issue_service_certs() {
	say "service certificates: gateway TLS, gateway and worker platform clients, load and audit signers (kept while current)"
	"$BIN/adminctl" --config "$CONFIG" ca issue --server --name gateway --dns localhost --ip 127.0.0.1 --key-label gridpay-gateway-tls >/dev/null
	"$BIN/adminctl" --config "$CONFIG" ca issue --name gateway --key-label gridpay-gateway-platform >/dev/null
	"$BIN/adminctl" --config "$CONFIG" ca issue --name worker --key-label gridpay-worker-platform >/dev/null
	"$BIN/adminctl" --config "$CONFIG" ca issue --name load --key-label gridpay-load-signer >/dev/null
	"$BIN/adminctl" --config "$CONFIG" ca issue --name audit --key-label gridpay-audit-signer >/dev/null
}

start_gateway() {
	if running "$GATEWAY_PID"; then stop_pid "gateway" "$GATEWAY_PID"; fi
	say "gateway: starting on 127.0.0.1:$GATEWAY_PORT (mutual TLS 1.3)"
	GRIDPAY_CONFIG="$CONFIG" SOFTHSM2_CONF="$SOFTHSM_DIR/softhsm2.conf" nohup "$BIN/gateway" >"$LOGS/gateway.log" 2>&1 &
	echo $! >"$GATEWAY_PID"
	wait_for "the gateway" 30 port_open "$GATEWAY_PORT" \
		|| { tail -20 "$LOGS/gateway.log" >&2; die "the gateway did not start (log: $LOGS/gateway.log)"; }
}

# provision_demo_key makes a SoftHSM2 token the USB key of a demo customer
# who is in arrears, as an administrator would: adminctl token init, then
# adminctl bind (the binding workflow). It writes the client's configuration.
provision_demo_key() {
	export SOFTHSM2_CONF="$SOFTHSM_DIR/softhsm2.conf"
	random_secret "$SECRETS/demo-key.pin" 6
	random_secret "$SECRETS/demo-key.so-pin" 10
	local customer
	if [ -s "$RUN/demo-customer" ]; then
		customer="$(cat "$RUN/demo-customer")"
	else
		customer="$("$BIN/platform-sim" customers --dsn "$SIM_DSN" --overdue --type large_industry --limit 1 --log-level warn)"
		[ -n "$customer" ] || die "the platform simulator has no customer in arrears"
	fi
	local serial
	if ! softhsm2-util --show-slots 2>/dev/null | grep -q "Label:[[:space:]]*$DEMO_KEY_LABEL[[:space:]]*$"; then
		say "demo USB key \"$DEMO_KEY_LABEL\": adminctl token init"
		"$BIN/adminctl" --config "$CONFIG" token init --token-label "$DEMO_KEY_LABEL" \
			--so-pin-file "$SECRETS/demo-key.so-pin" --pin-file "$SECRETS/demo-key.pin"
	fi
	serial="$("$BIN/adminctl" --config "$CONFIG" tokens list --json | sed -n "/\"label\": \"$DEMO_KEY_LABEL\"/{n;s/.*\"serial\": \"\(.*\)\".*/\1/p}")"
	if "$BIN/adminctl" --config "$CONFIG" bindings show "$serial" 2>/dev/null | grep -q " active "; then
		say "demo USB key \"$DEMO_KEY_LABEL\" ($serial): bound to customer $customer (reusing)"
	else
		say "demo USB key \"$DEMO_KEY_LABEL\" ($serial): adminctl bind --customer $customer (binding workflow)"
		"$BIN/adminctl" --config "$CONFIG" bind --customer "$customer" --token-label "$DEMO_KEY_LABEL" --pin-file "$SECRETS/demo-key.pin"
		echo "$customer" >"$RUN/demo-customer"
	fi
	cat >"$CLIENT_CONFIG" <<YAML
# Written by scripts/stack.sh: the desktop client of the demo customer $customer.
log: {level: warn, format: console}
token:
  module: $(softhsm_module)
  label: $DEMO_KEY_LABEL
  pin:
    file: $SECRETS/demo-key.pin
gateway_url: https://127.0.0.1:$GATEWAY_PORT
ca_file: $RUN/pki/root.pem
state_dir: $RUN/client-state
YAML
}

up() {
	[ -x "$BIN/adminctl" ] || die "programs not built: run make build"
	start_postgres
	start_temporal
	setup_softhsm
	setup_gridpay
	start_platform_sim
	start_unionpay_sim
	issue_service_certs
	start_worker
	start_gateway
	provision_demo_key
	demo_payment
	demo_load
	status
}

down() {
	stop_pid "gateway" "$GATEWAY_PID"
	stop_pid "platform simulator" "$SIM_PID"
	stop_pid "UnionPay simulator" "$UP_PID"
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
		note "Temporal Web UI  $UI_ORIGIN (payloads decrypted through the worker's codec endpoint $CODEC_ENDPOINT)"
	else
		note "Temporal         stopped"
	fi
	if worker_running; then note "worker           pid $(cat "$WORKER_PID"), schedule crl-publish, codec endpoint $CODEC_ENDPOINT (log: $LOGS/worker.log)"; else note "worker           stopped"; fi
	if running "$SIM_PID"; then note "platform sim      https://127.0.0.1:$SIM_PORT (mutual TLS; log: $LOGS/platform-sim.log)"; else note "platform sim      stopped"; fi
	if running "$UP_PID"; then note "UnionPay sim     http://127.0.0.1:$UP_PORT (pay page; admin 127.0.0.1:$UP_ADMIN_PORT; log: $LOGS/unionpay-sim.log)"; else note "UnionPay sim     stopped"; fi
	if running "$GATEWAY_PID"; then note "gateway          https://127.0.0.1:$GATEWAY_PORT (mutual TLS 1.3; log: $LOGS/gateway.log)"; else note "gateway          stopped"; fi
	note "HSM (SoftHSM2)   token \"$HSM_TOKEN_LABEL\", SOFTHSM2_CONF=$SOFTHSM_DIR/softhsm2.conf"
	note "CA files         $RUN/pki"
	note "config           $CONFIG"
	note "environment      source $RUN/env   (then: bin/adminctl db status, bin/adminctl ca show, ...)"
	note "logs             $LOGS"
	note "stop with        make down"
	if [ -f "$CLIENT_CONFIG" ]; then
		echo
		say "the demo customer's desktop client (USB key \"$DEMO_KEY_LABEL\", PIN in $SECRETS/demo-key.pin):"
		note "SOFTHSM2_CONF=$SOFTHSM_DIR/softhsm2.conf bin/client --config $CLIENT_CONFIG ui        # the window, in your browser"
		note "SOFTHSM2_CONF=$SOFTHSM_DIR/softhsm2.conf bin/client --config $CLIENT_CONFIG login     # or the command line"
		note "   ... then: info, bills, arrears, consumption, history, pay --bill ID   (add --json for data)"
		note "   ... and the wallet on the key: pay --prepay 500.00, then load --amount 200.00, wallet"
	fi
}

case "${1:-}" in
	up) up ;;
	down) down ;;
	status) status ;;
	*) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
