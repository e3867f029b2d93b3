#!/usr/bin/env bash
# Installs the system packages GridPay's development stack and tests need, if
# missing: SoftHSM2 (stands in for the HSM and the USB keys), OpenSC
# (pkcs11-tool), OpenSSL, PostgreSQL 15's server binaries and Chromium (the
# web UI's browser tests). Non-interactive.
. "$(dirname "$0")/lib.sh"

need=()
command -v softhsm2-util >/dev/null 2>&1 || need+=(softhsm2)
softhsm_module >/dev/null || need+=(softhsm2)
command -v pkcs11-tool >/dev/null 2>&1 || need+=(opensc)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
# Headless Chromium for the desktop client's web UI tests.
[ -x /usr/bin/chromium ] || need+=(chromium)
# Chinese glyphs for the UI's screenshots; poppler to read back the e-bill PDF.
fc-list 2>/dev/null | grep -qi "wenquanyi\|noto sans cjk" || need+=(fonts-wqy-microhei fontconfig)
command -v pdftotext >/dev/null 2>&1 || need+=(poppler-utils poppler-data)
[ -x "$PG_BIN/postgres" ] && [ -x "$PG_BIN/initdb" ] || need+=(postgresql-15)
command -v runuser >/dev/null 2>&1 || need+=(util-linux)
command -v go >/dev/null 2>&1 || die "Go is not installed (https://go.dev/doc/install); GridPay needs Go 1.25 or later"

if [ ${#need[@]} -eq 0 ]; then
	say "system packages: all present"
	exit 0
fi
# Unique names, stable order.
mapfile -t need < <(printf '%s\n' "${need[@]}" | sort -u)
say "installing system packages: ${need[*]}"
command -v apt-get >/dev/null 2>&1 || die "apt-get not found: install ${need[*]} with your package manager"
# Debian would create and start its own cluster on port 5432; we run ours.
if [[ " ${need[*]} " == *" postgresql-15 "* ]] && [ ! -e /etc/postgresql-common/createcluster.conf ]; then
	as_root mkdir -p /etc/postgresql-common
	echo "create_main_cluster = false" | as_root tee /etc/postgresql-common/createcluster.conf >/dev/null
fi
export DEBIAN_FRONTEND=noninteractive
as_root apt-get update -qq >"${TMPDIR:-/tmp}/gridpay-apt.log" 2>&1 || { cat "${TMPDIR:-/tmp}/gridpay-apt.log" >&2; die "apt-get update failed"; }
as_root apt-get install -y -qq --no-install-recommends "${need[@]}" >>"${TMPDIR:-/tmp}/gridpay-apt.log" 2>&1 \
	|| { tail -30 "${TMPDIR:-/tmp}/gridpay-apt.log" >&2; die "apt-get install ${need[*]} failed"; }
id postgres >/dev/null 2>&1 || as_root useradd --system --home /var/lib/postgresql --shell /bin/bash postgres
say "system packages installed"
