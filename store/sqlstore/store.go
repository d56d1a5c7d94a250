package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/sessionlock/sessionlock/internal/rendezvous"
	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/store/tiered"
)

// Defaults of Config.
const (
	DefaultTable         = "sessionlock_records"
	DefaultMaxValueSize  = 16 << 20
	DefaultTimeout       = 5 * time.Second
	DefaultSweepInterval = time.Minute
	DefaultSweepBatch    = 1000
)

// MaxKeyLen is the longest key the store accepts, in bytes.
const MaxKeyLen = 1024

// ErrSchemaTooNew is wrapped by New when a database's schema was brought to
// a newer version than this library knows: an older binary must not write
// to a table whose rules it does not know.
var ErrSchemaTooNew = errors.New("sqlstore: schema version is newer than this library's")

// Config configures a Store. Only DSNs is required; every other zero value
// means the documented default.
type Config struct {
	// DSNs are the databases the keys are partitioned over (pgx connection
	// strings: URLs or keyword/value). One DSN is an unpartitioned store.
	// Each key lives on exactly one database, chosen by rendezvous hashing
	// of the key over the partitions' names.
	DSNs []string
	// Names are the partitions' names, one per DSN, that placement hashes.
	// Placement follows the names, not the DSNs' order or credentials, so
	// every process must use the same names for the same databases. Default:
	// "host:port/database" of each DSN. Name the partitions explicitly when
	// a database may move to another host.
	Names []string
	// Table is the name of the records table (letters, digits and _; at
	// most 48 bytes). Default "sessionlock_records". Use the DSN's
	// search_path setting to pick a schema.
	Table string
	// MaxValueSize bounds one value; larger values fail with
	// provider.ErrTooLarge before anything is sent. Default 16 MiB.
	MaxValueSize int
	// Timeout bounds each operation (one statement), including waiting for
	// a connection; it shortens, never extends, the caller's context.
	// Default 5s.
	Timeout time.Duration
	// SweepInterval is how often the background sweep deletes expired
	// rows. Default 1 min. A negative value disables it (call Sweep).
	SweepInterval time.Duration
	// SweepBatch is the most rows one sweep statement deletes, so that no
	// sweep holds many row locks at once. Default 1000.
	SweepBatch int
	// MaxConns is the size of each partition's connection pool. Default
	// pgxpool's: the larger of 4 and the number of CPUs.
	MaxConns int32
}

// Stats are counters of a Store's work since New.
type Stats struct {
	// Statements is the number of SQL statements sent: one per operation,
	// plus the sweep's. New's schema check is not counted.
	Statements uint64
	// Swept is the number of expired rows the sweeps deleted.
	Swept uint64
	// SweepErrors is the number of background sweep statements that
	// failed (Sweep reports its own errors to its caller).
	SweepErrors uint64
}

// Store is a provider.Store on PostgreSQL, partitioned over one or more
// databases. It is safe for concurrent use.
type Store struct {
	parts    []*partition
	names    []string
	seeds    []uint64 // rendezvous seeds of names
	q        queries
	maxValue int
	timeout  time.Duration
	batch    int

	statements  atomic.Uint64
	swept       atomic.Uint64
	sweepErrors atomic.Uint64

	closed    atomic.Bool
	closeOnce sync.Once
	stopSweep context.CancelFunc
	sweepDone chan struct{}
}

// partition is one database of the store.
type partition struct {
	name string
	pool *pgxpool.Pool
}

var (
	_ provider.Store     = (*Store)(nil)
	_ provider.TTLReader = (*Store)(nil)
	_ tiered.Durable     = (*Store)(nil)
)

