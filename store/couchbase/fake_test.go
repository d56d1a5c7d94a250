package couchbase

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/couchbase/gocb/v2"
	"github.com/couchbase/gocbcore/v10/memd"
)

// fakeKV is an in-memory kv with Couchbase's CAS semantics (every
// mutation, Touch included, gives a new CAS) and failure injection: a
// fault queued for an operation is returned by its next call, after
// applying the operation when the fault says the server applied it.
type fakeKV struct {
	mu      sync.Mutex
	docs    map[string]*fakeDoc
	nextCAS uint64
	faults  map[string][]fault
	calls   map[string]int

	lastTTL    time.Duration
	activeDown bool  // get fails as an unreachable node does
	replicaErr error // getAnyReplica fails with it
	replicas   map[string]doc
}

type fakeDoc struct {
	d   doc
	cas uint64
	exp time.Time
}

type fault struct {
	err     error
	applied bool   // the server applied the operation before the error
	hook    func() // called when the fault fires, outside the lock
}

func newFakeKV() *fakeKV {
	return &fakeKV{docs: map[string]*fakeDoc{}, nextCAS: 1000, faults: map[string][]fault{}, calls: map[string]int{}}
}

// fakeStore returns a Store over a new fakeKV.
func fakeStore(t *testing.T, cfg Config) (*Store, *fakeKV) {
	t.Helper()
	if cfg.ConnStr == "" {
		cfg.ConnStr, cfg.Bucket = "couchbase://fake", "fake"
	}
	if err := cfg.check(); err != nil {
		t.Fatal(err)
	}
	f := newFakeKV()
	s := newStore(f, cfg.withDefaults())
	t.Cleanup(func() { _ = s.Close() })
	return s, f
}

func (f *fakeKV) inject(op string, faults ...fault) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.faults[op] = append(f.faults[op], faults...)
}

func (f *fakeKV) count(op string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[op]
}

// set stores d under key from outside the store, as another client would.
func (f *fakeKV) set(key string, d doc) uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.nextCAS++
	f.docs[key] = &fakeDoc{d: d, cas: f.nextCAS, exp: time.Now().Add(time.Hour)}
	return f.nextCAS
}

