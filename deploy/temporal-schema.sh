#!/bin/sh
# Creates Temporal's two databases if missing and brings their schemas up to
# the versions shipped with the admin-tools image. Safe to run on every start.
set -eu
export SQL_PASSWORD="$(cat "$SQL_PASSWORD_FILE")"
tool() { temporal-sql-tool --plugin postgres12 --ep "$SQL_HOST" -p 5432 -u "$SQL_USER" --pw "$SQL_PASSWORD" "$@"; }
schema=/etc/temporal/schema/postgresql/v12
for db in temporal temporal_visibility; do
	tool --db "$db" create-database || true
done
tool --db temporal setup-schema -v 0.0 || true
tool --db temporal update-schema -d "$schema/temporal/versioned"
tool --db temporal_visibility setup-schema -v 0.0 || true
tool --db temporal_visibility update-schema -d "$schema/visibility/versioned"
