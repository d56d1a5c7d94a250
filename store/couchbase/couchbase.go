package couchbase

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"math"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/couchbase/gocb/v2"

	"github.com/sessionlock/sessionlock/provider"
)

// Durability is the durability level of every write, Couchbase's
// synchronous replication. The zero value is DurabilityNone.
type Durability string

const (
	// DurabilityNone acknowledges a write once the active node holds it in
	// memory. Replication to the replicas follows asynchronously.
	DurabilityNone Durability = "none"
	// DurabilityMajority acknowledges a write once a majority of the
	// copies (active and replicas) hold it in memory.
	DurabilityMajority Durability = "majority"
	// DurabilityPersistToMajority acknowledges a write once a majority of
	// the copies have it on disk.
	DurabilityPersistToMajority Durability = "persistToMajority"
)

// Defaults of Config and Timeouts.
const (
	DefaultScope            = "_default"
	DefaultCollection       = "_default"
	DefaultConnectTimeout   = 10 * time.Second
	DefaultKVTimeout        = 2500 * time.Millisecond
	DefaultKVDurableTimeout = 10 * time.Second
	DefaultHeaderCacheSize  = 4096
)

// MaxKeyLen is the longest document id Couchbase accepts, in bytes,
// KeyPrefix included.
const MaxKeyLen = 250

// MaxTTL is the longest TTL the store accepts. Couchbase keeps expiry
// times as 32-bit Unix seconds, which end in 2106.
const MaxTTL = 50 * 365 * 24 * time.Hour

// ReplicaCAS is the CAS token Get returns for a value read from a replica
// (Config.ReadFromReplica). No document version has it, and CompareAndSwap
// refuses it without a round trip: a replica may lag the active, so its
// value must never be the base of a write. (Couchbase reports -1, all ones,
// as the CAS of a locked document; ReplicaCAS is one less.)
const ReplicaCAS uint64 = math.MaxUint64 - 1

// resolveAttempts bounds how often an ambiguous write is re-read and
// re-sent before its outcome is reported as unknown.
const resolveAttempts = 3

// Config configures a Store. ConnStr and Bucket are required; every other
// zero value is a documented default.
type Config struct {
	// ConnStr is the cluster's connection string: "couchbase://host1,host2"
	// (or "couchbases://" for TLS), with optional "?key=value" settings
	// understood by gocb. A few seed nodes suffice; the client learns the
	// rest of the cluster from them.
	ConnStr string
	// Username and Password authenticate with the cluster (RBAC user with
	// data read and write roles on the collection).
	Username string
	Password string
	// Bucket is the bucket holding the sessions. Required.
	Bucket string
	// Scope and Collection name the collection within the bucket. Default
	// "_default" for both.
	Scope      string
	Collection string
	// KeyPrefix is prepended to every key, to share a collection between
	// applications. Default none. Prefix and key together are at most
	// MaxKeyLen bytes.
	KeyPrefix string
	// Durability is the durability level of every write. Default
	// DurabilityNone.
	Durability Durability
	// Timeouts bound connecting and each request.
	Timeouts Timeouts
	// ReadFromReplica lets Get read a replica when the active node of a
	// key cannot be reached. Such a value may be stale and comes with
	// ReplicaCAS, which no write accepts. Default false.
	ReadFromReplica bool
	// Layout is how values are laid out in documents. Default
	// LayoutBinary. Either layout reads documents written in the other.
	Layout Layout
	// HeaderCacheSize is, for LayoutSubdoc, how many keys' last-seen
	// versions (CAS and a SHA-256 of the values, about 120 bytes each) the
	// store remembers to send header-only writes. Default 4096; negative
	// disables header-only writes through CompareAndSwap.
	HeaderCacheSize int
	// TLSRootCAs verifies the cluster's certificate with "couchbases://".
	// Default: the system roots.
	TLSRootCAs *x509.CertPool
	// WaitForAllNodes makes New wait until the data service of every node
	// of the bucket answers (gocb's ClusterStateOnline). Default false: New
	// returns as soon as one node's data service answers
	// (ClusterStateDegraded), so an application server that restarts while
	// a node is down, but not yet failed over, still starts; the sessions
	// whose vBuckets that node holds fail with provider.ErrUnavailable until
	// it returns or is failed over, the others work. Timeouts.Ready bounds
	// the wait either way.
	WaitForAllNodes bool
	// Tracer and Meter receive gocb's request spans and operation metrics
	// (gocb.ClusterOptions.Tracer and Meter), for example gocb's
	// OpenTelemetry adapters. Default nil: gocb's no-op tracer and meter,
	// not gocb's own defaults, which only write to gocb's logger (and whose
	// tracer races in GetAnyReplica, see the package documentation). gocb's
	// logger is process-wide (gocb.SetLogger): setting it is the
	// application's call, and the store never makes it. Ignored by
	// NewFromCollection: the cluster has its own.
	Tracer gocb.RequestTracer
	Meter  gocb.Meter
	// OnEvent receives the store's events (nil = off): a
	// provider.EventFallback for each Get served by a replica
	// (ReadFromReplica) and for each header-only write (LayoutSubdoc)
	// refused because the stored document is binary and written whole
	// instead. On a collection that only this layout writes, header-only
	// writes never fall back: a steady count means another writer or a
	// broken sub-document path. It is called synchronously and must not
	// block.
	OnEvent provider.EventFunc
}

