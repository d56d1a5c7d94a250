package redis

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/sessionlock/sessionlock/provider"
)

// Defaults of Config, and limits.
const (
	// DefaultAddr is the server Config.Addr defaults to.
	DefaultAddr = "127.0.0.1:6379"
	// DefaultTimeout bounds each command's write and read.
	DefaultTimeout = 500 * time.Millisecond
	// DefaultDialTimeout bounds establishing a connection.
	DefaultDialTimeout = time.Second
	// DefaultWaitTimeout bounds WAIT when Config.WaitReplicas is set.
	DefaultWaitTimeout = 100 * time.Millisecond
	// DefaultMaxValueSize is the largest value accepted: 1 MiB, the same
	// limit as the memcached store, far below Redis's 512 MB.
	DefaultMaxValueSize = 1 << 20
	// MaxKeyLen is the longest key accepted, KeyPrefix not counted.
	MaxKeyLen = 1024
	// tokenLen is the length of the CAS token stored before each value.
	tokenLen = 8
)

// Errors of this package, besides the provider's sentinels.
var (
	// ErrInvalidKey: an empty key, or one longer than MaxKeyLen.
	ErrInvalidKey = errors.New("redis: invalid key")
	// ErrInvalidTTL: a TTL of zero or less.
	ErrInvalidTTL = errors.New("redis: invalid ttl")
)

// Config configures a Store. Every zero value means the documented
// default, so Config{} talks to DefaultAddr.
type Config struct {
	// Addr is the server, "host:port". Default DefaultAddr. Ignored
	// when ClusterAddrs is set.
	Addr string
	// ClusterAddrs, when set, are seed nodes of a Redis Cluster
	// ("host:port" each; one reachable node is enough): the Store then
	// uses go-redis's cluster client, which follows MOVED and ASK and
	// learns of failovers. Each session is one key, so in one hash slot.
	ClusterAddrs []string
	// Username and Password authenticate (AUTH); empty Username with a
	// Password is the legacy requirepass form.
	Username, Password string
	// TLS, when not nil, connects with TLS using this configuration.
	TLS *tls.Config
	// DB is the database number (SELECT). Default 0.
	DB int
	// KeyPrefix is put before every key, so that several applications can
	// share a server. Default none.
	KeyPrefix string
	// PoolSize is the most connections kept open. Default go-redis's, 10
	// per GOMAXPROCS.
	PoolSize int
	// Timeout bounds writing each command and reading its reply. A
	// request's context deadline, when earlier, applies instead.
	// Default 500 ms.
	Timeout time.Duration
	// DialTimeout bounds establishing a connection. Default 1 s.
	DialTimeout time.Duration
	// MaxValueSize is the largest value accepted; larger ones fail with
	// provider.ErrTooLarge before anything is sent. Default 1 MiB.
	MaxValueSize int
	// WaitReplicas, when positive, follows every Add, CompareAndSwap and
	// Delete with WAIT WaitReplicas WaitTimeout on the same connection (in
	// the same round trip): a write that fewer replicas acknowledged in
	// time fails with provider.ErrOutcomeUnknown (it is applied on the
	// master, but a failover may drop it). Redis replication stays
	// asynchronous: WAIT narrows the window in which a failover loses
	// acknowledged writes, it does not close it. Default 0, off.
	WaitReplicas int
	// WaitTimeout bounds the WAIT. Default 100 ms when WaitReplicas is
	// set; replies are then awaited for Timeout + WaitTimeout.
	WaitTimeout time.Duration
	// AppendDeltas lets the provider append lock changes to the stored
	// value as small deltas (CompareAndAppend) instead of writing the
	// whole record. Default false: every change is a whole write, and
	// CompareAndAppend declines with provider.ErrNoAppend, sending
	// nothing. On Redis appending saves bytes on the wire and in
	// replication but no measurable latency, and a string carrying
	// deltas takes about twice its memory until its next whole write
	// (docs/performance.md), so it is opt-in. Set it only once every
	// server's record package reads deltas: older ones read a record
	// followed by deltas as corrupt (see package record).
	AppendDeltas bool
	// OnEvent receives node events: EventNodeDown when the server stops
	// answering, EventNodeUp when it answers again, EventFallback when a
	// script had to be loaded again (NOSCRIPT). Nil is off.
	OnEvent provider.EventFunc
}

