# The two commands of the README: `make stress` runs the stress harness on
# the embedded store; `make test` installs what the tests need and runs
# every test with the race detector.
GO ?= go

.PHONY: test test-deps stress bench fuzz vet

# SESSIONLOCK_REQUIRE_SERVERS makes a missing memcached, PostgreSQL or
# Chromium fail the tests instead of skipping them.
test: test-deps
	$(GO) vet ./...
	$(GO) run ./stress -requests 2000
	@if [ -z "$$COUCHBASE_CONNSTR" ]; then echo "NOTE: the Couchbase integration tests will be SKIPPED: no COUCHBASE_CONNSTR (with COUCHBASE_USERNAME, COUCHBASE_PASSWORD, COUCHBASE_BUCKET) is set."; fi
	SESSIONLOCK_REQUIRE_SERVERS=1 $(GO) test -race -count=1 -timeout 15m ./...

test-deps:
	./scripts/install-test-deps.sh

stress:
	$(GO) run ./stress

bench: test-deps
	$(GO) test -run '^$$' -bench . -benchmem ./...

fuzz:
	$(GO) test -run '^$$' -fuzz FuzzDecodeValues -fuzztime 60s ./session
	$(GO) test -run '^$$' -fuzz FuzzDecodeRecord -fuzztime 60s ./provider

vet:
	$(GO) vet ./...