// Timeouts bound the store's requests. Zero values are the defaults. Every
// request carries its timeout, so they hold on a collection passed to
// NewFromCollection too, whatever its cluster's own timeouts.
type Timeouts struct {
	// Connect bounds each connection to a node while New connects
	// (gocb's ConnectTimeout). Default 10 s.
	Connect time.Duration
	// Ready bounds how long New and NewFromCollection wait for the
	// bucket's key-value service (see Config.WaitForAllNodes). Default
	// Connect.
	Ready time.Duration
	// KV bounds one key-value request without a durability level,
	// retries included. Default 2.5 s.
	KV time.Duration
	// KVDurable bounds one write with a durability level, Majority
	// included, retries included (gocb by itself applies its durable
	// timeout only above Majority). The server is asked to settle the
	// write within 90% of it. gocb raises durable timeouts below 1.5 s to
	// 1.5 s. Default 10 s.
	KVDurable time.Duration
	// Resolve bounds the settling of one write whose outcome a timeout
	// left unknown (re-reads and re-sends, see CompareAndSwap). Default the
	// KV timeout, or KVDurable with a durability level.
	Resolve time.Duration
}

// Store is a provider.Store on a Couchbase collection. It is safe for
// concurrent use.
type Store struct {
	cfg        Config // with defaults
	kv         kv
	prefix     string
	layout     Layout
	replica    bool
	resolveFor time.Duration
	versions   *versionCache
	onEvent    provider.EventFunc
	closed     atomic.Bool

	// sent and received count document payload bytes: bodies, and the
	// paths, values and framing of sub-document specs. See payloadBytes.
	sent, received atomic.Int64
}

var (
	_ provider.Store     = (*Store)(nil)
	_ provider.TTLReader = (*Store)(nil)
)

// New connects to the cluster, waits until the bucket's key-value service
// is ready (at most Timeouts.Ready, or until ctx ends; by default one
// node's service suffices, see Config.WaitForAllNodes) and returns a Store
// on the configured collection. The Store owns the connection: Close
// closes it.
func New(ctx context.Context, cfg Config) (*Store, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	cluster, err := gocb.Connect(cfg.ConnStr, cfg.clusterOptions())
	if err != nil {
		return nil, fmt.Errorf("couchbase: connecting: %w: %w", ErrInvalidConfig, err)
	}
	coll := cluster.Bucket(cfg.Bucket).Scope(cfg.Scope).Collection(cfg.Collection)
	if err := waitReady(ctx, coll, cfg); err != nil {
		_ = cluster.Close(nil)
		return nil, err
	}
	k, err := newGocbKV(cluster, coll, cfg)
	if err != nil {
		_ = cluster.Close(nil)
		return nil, err
	}
	return newStore(k, cfg), nil
}

