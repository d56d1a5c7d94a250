// Package tieredtest tests package tiered with this module's sqlstore as its
// durable tier, on a real PostgreSQL server (and real memcached servers
// where the test says so): the tests of the tiered store that need SQL live
// here, so that the root module, which holds package tiered, does not
// require pgx. It has no code outside its tests.
package tieredtest
