# Shared settings and helpers of the development scripts. Sourced, not run.
# Everything lives inside the project: tools in .tools/, state and logs in .run/.

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$ROOT/.tools"
RUN="$ROOT/.run"
LOGS="$RUN/logs"

TEMPORAL_VERSION="v1.5.1"
TEMPORAL_BIN="$TOOLS/bin/temporal"
PG_BIN="${GRIDPAY_PG_BIN:-/usr/lib/postgresql/15/bin}"

# Development stack addresses (loopback only).
PG_PORT="${GRIDPAY_DEV_PG_PORT:-55432}"
TEMPORAL_PORT="${GRIDPAY_DEV_TEMPORAL_PORT:-7233}"
TEMPORAL_UI_PORT="${GRIDPAY_DEV_TEMPORAL_UI_PORT:-8233}"
HSM_TOKEN_LABEL="GridPay HSM"

say()  { printf '\033[1m==>\033[0m %s\n' "$*"; }
note() { printf '    %s\n' "$*"; }
die()  { printf 'error: %s\n' "$*" >&2; exit 1; }

# as_root runs a command as root, through sudo when we are not root.
as_root() {
	if [ "$(id -u)" -eq 0 ]; then "$@"
	elif command -v sudo >/dev/null 2>&1; then sudo "$@"
	else die "need root to run: $* (no sudo available)"
	fi
}

# as_pg runs a PostgreSQL server binary: as the 'postgres' system user when we
# are root (initdb and postgres refuse to run as root), else as ourselves.
as_pg() {
	if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

softhsm_module() {
	local p
	for p in "${GRIDPAY_SOFTHSM_MODULE:-}" /usr/lib/softhsm/libsofthsm2.so \
		/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so /usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so; do
		[ -n "$p" ] && [ -f "$p" ] && { echo "$p"; return 0; }
	done
	return 1
}

# wait_for runs a command until it succeeds, printing a dot a second.
wait_for() {
	local what="$1" tries="$2"; shift 2
	printf '    waiting for %s ' "$what"
	for _ in $(seq "$tries"); do
		if "$@" >/dev/null 2>&1; then printf ' ready\n'; return 0; fi
		printf '.'; sleep 1
	done
	printf ' gave up\n'; return 1
}
