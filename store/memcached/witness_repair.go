package memcached

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/store/memcached/internal/envelope"
)

// repairer is a process's repair client (R9, §9): the repair queue of keys
// whose witness a read or write found missing or wrong (bounded: keys past
// repairQueueLen are dropped; the next touch queues them again); the
// witness-less list of sessions this process created without a witness
// (R8 with a silent candidate: bounded by maxWitless, never dropped once
// on it, worked at every probe tick while the node due to hold its
// witness is not held failed, until R9 stored the witness or the session
// is gone or moved on); the list of this process's creations of
// unknown outcome (R8's resumption: bounded by maxUnknownAdds, each key
// visited at probe ticks, backed off, until a read returns a session, or
// finds none and fences the creation out, or the creation's timeout has
// passed); and the repair scan (witness_scan.go).
type repairer struct {
	w    *witness
	q    chan string
	scan *scanner

	mu       sync.Mutex
	witless  map[string]config     // key → the configuration it was created in
	unknowns map[string]unknownAdd // key → this process's creation of unknown outcome
	claimed  map[string]bool       // keys a resumption is under way for (one at a time)
}

// unknownAdd is a key of this process's creations of unknown outcome (a
// data copy's CAS gave no reply): their records (the latest last, at most
// maxUnknownIDs: the provider may send an Add again), until when to
// resume them (their timeout after the Add: their copies are gone by
// then), and when to visit the key next (after gap, doubled at each visit
// up to resumeMaxGap).
type unknownAdd struct {
	adds  []unknownRecord
	until time.Time
	next  time.Time
	gap   time.Duration
}

// unknownRecord is one creation of unknown outcome: its record's
// identity, and whether its outcome was unknown at the primary (the
// secondary stored, the primary CAS sent: one not sent counts as never
// sent), then the primary's blank that CAS targeted (p: its token and
// incarnation; zero otherwise).
type unknownRecord struct {
	id  envelope.Identity
	atP bool
	p   copyToken
}

func newRepairer(w *witness) *repairer {
	return &repairer{w: w, q: make(chan string, repairQueueLen), witless: make(map[string]config), unknowns: make(map[string]unknownAdd), claimed: make(map[string]bool), scan: newScanner(w)}
}

// addUnknown puts key, whose creation by this process (rec) ended with an
// unknown outcome, on the list of creations to resume until until,
// visited at the next probe tick. Past maxUnknownAdds keys it is not kept
// (the creation then stays as it is: a lone copy is ErrUnconfirmed until
// it expires).
func (r *repairer) addUnknown(key string, rec unknownRecord, until time.Time) {
	if r.w.s.hooks.noResume {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	u, ok := r.unknowns[key]
	if !ok && len(r.unknowns) >= maxUnknownAdds {
		return
	}
	if len(u.adds) == maxUnknownIDs {
		u.adds = u.adds[1:]
	}
	u.adds = append(slices.Clip(u.adds), rec)
	if until.After(u.until) {
		u.until = until
	}
	u.next, u.gap = time.Now(), probeEvery
	r.unknowns[key] = u
}

// updateUnknown replaces, on key's list entry, the creation whose record
// is rec.id by rec (R8's resumption, before it sends its own primary
// CAS). A key no longer listed stays so.
func (r *repairer) updateUnknown(key string, rec unknownRecord) {
	r.mu.Lock()
	defer r.mu.Unlock()
	u, ok := r.unknowns[key]
	if !ok {
		return
	}
	for i := range u.adds {
		if u.adds[i].id == rec.id {
			u.adds = slices.Clone(u.adds)
			u.adds[i] = rec
			r.unknowns[key] = u
			return
		}
	}
}

// claimResume makes this the one resumption under way for key in the
// process, and returns the creation whose record is id as it is listed
// now (a visit that read before another's resumption sees its record);
// ok is false when another is under way or id is no longer listed.
// release ends the claim.
func (r *repairer) claimResume(key string, id envelope.Identity) (rec unknownRecord, release func(), ok bool) {
	r.mu.Lock()
	if r.claimed[key] && !r.w.s.hooks.resumeUnclaimed {
		r.mu.Unlock()
		return unknownRecord{}, nil, false
	}
	r.claimed[key] = true
	r.mu.Unlock()
	release = func() {
		r.mu.Lock()
		delete(r.claimed, key)
		r.mu.Unlock()
	}
	if rec, ok = r.resumable(key, id); !ok {
		release()
		return unknownRecord{}, nil, false
	}
	return rec, release, true
}

// resumable returns the creation of unknown outcome of this process whose
// record is id, if key lists it and its time has not passed.
func (r *repairer) resumable(key string, id envelope.Identity) (unknownRecord, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	u, ok := r.unknowns[key]
	if !ok || !time.Now().Before(u.until) {
		return unknownRecord{}, false
	}
	for _, rec := range u.adds {
		if rec.id == id {
			return rec, true
		}
	}
	return unknownRecord{}, false
}

// resuming reports whether key is on the list of creations to resume.
func (r *repairer) resuming(key string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.unknowns[key]
	return ok
}

// unknownKeys returns the keys of the creations to resume that are due
// for a visit, setting their next one, and drops those whose time has
// passed.
func (r *repairer) unknownKeys() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var keys []string
	now := time.Now()
	for k, u := range r.unknowns {
		switch {
		case !now.Before(u.until):
			delete(r.unknowns, k)
		case !now.Before(u.next):
			keys = append(keys, k)
			u.next, u.gap = now.Add(u.gap), min(2*u.gap, resumeMaxGap)
			r.unknowns[k] = u
		}
	}
	return keys
}

// unknownAddCount returns how many creations are to be resumed.
func (r *repairer) unknownAddCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.unknowns)
}

