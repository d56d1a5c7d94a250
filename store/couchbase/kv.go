package couchbase

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/couchbase/gocb/v2"

	"github.com/sessionlock/sessionlock/provider"
)

// kv is the part of a Couchbase collection the store uses, one method per
// key-value request. gocbKV implements it with gocb; the unit tests use a
// fake to drive the store through failures no live cluster produces on
// demand (ambiguous timeouts, unreachable actives).
type kv interface {
	get(ctx context.Context, key string) (doc, uint64, error)
	getAnyReplica(ctx context.Context, key string) (doc, error)
	insert(ctx context.Context, key string, d doc, ttl time.Duration) (uint64, error)
	replace(ctx context.Context, key string, d doc, cas uint64, ttl time.Duration) (uint64, error)
	// replaceHeader replaces the "h" field of a LayoutSubdoc document.
	replaceHeader(ctx context.Context, key string, h string, cas uint64, ttl time.Duration) (uint64, error)
	touch(ctx context.Context, key string, ttl time.Duration) error
	remove(ctx context.Context, key string) error
	// expiry returns the document's expiry time, zero if it has none.
	expiry(ctx context.Context, key string) (time.Time, error)
	close() error
}

// gocbKV is kv over a gocb collection.
type gocbKV struct {
	cluster    *gocb.Cluster
	coll       *gocb.Collection
	durability gocb.DurabilityLevel
}

var _ kv = (*gocbKV)(nil)

func (g *gocbKV) get(ctx context.Context, key string) (doc, uint64, error) {
	res, err := g.coll.Get(key, &gocb.GetOptions{Transcoder: docTranscoder{}, Context: ctx})
	if err != nil {
		return doc{}, 0, err
	}
	var d doc
	if err := res.Content(&d); err != nil {
		return doc{}, 0, err
	}
	return d, uint64(res.Cas()), nil
}

func (g *gocbKV) getAnyReplica(ctx context.Context, key string) (doc, error) {
	res, err := g.coll.GetAnyReplica(key, &gocb.GetAnyReplicaOptions{Transcoder: docTranscoder{}, Context: ctx})
	if err != nil {
		return doc{}, err
	}
	var d doc
	if err := res.Content(&d); err != nil {
		return doc{}, err
	}
	return d, nil
}

func (g *gocbKV) insert(ctx context.Context, key string, d doc, ttl time.Duration) (uint64, error) {
	res, err := g.coll.Insert(key, d, &gocb.InsertOptions{
		Expiry: ttl, DurabilityLevel: g.durability, Transcoder: docTranscoder{}, Context: ctx,
	})
	if err != nil {
		return 0, err
	}
	return uint64(res.Cas()), nil
}

func (g *gocbKV) replace(ctx context.Context, key string, d doc, cas uint64, ttl time.Duration) (uint64, error) {
	res, err := g.coll.Replace(key, d, &gocb.ReplaceOptions{
		Expiry: ttl, Cas: gocb.Cas(cas), DurabilityLevel: g.durability, Transcoder: docTranscoder{}, Context: ctx,
	})
	if err != nil {
		return 0, err
	}
	return uint64(res.Cas()), nil
}

func (g *gocbKV) replaceHeader(ctx context.Context, key string, h string, cas uint64, ttl time.Duration) (uint64, error) {
	res, err := g.coll.MutateIn(key, []gocb.MutateInSpec{gocb.ReplaceSpec("h", h, nil)}, &gocb.MutateInOptions{
		Expiry: ttl, Cas: gocb.Cas(cas), DurabilityLevel: g.durability,
		StoreSemantic: gocb.StoreSemanticsReplace, Context: ctx,
	})
	if err != nil {
		return 0, err
	}
	return uint64(res.Cas()), nil
}

func (g *gocbKV) touch(ctx context.Context, key string, ttl time.Duration) error {
	_, err := g.coll.Touch(key, ttl, &gocb.TouchOptions{Context: ctx})
	return err
}

func (g *gocbKV) remove(ctx context.Context, key string) error {
	_, err := g.coll.Remove(key, &gocb.RemoveOptions{DurabilityLevel: g.durability, Context: ctx})
	return err
}

func (g *gocbKV) expiry(ctx context.Context, key string) (time.Time, error) {
	res, err := g.coll.LookupIn(key, []gocb.LookupInSpec{
		gocb.GetSpec("$document.exptime", &gocb.GetSpecOptions{IsXattr: true}),
	}, &gocb.LookupInOptions{Context: ctx})
	if err != nil {
		return time.Time{}, err
	}
	var exp int64
	if err := res.ContentAt(0, &exp); err != nil {
		return time.Time{}, err
	}
	if exp == 0 {
		return time.Time{}, nil
	}
	return time.Unix(exp, 0), nil
}

func (g *gocbKV) close() error { return g.cluster.Close(nil) }

// docTranscoder moves doc bodies without touching them: binary documents
// with the binary common flags, LayoutSubdoc documents with the JSON ones.
// It reads documents of either kind, so a store reads what a store with
// the other Layout wrote.
type docTranscoder struct{}

var _ gocb.Transcoder = docTranscoder{}

// Encode implements gocb.Transcoder for doc values.
func (docTranscoder) Encode(v any) ([]byte, uint32, error) {
	d, ok := v.(doc)
	if !ok {
		return nil, 0, fmt.Errorf("couchbase: cannot encode %T", v)
	}
	if d.json {
		return gocb.NewRawJSONTranscoder().Encode(d.body)
	}
	return gocb.NewRawBinaryTranscoder().Encode(d.body)
}

// Decode implements gocb.Transcoder into a *doc. Documents that are
// neither binary nor JSON fail with an error wrapping provider.ErrCorrupt.
func (docTranscoder) Decode(b []byte, flags uint32, out any) error {
	d, ok := out.(*doc)
	if !ok {
		return fmt.Errorf("couchbase: cannot decode into %T", out)
	}
	var raw []byte
	errBinary := gocb.NewRawBinaryTranscoder().Decode(b, flags, &raw)
	if errBinary == nil {
		*d = doc{body: bytes.Clone(raw)}
		return nil
	}
	errJSON := gocb.NewRawJSONTranscoder().Decode(b, flags, &raw)
	if errJSON == nil {
		*d = doc{body: bytes.Clone(raw), json: true}
		return nil
	}
	return fmt.Errorf("couchbase: %w: document flags %#x are neither binary nor JSON: %w", provider.ErrCorrupt, flags, errors.Join(errBinary, errJSON))
}
