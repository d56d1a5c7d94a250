package memcached_test

import (
	"bytes"
	"context"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/internal/testwait"
	"github.com/sessionlock/sessionlock/provider"
	rec "github.com/sessionlock/sessionlock/record"
	"github.com/sessionlock/sessionlock/store/memcached"
)

// Review-oc31's traces (real memcached): an append and its touch;
// goneDialer's connections run a hook between the two, on the node the
// hook was set for: the copy deleted, as when it expires between the two
// commands (memcached's append keeping the item's expiry), so that the
// touch answers EN. Sent in one round trip (BackupOn; the witness scheme's
// append of a handle just read), the append is sent, the wrapper waits
// (bounded) until the node holds it, runs the hook, then sends the touch;
// sent in two (the witness scheme's other appends: the touch once the
// append is stored), the hook runs before the touch is sent. path records
// which it was, by key and node. beforeRead, armed, runs once before the
// first `mg <beforeKey> ` written.
type goneDialer struct {
	t          *testing.T
	mu         sync.Mutex
	between    map[goneAt]func() // by key (primary key or bak: key) and node
	path       map[goneAt]string // "pipelined" or "two trips", once the hook ran
	beforeKey  string
	beforeRead func()
	// cut: after the hook of a pipelined append of that key and node ran,
	// the connection is closed and its reply lost (the touch not sent):
	// the append landed, its sender cannot know.
	cut map[goneAt]bool
}

// goneAt is a key on a node (its address, as dialled).
type goneAt struct{ key, addr string }

func (d *goneDialer) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	return wrapDial(func(addr string, c net.Conn) net.Conn { return &goneConn{Conn: c, d: d, addr: addr} })(ctx, network, addr)
}

type goneConn struct {
	net.Conn
	d    *goneDialer
	addr string
	// touch: an append of this key was sent alone (two round trips); its
	// hook runs before the key's touch is sent.
	touch    string
	touchRun func()
	dead     bool // cut: every read ends
}

func (c *goneConn) Read(b []byte) (int, error) {
	c.d.mu.Lock()
	dead := c.dead
	c.d.mu.Unlock()
	if dead {
		return 0, io.EOF
	}
	return c.Conn.Read(b)
}

func (c *goneConn) Write(b []byte) (int, error) {
	c.d.mu.Lock()
	var key string
	var fn func()
	pipelined := false
	for at, f := range c.d.between {
		if at.addr != c.addr {
			continue
		}
		if i := bytes.Index(b, []byte("ms "+at.key+" ")); i >= 0 && bytes.Contains(b[i:], []byte(" MA ")) {
			key, fn = at.key, f
			delete(c.d.between, at) // once
			pipelined = bytes.Contains(b[i:], []byte("mg "+at.key+" "))
			c.d.path[at] = map[bool]string{false: "two trips", true: "pipelined"}[pipelined]
			break
		}
	}
	before := c.d.beforeRead
	if before != nil && bytes.HasPrefix(b, []byte("mg "+c.d.beforeKey+" ")) {
		c.d.beforeRead = nil
	} else {
		before = nil
	}
	c.d.mu.Unlock()
	if before != nil {
		before()
	}
	if c.touchRun != nil && bytes.HasPrefix(b, []byte("mg "+c.touch+" ")) {
		// The append's reply came: it is stored. Its touch follows.
		run := c.touchRun
		c.touch, c.touchRun = "", nil
		run()
		return c.Conn.Write(b)
	}
	if key == "" {
		return c.Conn.Write(b)
	}
	if !pipelined {
		c.touch, c.touchRun = key, fn
		return c.Conn.Write(b)
	}
	j := bytes.Index(b, []byte("mg "+key+" "))
	mc := raw(c.d.t, c.addr)
	it, err := mc.Get(key)
	if err != nil {
		c.d.t.Errorf("reading %s before its append: %v", key, err)
		return c.Conn.Write(b)
	}
	n, err := c.Conn.Write(b[:j])
	if err != nil {
		return n, err
	}
	// Wait (bounded) until the node ran the append.
	if !testwait.Poll(5*time.Second, func() bool {
		now, err := mc.Get(key)
		return err == nil && now.CasID != it.CasID
	}) {
		c.d.t.Errorf("the append of %s never landed", key)
	}
	fn()
	c.d.mu.Lock()
	cut := c.d.cut[goneAt{key, c.addr}]
	if cut {
		c.dead = true
	}
	c.d.mu.Unlock()
	if cut {
		c.Conn.Close()
		return len(b), nil
	}
	m, err := c.Conn.Write(b[j:])
	return n + m, err
}

