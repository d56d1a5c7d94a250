package provider

import (
	"bytes"
	"context"
	"fmt"
	"time"

	"github.com/sessionlock/sessionlock/record"
)

// DeleteValuesIf deletes from session id each key of want whose stored
// value is still exactly want[key] (the codec's bytes, as
// session.Values.Encoded returns them), in one compare-and-swap. It
// neither takes nor checks the session's lock and never waits: it is how
// a read-only request pops a flash message. A key whose value changed since
// the request read it (a new message set meanwhile) or is gone is left
// alone, so a deletion never removes a value the request did not see. The
// deletion survives the commit of a request that holds the lock meanwhile,
// because commits merge only the keys they changed; if that request set
// the key, its value wins.
//
// Nothing is written when no key matches; otherwise the TTL becomes the
// session's own timeout, or what remains of its lifetime if less (I4). It returns the number of keys deleted, and
// an error wrapping ErrNotFound when the session does not exist.
func (p *Provider) DeleteValuesIf(ctx context.Context, id string, want map[string][]byte) (int, error) {
	key, err := p.Key(id)
	if err != nil {
		return 0, err
	}
	if len(want) == 0 {
		return 0, nil
	}
	deleted := 0
	_, err = p.update(ctx, key, nil, func(cur *record.Record) (*record.Record, time.Duration, error) {
		deleted = 0
		if p.gone(cur) {
			return nil, 0, notFound(id)
		}
		stored, err := p.decodeValues(cur.Values)
		if err != nil {
			return nil, 0, fmt.Errorf("provider: session %s: %w", idTag(id), err)
		}
		for k, b := range want {
			if got, ok := stored.Encoded(k); ok && bytes.Equal(got, b) {
				stored.Delete(k)
				deleted++
			}
		}
		if deleted == 0 {
			return nil, 0, nil
		}
		enc, err := stored.Encode(p.cfg.MaxValuesSize)
		if err != nil {
			return nil, 0, fmt.Errorf("provider: session %s: %w", idTag(id), err)
		}
		next := *cur
		next.Seq++
		next.DataSeq++
		next.Values = enc
		p.stampOwn(&next) // two pops of one message: one deletes it
		return &next, p.ttlOf(&next), nil
	})
	if err != nil {
		return 0, err
	}
	return deleted, nil
}
