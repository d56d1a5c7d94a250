#!/usr/bin/env bash
# make test: installs what the tests need, then runs each stage in turn and
# prints how long each took. A stage that fails stops the run (after the
# timing table). Stages and their CI budgets are listed in the Makefile.
set -euo pipefail
cd "$(dirname "$0")/.."

GO=${GO:-go}
timings=()
stage() {
  local name=$1; shift
  echo "=== stage $name: $*"
  local start=$SECONDS rc=0
  "$@" || rc=$?
  timings+=("$(printf '%-14s %4d s  %s' "$name" $((SECONDS - start)) "$([ $rc -eq 0 ] && echo ok || echo "FAILED ($rc)")")")
  if [ $rc -ne 0 ]; then summary; exit $rc; fi
}
summary() {
  echo "=== stage times"
  printf '%s\n' "${timings[@]}"
}
each_module() {
  local rc=0 dir
  for dir in $modules; do
    echo "--- module $dir"
    (cd "$dir" && "$@") || rc=1
  done
  return $rc
}

modules=$(./scripts/modules.sh)
stage deps ./scripts/install-test-deps.sh
stage vet each_module $GO vet ./...
stage harness $GO run ./stress -requests 2000
# The replication protocol's exhaustive small-scope model check
# (single-threaded, so without -race); make model runs the larger scopes.
stage model bash -c "cd stress && $GO test -count=1 ./replmodel"
if [ -z "${COUCHBASE_CONNSTR:-}" ]; then
  echo "NOTE: the Couchbase integration tests will be SKIPPED: no COUCHBASE_CONNSTR (with COUCHBASE_USERNAME, COUCHBASE_PASSWORD, COUCHBASE_BUCKET) is set."
fi
# SESSIONLOCK_REQUIRE_SERVERS makes a missing memcached, PostgreSQL or
# Chromium fail the tests instead of skipping them.
export SESSIONLOCK_REQUIRE_SERVERS=1
stage unit each_module $GO test -race -count=1 -timeout 15m ./...
summary