func newGoneDialer(t *testing.T) *goneDialer {
	return &goneDialer{t: t, between: map[goneAt]func(){}, path: map[goneAt]string{}, cut: map[goneAt]bool{}}
}

func newGoneEnv(t *testing.T) (*appendEnv, *goneDialer) {
	t.Helper()
	d := newGoneDialer(t)
	return newAppendEnvDial(t, false, d.dial), d
}

func (d *goneDialer) on(key, addr string, fn func()) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.between[goneAt{key, addr}] = fn
}

// pathOf returns the path ("pipelined", "two trips") of the append of key
// on addr whose hook ran ("" when none ran).
func (d *goneDialer) pathOf(key, addr string) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.path[goneAt{key, addr}]
}

// TestAppendGoneOnPrimary (review-oc31 F1): the primary's copy is gone by
// its touch; the backup append, sent once the primary's append was
// stored, lands on the backup copy with its TTL. The change lives on
// there (the next read restores the primary from it): success, as before
// e55fe1a. (The code of e55fe1a undid it, racing another process's read,
// which restored the primary from the backup copy first; nothing is undone
// now: doc.go, "The unknown-outcome contract".)
func TestAppendGoneOnPrimary(t *testing.T) {
	t.Run("fix", func(t *testing.T) {
		e, d := newGoneEnv(t)
		ctx := context.Background()
		item, err := e.p1.GetItemExclusive(ctx, e.id)
		require.NoError(t, err)
		d.on(e.key, e.primary, func() {
			require.NoError(t, raw(t, e.primary).Delete(e.key))
		})
		err = e.p1.ReleaseItemExclusive(ctx, e.id, item.LockID)
		_, b := e.copies(t)
		require.NoError(t, err, "the release lives on the backup copy")
		require.NotNil(t, b)
		require.False(t, b.Locked)
		got, err := e.p2.GetItemExclusive(ctx, e.id)
		require.NoError(t, err, "released: another process takes the lock")
		require.NoError(t, e.p2.ReleaseItemExclusive(ctx, e.id, got.LockID))
	})
}

// TestAppendGoneOnBackup: the backup copy is gone by its touch, the
// primary holds the append: the backup copy is written whole from the
// primary (before e55fe1a: the pair moved on to a copy that was gone).
func TestAppendGoneOnBackup(t *testing.T) {
	e, d := newGoneEnv(t)
	ctx := context.Background()
	en, cur, delta := e.lockDelta(t)
	d.on(e.bakKey, e.backup, func() { require.NoError(t, raw(t, e.backup).Delete(e.bakKey)) })
	_, _, err := e.s1.CompareAndAppend(ctx, e.key, delta, en.CAS, time.Minute)
	require.NoError(t, err)
	p, b := e.copies(t)
	require.NotNil(t, p)
	require.NotNil(t, b, "the backup copy written whole")
	require.Equal(t, cur.Seq+1, p.Seq)
	require.Equal(t, p.Header, b.Header)
}

// TestAppendGoneOnBoth: both copies gone by their touches: not found.
func TestAppendGoneOnBoth(t *testing.T) {
	e, d := newGoneEnv(t)
	ctx := context.Background()
	en, _, delta := e.lockDelta(t)
	d.on(e.key, e.primary, func() { require.NoError(t, raw(t, e.primary).Delete(e.key)) })
	d.on(e.bakKey, e.backup, func() { require.NoError(t, raw(t, e.backup).Delete(e.bakKey)) })
	_, _, err := e.s1.CompareAndAppend(ctx, e.key, delta, en.CAS, time.Minute)
	require.ErrorIs(t, err, provider.ErrNotFound)
	p, b := e.copies(t)
	require.Nil(t, p)
	require.Nil(t, b)
}