// NewFromCollection returns a Store on coll, a collection of a cluster the
// application has opened already and keeps: Close leaves it open. For a
// *gocb.Cluster, pass cluster.Bucket(b).Scope(s).Collection(c).
//
// It waits, as New does, until the bucket's key-value service is ready.
// The connection settings of cfg (ConnStr, Username, Password, Bucket,
// Scope, Collection, TLSRootCAs, Timeouts.Connect, Tracer, Meter) are
// ignored: the cluster has its own. Every other setting applies; in
// particular the store's requests carry their own timeouts and
// FailFastRetryStrategy, whatever the cluster's defaults.
func NewFromCollection(ctx context.Context, coll *gocb.Collection, cfg Config) (*Store, error) {
	if coll == nil {
		return nil, fmt.Errorf("%w: nil collection", ErrInvalidConfig)
	}
	if err := cfg.checkSettings(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	cfg.Bucket, cfg.Scope, cfg.Collection = coll.Bucket().Name(), coll.ScopeName(), coll.Name()
	if err := waitReady(ctx, coll, cfg); err != nil {
		return nil, err
	}
	k, err := newGocbKV(nil, coll, cfg)
	if err != nil {
		return nil, err
	}
	return newStore(k, cfg), nil
}

// clusterOptions are the gocb options New connects with; cfg has its
// defaults.
func (c Config) clusterOptions() gocb.ClusterOptions {
	var tracer gocb.RequestTracer = &gocb.NoopTracer{}
	if c.Tracer != nil {
		tracer = c.Tracer
	}
	var meter gocb.Meter = &gocb.NoopMeter{}
	if c.Meter != nil {
		meter = c.Meter
	}
	return gocb.ClusterOptions{
		Authenticator: gocb.PasswordAuthenticator{Username: c.Username, Password: c.Password},
		TimeoutsConfig: gocb.TimeoutsConfig{
			ConnectTimeout:   c.Timeouts.Connect,
			KVTimeout:        c.Timeouts.KV,
			KVDurableTimeout: c.Timeouts.KVDurable,
		},
		RetryStrategy:  &FailFastRetryStrategy{},
		SecurityConfig: gocb.SecurityConfig{TLSRootCAs: c.TLSRootCAs},
		Tracer:         tracer,
		Meter:          meter,
	}
}

// waitUntilReadyOptions are the options of the wait for the bucket: its
// key-value service on one node (ClusterStateDegraded), or on every node
// with WaitForAllNodes. gocb's default, when no state is given, is
// ClusterStateOnline (gocb v2.12.4, waituntilreadyprovider.go).
func (c Config) waitUntilReadyOptions(ctx context.Context) *gocb.WaitUntilReadyOptions {
	state := gocb.ClusterStateDegraded
	if c.WaitForAllNodes {
		state = gocb.ClusterStateOnline
	}
	return &gocb.WaitUntilReadyOptions{
		Context:      ctx,
		DesiredState: state,
		ServiceTypes: []gocb.ServiceType{gocb.ServiceTypeKeyValue},
	}
}

// waitReady waits until coll's bucket is ready, at most Timeouts.Ready.
func waitReady(ctx context.Context, coll *gocb.Collection, cfg Config) error {
	err := coll.Bucket().WaitUntilReady(cfg.Timeouts.Ready, cfg.waitUntilReadyOptions(ctx))
	if err == nil {
		return nil
	}
	if cerr := ctx.Err(); cerr != nil {
		return fmt.Errorf("couchbase: waiting for bucket %q: %w", cfg.Bucket, cerr)
	}
	return wrapErr(ctx, fmt.Sprintf("waiting for bucket %q", cfg.Bucket), "", err)
}

// newStore returns a Store over k; cfg has its defaults.
func newStore(k kv, cfg Config) *Store {
	s := &Store{
		cfg:        cfg,
		kv:         k,
		prefix:     cfg.KeyPrefix,
		layout:     cfg.Layout,
		replica:    cfg.ReadFromReplica,
		resolveFor: cfg.Timeouts.Resolve,
		onEvent:    cfg.OnEvent,
	}
	if cfg.Layout == LayoutSubdoc {
		s.versions = newVersionCache(cfg.HeaderCacheSize)
	}
	return s
}

// check checks a Config for New.
func (c Config) check() error {
	if c.ConnStr == "" {
		return fmt.Errorf("%w: ConnStr is required", ErrInvalidConfig)
	}
	if c.Bucket == "" {
		return fmt.Errorf("%w: Bucket is required", ErrInvalidConfig)
	}
	return c.checkSettings()
}

// checkSettings checks the settings of the store itself.
func (c Config) checkSettings() error {
	if _, err := c.Durability.level(); err != nil {
		return err
	}
	switch c.Layout {
	case "", LayoutBinary, LayoutSubdoc:
	default:
		return fmt.Errorf("%w: unknown Layout %q (want %q or %q)", ErrInvalidConfig, c.Layout, LayoutBinary, LayoutSubdoc)
	}
	t := c.Timeouts
	if t.Connect < 0 || t.Ready < 0 || t.KV < 0 || t.KVDurable < 0 || t.Resolve < 0 {
		return fmt.Errorf("%w: negative timeout in %+v", ErrInvalidConfig, t)
	}
	if !utf8.ValidString(c.KeyPrefix) || len(c.KeyPrefix) >= MaxKeyLen {
		return fmt.Errorf("%w: KeyPrefix must be UTF-8 and shorter than %d bytes", ErrInvalidConfig, MaxKeyLen)
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.Scope == "" {
		c.Scope = DefaultScope
	}
	if c.Collection == "" {
		c.Collection = DefaultCollection
	}
	if c.Durability == "" {
		c.Durability = DurabilityNone
	}
	if c.Layout == "" {
		c.Layout = LayoutBinary
	}
	if c.HeaderCacheSize == 0 {
		c.HeaderCacheSize = DefaultHeaderCacheSize
	}
	t := &c.Timeouts
	if t.Connect == 0 {
		t.Connect = DefaultConnectTimeout
	}
	if t.Ready == 0 {
		t.Ready = t.Connect
	}
	if t.KV == 0 {
		t.KV = DefaultKVTimeout
	}
	if t.KVDurable == 0 {
		t.KVDurable = DefaultKVDurableTimeout
	}
	if t.Resolve == 0 {
		t.Resolve = t.KV
		if c.Durability != DurabilityNone {
			t.Resolve = t.KVDurable
		}
	}
	return c
}

// level returns gocb's durability level for d.
func (d Durability) level() (gocb.DurabilityLevel, error) {
	switch d {
	case "", DurabilityNone:
		return gocb.DurabilityLevelNone, nil
	case DurabilityMajority:
		return gocb.DurabilityLevelMajority, nil
	case DurabilityPersistToMajority:
		return gocb.DurabilityLevelPersistToMajority, nil
	}
	return 0, fmt.Errorf("%w: unknown Durability %q (want %q, %q or %q)", ErrInvalidConfig, d,
		DurabilityNone, DurabilityMajority, DurabilityPersistToMajority)
}

// begin checks the store and the context before a request and returns the
// document id of key.
func (s *Store) begin(ctx context.Context, key string) (string, error) {
	if s.closed.Load() {
		return "", fmt.Errorf("couchbase: %w", provider.ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		return "", err
	}
	id := s.prefix + key
	switch {
	case key == "":
		return "", fmt.Errorf("%w: empty key", ErrInvalidKey)
	case len(id) > MaxKeyLen:
		return "", fmt.Errorf("%w: %d bytes with the prefix, limit %d", ErrInvalidKey, len(id), MaxKeyLen)
	case !utf8.ValidString(key):
		return "", fmt.Errorf("%w: not UTF-8", ErrInvalidKey)
	}
	return id, nil
}

// beginWrite is begin for a write with a TTL, which it returns rounded up
// to whole seconds, Couchbase's granularity.
func (s *Store) beginWrite(ctx context.Context, key string, ttl time.Duration) (string, time.Duration, error) {
	id, err := s.begin(ctx, key)
	if err != nil {
		return "", 0, err
	}
	if ttl <= 0 || ttl > MaxTTL {
		return "", 0, fmt.Errorf("couchbase: ttl %v must be positive and at most %v", ttl, MaxTTL)
	}
	if r := ttl % time.Second; r != 0 {
		ttl += time.Second - r
	}
	return id, ttl, nil
}

// Get implements provider.Store. With Config.ReadFromReplica, a key whose
// active node cannot be reached is read from any replica that has it, and
// its CAS token is ReplicaCAS.
func (s *Store) Get(ctx context.Context, key string) (provider.Entry, error) {
	id, err := s.begin(ctx, key)
	if err != nil {
		return provider.Entry{}, err
	}
	d, cas, err := s.kv.get(ctx, id)
	if err != nil {
		if s.replica && isUnreachable(err) && ctx.Err() == nil {
			s.fallback("get: active unreachable, reading a replica", id, err)
			return s.getReplica(ctx, id, err)
		}
		return provider.Entry{}, wrapErr(ctx, "get", id, err)
	}
	s.received.Add(int64(len(d.body)))
	value, err := decodeDoc(d)
	if err != nil {
		return provider.Entry{}, err
	}
	if d.json {
		s.versions.remember(id, cas, value)
	}
	return provider.Entry{Value: value, CAS: cas}, nil
}

// getReplica reads id from a replica after the active failed with
// activeErr.
func (s *Store) getReplica(ctx context.Context, id string, activeErr error) (provider.Entry, error) {
	d, err := s.kv.getAnyReplica(ctx, id)
	if err != nil {
		// No replica answered with the document: that is no proof it
		// is absent, so the active's failure is the answer.
		return provider.Entry{}, fmt.Errorf("couchbase: get: %w: %w (replica read: %w)",
			provider.ErrUnavailable, redacted{activeErr, id}, redacted{err, id})
	}
	s.received.Add(int64(len(d.body)))
	value, err := decodeDoc(d)
	if err != nil {
		return provider.Entry{}, err
	}
	return provider.Entry{Value: value, CAS: ReplicaCAS}, nil
}

// Add implements provider.Store and returns the new CAS. A timeout that
// leaves the outcome unknown is settled by reading the key back: if it
// holds value, the Add succeeded.
func (s *Store) Add(ctx context.Context, key string, value []byte, ttl time.Duration) (uint64, error) {
	id, ttl, err := s.beginWrite(ctx, key, ttl)
	if err != nil {
		return 0, err
	}
	w := write{id: id, value: value, doc: encodeDoc(value, s.layout), ttl: ttl}
	cas, err := s.send(ctx, w)
	if isAmbiguous(err) {
		return s.resolve(ctx, w, err)
	}
	if err != nil {
		return 0, wrapErr(ctx, "add", id, err)
	}
	return cas, nil
}

// CompareAndSwap implements provider.Store and returns the new CAS.
//
// With LayoutSubdoc, a write that changes only the record's header of a
// version this store read or wrote is sent as a MutateIn of the header.
//
// A cas of 0 (an unconditional write to Couchbase) is refused with
// provider.ErrCASConflict, ReplicaCAS with provider.ErrUnavailable and
// ErrReplicaCAS, both without a request. A timeout that leaves the outcome
// unknown is settled by re-reading the key: if it holds value the write
// succeeded; if it changed otherwise, the write conflicted; if it is
// unchanged the same conditional write is sent again (at most one of the
// two can apply); if the key cannot be read within Timeouts.Resolve the
// error wraps provider.ErrOutcomeUnknown. Nothing is guessed.
func (s *Store) CompareAndSwap(ctx context.Context, key string, value []byte, cas uint64, ttl time.Duration) (uint64, error) {
	id, ttl, err := s.beginWrite(ctx, key, ttl)
	if err != nil {
		return 0, err
	}
	if err := checkCAS(cas); err != nil {
		return 0, err
	}
	w := write{id: id, value: value, cas: cas, ttl: ttl}
	if s.versions.unchanged(id, cas, value) {
		w.header, w.headerOnly = headerValue(value)
	}
	if !w.headerOnly {
		w.doc = encodeDoc(value, s.layout)
	}
	return s.swap(ctx, w)
}

// compareAndSwapHeader is a compare-and-swap for a session record whose
// values did not change (only the lock state, action flags or sequence
// numbers did), with CompareAndSwap's contract. old is the value Get
// returned with cas, value the new record. When both are version 1
// session records with identical values and the store uses LayoutSubdoc,
// only the 53-byte header (as 72 base64 characters) crosses the network,
// however large the session; otherwise it is a CompareAndSwap. Unlike
// CompareAndSwap's own detection (Config.HeaderCacheSize) it needs no
// memory of the key. The tests use it to send header-only writes directly.
func (s *Store) compareAndSwapHeader(ctx context.Context, key string, old, value []byte, cas uint64, ttl time.Duration) (uint64, error) {
	if s.layout != LayoutSubdoc || !sameValues(old, value) {
		return s.CompareAndSwap(ctx, key, value, cas, ttl)
	}
	id, ttl, err := s.beginWrite(ctx, key, ttl)
	if err != nil {
		return 0, err
	}
	if err := checkCAS(cas); err != nil {
		return 0, err
	}
	w := write{id: id, value: value, cas: cas, ttl: ttl, headerOnly: true}
	w.header, _ = headerValue(value)
	return s.swap(ctx, w)
}

func checkCAS(cas uint64) error {
	switch cas {
	case 0:
		return fmt.Errorf("couchbase: compare-and-swap: %w: cas 0 matches no document version", provider.ErrCASConflict)
	case ReplicaCAS:
		return fmt.Errorf("couchbase: compare-and-swap: %w: %w", provider.ErrUnavailable, ErrReplicaCAS)
	}
	return nil
}

// swap sends a compare-and-swap and settles an unknown outcome.
func (s *Store) swap(ctx context.Context, w write) (uint64, error) {
	newCAS, err := s.sendSwap(ctx, &w)
	if isAmbiguous(err) {
		return s.resolve(ctx, w, err)
	}
	if isCASMismatch(err) {
		return 0, fmt.Errorf("couchbase: compare-and-swap: %w: %w", provider.ErrCASConflict, redacted{err, w.id})
	}
	if err != nil {
		return 0, wrapErr(ctx, "compare-and-swap", w.id, err)
	}
	return newCAS, nil
}

// sendSwap sends the compare-and-swap w. A header-only write that the
// server refuses because the stored document is not JSON (a store with
// LayoutBinary wrote it) is sent again as a whole write, and w becomes
// that write: a refused MutateIn changes nothing, so the CAS still holds.
// No other failure falls back: a sub-document path that fails otherwise
// is an error to report, not a reason to double every request.
func (s *Store) sendSwap(ctx context.Context, w *write) (uint64, error) {
	cas, err := s.send(ctx, *w)
	if w.headerOnly && isNotJSON(err) {
		s.fallback("compare-and-swap: header-only write refused, the document is not JSON: writing it whole", w.id, err)
		w.headerOnly, w.header, w.doc = false, "", encodeDoc(w.value, s.layout)
		cas, err = s.send(ctx, *w)
	}
	return cas, err
}

// fallback reports, through Config.OnEvent, that an operation on id took
// the slower path because of err.
func (s *Store) fallback(detail, id string, err error) {
	s.onEvent.Emit(provider.Event{Kind: provider.EventFallback, Detail: detail, Err: redacted{err, id}})
}

// write is one Add (cas 0) or compare-and-swap.
type write struct {
	id         string
	value      []byte // the record as the caller gave it
	doc        doc    // the document to write, unless headerOnly
	header     string // the "h" field, if headerOnly
	headerOnly bool
	cas        uint64
	ttl        time.Duration
}

// send makes one request for w and, when it succeeds, remembers the
// version it wrote.
func (s *Store) send(ctx context.Context, w write) (uint64, error) {
	var (
		cas    uint64
		err    error
		isJSON = w.doc.json
	)
	switch {
	case w.headerOnly:
		s.sent.Add(int64(subdocMutationBytes("h", len(w.header)+2)))
		cas, err = s.kv.replaceHeader(ctx, w.id, w.header, w.cas, w.ttl)
		isJSON = true
	case w.cas == 0:
		s.sent.Add(int64(len(w.doc.body)))
		cas, err = s.kv.insert(ctx, w.id, w.doc, w.ttl)
	default:
		s.sent.Add(int64(len(w.doc.body)))
		cas, err = s.kv.replace(ctx, w.id, w.doc, w.cas, w.ttl)
	}
	if err != nil {
		return 0, err
	}
	if isJSON {
		s.versions.remember(w.id, cas, w.value)
	} else {
		s.versions.forget(w.id)
	}
	return cas, nil
}

// resolve settles a write whose request failed with the ambiguous error
// cause: it reads the key back from the active node (never a replica) and
// compares. It spends at most Timeouts.Resolve, even past ctx's end: the
// caller must learn whether, for example, the lock it asked for is held.
// What it cannot settle is reported as provider.ErrOutcomeUnknown.
func (s *Store) resolve(ctx context.Context, w write, cause error) (uint64, error) {
	op := "compare-and-swap"
	if w.cas == 0 {
		op = "add"
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.resolveFor)
	defer cancel()
	for range resolveAttempts {
		d, cas, err := s.kv.get(rctx, w.id)
		switch {
		case errors.Is(err, gocb.ErrDocumentNotFound):
			if w.cas != 0 {
				// A replace needs the document; whatever happened,
				// there is nothing to compare and swap any more.
				return 0, fmt.Errorf("couchbase: %s: %w: the document is gone (after %w)", op, provider.ErrNotFound, redacted{cause, w.id})
			}
		case err != nil:
			return 0, fmt.Errorf("couchbase: %s: %w: %w (reading back: %w)",
				op, provider.ErrOutcomeUnknown, redacted{cause, w.id}, redacted{err, w.id})
		default:
			cur, derr := decodeDoc(d)
			if derr == nil && bytes.Equal(cur, w.value) {
				if d.json {
					s.versions.remember(w.id, cas, cur)
				}
				return cas, nil // our write landed
			}
			if w.cas == 0 {
				return 0, fmt.Errorf("couchbase: add: %w: another value is stored", provider.ErrExists)
			}
			if cas != w.cas {
				return 0, fmt.Errorf("couchbase: compare-and-swap: %w: the document changed", provider.ErrCASConflict)
			}
		}
		// The write has not landed (yet): send it again. The server
		// applies at most one of the two conditional writes, and the next
		// read-back tells which state won.
		var newCAS uint64
		if w.cas == 0 {
			newCAS, err = s.send(rctx, w)
		} else {
			newCAS, err = s.sendSwap(rctx, &w)
		}
		switch {
		case err == nil:
			return newCAS, nil
		case isAmbiguous(err), isCASMismatch(err), errors.Is(err, gocb.ErrDocumentNotFound):
			cause = err // the next read-back decides
		default:
			return 0, fmt.Errorf("couchbase: %s: %w: %w (sending again: %w)",
				op, provider.ErrOutcomeUnknown, redacted{cause, w.id}, redacted{err, w.id})
		}
	}
	return 0, fmt.Errorf("couchbase: %s: %w after %d read-backs: %w",
		op, provider.ErrOutcomeUnknown, resolveAttempts, redacted{cause, w.id})
}

// Touch implements provider.Store. Couchbase gives the document a new CAS.
// A timeout or a lost connection leaves the outcome unknown
// (provider.ErrOutcomeUnknown).
func (s *Store) Touch(ctx context.Context, key string, ttl time.Duration) error {
	id, ttl, err := s.beginWrite(ctx, key, ttl)
	if err != nil {
		return err
	}
	s.versions.forget(id)
	return wrapWriteErr(ctx, "touch", id, s.kv.touch(ctx, id, ttl))
}

// Delete implements provider.Store. A timeout or a lost connection leaves
// the outcome unknown (provider.ErrOutcomeUnknown).
func (s *Store) Delete(ctx context.Context, key string) error {
	id, err := s.begin(ctx, key)
	if err != nil {
		return err
	}
	s.versions.forget(id)
	return wrapWriteErr(ctx, "delete", id, s.kv.remove(ctx, id))
}

// wrapWriteErr is wrapErr for an unconditional write: an ambiguous failure
// is provider.ErrOutcomeUnknown.
func wrapWriteErr(ctx context.Context, op, id string, err error) error {
	if isAmbiguous(err) {
		return fmt.Errorf("couchbase: %s: %w: %w", op, provider.ErrOutcomeUnknown, redacted{err, id})
	}
	return wrapErr(ctx, op, id, err)
}

// TTL implements provider.TTLReader from the document's expiry time
// ($document.exptime), which has whole-second precision. A document
// without expiry (which this store never writes) reports 0.
func (s *Store) TTL(ctx context.Context, key string) (time.Duration, error) {
	id, err := s.begin(ctx, key)
	if err != nil {
		return 0, err
	}
	exp, err := s.kv.expiry(ctx, id)
	if err != nil {
		return 0, wrapErr(ctx, "ttl", id, err)
	}
	if exp.IsZero() {
		return 0, nil
	}
	return max(time.Until(exp), 0), nil
}

// Close implements provider.Store: it closes the cluster connection.
// Later calls fail with provider.ErrClosed; closing again returns nil.
func (s *Store) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	if err := s.kv.close(); err != nil {
		return fmt.Errorf("couchbase: close: %w", redacted{err, ""})
	}
	return nil
}

// subdocMutationBytes is the payload of one sub-document mutation spec in
// a request: opcode, flags, path length, value length, path, value.
func subdocMutationBytes(path string, valueLen int) int {
	return 1 + 1 + 2 + 4 + len(path) + valueLen
}
