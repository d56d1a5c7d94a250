// Package couchbase is a provider.Store on a Couchbase collection, built on
// github.com/couchbase/gocb/v2 (v2.12.4 with gocbcore v10.9.3, the versions
// it is tested with).
//
//	store, err := couchbase.New(ctx, couchbase.Config{
//		ConnStr:  "couchbase://cb1.example.net,cb2.example.net",
//		Username: "sessions", Password: secret,
//		Bucket:   "sessions",
//	})
//	if err != nil { ... }
//	defer store.Close()
//	p, err := provider.New(store, provider.Config{})
//
// # Pointing the store at a cluster
//
// ConnStr lists a few seed nodes ("couchbase://host1,host2", or
// "couchbases://" for TLS, verified against TLSRootCAs or the system
// roots); the client learns the whole cluster from them and follows
// rebalances and failovers by itself. gocb options may be appended
// ("?compression=false", "?network=external"). The user needs read and
// write access to the collection (the Data Reader and Data Writer roles).
// The bucket must be a Couchbase or Ephemeral bucket (memcached buckets have
// no replicas, durability or sub-document operations). Scope and collection
// default to "_default"; create others before starting. KeyPrefix lets
// several applications share a collection.
//
// New waits at most Timeouts.Ready (default Timeouts.Connect) for the
// bucket's key-value service. One node's service is enough (gocb's
// ClusterStateDegraded): an application server that restarts while a node
// is down but not yet failed over still starts, and only the sessions whose
// vBuckets that node holds fail (provider.ErrUnavailable) until it returns
// or is failed over. WaitForAllNodes waits for every node instead (gocb's
// own default, ClusterStateOnline).
//
// An application that has a cluster open already passes one of its
// collections to NewFromCollection (cluster.Bucket(b).Scope(s).Collection(c));
// the store's Close leaves it open. Its requests still carry the store's
// timeouts and retry strategy. New's cluster reports to the Tracer and
// Meter of the Config (gocb's OpenTelemetry adapters, say); without them it
// uses gocb's no-op tracer and meter rather than gocb's defaults, which only
// write to gocb's logger. gocb's default threshold-logging tracer also has
// a data race in GetAnyReplica (still in gocb v2.12.4: a replica read that
// finds no replica before its deadline ends the same span from two
// goroutines, thresholdLogSpan.End), which ReadFromReplica reaches; a
// tracer passed in must tolerate that. gocb's logger is process-wide
// (gocb.SetLogger): setting it is the application's call, and the store
// never makes it.
//
// Settings (Config; zero values are the defaults):
//
//	ConnStr, Username, Password   the cluster and the RBAC user
//	Bucket, Scope, Collection     where sessions live ("_default" scope and collection)
//	KeyPrefix                     prepended to keys; prefix+key <= 250 bytes (MaxKeyLen)
//	Durability                    none (default) | majority | persistToMajority
//	Timeouts.Connect              each connection while bootstrapping, default 10 s
//	Timeouts.Ready                New's wait for the bucket, default Connect
//	Timeouts.KV                   one request, retries included, default 2.5 s
//	Timeouts.KVDurable            one durable write (majority too), default 10 s
//	Timeouts.Resolve              settling one ambiguous write, default KV (KVDurable when durable)
//	WaitForAllNodes               New waits for every node, not one (default false)
//	ReadFromReplica               Get falls back to a replica when the active is unreachable
//	Layout                        binary (default) | subdoc, see below
//	HeaderCacheSize               subdoc: keys whose last version is remembered, default 4096
//	TLSRootCAs                    roots for couchbases://
//	Tracer, Meter                 gocb's request tracer and meter, default no-op
//	OnEvent                       provider.EventFallback for each replica read and whole-write fallback
//
// Every request carries its own timeout: Timeouts.KV, or Timeouts.KVDurable
// for a write with a durability level. gocb by itself bounds a Majority
// write by its KV timeout (it applies the durable timeout only above
// Majority), so a Majority write that waited on a slow replica failed after
// 2.5 s. The server is asked to settle a durable write within 90% of its
// timeout; gocb raises durable timeouts below 1.5 s to 1.5 s.
//
// # Operations and compare-and-swap
//
// Every mutation the provider makes is conditional: Add is an Insert (it
// fails if the key exists), CompareAndSwap a Replace or MutateIn carrying
// the CAS read by Get. Both return the CAS of the new version, which Get
// would report. Touch and Delete are unconditional, as the Store contract
// says; Couchbase gives a touched document a new CAS. A CAS of 0 (which
// Couchbase would take as "no condition") is refused with
// provider.ErrCASConflict. TTLs are rounded up to whole seconds; TTLs of
// 30 days or more are sent as absolute times by the client's clock. TTL
// reads $document.exptime.
//
// # Errors
//
// Errors wrap a provider sentinel and the gocb error, so errors.Is matches
// both (provider.ErrCASConflict and gocb.ErrDocumentLocked, say):
//
//	document not found                      provider.ErrNotFound
//	document exists (Add)                   provider.ErrExists
//	CAS mismatch                            provider.ErrCASConflict
//	document locked                         provider.ErrCASConflict
//	value too large                         provider.ErrTooLarge
//	timeouts (ambiguous or not), cancelled or in-flight requests on a
//	closed socket, unreachable node or service, open circuit breaker,
//	temporary failure, durability impossible or ambiguous
//	                                        provider.ErrUnavailable
//	store or cluster closed                 provider.ErrClosed
//	sub-document or JSON layout errors,
//	document not JSON (ErrValueNotJSON)     provider.ErrCorrupt
//	write whose outcome cannot be settled   provider.ErrOutcomeUnknown
//	anything else (authentication, unknown bucket or collection, ...)
//	                                        provider.ErrServer
//
// Messages never contain the document id: it holds the session id.
//
// A locked document (another client's GetAndLock; this package never locks
// documents) is reported as a CAS conflict: the write did not happen and the
// provider re-reads. gocb's default retry strategy would retry it until the
// KV timeout; the store installs FailFastRetryStrategy, which fails such a
// request at once and otherwise retries as gocb does.
//
// An ambiguous failure of Add or CompareAndSwap (an ambiguous timeout,
// an ambiguous durable write, a cancelled request, a socket closed in
// flight) is never guessed at. The store reads the key back from the
// active node: if it holds exactly the value written, the write landed and
// its CAS is returned; if it holds something else under another CAS, the
// result is provider.ErrCASConflict (provider.ErrExists for Add); if it is
// unchanged, the same conditional write is sent again (the server applies
// at most one of the two) and read back again, at most three times. If the
// key cannot be read within Timeouts.Resolve, or the write is refused
// otherwise when sent again, the error wraps provider.ErrOutcomeUnknown
// (never provider.ErrUnavailable, which a caller may take for "not
// written"). Resolution runs even when the caller's context has ended: the
// caller must learn whether it holds the lock it asked for, or the session
// stays locked until its lease runs out. Touch and Delete, which are
// unconditional, are not re-sent: an ambiguous failure of either is
// provider.ErrOutcomeUnknown.
//
// # Replication and durability, in place of the memcached backup copy
//
// The memcached backend keeps a session on two nodes itself: it writes a
// primary and a backup copy and, after a node returns, serves the copy
// with the higher record Seq. Couchbase does this inside the cluster. Each
// key belongs to one of the bucket's vBuckets, which has one active copy
// and as many replicas as the bucket is configured with (one replica is the
// equivalent of the backup copy). The client writes only to the active
// copy; the cluster replicates it, and when a node fails and is failed over
// (automatically after the cluster's auto-failover timeout) a replica
// becomes active. Keys and session ids do not change.
//
// Durability decides what an acknowledged write survives:
//
//   - none: acknowledged from the active's memory. Replication is
//     asynchronous, so a failover can lose the last writes of a session:
//     a commit (the values roll back), a release (the session looks locked
//     until the holder's lease expires) or an acquisition. Fencing still
//     holds: a holder whose lock was lost finds another CAS and fails with
//     provider.ErrLockLost instead of overwriting the next holder.
//   - majority: acknowledged once a majority of the copies hold it in
//     memory; it survives the failover of the active. With one replica the
//     majority is both copies, so writes fail (provider.ErrUnavailable)
//     while the replica is down; two replicas tolerate one node down.
//   - persistToMajority: a majority also has it on disk; it survives the
//     whole cluster restarting. The slowest.
//
// Durable writes cost a replication round trip each. DurabilityNone is
// comparable to a cache with a backup copy: an acknowledged write can be
// lost with the node that took it. Sessions that matter are worth majority.
//
// # Replica reads
//
// With ReadFromReplica, a Get whose active node cannot be reached (a
// timeout, an open circuit breaker, a node or service unavailable, a
// connection closed) reads any replica that has the key, and reports a
// provider.EventFallback through OnEvent. A busy node is not unreachable: a
// temporary failure, a full client queue, or a timeout while gocb retried
// for one of these, means the node answers, and a replica read would add a
// second KV timeout for a possibly stale value, so the error is returned. The value may be stale: replication is asynchronous, so a
// replica can show a session unlocked while a request holds it on the
// active, or values older than the last commit. Read-only requests keep
// working through an outage of the active, at that cost; exclusive requests
// cannot. A replica read returns ReplicaCAS, which no document version has,
// and CompareAndSwap refuses it without a request, with an error wrapping
// provider.ErrUnavailable and ErrReplicaCAS. It is not reported as a CAS
// conflict, on purpose: the provider answers conflicts by re-reading, and
// each re-read would reach the same replica for up to MaxCASRetries rounds
// of KV timeouts. Touch still goes to the active and fails while it is
// unreachable, so a session's expiry does not slide during the outage. A
// key no replica has is reported as provider.ErrUnavailable, not
// ErrNotFound (no replica answering proves nothing), after the KV timeout.
//
// # Layouts and header-only writes
//
// LayoutBinary (the default) stores each session record, the provider's
// one-record-per-session format (package record), as a binary
// document. LayoutSubdoc stores it as JSON with the header apart from the
// values, {"h": base64 header+CRC, "v": base64 values}, so that a change of
// the lock state alone (taking, renewing, releasing a lock; clearing an
// action flag) is a MutateIn of "h" under the document's CAS: 83 payload
// bytes, whatever the session's size. The store spots such changes itself
// for versions it read or wrote recently (a bounded map of CAS and values
// digest per key, HeaderCacheSize). Either layout reads the other's
// documents, so a deployment can switch: a header-only write that meets a
// binary document (the server's SUBDOC_DOC_NOT_JSON, which gocb reports as
// ErrValueNotJSON) is sent again as a whole write, also when it is re-sent
// to settle an ambiguous outcome, and reported as a provider.EventFallback.
// No other failure falls back: a sub-document path that fails otherwise is
// an error for the caller, not a second request per lock change hidden
// behind the first. On a collection written by one layout the fallback
// count stays at zero. A CAS mismatch of a MutateIn reaches the store as
// gocb.ErrDocumentExists (gocb turns gocbcore's ErrCasMismatch back into
// it, GOCBC-1019); both are a CAS conflict. Measured payload per exclusive
// request (Get, lock, Get, release or commit; TestPayloadBytes):
//
//	values  layout   lock write  clean request  dirty request
//	1 KiB   binary        1 077          4 308          4 308
//	1 KiB   subdoc           83          3 076          4 448
//	16 KiB  binary       16 437         65 748         65 748
//	16 KiB  subdoc           83         44 036         65 888
//
// Requests that only read or release save a third; requests that commit
// break even (base64 makes reads a third larger). Had the provider used
// the CAS its lock write returned instead of reading again, a clean 16 KiB
// request would move 22 101 bytes instead of 49 311. Lock waiters polling
// a locked session would gain most from reading "h" alone; that needs a
// header-only read in the Store interface.
//
// # Tests
//
// The conformance suite (provider/providertest) and the Couchbase tests
// run when COUCHBASE_CONNSTR, COUCHBASE_USERNAME, COUCHBASE_PASSWORD and
// COUCHBASE_BUCKET (optionally COUCHBASE_SCOPE and COUCHBASE_COLLECTION)
// name a cluster, and skip saying so otherwise. Each test uses a fresh
// random key prefix. The error mapping, retry strategy, ambiguity
// resolution, replica fallback, layouts, timeouts and fallbacks are
// unit-tested without a server, against fakes whose errors are built from
// gocbcore's own values and types as gocb returns them.
package couchbase
