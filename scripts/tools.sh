#!/usr/bin/env bash
# Builds the pinned Temporal CLI from the Go module proxy into .tools/bin, once.
# A copy is kept in the user cache so that a fresh clone on the same machine
# does not spend minutes compiling it again.
. "$(dirname "$0")/lib.sh"

cache="${XDG_CACHE_HOME:-$HOME/.cache}/gridpay/temporal-$TEMPORAL_VERSION"
# go install stamps the module version into the binary (the CLI itself reports 0.0.0-DEV).
have_version() { [ -x "$1" ] && go version -m "$1" 2>/dev/null | grep -Eq "^[[:space:]]+mod[[:space:]]+github.com/temporalio/cli[[:space:]]+$TEMPORAL_VERSION([[:space:]]|\$)"; }

if have_version "$TEMPORAL_BIN"; then
	say "Temporal CLI $TEMPORAL_VERSION: present ($TEMPORAL_BIN)"
	exit 0
fi
mkdir -p "$TOOLS/bin"
if have_version "$cache"; then
	cp "$cache" "$TEMPORAL_BIN"
	say "Temporal CLI $TEMPORAL_VERSION: copied from $cache"
	exit 0
fi
say "building Temporal CLI $TEMPORAL_VERSION from the Go module proxy (3-5 minutes, once)"
log="$TOOLS/temporal-build.log"
GOBIN="$TOOLS/bin" GOFLAGS=-mod=mod go install "github.com/temporalio/cli/cmd/temporal@$TEMPORAL_VERSION" >"$log" 2>&1 &
pid=$!
while kill -0 "$pid" 2>/dev/null; do printf '.'; sleep 5; done; echo
wait "$pid" || { tail -20 "$log" >&2; die "building the Temporal CLI failed (log: $log)"; }
have_version "$TEMPORAL_BIN" || die "built Temporal CLI does not report $TEMPORAL_VERSION"
mkdir -p "$(dirname "$cache")" && cp "$TEMPORAL_BIN" "$cache" || true
say "Temporal CLI $TEMPORAL_VERSION built"