// run counts a call of op, pops its next fault and applies fn (under the
// lock) unless the fault says the server never saw the request.
func (f *fakeKV) run(op string, fn func() error) error {
	f.mu.Lock()
	f.calls[op]++
	var flt *fault
	if q := f.faults[op]; len(q) > 0 {
		flt, f.faults[op] = &q[0], q[1:]
	}
	f.mu.Unlock()
	if flt != nil && flt.hook != nil {
		flt.hook()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if flt != nil && !flt.applied {
		return flt.err
	}
	if err := fn(); err != nil {
		return err
	}
	if flt != nil {
		return flt.err
	}
	return nil
}

func (f *fakeKV) live(key string) *fakeDoc {
	fd := f.docs[key]
	if fd != nil && !time.Now().Before(fd.exp) {
		delete(f.docs, key)
		return nil
	}
	return fd
}

func kvErr(err error, status memd.StatusCode) error {
	return &gocb.KeyValueError{InnerError: err, StatusCode: status}
}

func (f *fakeKV) get(_ context.Context, key string) (d doc, cas uint64, err error) {
	err = f.run("get", func() error {
		if f.activeDown {
			return &gocb.TimeoutError{InnerError: gocb.ErrUnambiguousTimeout}
		}
		fd := f.live(key)
		if fd == nil {
			return kvErr(gocb.ErrDocumentNotFound, memd.StatusKeyNotFound)
		}
		d, cas = fd.d, fd.cas
		return nil
	})
	return d, cas, err
}

func (f *fakeKV) getAnyReplica(_ context.Context, key string) (d doc, err error) {
	err = f.run("getAnyReplica", func() error {
		if f.replicaErr != nil {
			return f.replicaErr
		}
		if rd, ok := f.replicas[key]; ok {
			d = rd
			return nil
		}
		fd := f.live(key)
		if fd == nil {
			return &gocb.TimeoutError{InnerError: gocb.ErrDocumentUnretrievable}
		}
		d = fd.d
		return nil
	})
	return d, err
}

func (f *fakeKV) insert(_ context.Context, key string, d doc, ttl time.Duration) (cas uint64, err error) {
	err = f.run("insert", func() error {
		if f.live(key) != nil {
			return kvErr(gocb.ErrDocumentExists, memd.StatusKeyExists)
		}
		f.nextCAS++
		f.docs[key] = &fakeDoc{d: d, cas: f.nextCAS, exp: time.Now().Add(ttl)}
		cas, f.lastTTL = f.nextCAS, ttl
		return nil
	})
	return cas, err
}

func (f *fakeKV) replace(_ context.Context, key string, d doc, old uint64, ttl time.Duration) (cas uint64, err error) {
	err = f.run("replace", func() error {
		fd := f.live(key)
		switch {
		case fd == nil:
			return kvErr(gocb.ErrDocumentNotFound, memd.StatusKeyNotFound)
		case fd.cas != old:
			return kvErr(gocb.ErrCasMismatch, memd.StatusKeyExists)
		}
		f.nextCAS++
		*fd = fakeDoc{d: d, cas: f.nextCAS, exp: time.Now().Add(ttl)}
		cas, f.lastTTL = f.nextCAS, ttl
		return nil
	})
	return cas, err
}

func (f *fakeKV) replaceHeader(_ context.Context, key string, h string, old uint64, ttl time.Duration) (cas uint64, err error) {
	err = f.run("replaceHeader", func() error {
		fd := f.live(key)
		switch {
		case fd == nil:
			return kvErr(gocb.ErrDocumentNotFound, memd.StatusKeyNotFound)
		case fd.cas != old:
			// The status of a CAS mismatch is "key exists"; gocb reports
			// it as such for sub-document mutations.
			return kvErr(gocb.ErrDocumentExists, memd.StatusKeyExists)
		case !fd.d.json:
			return kvErr(gocb.ErrDocumentNotJSON, memd.StatusSubDocNotJSON)
		}
		var j subdocJSON
		if err := json.Unmarshal(fd.d.body, &j); err != nil {
			return kvErr(gocb.ErrDocumentNotJSON, memd.StatusSubDocNotJSON)
		}
		hb, err := base64.StdEncoding.DecodeString(h)
		if err != nil {
			return kvErr(gocb.ErrValueInvalid, memd.StatusSubDocBadDelta)
		}
		j.H = hb
		body, err := json.Marshal(j)
		if err != nil {
			return fmt.Errorf("fake: %w", err)
		}
		f.nextCAS++
		*fd = fakeDoc{d: doc{body: body, json: true}, cas: f.nextCAS, exp: time.Now().Add(ttl)}
		cas, f.lastTTL = f.nextCAS, ttl
		return nil
	})
	return cas, err
}

func (f *fakeKV) touch(_ context.Context, key string, ttl time.Duration) error {
	return f.run("touch", func() error {
		fd := f.live(key)
		if fd == nil {
			return kvErr(gocb.ErrDocumentNotFound, memd.StatusKeyNotFound)
		}
		f.nextCAS++
		fd.cas, fd.exp, f.lastTTL = f.nextCAS, time.Now().Add(ttl), ttl
		return nil
	})
}

func (f *fakeKV) remove(_ context.Context, key string) error {
	return f.run("remove", func() error {
		if f.live(key) == nil {
			return kvErr(gocb.ErrDocumentNotFound, memd.StatusKeyNotFound)
		}
		delete(f.docs, key)
		return nil
	})
}

func (f *fakeKV) expiry(_ context.Context, key string) (exp time.Time, err error) {
	err = f.run("expiry", func() error {
		fd := f.live(key)
		if fd == nil {
			return kvErr(gocb.ErrDocumentNotFound, memd.StatusKeyNotFound)
		}
		exp = fd.exp.Truncate(time.Second)
		return nil
	})
	return exp, err
}

func (f *fakeKV) close() error { return nil }
