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
	"github.com/couchbase/gocbcore/v10"
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
	activeErr  error // get fails with it (errActiveDown: an unreachable node)
	headerErr  error // replaceHeader fails with it (a broken sub-document path)
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
	applied bool   // the server processed the request (and applied it if it could) before the error
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
		if flt != nil {
			return flt.err // the server's answer was lost
		}
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

// The fakes' errors are built as gocb v2.12.4 over gocbcore v10.9.3
// returns them, from gocbcore's own error values and types.

// kvErr is a failure the server reported with status: gocbcore picks the
// error value for the status and the command (errmapcomponent.go,
// translateMemdError), wraps it in a *gocbcore.KeyValueError
// (errmapcomponent.go, EnhanceKvError), and gocb copies that into a
// *gocb.KeyValueError (error_wrapping.go, maybeEnhanceCoreErr).
func kvErr(err error, status memd.StatusCode) error {
	return &gocb.KeyValueError{InnerError: err, StatusCode: status}
}

// subdocErr is a MutateIn whose spec index failed: the server answers
// SUBDOC_MULTI_PATH_FAILURE with the spec's status, gocbcore's MutateIn
// handler reports it through makeSubDocError as a gocbcore.SubDocumentError
// around a *gocbcore.KeyValueError (crudcomponent_subdoc.go), and gocb
// returns it unchanged (maybeEnhanceCoreErr converts only a top-level
// *gocbcore.KeyValueError).
func subdocErr(index int, err error, status memd.StatusCode) error {
	return gocbcore.SubDocumentError{Index: index, InnerError: &gocbcore.KeyValueError{InnerError: err, StatusCode: status}}
}

// timeoutErr is a request whose deadline passed while gocb retried it for
// reasons: gocbcore's makeTimeoutError (errors_internal.go) with
// ErrUnambiguousTimeout for a Get (crudcomponent.go, Get) and
// ErrAmbiguousTimeout for every mutation (crudcomponent.go, store, Touch,
// Delete; crudcomponent_subdoc.go, MutateIn), copied by gocb into a
// *gocb.TimeoutError with the retry reasons.
func timeoutErr(inner error, reasons ...gocb.RetryReason) error {
	return &gocb.TimeoutError{InnerError: inner, RetryReasons: reasons}
}

// KEY_ENOENT: ErrDocumentNotFound.
func errNotFound() error { return kvErr(gocbcore.ErrDocumentNotFound, memd.StatusKeyNotFound) }

// KEY_EEXISTS on an Add (Insert): ErrDocumentExists.
func errExists() error { return kvErr(gocbcore.ErrDocumentExists, memd.StatusKeyExists) }

// KEY_EEXISTS on a Replace: ErrCasMismatch.
func errCasMismatch() error { return kvErr(gocbcore.ErrCasMismatch, memd.StatusKeyExists) }

// KEY_EEXISTS on a MutateIn with a CAS: gocbcore's ErrCasMismatch,
// which gocb turns back into ErrDocumentExists
// (kvprovider_coresubdoc.go, internalMutateIn, GOCBC-1019).
func errMutateInCasMismatch() error { return kvErr(gocbcore.ErrDocumentExists, memd.StatusKeyExists) }

// SUBDOC_DOC_NOT_JSON as the status of the one spec: ErrValueNotJSON
// (translateMemdError's first case for the status).
func errNotJSON() error { return subdocErr(0, gocbcore.ErrValueNotJSON, memd.StatusSubDocNotJSON) }

// SUBDOC_PATH_ENOENT for the one spec: ErrPathNotFound.
func errPathNotFound() error {
	return subdocErr(0, gocbcore.ErrPathNotFound, memd.StatusSubDocPathNotFound)
}

// A Get of a node that does not answer: an unambiguous timeout.
func errActiveDown() error { return timeoutErr(gocbcore.ErrUnambiguousTimeout) }

// A write whose deadline passed: an ambiguous timeout.
func errAmbiguous() error { return timeoutErr(gocbcore.ErrAmbiguousTimeout) }

// GetAnyReplica when no replica returned the document
// (kvprovider_core.go, GetAnyReplica).
func errUnretrievable() error {
	return &gocb.KeyValueError{InnerError: gocbcore.ErrDocumentUnretrievable}
}

func (f *fakeKV) get(_ context.Context, key string) (d doc, cas uint64, err error) {
	err = f.run("get", func() error {
		if f.activeErr != nil {
			return f.activeErr
		}
		fd := f.live(key)
		if fd == nil {
			return errNotFound()
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
			return errUnretrievable()
		}
		d = fd.d
		return nil
	})
	return d, err
}

func (f *fakeKV) insert(_ context.Context, key string, d doc, ttl time.Duration) (cas uint64, err error) {
	err = f.run("insert", func() error {
		if f.live(key) != nil {
			return errExists()
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
			return errNotFound()
		case fd.cas != old:
			return errCasMismatch()
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
		case f.headerErr != nil:
			return f.headerErr
		case fd == nil:
			return errNotFound()
		case fd.cas != old:
			return errMutateInCasMismatch()
		case !fd.d.json:
			return errNotJSON()
		}
		var j subdocJSON
		if err := json.Unmarshal(fd.d.body, &j); err != nil {
			return errNotJSON()
		}
		if j.H == nil {
			return errPathNotFound()
		}
		hb, err := base64.StdEncoding.DecodeString(h)
		if err != nil {
			// SUBDOC_VALUE_CANTINSERT: ErrValueInvalid.
			return subdocErr(0, gocbcore.ErrValueInvalid, memd.StatusSubDocCantInsert)
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
			return errNotFound()
		}
		f.nextCAS++
		fd.cas, fd.exp, f.lastTTL = f.nextCAS, time.Now().Add(ttl), ttl
		return nil
	})
}

func (f *fakeKV) remove(_ context.Context, key string) error {
	return f.run("remove", func() error {
		if f.live(key) == nil {
			return errNotFound()
		}
		delete(f.docs, key)
		return nil
	})
}

func (f *fakeKV) expiry(_ context.Context, key string) (exp time.Time, err error) {
	err = f.run("expiry", func() error {
		fd := f.live(key)
		if fd == nil {
			return errNotFound()
		}
		exp = fd.exp.Truncate(time.Second)
		return nil
	})
	return exp, err
}

func (f *fakeKV) close() error { return nil }
