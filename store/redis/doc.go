// Package redis is a provider.Store on a Redis 7 server, built on
// github.com/redis/go-redis/v9. It lives in its own module, so only users
// who import it pull in the Redis client.
//
//	store, err := redis.New(redis.Config{Addr: "10.0.0.5:6379", Password: pw})
//	if err != nil { ... }
//	defer store.Close()
//	p, err := provider.New(store, provider.Config{App: "shop"})
//
// # Key layout and CAS tokens
//
// Each key (Config.KeyPrefix + the provider's key) is one Redis string: an
// 8-byte CAS token, big-endian, followed by the provider's record. Every
// operation is one command and one round trip:
//
//	Get             GET key
//	GetAndTouch     GETEX key PX ttl
//	Add             SET key token+value NX PX ttl
//	CompareAndSwap  EVALSHA cas 1 key old-token new-token+value ttl
//	CompareAndAppend EVALSHA append 1 key old-token new-token delta ttl limit
//	Touch           PEXPIRE key ttl
//	Delete          DEL key
//	TTL             PTTL key
//
// The compare-and-swap script reads the stored token (GETRANGE key 0 7)
// and, when it is the caller's, replaces the key (SET ... PX); it answers
// "absent" or "token differs" otherwise. It is called by its SHA1; on
// NOSCRIPT (a new or restarted server, SCRIPT FLUSH) it is sent once with
// its source (EVAL), which runs and loads it. Add and CompareAndSwap return
// the new token, so a caller can write again without reading first. TTLs
// are milliseconds, rounded up.
//
// # Appended lock changes
//
// The Store is a provider.Appender: the provider sends a change of the
// lock state alone as a small delta (record.Delta) instead of the whole
// record. The append script checks the token at the front of the string
// as the compare-and-swap script does, APPENDs the delta behind the
// value, writes a new token over the old one (SETRANGE at 0) and sets the
// TTL (PEXPIRE), atomically and in one round trip; a value that would
// grow past MaxValueSize is left alone (provider.ErrTooLarge, and the
// provider writes the change whole). The Store does not look at what it
// appends: package record reads the value and its deltas as one record.
// Redis grows an appended string's allocation to twice its length, so a
// session carrying deltas takes about twice its memory until its next
// whole write (docs/performance.md), and appending buys no measurable
// latency on Redis, so it is opt-in: Config.AppendDeltas turns it on
// (only once no server of an earlier version, which reads a record with
// deltas as corrupt, shares the keys).
//
// Tokens are not counters: every write draws a fresh random 64-bit token
// (never 0, never the token it replaces) on the client. A token therefore
// identifies one write, not a position in a sequence that the server could
// lose: after a key expires and is created again, and after a failover
// that dropped acknowledged writes (the replica's copy is older, and its
// next writes would reuse a counter's values), a token held from before
// matches the new value only if two writes of the key drew the same 64
// bits: a chance of 2^-64 per pair of writes. A counter, even behind a
// random incarnation, repeats its values after such a rollback.
//
// # Errors
//
// Errors wrap the provider's sentinels:
//
//	no connection (refused, DialTimeout, TLS failed),
//	no free connection in time                        provider.ErrUnavailable (nothing sent)
//	READONLY, LOADING, MASTERDOWN, CLUSTERDOWN,
//	TRYAGAIN, BUSY, max clients                       provider.ErrUnavailable (nothing executed)
//	timeout or lost connection, a read                provider.ErrUnavailable
//	timeout or lost connection, a write               provider.ErrOutcomeUnknown and ErrUnavailable
//	context ended during a write                      provider.ErrOutcomeUnknown and the context's error
//	OOM, script errors, NOAUTH, NOPERM, others        provider.ErrServer (nothing written)
//	WRONGTYPE, a value shorter than its token         provider.ErrCorrupt
//
// The client never retries a command by itself (go-redis's MaxRetries is
// off): a write retried after its reply was lost could be reported as a
// conflict although it was applied. The scripts declare
// that they write ("#!lua"), so a server over maxmemory or a replica refuses
// it before it runs.
//
// # Redis Cluster and WAIT
//
// With Config.ClusterAddrs the Store uses go-redis's cluster client: each
// session is one key, so one hash slot; MOVED, ASK and failovers are the
// client's, and a node that fails makes it reload the slot map at once.
// Write commands are sent once (never re-sent after an error that leaves
// their outcome open). Config.WaitReplicas sends WAIT behind every write
// on the same connection to the key's master; a write fewer replicas
// acknowledged in time fails with provider.ErrOutcomeUnknown (it is
// applied on the master). Such a write follows MOVED and ASK itself (a
// node that answers either ran nothing), so a slot being migrated is
// served as it is without WAIT.
//
// # Events
//
// Config.OnEvent receives provider.EventNodeDown when the server stops
// answering (once), provider.EventNodeUp when it answers again, and
// provider.EventFallback when a script had to be loaded again.
//
// # Tests
//
// Package redistest starts real redis-server processes on free 127.0.0.1
// ports; the tests run the provider's whole conformance suite against one.
package redis