// forgetUnknown takes key off the list of creations to resume.
func (r *repairer) forgetUnknown(key string) {
	r.mu.Lock()
	delete(r.unknowns, key)
	r.mu.Unlock()
}

// enqueue queues key for R9, or drops it when the queue is full; it
// reports whether key was queued.
func (r *repairer) enqueue(key string) bool {
	if r.w.s.hooks.repairQueueOff {
		return false
	}
	select {
	case r.q <- key:
		return true
	default:
		return false
	}
}

// later queues key for R9 again after d (a write in flight: decide).
func (r *repairer) later(key string, d time.Duration) {
	time.AfterFunc(d, func() { r.enqueue(key) })
}

// addWitless puts key, created in configuration c, on the witness-less
// list. Past maxWitless keys (review 4's D6) it reports false: the key is
// then only on the repair queue, and the repair scan (witness_scan.go) is
// the fallback.
func (r *repairer) addWitless(key string, c config) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.witless[key]; !ok && len(r.witless) >= maxWitless {
		return false
	}
	r.witless[key] = c
	return true
}

// forget takes key off the witness-less list.
func (r *repairer) forget(key string) {
	r.mu.Lock()
	delete(r.witless, key)
	r.mu.Unlock()
}

// witlessConfig returns the configuration key was created in, if it is on
// the witness-less list.
func (r *repairer) witlessConfig(key string) (config, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, ok := r.witless[key]
	return c, ok
}

// witlessKeys returns the witness-less list.
func (r *repairer) witlessKeys() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	keys := make([]string, 0, len(r.witless))
	for k := range r.witless {
		keys = append(keys, k)
	}
	return keys
}

// loop is the witness scheme's background goroutine until Close: it works
// the repair queue, and every probeEvery probes failed nodes and works
// the witness-less list. The repair scan runs on a goroutine of its own
// (a dump takes seconds), ended and waited for with the loop.
func (w *witness) loop() {
	defer close(w.s.done)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-w.s.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	var scan sync.WaitGroup
	defer scan.Wait()
	defer cancel()
	scan.Go(func() { w.repair.scan.loop(ctx) })
	t := time.NewTicker(probeEvery)
	defer t.Stop()
	w.checkEvictions(ctx) // the baselines
	lastEvict := time.Now()
	visit := func(key string) {
		if w.s.hooks.loopVisit != nil {
			w.s.hooks.loopVisit(key)
		}
		w.repairKey(ctx, key)
	}
	for {
		select {
		case <-w.s.stop:
			return
		case key := <-w.repair.q:
			visit(key)
		case <-t.C:
			w.probe(ctx)
			lastProbe := time.Now()
			if time.Since(lastEvict) >= w.evictionPeriod() {
				w.checkEvictions(ctx)
				lastEvict = time.Now()
			}
			for _, key := range slices.Concat(w.repair.witlessKeys(), w.repair.unknownKeys()) {
				if !w.s.hooks.longPassBlind { // the code before: nothing else until the pass ends
					select {
					case <-w.s.stop:
						return
					case q := <-w.repair.q:
						// A long pass still works the repair queue
						// (past repairQueueLen keys it drops them).
						visit(q)
					default:
					}
					if time.Since(lastProbe) >= probeEvery {
						// ... and probes the failed nodes at their period,
						// so a node's return is seen as soon as before.
						w.probe(ctx)
						lastProbe = time.Now()
					}
				}
				if w.witnessNodeFailed(key) && !w.s.hooks.witlessVisitFailed {
					continue
				}
				visit(key)
			}
			if w.s.hooks.afterTick != nil {
				w.s.hooks.afterTick()
			}
		}
	}
}

// witnessNodeFailed reports whether key is on the witness-less list and
// the node that should hold its witness is held failed: R9 cannot store
// the witness there, and its data copies need no failover, so a visit
// would only read them (two reads a key at every tick, without end while
// the node stays down: the growth audit of the sixth session of
// 2026-12-01). The visits resume with the probe that clears the node.
func (w *witness) witnessNodeFailed(key string) bool {
	c, listed := w.repair.witlessConfig(key)
	return listed && w.candidates(key)[c.wit()].wh.isFailed()
}

// repairKey runs an anomaly read (and its decisions) on key with R9 on the
// record found. A key on the witness-less list leaves it once its witness
// is stored, or the session is not found or of another configuration. A
// key on the list of creations to resume leaves it once the read returns
// a session (resumed, or another record), or finds none and has fenced
// the creation out (decide).
func (w *witness) repairKey(ctx context.Context, key string) {
	ctx, cancel := context.WithTimeout(ctx, 4*w.s.cfg.Timeout+w.s.cfg.FailoverAfter)
	defer cancel()
	f, err := w.resolve(ctx, key, w.candidates(key), resolveOpts{repair: true})
	if !errors.Is(err, errCallResolving) {
		w.endVisit(key)
	}
	if err == nil {
		w.repair.forgetUnknown(key)
	}
	c, listed := w.repair.witlessConfig(key)
	switch {
	case !listed:
	case err == nil && (f.witnessed || configOf(f.b) != c),
		errors.Is(err, provider.ErrNotFound):
		w.repair.forget(key)
	}
}

// probe sends `mn` to every failed node; a reply clears it (witHealth).
func (w *witness) probe(ctx context.Context) {
	for _, n := range w.s.nodes {
		if !n.wh.isFailed() {
			continue
		}
		ctx, cancel := context.WithTimeout(ctx, w.s.cfg.Timeout)
		_ = n.wdo(ctx, 0, func(cn *metaConn) error {
			if err := send(cn, "mn", nil); err != nil {
				return err
			}
			line, err := readLine(cn.rw.Reader)
			if err == nil && line != "MN" {
				err = replyError("mn", line)
			}
			return err
		})
		cancel()
	}
}
