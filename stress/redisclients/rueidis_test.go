package redisclients_test

import (
	"context"
	"crypto/sha1"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/redis/rueidis"

	"github.com/sessionlock/sessionlock/provider"
)

// casScript is store/redis's compare-and-swap script (store/redis
// scripts.go), word for word.
const casScript = `#!lua
local cur = redis.call('GETRANGE', KEYS[1], 0, 7)
if cur == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
if cur == '' and redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
return -1
`

// rueidisStore is the Redis store's data layout and commands on rueidis,
// reduced to what the measured requests need: values stored behind an
// 8-byte token, GET, GETEX, SET NX and the same compare-and-swap script
// (casScript) called by its SHA1. Errors are mapped only as
// far as the provider's CAS loop needs (not found, exists, conflict); it
// has none of store/redis's outcome-unknown classification, WAIT or
// cluster support, so it measures the client, not a finished store.
type rueidisStore struct {
	c   rueidis.Client
	sha string
}

var (
	_ provider.Store         = (*rueidisStore)(nil)
	_ provider.GetAndToucher = (*rueidisStore)(nil)
)

func newRueidisStore(addr string) (*rueidisStore, error) {
	c, err := rueidis.NewClient(rueidis.ClientOption{
		InitAddress:  []string{addr},
		DisableCache: true, // no client-side caching: every read goes to the server
		DisableRetry: true, // as store/redis: nothing is sent twice
		AlwaysRESP2:  true, // as store/redis: no HELLO, no push messages
	})
	if err != nil {
		return nil, err
	}
	sum := sha1.Sum([]byte(casScript))
	return &rueidisStore{c: c, sha: hex.EncodeToString(sum[:])}, nil
}

func (s *rueidisStore) Close() error { s.c.Close(); return nil }

func (s *rueidisStore) entry(key string, b []byte, err error) (provider.Entry, error) {
	if rueidis.IsRedisNil(err) {
		return provider.Entry{}, fmt.Errorf("%s: %w", key, provider.ErrNotFound)
	}
	if err != nil {
		return provider.Entry{}, err
	}
	if len(b) < 8 {
		return provider.Entry{}, fmt.Errorf("%s: %w", key, provider.ErrCorrupt)
	}
	return provider.Entry{Value: b[8:], CAS: binary.BigEndian.Uint64(b)}, nil
}

func (s *rueidisStore) Get(ctx context.Context, key string) (provider.Entry, error) {
	b, err := s.c.Do(ctx, s.c.B().Get().Key(key).Build()).AsBytes()
	return s.entry(key, b, err)
}

func (s *rueidisStore) GetAndTouch(ctx context.Context, key string, ttl time.Duration) (provider.Entry, error) {
	b, err := s.c.Do(ctx, s.c.B().Getex().Key(key).PxMilliseconds(ttl.Milliseconds()).Build()).AsBytes()
	return s.entry(key, b, err)
}

// storedBytes is what the server keeps: the token, then the value.
func storedBytes(token uint64, value []byte) []byte {
	return append(binary.BigEndian.AppendUint64(make([]byte, 0, 8+len(value)), token), value...)
}

func newToken(old uint64) uint64 {
	for {
		if t := rand.Uint64(); t != 0 && t != old {
			return t
		}
	}
}

func (s *rueidisStore) Add(ctx context.Context, key string, value []byte, ttl time.Duration) (uint64, error) {
	token := newToken(0)
	cmd := s.c.B().Set().Key(key).Value(rueidis.BinaryString(storedBytes(token, value))).Nx().PxMilliseconds(ttl.Milliseconds()).Build()
	if err := s.c.Do(ctx, cmd).Error(); rueidis.IsRedisNil(err) {
		return 0, fmt.Errorf("%s: %w", key, provider.ErrExists)
	} else if err != nil {
		return 0, err
	}
	return token, nil
}

func (s *rueidisStore) CompareAndSwap(ctx context.Context, key string, value []byte, cas uint64, ttl time.Duration) (uint64, error) {
	token := newToken(cas)
	expect := binary.BigEndian.AppendUint64(nil, cas)
	args := []string{rueidis.BinaryString(expect), rueidis.BinaryString(storedBytes(token, value)), strconv.FormatInt(ttl.Milliseconds(), 10)}
	n, err := s.c.Do(ctx, s.c.B().Evalsha().Sha1(s.sha).Numkeys(1).Key(key).Arg(args...).Build()).AsInt64()
	if ret, ok := rueidis.IsRedisErr(err); ok && ret.IsNoScript() {
		n, err = s.c.Do(ctx, s.c.B().Eval().Script(casScript).Numkeys(1).Key(key).Arg(args...).Build()).AsInt64()
	}
	switch {
	case err != nil:
		return 0, err
	case n == 0:
		return 0, fmt.Errorf("%s: %w", key, provider.ErrNotFound)
	case n < 0:
		return 0, fmt.Errorf("%s: %w", key, provider.ErrCASConflict)
	}
	return token, nil
}

func (s *rueidisStore) Touch(ctx context.Context, key string, ttl time.Duration) error {
	ok, err := s.c.Do(ctx, s.c.B().Pexpire().Key(key).Milliseconds(ttl.Milliseconds()).Build()).AsBool()
	if err == nil && !ok {
		err = fmt.Errorf("%s: %w", key, provider.ErrNotFound)
	}
	return err
}

func (s *rueidisStore) Delete(ctx context.Context, key string) error {
	n, err := s.c.Do(ctx, s.c.B().Del().Key(key).Build()).AsInt64()
	if err == nil && n == 0 {
		err = fmt.Errorf("%s: %w", key, provider.ErrNotFound)
	}
	return err
}
