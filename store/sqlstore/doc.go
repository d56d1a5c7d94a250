// Package sqlstore is a provider.Store on PostgreSQL (through pgx): a
// durable store usable alone, and the durable tier behind memcached in
// package tiered (it implements tiered.Durable). It implements
// provider.TTLReader too. It is its own module,
// github.com/sessionlock/sessionlock/store/sqlstore, so that only its users
// depend on pgx; package pgserver of the module starts throwaway
// PostgreSQL servers for tests.
//
//	s, err := sqlstore.New(ctx, sqlstore.Config{DSNs: []string{"postgres://app@db1/sessions"}})
//	p, err := provider.New(s, provider.Config{})
//
// # Schema
//
// One table (Config.Table, default sessionlock_records) holds one row per
// key:
//
//	key        text PRIMARY KEY
//	value      bytea NOT NULL        the provider's record, opaque here
//	version    bigint NOT NULL       the CAS token
//	expires_at timestamptz NOT NULL  the row is live while expires_at > now()
//	claimed_version, overwritten_version, created_version bigint NOT NULL
//	                                 what replaced which version (ClaimOf)
//
// with an index on expires_at for the sweep, a sequence <table>_version_seq
// that issues the tokens, and a table sessionlock_schema_version recording
// the schema version of each records table. The schema ships as schema.sql
// (embedded, see SchemaSQL). New applies it on every database, in one
// transaction under a PostgreSQL advisory lock, so processes starting
// together are safe; when the recorded version is current it runs no DDL,
// so an application role without DDL rights works against a schema an
// administrator created with psql -1 -f schema.sql. A schema newer than the
// library is refused with ErrSchemaTooNew. Version 2 added the three
// *_version columns to version 1's table (ADD COLUMN with a constant
// default: no rewrite of the table, its rows and tokens kept). The upgrade
// waits at most 5 s (lock_timeout) for the table's lock, so that the
// application's statements do not queue behind it; New then fails with
// provider.ErrUnavailable, and the next New tries again.
//
// # Compare-and-swap and expiry
//
// Every operation is one SQL statement and reads the time only as now(),
// the database server's clock: application servers' clocks never decide
// expiry.
//
//   - Get reads the row only if it is live: an expired row is invisible at
//     once, swept or not.
//   - Add inserts, or replaces an expired row in the same statement
//     (INSERT ... ON CONFLICT DO UPDATE ... WHERE expires_at <= now()), so
//     of several concurrent Adds exactly one wins. A live row gives
//     provider.ErrExists.
//   - CompareAndSwap updates the row only if it is live and its version is
//     the caller's token, setting a new version and expiry; the same
//     statement reads the row's current version from the same snapshot, to
//     tell provider.ErrCASConflict (live, another token) from
//     provider.ErrNotFound (absent or expired) without a race.
//   - Touch sets the expiry of a live row and keeps its token.
//   - Delete removes the row; an expired one is removed too but reported as
//     provider.ErrNotFound.
//
// Tokens come from a sequence, so a token is never reused in a database,
// even by a key deleted and added again: a stale token can never match a
// newer row. TTLs are stored to the microsecond.
//
// Expired rows are deleted by a background sweep every
// Config.SweepInterval, in statements of at most Config.SweepBatch rows
// (oldest first, skipping rows another transaction holds), and on demand by
// Sweep. Close stops the sweep and waits for it.
//
// # Partitioning
//
// Config.DSNs may list several databases. Each key lives on exactly one,
// chosen by rendezvous hashing (Rank) of the key over the partitions'
// names ("host:port/database" by default, or Config.Names): the placement
// depends only on the key and the set of names, so every process agrees on
// it whatever the order of its DSNs, and adding or removing a database
// moves only the keys that gain or lose it (1/N of them; they are not
// migrated, so sessions on a moved key start over). A database that is down
// fails only its own keys, with errors wrapping provider.ErrUnavailable that
// name the partition. New needs every database up, to check its schema.
//
// # Errors
//
// Connection failures, timeouts (Config.Timeout bounds each statement),
// cancelled contexts, server shutdowns and exhausted connections wrap
// provider.ErrUnavailable; other server errors wrap provider.ErrServer. A
// write (Add, CompareAndSwap, Claim, PutRecord, Delete) that fails so after
// its statement may have reached the server (a timeout or a connection lost
// while waiting for the answer; not a refused connection) also wraps
// provider.ErrOutcomeUnknown: it may have taken effect. Values over Config.MaxValueSize fail with provider.ErrTooLarge before any
// statement is sent. Keys must be non-empty valid UTF-8 without NUL bytes,
// at most MaxKeyLen bytes. Error messages name the partition, never the
// key, which holds a session id.
//
// # Records
//
// Two methods serve package tiered (tiered.Durable), which keeps provider
// session records here behind a cache: GetWithTTL (Get plus the remaining TTL, one
// statement) and PutRecord, an upsert ordered by the record's Seq (bytes
// 5..12 of a provider record, big-endian, compared as bytes in SQL): it
// stores the record unless the live row holds one with an equal or higher
// Seq, so concurrent writers' statements may arrive in any order.
//
// Two more serve tiered's revivals and the writers they may overtake
// (docs/replication.md §15): Claim is CompareAndSwap that also records the
// version it replaced as claimed (a revival adopting the durable copy), and
// ClaimOf tells a writer whether its row version was claimed (Claimed),
// replaced otherwise (NotClaimed) or cannot be told (ClaimUnknown: the row
// was removed or created again since, or later claims and writes replaced
// what the row recorded of it). Every CompareAndSwap and PutRecord records
// the version it replaced as overwritten; a row written afresh (inserted,
// or replacing an expired row) records the version it was created with.
//
// Stats counts the statements sent, for the cost benchmarks of package
// tiered.
//
// Behind a pooler in transaction mode (PgBouncer), add
// default_query_exec_mode=exec or simple_protocol to the DSN: by default
// pgx prepares statements per connection.
package sqlstore