// Store is a provider.Store on one Redis server. It is safe for concurrent
// use. See the package documentation.
type Store struct {
	cfg    Config
	client goredis.UniversalClient
	closed atomic.Bool
	down   atomic.Bool // the server failed to answer; reported once

	// token draws the token of a write replacing old: newToken, or a
	// deliberately broken scheme in tests (export_test.go).
	token func(old uint64) uint64
	// appendScript is appendScript, or a deliberately broken variant in
	// tests (export_test.go).
	appendScript *script
}

var (
	_ provider.Store     = (*Store)(nil)
	_ provider.TTLReader = (*Store)(nil)
	_ provider.Appender  = (*Store)(nil)

	_ provider.GetAndToucher = (*Store)(nil)
)

// New returns a Store for cfg. It does not contact the server.
func New(cfg Config) (*Store, error) {
	if cfg.Addr == "" {
		cfg.Addr = DefaultAddr
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = DefaultDialTimeout
	}
	if cfg.MaxValueSize <= 0 {
		cfg.MaxValueSize = DefaultMaxValueSize
	}
	if cfg.WaitReplicas > 0 && cfg.WaitTimeout <= 0 {
		cfg.WaitTimeout = DefaultWaitTimeout
	}
	if cfg.DB < 0 {
		return nil, fmt.Errorf("redis: negative database number %d", cfg.DB)
	}
	if cfg.PoolSize < 0 {
		return nil, fmt.Errorf("redis: negative pool size %d", cfg.PoolSize)
	}
	if len(cfg.ClusterAddrs) > 0 && cfg.DB != 0 {
		return nil, fmt.Errorf("redis: database %d: Redis Cluster has database 0 only", cfg.DB)
	}
	// A WAIT holds the reply for up to WaitTimeout.
	readTimeout := cfg.Timeout
	if cfg.WaitReplicas > 0 {
		readTimeout += cfg.WaitTimeout
	}
	var client goredis.UniversalClient
	if len(cfg.ClusterAddrs) > 0 {
		client = goredis.NewClusterClient(&goredis.ClusterOptions{
			Addrs:    cfg.ClusterAddrs,
			Username: cfg.Username,
			Password: cfg.Password,
			Dialer:   dialer(cfg),
			PoolSize: cfg.PoolSize,
			Protocol: 2,
			// MOVED, ASK and READONLY (nothing executed) are followed
			// by the client; writes are never re-sent after an error
			// that leaves their outcome open (see noRetry).
			DisableIdentity:          true,
			MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
			MaxRetries:               -1,
			DialerRetries:            1,
			DialTimeout:              cfg.DialTimeout,
			ReadTimeout:              readTimeout,
			WriteTimeout:             cfg.Timeout,
			ContextTimeoutEnabled:    true,
		})
		cfg.Addr = strings.Join(cfg.ClusterAddrs, ",")
	} else {
		client = goredis.NewClient(&goredis.Options{
			Addr:     cfg.Addr,
			Username: cfg.Username,
			Password: cfg.Password,
			Dialer:   dialer(cfg),
			DB:       cfg.DB,
			PoolSize: cfg.PoolSize,
			// RESP2: no HELLO handshake and no push notifications.
			Protocol:        2,
			DisableIdentity: true,
			MaintNotificationsConfig: &maintnotifications.Config{
				Mode: maintnotifications.ModeDisabled,
			},
			// No retries: a write retried after its reply was lost could
			// report "conflict" for a change that was applied (see
			// classify); every failure is reported as it happened.
			MaxRetries: -1,
			// One dial per attempt: a refused connection fails the
			// operation at once (ErrUnavailable) instead of after
			// go-redis's 5 tries.
			DialerRetries:         1,
			DialTimeout:           cfg.DialTimeout,
			ReadTimeout:           readTimeout,
			WriteTimeout:          cfg.Timeout,
			ContextTimeoutEnabled: true,
		})
	}
	return &Store{cfg: cfg, client: client, token: newToken, appendScript: appendScript}, nil
}

