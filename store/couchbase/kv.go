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
//
// Every request carries the store's own timeout and retry strategy, so
// they hold on a collection the application opened (NewFromCollection) as
// on one New opened. A durable write carries the durable timeout: gocb
// uses its cluster's KVDurableTimeout only for levels above Majority
// (gocb v2.12.4, kvopmanager_core.go, getTimeout), so a Majority write
// would otherwise be bounded by the plain KV timeout.
type gocbKV struct {
	cluster    *gocb.Cluster // nil when the application owns it
	coll       *gocb.Collection
	durability gocb.DurabilityLevel
	timeout    time.Duration // Timeouts.KV
	durable    time.Duration // Timeouts.KVDurable
	retry      gocb.RetryStrategy
}

var _ kv = (*gocbKV)(nil)

// newGocbKV returns a kv over coll with cfg's (defaulted) durability,
// timeouts and retry strategy. cluster is closed by close, if not nil.
func newGocbKV(cluster *gocb.Cluster, coll *gocb.Collection, cfg Config) (*gocbKV, error) {
	level, err := cfg.Durability.level()
	if err != nil {
		return nil, err
	}
	return &gocbKV{cluster: cluster, coll: coll, durability: level,
		timeout: cfg.Timeouts.KV, durable: cfg.Timeouts.KVDurable, retry: &FailFastRetryStrategy{}}, nil
}

// writeTimeout bounds one write: the durable timeout with a durability
// level, else the KV timeout.
func (g *gocbKV) writeTimeout() time.Duration {
	if g.durability > gocb.DurabilityLevelNone {
		return g.durable
	}
	return g.timeout
}

func (g *gocbKV) getOptions(ctx context.Context) *gocb.GetOptions {
	return &gocb.GetOptions{Transcoder: docTranscoder{}, Timeout: g.timeout, RetryStrategy: g.retry, Context: ctx}
}

func (g *gocbKV) insertOptions(ctx context.Context, ttl time.Duration) *gocb.InsertOptions {
	return &gocb.InsertOptions{Expiry: ttl, DurabilityLevel: g.durability, Transcoder: docTranscoder{},
		Timeout: g.writeTimeout(), RetryStrategy: g.retry, Context: ctx}
}

func (g *gocbKV) replaceOptions(ctx context.Context, cas uint64, ttl time.Duration) *gocb.ReplaceOptions {
	return &gocb.ReplaceOptions{Expiry: ttl, Cas: gocb.Cas(cas), DurabilityLevel: g.durability, Transcoder: docTranscoder{},
		Timeout: g.writeTimeout(), RetryStrategy: g.retry, Context: ctx}
}

func (g *gocbKV) mutateInOptions(ctx context.Context, cas uint64, ttl time.Duration) *gocb.MutateInOptions {
	return &gocb.MutateInOptions{Expiry: ttl, Cas: gocb.Cas(cas), DurabilityLevel: g.durability,
		StoreSemantic: gocb.StoreSemanticsReplace, Timeout: g.writeTimeout(), RetryStrategy: g.retry, Context: ctx}
}

func (g *gocbKV) removeOptions(ctx context.Context) *gocb.RemoveOptions {
	return &gocb.RemoveOptions{DurabilityLevel: g.durability, Timeout: g.writeTimeout(), RetryStrategy: g.retry, Context: ctx}
}

func (g *gocbKV) get(ctx context.Context, key string) (doc, uint64, error) {
	res, err := g.coll.Get(key, g.getOptions(ctx))
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
	res, err := g.coll.GetAnyReplica(key, &gocb.GetAnyReplicaOptions{Transcoder: docTranscoder{},
		Timeout: g.timeout, RetryStrategy: g.retry, Context: ctx})
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
	res, err := g.coll.Insert(key, d, g.insertOptions(ctx, ttl))
	if err != nil {
		return 0, err
	}
	return uint64(res.Cas()), nil
}

func (g *gocbKV) replace(ctx context.Context, key string, d doc, cas uint64, ttl time.Duration) (uint64, error) {
	res, err := g.coll.Replace(key, d, g.replaceOptions(ctx, cas, ttl))
	if err != nil {
		return 0, err
	}
	return uint64(res.Cas()), nil
}

func (g *gocbKV) replaceHeader(ctx context.Context, key string, h string, cas uint64, ttl time.Duration) (uint64, error) {
	res, err := g.coll.MutateIn(key, []gocb.MutateInSpec{gocb.ReplaceSpec("h", h, nil)}, g.mutateInOptions(ctx, cas, ttl))
	if err != nil {
		return 0, err
	}
	return uint64(res.Cas()), nil
}

func (g *gocbKV) touch(ctx context.Context, key string, ttl time.Duration) error {
	_, err := g.coll.Touch(key, ttl, &gocb.TouchOptions{Timeout: g.timeout, RetryStrategy: g.retry, Context: ctx})
	return err
}

func (g *gocbKV) remove(ctx context.Context, key string) error {
	_, err := g.coll.Remove(key, g.removeOptions(ctx))
	return err
}

func (g *gocbKV) expiry(ctx context.Context, key string) (time.Time, error) {
	res, err := g.coll.LookupIn(key, []gocb.LookupInSpec{
		gocb.GetSpec("$document.exptime", &gocb.GetSpecOptions{IsXattr: true}),
	}, &gocb.LookupInOptions{Timeout: g.timeout, RetryStrategy: g.retry, Context: ctx})
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

// close closes the cluster if the store opened it; a collection the
// application passed to NewFromCollection stays open.
func (g *gocbKV) close() error {
	if g.cluster == nil {
		return nil
	}
	return g.cluster.Close(nil)
}

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
