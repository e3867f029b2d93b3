#!/bin/sh
# Temporal's server image reads its database password from POSTGRES_PWD only;
# take it from the docker secret so it never sits in the compose file.
set -eu
POSTGRES_PWD="$(cat "$POSTGRES_PWD_FILE")"
export POSTGRES_PWD
exec /etc/temporal/entrypoint.sh "$@"
