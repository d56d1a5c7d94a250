// Package peers measures the session middleware side by side with other
// session libraries over the same real store, through the whole HTTP
// stack. Today its only peer is github.com/alexedwards/scs/v2 over a
// minimal gomemcache store kept in this package's test code (scs takes no
// lock: one get per request that reads, get + set per change), compared
// with the middleware, provider and memcached store on the same memcached
// node, a 2 KB session:
//
//	go test -run TestOperations -v .                  # both sides' memcached operations, asserted
//	go test -run '^$' -bench LatencyRatios -benchtime 2000x -count 5 .
//	go test -run '^$' -bench Throughput -benchtime 20000x -count 3 .
//
// The benchmarks report ratios taken in one run (requests interleaved one
// by one, or throughput phases taking turns), never absolute times to be
// compared across runs; docs/performance.md ("Side by side with scs")
// has the figures, and how to pin the test process and memcached to
// separate cores (PEERS_MEMCACHED_CPU), and how to measure the whole-record
// writes of before lock changes were appended (PEERS_WHOLE_WRITES), and
// with the store on a pool of connections instead of its default shared,
// pipelined ones (PEERS_POOLED, memcached.ConnsPooled). Nothing here is a
// timed assertion.
//
// scs and its adapter live only in this tools module (stress/go.mod),
// never in the library's own go.mod.
package peers
