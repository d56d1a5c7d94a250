package memcached_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/provider"
	rec "github.com/sessionlock/sessionlock/record"
	"github.com/sessionlock/sessionlock/store/memcached"
)

// touchErrDialer's connections make the touch sent with an append of key
// (`ms <key> … MA` then `mg <key> c T…` in one write) get an error reply,
// once: they add an unknown flag to it, which memcached answers with
// CLIENT_ERROR, setting nothing.
type touchErrDialer struct {
	mu  sync.Mutex
	key string // "" once done
}

func (d *touchErrDialer) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return &touchErrConn{Conn: c, d: d}, nil
}

type touchErrConn struct {
	net.Conn
	d *touchErrDialer
}

func (c *touchErrConn) Write(b []byte) (int, error) {
	c.d.mu.Lock()
	key := c.d.key
	touch := []byte("mg " + key + " c T")
	hit := key != "" && bytes.Contains(b, []byte("ms "+key+" ")) && bytes.Contains(b, []byte(" MA ")) && bytes.Contains(b, touch)
	if hit {
		c.d.key = ""
	}
	c.d.mu.Unlock()
	if !hit {
		return c.Conn.Write(b)
	}
	if _, err := c.Conn.Write(bytes.Replace(b, touch, []byte("mg "+key+" c @ T"), 1)); err != nil {
		return 0, err
	}
	return len(b), nil
}

// TestAppendTouchError (review-oc31 F4): an append stored whose touch got
// an error reply (SERVER_ERROR, CLIENT_ERROR) set no TTL: memcached's
// append keeps the item's old expiry. It was reported done with no token
// touched, and the provider took the TTL as set. The touch is now sent
// again: the item gets the append's TTL, and the call reports the token
// it touched. One copy, pooled and pipelined; the broken variant
// (SetAppendTouchErrorOK) keeps the old expiry.
func TestAppendTouchError(t *testing.T) {
	servers := startNodes(t, 1)
	for _, pooled := range []bool{false, true} {
		for _, broken := range []bool{false, true} {
			t.Run(fmt.Sprintf("pooled=%v/broken=%v", pooled, broken), func(t *testing.T) {
				flush(t, servers)
				d := &touchErrDialer{}
				cfg := memcached.Config{DialContext: d.dial}
				if pooled {
					cfg.Conns = memcached.ConnsPooled
				}
				s := newStore(t, servers, cfg)
				if broken {
					memcached.SetAppendTouchErrorOK(s)
				}
				p, err := provider.New(s, provider.Config{})
				require.NoError(t, err)
				id := newBenchSession(t, p)
				key, err := p.Key(id)
				require.NoError(t, err)
				addr := servers[0].Addr()
				require.Greater(t, rawGet(t, addr, key).ttl, int64(300), "the session's own timeout (20 min)")

				ctx := context.Background()
				en, err := s.Get(ctx, key)
				require.NoError(t, err)
				cur, err := rec.Decode(en.Value)
				require.NoError(t, err)
				delta := lockingDelta(t, cur)
				d.mu.Lock()
				d.key = key
				d.mu.Unlock()
				newCAS, touched, err := s.CompareAndAppend(ctx, key, delta, en.CAS, time.Minute)
				d.mu.Lock()
				require.Empty(t, d.key, "the touch got its error reply")
				d.mu.Unlock()
				require.NoError(t, err)
				ttl := rawGet(t, addr, key).ttl
				if broken {
					require.Zero(t, touched, "the broken variant")
					require.Greater(t, ttl, int64(300), "the broken variant kept the old expiry: the test cannot fail")
					return
				}
				require.LessOrEqual(t, ttl, int64(memcached.TimeoutExp(60)), "the append's TTL, not the old expiry")
				require.Greater(t, ttl, int64(30))
				require.Equal(t, newCAS, touched, "the touch sent again set the appended value's TTL")
			})
		}
	}
}
