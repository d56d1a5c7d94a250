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
# Consumer checks (scripts/consumers.sh): scratch modules outside the
# repository, GOWORK=off, replace lines to this checkout: importing a
# backend costs its client's module tree and nothing else.
stage consumers ./scripts/consumers.sh
stage harness $GO run ./stress -requests 2000
# The fault simulation (docs/simulation.md): 1200 seeds of 64 requests,
# each with faults, against the real memcached Store's default (the
# witness scheme on 3 nodes) over simulated nodes in testing/synctest
# bubbles, a quarter of that on the opt-in BackupOn (its expected
# failures), a sixth on tiered; no -race (single-threaded bubbles). The
# plain unit stage skips these tests (they need -seeds). The per-seed
# RUN/PASS lines are filtered out; the summary, the coverage, the known
# open items and BackupOn's expected failures are printed.
sim_run() {
  (cd stress && $GO test -count=1 -timeout 10m -v ./sim "$@") |
    grep -v -E '^[[:space:]]*(=== (RUN|PAUSE|CONT|NAME)|--- (PASS|SKIP))'
}
sim_stage() {
  sim_run -run 'TestSim|TestNoFaultIsClean' -seeds "${SIM_SEEDS:-1200}" || return 1
  # The same on the store's own default client timeout (500 ms, its
  # Config's zero value; the runs above use the independent fault test's
  # 300 ms), half as many seeds: the issue's "default configuration".
  sim_run -run 'TestSim$|TestSimTiered$' -seeds "$(( ${SIM_SEEDS:-1200} / 2 ))" -client-timeout 500ms
}
stage sim sim_stage
# Real-process faults (stress/internal/harness TestRealFaults): one short run per
# fault kind on 3 managed memcached nodes and 3 app processes; -p 1, its
# own stage. The runs on the store's default (the witness scheme) are
# requirements, but for the open items listed by name; the opt-in
# BackupOn's (backup-on/*) known defects are reported as expected
# failures naming the defect; expiry-skew-* move one node's item expiries
# (copies expiring at different instants). TestRealFaultsFourNodes (the
# -run pattern matches it too: about 20 s) kills and pauses one of four
# nodes. About 190 s in all; the Redis Cluster fault runs are in the
# redis stage.
stage faults env SESSIONLOCK_FAULTS=1 SESSIONLOCK_REQUIRE_SERVERS=1 bash -c "cd stress && $GO test -p 1 -count=1 -timeout 4m -v -run 'TestRealFaults' ./internal/harness"

# The replication protocol's exhaustive small-scope model check
# (single-threaded, so without -race); make model runs the larger scopes.
# About 6 min on a quiet 2-core machine: go test's default 10 min timeout
# was hit once with other work on the machine (a clean-clone run beside
# two simulations), so the stage has its own bound.
stage model bash -c "cd stress && $GO test -count=1 -timeout 15m ./replmodel"
if [ -z "${COUCHBASE_CONNSTR:-}" ]; then
  echo "NOTE: the Couchbase integration tests will be SKIPPED: no COUCHBASE_CONNSTR (with COUCHBASE_USERNAME, COUCHBASE_PASSWORD, COUCHBASE_BUCKET) is set."
fi
# SESSIONLOCK_REQUIRE_SERVERS makes a missing memcached, PostgreSQL or
# Chromium fail the tests instead of skipping them.
export SESSIONLOCK_REQUIRE_SERVERS=1
# Headless Chromium: the example page and the stress reports (budget 1 min).
browser_tests() {
  $GO test -race -count=1 -run Browser ./examples/ajaxburst &&
    (cd stress && $GO test -count=1 -run Browser ./internal/harness)
}
stage browser browser_tests
export SESSIONLOCK_SKIP_BROWSER=1 # the browser stage ran them

# The router matrix (stress/routers, real routers as test-only modules);
# budget 1 min. The unit stage runs it again from the build cache.
stage routers bash -c "cd stress && $GO test -race -count=1 ./routers"
# The Redis store's module has its own stage (CI budget 2 min) against real
# redis-server processes; the unit stage runs every other module.
# TestRedisClusterFailover (about 30 s; a fault run, -p 1) kills a master
# of a real Redis Cluster during traffic: with WAIT 1, and with its
# replica stalled with WAIT 1 and without WAIT (the negative control).
stage redis bash -c "cd store/redis && $GO test -race -count=1 -timeout 6m ./... && cd ../../stress && SESSIONLOCK_FAULTS=1 SESSIONLOCK_REQUIRE_SERVERS=1 $GO test -p 1 -count=1 -timeout 3m -v -run 'TestRedisClusterFailover' ./internal/harness"
modules=$(grep -vx './store/redis' <<<"$modules") stage unit each_module $GO test -race -count=1 -timeout 15m ./...
summary