// TestAppendGoneBackupUnknown (cold re-audit audit4): the primary's copy
// is gone by its touch, and the backup append lands but its reply is lost
// (the connection cut): the backup copy holds the change, which the next
// read restores, so the answer is unknown, never "not found". The code
// before (SetAppendGoneSure) answered not found.
func TestAppendGoneBackupUnknown(t *testing.T) {
	appendGoneCases(t, func(t *testing.T, broken bool, e *appendEnv, d *goneDialer) {
		ctx := context.Background()
		en, cur, delta := e.lockDelta(t)
		d.on(e.key, e.primary, func() { require.NoError(t, raw(t, e.primary).Delete(e.key)) })
		d.on(e.bakKey, e.backup, func() {})
		d.mu.Lock()
		d.cut[goneAt{e.bakKey, e.backup}] = true
		d.mu.Unlock()
		_, _, err := e.s1.CompareAndAppend(ctx, e.key, delta, en.CAS, time.Minute)
		require.Equal(t, "pipelined", d.pathOf(e.bakKey, e.backup), "the backup append ran and was cut")
		p, b := e.copies(t)
		require.Nil(t, p, "the primary's copy is gone")
		require.NotNil(t, b, "the backup copy holds the append")
		require.Equal(t, cur.Seq+1, b.Seq)
		if broken {
			require.ErrorIs(t, err, provider.ErrNotFound)
			require.NotErrorIs(t, err, provider.ErrOutcomeUnknown, "the code before: not found")
		} else {
			require.ErrorIs(t, err, provider.ErrOutcomeUnknown)
		}
		// The change the caller was told of either way is read back.
		got, err := e.s2.Get(ctx, e.key)
		require.NoError(t, err)
		h, err := rec.Decode(got.Value)
		require.NoError(t, err)
		require.Equal(t, cur.Seq+1, h.Seq, "the next read restores the change from the backup copy")
	})
}

// TestAppendGoneCarried (cold review rvbo M1): between s1's append on the
// primary and its touch, s2 reads the append there and writes a record
// based on it onto both copies (acknowledged), and then the primary loses
// the key: s1's touch finds it gone, and its backup append is refused (the
// backup copy changed). The append is carried by the record every read
// now returns, so s1's answer is unknown, never "not found". The code
// before (SetAppendGoneSure): not found.
func TestAppendGoneCarried(t *testing.T) {
	appendGoneCases(t, func(t *testing.T, broken bool, e *appendEnv, d *goneDialer) {
		ctx := context.Background()
		en, cur, delta := e.lockDelta(t)
		d.on(e.key, e.primary, func() {
			en2, err := e.s2.Get(ctx, e.key)
			require.NoError(t, err)
			based, err := rec.Decode(en2.Value)
			require.NoError(t, err)
			require.Equal(t, cur.Seq+1, based.Seq, "s2 read s1's append")
			based.Seq++
			based.Locked = false
			_, err = e.s2.CompareAndSwap(ctx, e.key, based.Encode(), en2.CAS, time.Minute)
			require.NoError(t, err, "s2's write based on s1's append is acknowledged")
			require.NoError(t, raw(t, e.primary).Delete(e.key)) // the primary loses the key before s1's touch
		})
		_, _, err := e.s1.CompareAndAppend(ctx, e.key, delta, en.CAS, time.Minute)
		require.Equal(t, "pipelined", d.pathOf(e.key, e.primary))
		got, gerr := e.s1.Get(ctx, e.key)
		require.NoError(t, gerr)
		h, derr := rec.Decode(got.Value)
		require.NoError(t, derr)
		require.Equal(t, cur.Seq+2, h.Seq, "the record read carries s1's append (s2's, based on it)")
		if broken {
			require.ErrorIs(t, err, provider.ErrNotFound)
			require.NotErrorIs(t, err, provider.ErrOutcomeUnknown, "the code before: not found")
			return
		}
		require.ErrorIs(t, err, provider.ErrOutcomeUnknown)
	})
}

// appendGoneCases runs f on a fresh goneDialer appendEnv: as the Store is
// ("fix"), and with SetAppendGoneSure on s1, the code before
// ("code-before").
func appendGoneCases(t *testing.T, f func(t *testing.T, broken bool, e *appendEnv, d *goneDialer)) {
	for _, broken := range []bool{false, true} {
		t.Run(map[bool]string{false: "fix", true: "code-before"}[broken], func(t *testing.T) {
			e, d := newGoneEnv(t)
			if broken {
				memcached.SetAppendGoneSure(e.s1)
			}
			f(t, broken, e, d)
		})
	}
}
