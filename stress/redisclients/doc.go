// Package redisclients measures the Redis clients the Redis store could
// be built on against each other on the session workload: go-redis (what
// store/redis uses) and rueidis. It has no code outside its tests; see
// BenchmarkClients and docs/performance.md (the Redis section).
//
//	cd stress && go test -run '^$' -bench Clients -benchtime 2000x -count 3 ./redisclients
package redisclients
