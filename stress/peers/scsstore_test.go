package peers

import (
	"errors"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
)

// scsStore is a minimal scs.Store over gomemcache, written as scs's own
// stores are (one Get per Find, one Set per Commit, one Delete): the peer
// the middleware is measured against.
type scsStore struct {
	c      *memcache.Client
	prefix string
}

// scsTimeout bounds each memcached operation, on both sides.
const scsTimeout = 5 * time.Second

func newSCSStore(addr string) *scsStore {
	c := memcache.New(addr)
	c.MaxIdleConns = 64 // as many as the memcached store keeps: 32 clients must not redial
	c.Timeout = scsTimeout
	return &scsStore{c: c, prefix: "scs:"}
}

// Find returns the session's bytes.
func (s *scsStore) Find(token string) ([]byte, bool, error) {
	it, err := s.c.Get(s.prefix + token)
	switch {
	case errors.Is(err, memcache.ErrCacheMiss), errors.Is(err, memcache.ErrMalformedKey):
		return nil, false, nil
	case err != nil:
		return nil, false, err
	}
	return it.Value, true, nil
}

// Commit stores the session's bytes until expiry.
func (s *scsStore) Commit(token string, b []byte, expiry time.Time) error {
	return s.c.Set(&memcache.Item{Key: s.prefix + token, Value: b, Expiration: expiration(expiry)})
}

// Delete removes the session.
func (s *scsStore) Delete(token string) error {
	err := s.c.Delete(s.prefix + token)
	if errors.Is(err, memcache.ErrCacheMiss) {
		return nil
	}
	return err
}

// expiration is memcached's expiry for t: seconds from now up to 30
// days, a Unix time beyond.
func expiration(t time.Time) int32 {
	secs := int64(time.Until(t)/time.Second) + 1
	if secs > 30*24*3600 {
		return int32(t.Unix())
	}
	return int32(max(secs, 1))
}
