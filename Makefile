# The two commands of the README: `make stress` runs the stress harness on
# the embedded store; `make test` installs what the tests need and runs
# every test with the race detector.
GO ?= go

.PHONY: test test-deps stress bench fuzz vet sim

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
	for d in $$(./scripts/modules.sh); do (cd $$d && $(GO) test -run '^$$' -bench . -benchmem ./...) || exit 1; done

fuzz:
	$(GO) test -run '^$$' -fuzz FuzzDecodeValues -fuzztime 60s ./session
	$(GO) test -run '^$$' -fuzz FuzzDecodeRecord -fuzztime 60s ./provider

vet:
	for d in $$(./scripts/modules.sh); do (cd $$d && $(GO) vet ./...) || exit 1; done

# make sim: the fault simulation over many more seeds than make test's
# 2000 (docs/simulation.md). SIM_SEEDS=N to change; replay one seed with
# cd stress && go test ./sim -run TestReplay -seed N -v.
SIM_SEEDS ?= 20000
sim:
	SIM_SEEDS=$(SIM_SEEDS) bash -c 'set -o pipefail; cd stress && $(GO) test -count=1 -timeout 60m -v -run "TestSim|TestNoFaultIsClean" ./sim -seeds $(SIM_SEEDS) | grep -v -E "^[[:space:]]*(=== (RUN|PAUSE|CONT|NAME)|--- (PASS|SKIP))"'
