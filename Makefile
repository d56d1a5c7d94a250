# The two commands of the README: `make stress` runs the stress harness on
# the embedded store; `make test` installs what the tests need and runs
# every test with the race detector.
GO ?= go

.PHONY: test test-deps stress bench fuzz vet model

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

# model: the replication protocol's model check in its larger scopes
# (about 100 million states: half an hour or more; docs/replication.md
# gives the state counts).
model:
	cd stress && $(GO) test -count=1 -timeout 60m -v -run . ./replmodel -replmodel.full