// dialer connects as go-redis's own dialer does (TCP, then TLS with
// cfg.TLS when set, within DialTimeout) and marks its errors as dialError:
// nothing was sent on a connection that could not be made, so a write
// that fails there is not of unknown outcome, however the dial failed
// (refused, timed out, a TLS handshake that failed or hung).
func dialer(cfg Config) func(ctx context.Context, network, addr string) (net.Conn, error) {
	d := &net.Dialer{Timeout: cfg.DialTimeout, KeepAliveConfig: net.KeepAliveConfig{
		Enable: true, Idle: 30 * time.Second, Interval: 5 * time.Second, Count: 3,
	}}
	var td *tls.Dialer
	if cfg.TLS != nil {
		// ServerName, when empty, is taken from the address dialled.
		td = &tls.Dialer{NetDialer: d, Config: cfg.TLS}
	}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		var err error
		if td != nil {
			c, err = td.DialContext(ctx, network, addr)
		} else {
			c, err = d.DialContext(ctx, network, addr)
		}
		if err != nil {
			return nil, &dialError{err}
		}
		return c, nil
	}
}

// dialError is an error of dialer: no connection, nothing sent.
type dialError struct{ err error }

func (e *dialError) Error() string { return "dial: " + e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

// Close closes the connections. Operations after Close fail with
// provider.ErrClosed; a second Close does nothing.
func (s *Store) Close() error {
	if !s.closed.CompareAndSwap(false, true) {
		return nil
	}
	return s.client.Close()
}

// begin checks what every operation checks first and returns the key as
// stored (with KeyPrefix).
func (s *Store) begin(ctx context.Context, key string) (string, error) {
	if s.closed.Load() {
		return "", fmt.Errorf("redis: %w", provider.ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		return "", err
	}
	if key == "" || len(key) > MaxKeyLen {
		return "", fmt.Errorf("%w: length %d outside [1, %d]", ErrInvalidKey, len(key), MaxKeyLen)
	}
	return s.cfg.KeyPrefix + key, nil
}

// ttlArg converts a TTL to whole milliseconds, rounded up so that a key
// never expires before its TTL.
func ttlArg(ttl time.Duration) (int64, error) {
	if ttl <= 0 {
		return 0, fmt.Errorf("%w: %v", ErrInvalidTTL, ttl)
	}
	return int64((ttl + time.Millisecond - 1) / time.Millisecond), nil
}

// newToken draws a CAS token: 64 random bits, never 0 and never old. See
// the package documentation for why tokens are random rather than
// counted.
func newToken(old uint64) uint64 {
	for {
		if t := rand.Uint64(); t != 0 && t != old {
			return t
		}
	}
}

// call holds the arguments of one command, pooled (getCall, putCall): for
// a write, the token it expects (a compare-and-swap's) and what the server
// keeps under the key (the new token, big-endian, and the value) in one
// buffer; the key, the TTL in milliseconds, and the command's argument
// list. Every argument is boxed as a pointer into the call (*string,
// *int64, *bytesArg), which go-redis writes without an allocation of its
// own; a command then costs the go-redis command and what go-redis
// allocates itself (a compare-and-swap of a 2 KB value went from 12
// allocations to 5, GETEX from 8 to 5). go-redis has sent the arguments
// when the command returns, so the call is reused after that. Buffers
// over maxPooledBuf bytes are not kept.
type call struct {
	buf                   []byte
	key                   string
	ms, limit             int64
	expect, stored, delta bytesArg
	args                  [9]any
}

// bytesArg is a command argument go-redis writes as it is (through
// encoding.BinaryMarshaler); a *bytesArg boxes without an allocation,
// where a []byte does not.
type bytesArg []byte

// MarshalBinary returns b.
func (b *bytesArg) MarshalBinary() ([]byte, error) { return *b, nil }

const maxPooledBuf = 64 << 10

var calls = sync.Pool{New: func() any { return new(call) }}

// getCall returns a call for key and ttl (in milliseconds), whose buffer
// holds expect (when withExpect) and then token and value: c.expect is
// expect's 8 bytes, c.stored what is stored.
func getCall(key string, ms int64, withExpect bool, expect, token uint64, value []byte) *call {
	c := calls.Get().(*call)
	c.key, c.ms = key, ms
	b := c.buf[:0]
	if withExpect {
		b = binary.BigEndian.AppendUint64(b, expect)
	}
	b = binary.BigEndian.AppendUint64(b, token)
	b = append(b, value...)
	c.buf = b
	c.expect, c.stored = nil, bytesArg(b)
	if withExpect {
		c.expect, c.stored = bytesArg(b[:tokenLen:tokenLen]), bytesArg(b[tokenLen:])
	}
	return c
}

// putCall returns c for reuse once its command has returned.
func putCall(c *call) {
	if cap(c.buf) > maxPooledBuf {
		c.buf = nil
	}
	c.key, c.expect, c.stored, c.delta = "", nil, nil, nil
	clear(c.args[:])
	calls.Put(c)
}

// entry splits what Get read into value and token.
func entry(key string, b []byte) (provider.Entry, error) {
	if len(b) < tokenLen {
		return provider.Entry{}, fmt.Errorf("redis: key %s: %w: %d bytes, shorter than the %d-byte token", key, provider.ErrCorrupt, len(b), tokenLen)
	}
	return provider.Entry{Value: b[tokenLen:], CAS: binary.BigEndian.Uint64(b)}, nil
}

func (s *Store) checkValue(key string, value []byte) error {
	if len(value) > s.cfg.MaxValueSize {
		return fmt.Errorf("redis: key %s: %w: %d bytes, limit %d", key, provider.ErrTooLarge, len(value), s.cfg.MaxValueSize)
	}
	return nil
}

// Get returns the value under key and its token (GET).
func (s *Store) Get(ctx context.Context, key string) (provider.Entry, error) {
	k, err := s.begin(ctx, key)
	if err != nil {
		return provider.Entry{}, err
	}
	b, err := s.client.Get(ctx, k).Bytes()
	if err != nil {
		return provider.Entry{}, s.fail(ctx, "get", key, err, false)
	}
	s.ok()
	return entry(key, b)
}

// GetAndTouch returns the value under key and its token and sets the
// key's TTL to ttl, in one command (GETEX key PX ttl). It is the read of a
// request that also slides the session's expiry.
func (s *Store) GetAndTouch(ctx context.Context, key string, ttl time.Duration) (provider.Entry, error) {
	k, err := s.begin(ctx, key)
	if err != nil {
		return provider.Entry{}, err
	}
	ms, err := ttlArg(ttl)
	if err != nil {
		return provider.Entry{}, err
	}
	c := calls.Get().(*call)
	c.key, c.ms = k, ms
	c.args[0], c.args[1], c.args[2], c.args[3] = "getex", &c.key, "px", &c.ms
	cmd := goredis.NewStringCmd(ctx, c.args[:4]...)
	_ = s.client.Process(ctx, cmd)
	putCall(c)
	b, err := cmd.Bytes()
	if err != nil {
		return provider.Entry{}, s.fail(ctx, "getex", key, err, false)
	}
	s.ok()
	return entry(key, b)
}

// Add stores value under key only if the key is absent (SET NX PX: one
// atomic command, so no script is needed). It returns the new token.
func (s *Store) Add(ctx context.Context, key string, value []byte, ttl time.Duration) (uint64, error) {
	k, err := s.begin(ctx, key)
	if err != nil {
		return 0, err
	}
	if err := s.checkValue(key, value); err != nil {
		return 0, err
	}
	ms, err := ttlArg(ttl)
	if err != nil {
		return 0, err
	}
	token := s.token(0)
	c := getCall(k, ms, false, 0, token, value)
	c.args = [...]any{"set", &c.key, &c.stored, "px", &c.ms, "nx", nil, nil, nil}
	cmd := goredis.NewBoolCmd(ctx, c.args[:6]...)
	acked, err := s.write(ctx, k, noRetryBool{cmd})
	putCall(c)
	if err != nil {
		return 0, s.fail(ctx, "add", key, err, true)
	}
	s.ok()
	if !cmd.Val() {
		return 0, fmt.Errorf("redis: add %s: %w", key, provider.ErrExists)
	}
	if err := s.replicated("add", key, acked); err != nil {
		return 0, err
	}
	return token, nil
}

// CompareAndSwap replaces the value under key if its token is still cas
// (a script: compare the stored token, SET PX). It returns the new token.
func (s *Store) CompareAndSwap(ctx context.Context, key string, value []byte, cas uint64, ttl time.Duration) (uint64, error) {
	k, err := s.begin(ctx, key)
	if err != nil {
		return 0, err
	}
	if err := s.checkValue(key, value); err != nil {
		return 0, err
	}
	ms, err := ttlArg(ttl)
	if err != nil {
		return 0, err
	}
	token := s.token(cas)
	c := getCall(k, ms, true, cas, token, value)
	n, acked, err := s.run(ctx, casScript, c, &c.expect, &c.stored, &c.ms)
	putCall(c)
	switch {
	case err != nil:
		return 0, s.fail(ctx, "cas", key, err, true)
	case n == 0:
		return 0, fmt.Errorf("redis: cas %s: %w", key, provider.ErrNotFound)
	case n < 0:
		return 0, fmt.Errorf("redis: cas %s: %w", key, provider.ErrCASConflict)
	}
	if err := s.replicated("cas", key, acked); err != nil {
		return 0, err
	}
	return token, nil
}

// CompareAndAppend implements provider.Appender: if the token under key
// is still cas, it appends delta to the stored value, replaces the token
// with a new one and sets the key's TTL, in one script call and one round
// trip (EVALSHA append: GETRANGE, STRLEN, APPEND, SETRANGE, PEXPIRE). It
// returns the new token twice: as newCAS, and as touched, since the TTL is
// set on the value the append made and on no other (0 when it returns an
// error). ErrCASConflict and ErrNotFound are as for CompareAndSwap; a
// stored value that would grow past MaxValueSize is left alone and
// reported as provider.ErrTooLarge (the caller writes the whole value,
// which is smaller). Without Config.AppendDeltas it declines with
// provider.ErrNoAppend, sending nothing. WaitReplicas applies as to every
// write.
func (s *Store) CompareAndAppend(ctx context.Context, key string, delta []byte, cas uint64, ttl time.Duration) (newCAS, touched uint64, err error) {
	if !s.cfg.AppendDeltas {
		// The default path of every lock change: decline before any
		// other work, with the bare sentinel (no allocation), as the
		// memcached store does; the provider then writes whole.
		return 0, 0, provider.ErrNoAppend
	}
	k, err := s.begin(ctx, key)
	if err != nil {
		return 0, 0, err
	}
	if err := s.checkValue(key, delta); err != nil {
		return 0, 0, err
	}
	ms, err := ttlArg(ttl)
	if err != nil {
		return 0, 0, err
	}
	token := s.token(cas)
	// The buffer holds the two tokens: expect, then the new one (stored).
	c := getCall(k, ms, true, cas, token, nil)
	c.delta, c.limit = delta, int64(s.cfg.MaxValueSize+tokenLen)
	n, acked, err := s.run(ctx, s.appendScript, c, &c.expect, &c.stored, &c.delta, &c.ms, &c.limit)
	putCall(c)
	switch {
	case err != nil:
		return 0, 0, s.fail(ctx, "append", key, err, true)
	case n == 0:
		return 0, 0, fmt.Errorf("redis: append %s: %w", key, provider.ErrNotFound)
	case n == -1:
		return 0, 0, fmt.Errorf("redis: append %s: %w", key, provider.ErrCASConflict)
	case n == -2:
		return 0, 0, fmt.Errorf("redis: append %s: %w: %d more bytes would pass the limit of %d", key, provider.ErrTooLarge, len(delta), s.cfg.MaxValueSize)
	case n != 1:
		return 0, 0, fmt.Errorf("redis: %s: append %s: %w: script answered %d", s.cfg.Addr, key, provider.ErrServer, n)
	}
	if err := s.replicated("append", key, acked); err != nil {
		return 0, 0, err
	}
	return token, token, nil
}

// Touch sets the key's TTL (PEXPIRE). The token does not change.
func (s *Store) Touch(ctx context.Context, key string, ttl time.Duration) error {
	k, err := s.begin(ctx, key)
	if err != nil {
		return err
	}
	ms, err := ttlArg(ttl)
	if err != nil {
		return err
	}
	ok, err := s.client.PExpire(ctx, k, time.Duration(ms)*time.Millisecond).Result()
	if err != nil {
		return s.fail(ctx, "touch", key, err, false)
	}
	s.ok()
	if !ok {
		return fmt.Errorf("redis: touch %s: %w", key, provider.ErrNotFound)
	}
	return nil
}

// Delete removes key (DEL).
func (s *Store) Delete(ctx context.Context, key string) error {
	k, err := s.begin(ctx, key)
	if err != nil {
		return err
	}
	cmd := goredis.NewIntCmd(ctx, "del", k)
	if _, err := s.write(ctx, k, noRetryInt{cmd}); err != nil {
		return s.fail(ctx, "delete", key, err, true)
	}
	s.ok()
	if cmd.Val() == 0 {
		return fmt.Errorf("redis: delete %s: %w", key, provider.ErrNotFound)
	}
	return nil
}

// TTL returns the remaining time to live of key (PTTL), in milliseconds;
// a key without expiry reports math.MaxInt64.
func (s *Store) TTL(ctx context.Context, key string) (time.Duration, error) {
	k, err := s.begin(ctx, key)
	if err != nil {
		return 0, err
	}
	ms, err := s.client.Do(ctx, "pttl", k).Int64()
	if err != nil {
		return 0, s.fail(ctx, "ttl", key, err, false)
	}
	s.ok()
	switch {
	case ms == -2:
		return 0, fmt.Errorf("redis: ttl %s: %w", key, provider.ErrNotFound)
	case ms < 0:
		return time.Duration(1<<63 - 1), nil
	}
	return time.Duration(ms) * time.Millisecond, nil
}

// noRetry keeps go-redis's cluster client from sending a write again
// after an error that leaves its outcome open (a timeout, a lost
// connection): a compare-and-swap re-sent after it was applied would
// answer "conflict", and an Add "exists", for a write that took effect.
// Each wraps the command's pointer alone, so that it boxes without an
// allocation; write sends only commands wrapped so.
type (
	noRetryInt  struct{ *goredis.IntCmd }
	noRetryBool struct{ *goredis.BoolCmd }
)

func (noRetryInt) NoRetry() bool  { return true }
func (noRetryBool) NoRetry() bool { return true }

// write sends a write command of key, wrapped in noRetryInt or
// noRetryBool, once. With WaitReplicas set it sends WAIT WaitReplicas
// WaitTimeout right behind it, on the same connection (one round trip),
// and returns how many replicas acknowledged; otherwise acked is -1.
func (s *Store) write(ctx context.Context, key string, cmd goredis.Cmder) (acked int64, err error) {
	if s.cfg.WaitReplicas <= 0 {
		_ = s.client.Process(ctx, cmd)
		return -1, cmd.Err()
	}
	node, ok := s.client.(*goredis.Client)
	cc, isCluster := s.client.(*goredis.ClusterClient)
	if isCluster {
		if node, err = cc.MasterForKey(ctx, key); err != nil {
			return 0, err
		}
		ok = true
	}
	if !ok {
		return 0, fmt.Errorf("redis: WAIT needs a single-server or cluster client")
	}
	// The command and its WAIT go to the key's master on one connection,
	// outside the cluster client's own routing, so MOVED and ASK are
	// followed here: a node that answers either executed nothing, so the
	// command is sent on to the node named (after ASKING, for ASK: a slot
	// being migrated).
	var asking bool
	for redirects := 0; ; redirects++ {
		wait := goredis.NewIntCmd(ctx, "wait", s.cfg.WaitReplicas, s.cfg.WaitTimeout.Milliseconds())
		_, _ = node.Pipelined(ctx, func(p goredis.Pipeliner) error {
			if asking {
				_ = p.Process(ctx, goredis.NewStatusCmd(ctx, "asking"))
			}
			_ = p.Process(ctx, cmd)
			_ = p.Process(ctx, wait)
			return nil
		})
		err := cmd.Err()
		if err == nil {
			if err := wait.Err(); err != nil {
				return 0, err
			}
			return wait.Val(), nil
		}
		addr, ask, redirected := redirect(err)
		if !isCluster || !redirected {
			return 0, err
		}
		if !ask {
			cc.ReloadState(ctx)
		}
		if redirects == maxRedirects {
			return 0, err
		}
		if node = masterAt(ctx, cc, addr); node == nil {
			return 0, err
		}
		asking = ask
	}
}

// maxRedirects bounds the MOVED and ASK answers a write with WAIT
// follows, as go-redis's cluster client does by default.
const maxRedirects = 3

// redirect parses a cluster redirection, "MOVED slot addr" or "ASK slot
// addr".
func redirect(err error) (addr string, ask, ok bool) {
	var rerr goredis.Error
	if !errors.As(err, &rerr) {
		return "", false, false
	}
	f := strings.Fields(rerr.Error())
	if len(f) != 3 || (f[0] != "MOVED" && f[0] != "ASK") {
		return "", false, false
	}
	return f[2], f[0] == "ASK", true
}

// masterAt returns the cluster client's connection pool of the node at
// addr, the master a redirection named (which the client's slot map, until
// reloaded, may still list as a replica), or nil when the client knows no
// node there.
func masterAt(ctx context.Context, cc *goredis.ClusterClient, addr string) *goredis.Client {
	var mu sync.Mutex
	var found *goredis.Client
	_ = cc.ForEachShard(ctx, func(_ context.Context, c *goredis.Client) error {
		if c.Options().Addr == addr {
			mu.Lock()
			found = c
			mu.Unlock()
		}
		return nil
	})
	return found
}

// replicated returns nil when a write was acknowledged by WaitReplicas
// replicas (or WAIT is off), and an error wrapping
// provider.ErrOutcomeUnknown otherwise: the write is applied on the
// master, but a failover may still drop it.
func (s *Store) replicated(op, key string, acked int64) error {
	if acked < 0 || acked >= int64(s.cfg.WaitReplicas) {
		return nil
	}
	return fmt.Errorf("redis: %s: %s %s: %w: applied on the master, acknowledged by %d of %d replicas within %v, so a failover may drop it",
		s.cfg.Addr, op, key, provider.ErrOutcomeUnknown, acked, s.cfg.WaitReplicas, s.cfg.WaitTimeout)
}

// Addr returns the server's address as configured (the cluster's seed
// addresses, comma-separated).
func (s *Store) Addr() string { return s.cfg.Addr }
