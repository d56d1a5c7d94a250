# The two commands of the README: `make stress` runs the stress harness on
# the embedded store; `make test` installs what the tests need and runs
# every test with the race detector.
GO ?= go

.PHONY: test test-deps stress bench bench-scs fuzz vet reports report-shots sim model soak


# make test runs scripts/test.sh: every stage, in every module of go.work
# (a go.mod missing from go.work fails the run), with each stage's time.
# CI budget, 25 min in all on 2 cores: simulation <= 2 min, real-process
# faults <= 4 (their own -p 1 stage), Redis <= 2, browser <= 1, router
# matrix <= 1.
test:
	./scripts/test.sh

test-deps:
	./scripts/install-test-deps.sh

stress:
	$(GO) run ./stress

bench: test-deps
	for d in $$(./scripts/modules.sh); do (cd $$d && $(GO) test -run '^$$' -bench . -benchmem $$($(GO) list ./... | grep -v '/stress/peers$$')) || exit 1; done
	$(MAKE) bench-scs

# bench-scs: the middleware, provider and memcached store side by side with
# alexedwards/scs over a gomemcache adapter, on one memcached node, through
# real HTTP (docs/performance.md, "Side by side with scs"): both sides'
# operations per request asserted, then the latency ratios (median of 5
# runs) and the throughput with 1,000 sessions and 32 clients (median of 3).
bench-scs: test-deps
	cd stress && $(GO) test -count=1 -run 'TestOperations' ./peers
	bash -c 'set -o pipefail; cd stress && $(GO) test -run "^$$" -bench LatencyRatios -benchtime 2000x -count 5 ./peers | awk -v unit=ours/scs -f ../scripts/benchmedian.awk'
	bash -c 'set -o pipefail; cd stress && $(GO) test -run "^$$" -bench Throughput -benchtime 20000x -count 3 ./peers | awk -v unit=ours/scs -f ../scripts/benchmedian.awk'

fuzz:
	$(GO) test -run '^$$' -fuzz FuzzDecodeValues -fuzztime 60s ./session
	$(GO) test -run '^$$' -fuzz FuzzDecodeRecord -fuzztime 60s ./record
	$(GO) test -run '^$$' -fuzz FuzzDeltas -fuzztime 30s ./record

vet:
	for d in $$(./scripts/modules.sh); do (cd $$d && $(GO) vet ./...) || exit 1; done

# reports regenerates the example stress reports docs/performance.md links
# (each must stay under 1 MB): a run with a node killed on
# memcached, a run with more sessions than one page of lanes, and a
# comparison of the waiting strategies.
reports:
	mkdir -p docs/reports
	$(GO) run ./stress -backend memcached -managed 3 -procs 2 -sessions 20 -requests 3000 -kill-node 40% -html docs/reports/stress-faults.html
	$(GO) run ./stress -sessions 60 -burst 6 -requests 3000 -html docs/reports/stress-sessions.html
	$(GO) run ./stress -compare -sessions 4 -burst 8 -requests 320 -mix incr=3,read=2,free=1,slow=2 -slow 5ms -html docs/reports/stress-compare.html
	@if find docs/reports -name '*.html' -size +1024k | grep .; then echo "reports: over 1 MB" >&2; exit 1; fi

# report-shots runs the browser tests of the reports and of the example
# page, keeping their screenshots (whole pages and screen-sized parts at
# 1400 and 390 px), the reports and their PDFs in artifacts/report-shots.
REPORT_SHOTS_DIR ?= $(CURDIR)/artifacts/report-shots
report-shots:
	rm -rf $(REPORT_SHOTS_DIR) && mkdir -p $(REPORT_SHOTS_DIR)
	REPORT_SHOTS_DIR=$(REPORT_SHOTS_DIR) $(GO) test -count=1 -run Browser ./examples/ajaxburst
	cd stress && REPORT_SHOTS_DIR=$(REPORT_SHOTS_DIR) $(GO) test -count=1 -timeout 5m -run Browser ./internal/harness
	@ls $(REPORT_SHOTS_DIR)

# make sim: the fault simulation over many more seeds than make test's
# 1200 (docs/simulation.md): the store's default (the witness scheme),
# a quarter on BackupOn, a sixth on tiered; then the witness scheme and
# tiered again with the store's own client timeout (500 ms, its Config's
# default; the simulation's default is the independent fault test's
# 300 ms), a quarter as many seeds. SIM_SEEDS=N to change; replay one seed with
# cd stress && go test ./sim -run TestReplay -seed N -v (-client-timeout 500ms).
SIM_SEEDS ?= 20000
sim:
	SIM_SEEDS=$(SIM_SEEDS) bash -c 'set -o pipefail; cd stress && $(GO) test -count=1 -timeout 60m -v -run "TestSim|TestNoFaultIsClean" ./sim -seeds $(SIM_SEEDS) | grep -v -E "^[[:space:]]*(=== (RUN|PAUSE|CONT|NAME)|--- (PASS|SKIP))"'
	SIM_SEEDS=$(SIM_SEEDS) bash -c 'set -o pipefail; cd stress && $(GO) test -count=1 -timeout 60m -v -run "TestSim$$|TestSimTiered$$" ./sim -seeds $$(( SIM_SEEDS / 4 )) -client-timeout 500ms | grep -v -E "^[[:space:]]*(=== (RUN|PAUSE|CONT|NAME)|--- (PASS|SKIP))"'

# make soak: repeated single faults spaced beyond the memcached store's
# repair window (docs/replication.md section 9, "Repair window"), on three
# real memcached processes and three app processes, every invariant
# required (no allowance): flushes and restarts alternating over the
# nodes in turn, 16 idle sessions that only the repair scan restores,
# checked whole before each next fault (repair_window_exceeded). Three
# faults 2.5 s apart with the scan every 1 s, six 8 s apart with it every
# 3 s, six 40 s apart with the store's default 30 s (about 7 minutes in
# all), and the scan turned off, which must fail. The same from the
# command line: go run ./stress -backend memcached -managed 3 -procs 3
# -requests -1 -duration 52s -flush-count 6 -fault-spacing 8s
# -spaced-restart -repair-every 3s -idle-sessions 16
soak:
	cd stress && SESSIONLOCK_SOAK=1 SESSIONLOCK_REQUIRE_SERVERS=1 $(GO) test -count=1 -p 1 -timeout 20m -v -run 'TestSoak' ./internal/harness

# model: the replication protocol's model check in its larger scopes
# (about 4 minutes of CPU; docs/replication.md gives the state counts).
# Revision 1's bounded searches (about 100 million states, half an hour
# or more) run with: cd stress && go test -v ./replmodel -replmodel.full -replmodel.long
model:
	cd stress && $(GO) test -count=1 -timeout 60m -v -run . ./replmodel -replmodel.full