var tableName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,47}$`)

// New connects to every database in cfg.DSNs, creates or upgrades the
// schema on each (see schema.sql) and starts the background sweep. It fails
// if any database cannot be reached or prepared: a store missing a
// partition would misplace keys.
func New(ctx context.Context, cfg Config) (*Store, error) {
	if len(cfg.DSNs) == 0 {
		return nil, errors.New("sqlstore: Config.DSNs is empty")
	}
	if cfg.Names != nil && len(cfg.Names) != len(cfg.DSNs) {
		return nil, fmt.Errorf("sqlstore: %d Names for %d DSNs", len(cfg.Names), len(cfg.DSNs))
	}
	if cfg.Table == "" {
		cfg.Table = DefaultTable
	}
	if !tableName.MatchString(cfg.Table) {
		return nil, fmt.Errorf("sqlstore: table name %q: want letters, digits and _, at most 48 bytes, not starting with a digit", cfg.Table)
	}
	if cfg.MaxValueSize <= 0 {
		cfg.MaxValueSize = DefaultMaxValueSize
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.SweepInterval == 0 {
		cfg.SweepInterval = DefaultSweepInterval
	}
	if cfg.SweepBatch <= 0 {
		cfg.SweepBatch = DefaultSweepBatch
	}
	if cfg.MaxConns < 0 {
		return nil, fmt.Errorf("sqlstore: MaxConns %d is negative", cfg.MaxConns)
	}

	s := &Store{
		q:         buildQueries(cfg.Table),
		maxValue:  cfg.MaxValueSize,
		timeout:   cfg.Timeout,
		batch:     cfg.SweepBatch,
		sweepDone: make(chan struct{}),
	}
	ok := false
	defer func() {
		if !ok {
			for _, p := range s.parts {
				p.pool.Close()
			}
		}
	}()
	seen := make(map[string]int)
	for i, dsn := range cfg.DSNs {
		pcfg, err := pgxpool.ParseConfig(dsn)
		if err != nil {
			return nil, fmt.Errorf("sqlstore: DSN %d: %w", i, err)
		}
		name := fmt.Sprintf("%s:%d/%s", pcfg.ConnConfig.Host, pcfg.ConnConfig.Port, pcfg.ConnConfig.Database)
		if cfg.Names != nil {
			name = cfg.Names[i]
			if name == "" {
				return nil, fmt.Errorf("sqlstore: Names[%d] is empty", i)
			}
		}
		if j, dup := seen[name]; dup {
			return nil, fmt.Errorf("sqlstore: partitions %d and %d are both named %q", j, i, name)
		}
		seen[name] = i
		if cfg.MaxConns > 0 {
			pcfg.MaxConns = cfg.MaxConns
		}
		if pcfg.ConnConfig.ConnectTimeout == 0 || pcfg.ConnConfig.ConnectTimeout > cfg.Timeout {
			pcfg.ConnConfig.ConnectTimeout = cfg.Timeout
		}
		pool, err := pgxpool.NewWithConfig(ctx, pcfg)
		if err != nil {
			return nil, fmt.Errorf("sqlstore: partition %s: %w", name, err)
		}
		p := &partition{name: name, pool: pool}
		s.parts = append(s.parts, p)
		s.names = append(s.names, name)
		s.seeds = append(s.seeds, rendezvous.Seed(name))
		sctx, cancel := context.WithTimeout(ctx, 4*cfg.Timeout)
		err = ensureSchema(sctx, pool, cfg.Table)
		cancel()
		if errors.Is(err, ErrSchemaTooNew) {
			return nil, fmt.Errorf("sqlstore: partition %s: %w", name, err)
		}
		if err != nil {
			return nil, s.wrap(p, "schema", err)
		}
	}

	sweepCtx, stop := context.WithCancel(context.Background())
	s.stopSweep = stop
	if cfg.SweepInterval > 0 {
		go s.sweepLoop(sweepCtx, cfg.SweepInterval)
	} else {
		close(s.sweepDone)
	}
	ok = true
	return s, nil
}

// Partitions returns the partitions' names, in the order of Config.DSNs.
func (s *Store) Partitions() []string { return append([]string(nil), s.names...) }

// PartitionOf returns the index (into Config.DSNs) of the partition that
// holds key.
func (s *Store) PartitionOf(key string) int {
	if len(s.parts) == 1 {
		return 0
	}
	first, _ := rendezvous.Top2(s.seeds, key)
	return first
}

// Stats returns the store's counters.
func (s *Store) Stats() Stats {
	return Stats{
		Statements:  s.statements.Load(),
		Swept:       s.swept.Load(),
		SweepErrors: s.sweepErrors.Load(),
	}
}

// Close stops the sweep, waiting for it, and closes the connection pools.
// Later operations fail with provider.ErrClosed. Close is idempotent.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		s.stopSweep()
		<-s.sweepDone
		for _, p := range s.parts {
			p.pool.Close()
		}
	})
	return nil
}

// begin checks the store and the key, and returns the key's partition and
// the operation's context. The caller must call cancel.
func (s *Store) begin(ctx context.Context, key string) (*partition, context.Context, context.CancelFunc, error) {
	if s.closed.Load() {
		return nil, nil, nil, fmt.Errorf("sqlstore: %w", provider.ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		return nil, nil, nil, fmt.Errorf("sqlstore: %w", err)
	}
	if err := checkKey(key); err != nil {
		return nil, nil, nil, err
	}
	p := s.parts[s.PartitionOf(key)]
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	s.statements.Add(1)
	return p, ctx, cancel, nil
}

func checkKey(key string) error {
	switch {
	case key == "":
		return errors.New("sqlstore: empty key")
	case len(key) > MaxKeyLen:
		return fmt.Errorf("sqlstore: key of %d bytes, limit %d", len(key), MaxKeyLen)
	case !utf8.ValidString(key):
		return errors.New("sqlstore: key is not valid UTF-8")
	case strings.IndexByte(key, 0) >= 0:
		return errors.New("sqlstore: key contains a NUL byte")
	}
	return nil
}

func (s *Store) checkValue(value []byte, ttl time.Duration) error {
	if ttl <= 0 {
		return fmt.Errorf("sqlstore: ttl %v must be positive", ttl)
	}
	if len(value) > s.maxValue {
		return fmt.Errorf("sqlstore: value of %d bytes, limit %d: %w", len(value), s.maxValue, provider.ErrTooLarge)
	}
	return nil
}

// micros is ttl in whole microseconds (PostgreSQL's resolution), rounded up.
func micros(ttl time.Duration) int64 {
	return int64((ttl + time.Microsecond - 1) / time.Microsecond)
}

// Get implements provider.Store.
func (s *Store) Get(ctx context.Context, key string) (provider.Entry, error) {
	return s.readRow(ctx, "get", key, s.q.get, key)
}

// readRow runs query, which returns a live row's value and version.
func (s *Store) readRow(ctx context.Context, op, key, query string, args ...any) (provider.Entry, error) {
	p, ctx, cancel, err := s.begin(ctx, key)
	if err != nil {
		return provider.Entry{}, err
	}
	defer cancel()
	var e provider.Entry
	var version int64
	err = p.pool.QueryRow(ctx, query, args...).Scan(&e.Value, &version)
	if errors.Is(err, pgx.ErrNoRows) {
		return provider.Entry{}, fmt.Errorf("sqlstore: %w", provider.ErrNotFound)
	}
	if err != nil {
		return provider.Entry{}, s.wrap(p, op, err)
	}
	e.CAS = uint64(version)
	return e, nil
}

// Add implements provider.Store. An expired row under key is replaced, in
// the same statement.
func (s *Store) Add(ctx context.Context, key string, value []byte, ttl time.Duration) (uint64, error) {
	if err := s.checkValue(value, ttl); err != nil {
		return 0, err
	}
	p, ctx, cancel, err := s.begin(ctx, key)
	if err != nil {
		return 0, err
	}
	defer cancel()
	var version int64
	err = p.pool.QueryRow(ctx, s.q.add, key, nonNil(value), micros(ttl)).Scan(&version)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, fmt.Errorf("sqlstore: %w", provider.ErrExists)
	}
	if err != nil {
		return 0, s.wrapWrite(p, "add", err)
	}
	return uint64(version), nil
}

// CompareAndSwap implements provider.Store. The version check and the write
// are one statement, which also reports whether a failure was a conflict
// (the key is live with another token) or a missing key.
func (s *Store) CompareAndSwap(ctx context.Context, key string, value []byte, cas uint64, ttl time.Duration) (uint64, error) {
	return s.compareAndSwap(ctx, "compare-and-swap", s.q.cas, key, value, cas, ttl)
}

// compareAndSwap runs query, CompareAndSwap's statement or Claim's.
func (s *Store) compareAndSwap(ctx context.Context, op, query, key string, value []byte, cas uint64, ttl time.Duration) (uint64, error) {
	if err := s.checkValue(value, ttl); err != nil {
		return 0, err
	}
	p, ctx, cancel, err := s.begin(ctx, key)
	if err != nil {
		return 0, err
	}
	defer cancel()
	if cas == 0 || cas > 1<<63-1 {
		// No row ever has this token; only the error kind is left to find.
		cas = 0
	}
	var updated, current *int64
	err = p.pool.QueryRow(ctx, query, key, nonNil(value), int64(cas), micros(ttl)).Scan(&updated, &current)
	if err != nil {
		return 0, s.wrapWrite(p, op, err)
	}
	switch {
	case updated != nil:
		return uint64(*updated), nil
	case current != nil:
		return 0, fmt.Errorf("sqlstore: %w", provider.ErrCASConflict)
	default:
		return 0, fmt.Errorf("sqlstore: %w", provider.ErrNotFound)
	}
}

// Touch implements provider.Store. It keeps the CAS token.
func (s *Store) Touch(ctx context.Context, key string, ttl time.Duration) error {
	if err := s.checkValue(nil, ttl); err != nil {
		return err
	}
	p, ctx, cancel, err := s.begin(ctx, key)
	if err != nil {
		return err
	}
	defer cancel()
	tag, err := p.pool.Exec(ctx, s.q.touch, key, micros(ttl))
	if err != nil {
		return s.wrap(p, "touch", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("sqlstore: %w", provider.ErrNotFound)
	}
	return nil
}

// GetAndTouch implements provider.GetAndToucher: one UPDATE ... RETURNING
// sets the row's expiry and returns its value. It keeps the CAS token.
func (s *Store) GetAndTouch(ctx context.Context, key string, ttl time.Duration) (provider.Entry, error) {
	if err := s.checkValue(nil, ttl); err != nil {
		return provider.Entry{}, err
	}
	return s.readRow(ctx, "get and touch", key, s.q.getTouch, key, micros(ttl))
}

// Delete implements provider.Store. An expired row is deleted too, and
// reported as ErrNotFound.
func (s *Store) Delete(ctx context.Context, key string) error {
	p, ctx, cancel, err := s.begin(ctx, key)
	if err != nil {
		return err
	}
	defer cancel()
	var live bool
	err = p.pool.QueryRow(ctx, s.q.del, key).Scan(&live)
	if errors.Is(err, pgx.ErrNoRows) || err == nil && !live {
		return fmt.Errorf("sqlstore: %w", provider.ErrNotFound)
	}
	if err != nil {
		return s.wrapWrite(p, "delete", err)
	}
	return nil
}

// TTL implements provider.TTLReader, by the database server's clock.
func (s *Store) TTL(ctx context.Context, key string) (time.Duration, error) {
	p, ctx, cancel, err := s.begin(ctx, key)
	if err != nil {
		return 0, err
	}
	defer cancel()
	var us int64
	err = p.pool.QueryRow(ctx, s.q.ttl, key).Scan(&us)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, fmt.Errorf("sqlstore: %w", provider.ErrNotFound)
	}
	if err != nil {
		return 0, s.wrap(p, "ttl", err)
	}
	return time.Duration(us) * time.Microsecond, nil
}

// nonNil maps a nil value to an empty one: the value column is NOT NULL.
func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// wrap turns a driver error into the provider's error kinds, naming the
// partition (never the key: keys hold session ids).
func (s *Store) wrap(p *partition, op string, err error) error {
	if s.closed.Load() {
		return fmt.Errorf("sqlstore: %s: %w", op, provider.ErrClosed)
	}
	return fmt.Errorf("sqlstore: partition %s: %s: %w: %w", p.name, op, classify(err), err)
}

// wrapWrite is wrap for a write: when the statement may have reached the
// server before the failure (a timeout or a connection lost while waiting
// for the answer), whether it took effect cannot be known, and the error
// also wraps provider.ErrOutcomeUnknown.
func (s *Store) wrapWrite(p *partition, op string, err error) error {
	if s.closed.Load() || !errors.Is(classify(err), provider.ErrUnavailable) || pgconn.SafeToRetry(err) {
		return s.wrap(p, op, err)
	}
	return fmt.Errorf("sqlstore: partition %s: %s: %w: %w: %w", p.name, op, provider.ErrOutcomeUnknown, provider.ErrUnavailable, err)
}

// classify returns provider.ErrUnavailable for errors that say the database
// could not be reached or answer in time, provider.ErrServer for errors the
// server reported about the statement itself.
func classify(err error) error {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		// Connection refused or lost, timeouts, cancelled contexts,
		// closed pools: pgx reports all of them without a server code.
		return provider.ErrUnavailable
	}
	switch {
	case strings.HasPrefix(pgErr.Code, "08"), // connection exception
		strings.HasPrefix(pgErr.Code, "53"), // insufficient resources (too many connections, disk full)
		pgErr.Code == "57P01",               // admin_shutdown
		pgErr.Code == "57P02",               // crash_shutdown
		pgErr.Code == "57P03",               // cannot_connect_now (starting up, recovery)
		pgErr.Code == "57014",               // query_canceled (statement_timeout, cancel on deadline)
		pgErr.Code == "55P03":               // lock_not_available (lock_timeout)
		return provider.ErrUnavailable
	}
	return provider.ErrServer
}
