package memcached

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sessionlock/sessionlock/internal/rendezvous"
	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/store/memcached/internal/envelope"
)

// This file and the witness_*.go files are the witness replication
// (Config.Backup = BackupWitness), docs/replication.md's "2+W": rule
// numbers (R1–R10) and sections (§) refer to that document.

// Defaults and limits of the witness settings of Config.
const (
	// DefaultMaxTimeout is Config.MaxTimeout's default.
	DefaultMaxTimeout = 2 * time.Hour
	// DefaultFailoverAfter is Config.FailoverAfter's default.
	DefaultFailoverAfter = time.Second
	// DefaultHandles is Config.Handles's default.
	DefaultHandles = 1 << 16
	// DefaultHandleBytes is Config.HandleBytes's default.
	DefaultHandleBytes = 64 << 20

	maxMaxTimeout    = 15 * 24 * time.Hour // 2 × it stays a relative memcached expiration
	maxFailoverAfter = 2500 * time.Millisecond
	// probeEvery is how often failed nodes are probed and the
	// witness-less list is worked (§9).
	probeEvery = 250 * time.Millisecond
	// maxAnomalyReads caps the anomaly reads of one Store call (§9) that
	// show no progress (resolve). Uncontended a failover takes 4, or 5
	// when the first read waited for a silent node that then answered;
	// near a fault, several processes running the same decisions on one
	// key lose up to 3 more to each other (the simulation, first session
	// of 2026-12-02: 6 ended 1 seed in 970 with the cap hit, 8 none).
	maxAnomalyReads = 8
	// maxBusyReads caps all the anomaly reads of one Store call,
	// progress or not (resolve).
	maxBusyReads = 4 * maxAnomalyReads
	// repairQueueLen bounds the repair queue (R9); keys past it are
	// dropped.
	repairQueueLen = 1024
	// maxConfigs bounds the per-key configurations remembered (only keys
	// whose configuration is not the home one are kept).
	maxConfigs = 1 << 16
	// maxWitless bounds the witness-less list (review 4's D6).
	maxWitless = 1 << 16
	// maxUnknownAdds bounds the list of this process's creations of
	// unknown outcome (R8's resumption).
	maxUnknownAdds = 1 << 16
	// maxUnknownIDs bounds the creations of unknown outcome remembered
	// for one key (the provider sends an Add again after one).
	maxUnknownIDs = 4
	// resumeMaxGap bounds the wait between two visits of a creation to
	// resume.
	resumeMaxGap = time.Second
	// maxSplits bounds the writes in flight remembered (decide).
	maxSplits = 1024
	// blankTTL is the life of a blank, in seconds (`mg … N30`, undo).
	blankTTL = 30
	// witnessMode names the mode in the node-list digest.
	witnessMode = "2+W"
)

// Memcached client flags of the witness scheme's items: they say what an
// item is (a blank has flags 0 and no bytes).
const (
	kindData    uint32 = 1
	kindWitness uint32 = 2
)

// errNodeList: a record of another node list or mode (§11.2).
var errNodeList = errors.New("memcached: a record written by a process with another node list or replication mode")

// checkWitnessConfig validates and defaults the witness settings.
func checkWitnessConfig(cfg *Config) error {
	if cfg.MaxTimeout == 0 {
		cfg.MaxTimeout = DefaultMaxTimeout
	}
	if cfg.FailoverAfter == 0 {
		cfg.FailoverAfter = DefaultFailoverAfter
	}
	if cfg.Handles <= 0 {
		cfg.Handles = DefaultHandles
	}
	if cfg.HandleBytes <= 0 {
		cfg.HandleBytes = DefaultHandleBytes
	}
	if cfg.Backup != BackupWitness {
		return nil
	}
	switch {
	case len(cfg.Nodes) < 3:
		return fmt.Errorf("memcached: BackupWitness needs at least 3 nodes, %d configured", len(cfg.Nodes))
	case cfg.TextProtocol:
		return errors.New("memcached: BackupWitness needs meta commands, not TextProtocol")
	case cfg.MaxTimeout < time.Second || cfg.MaxTimeout > maxMaxTimeout:
		return fmt.Errorf("memcached: MaxTimeout %v outside [1s, %v]", cfg.MaxTimeout, maxMaxTimeout)
	case cfg.FailoverAfter < 0 || cfg.FailoverAfter > maxFailoverAfter:
		return fmt.Errorf("memcached: FailoverAfter %v outside (0, %v]", cfg.FailoverAfter, maxFailoverAfter)
	}
	return nil
}

// witness is the state of the witness scheme in one Store.
type witness struct {
	s       *Store
	digest  uint32
	tw      int32 // the witness TTL, 2 × MaxTimeout, in seconds
	handles *handleTable
	repair  *repairer
	// evicted is the last evictions count per node, owned by the loop.
	evicted []evictionCount

	mu sync.Mutex
	// evictEvery is how often evictions are checked (evictionEvery;
	// tests shorten it).
	evictEvery time.Duration
	// evictChecks counts the finished checkEvictions runs (for tests).
	evictChecks atomic.Int64
	cfgs        map[string]config // keys whose configuration is not home
	tenv        map[string]uint32 // the session timeout last seen in each key's envelope (D1)
	// splits are writes in flight a read returned the parent of
	// (decide): seen again, they are completed.
	splits map[string]envelope.Identity
	// writing counts the records this process's writes are storing
	// (write, writeFailover's fence): the repair client decides nothing
	// on them, and a call of this process waits for their writer before
	// it completes one (decide, waitWriter).
	writing map[envelope.Identity]*writer
	// resolving counts, per key, this process's calls whose anomaly
	// reads (resolve) are under way, not the repair client's: the repair
	// client puts off the decisions those calls make too (decide,
	// putOffForCall).
	resolving map[string]*callsResolving
	// putOffs: the keys whose last visits the repair client put off.
	putOffs map[string]*putOffs
}

func newWitness(s *Store) *witness {
	w := &witness{
		s:       s,
		digest:  envelope.Digest(witnessMode, s.cfg.Nodes),
		tw:      int32(2 * s.cfg.MaxTimeout / time.Second),
		handles: newHandleTable(s.cfg.Handles, s.cfg.HandleBytes),
		cfgs:    make(map[string]config),
		tenv:    make(map[string]uint32),
		splits:  make(map[string]envelope.Identity),
		writing: make(map[envelope.Identity]*writer),

		resolving: make(map[string]*callsResolving),
		putOffs:   make(map[string]*putOffs),

		evictEvery: evictionEvery,
		evicted:    make([]evictionCount, len(s.nodes)),
	}
	w.repair = newRepairer(w)
	for _, n := range s.nodes {
		n.meta.hello = func(cn *metaConn) (uint64, error) {
			inc, err := helloIncarnation(cn)
			if errors.Is(err, ErrNoMetaProtocol) && n.warnedOld.CompareAndSwap(false, true) {
				w.emit(provider.EventWarning, n, "the node answers meta commands with ERROR: it does not speak the meta protocol (memcached 1.6 or later; Config.TextProtocol for older servers)", err)
			}
			return inc, err
		}
		n.wh.after = s.cfg.FailoverAfter
		n.wh.onEvent = s.cfg.OnEvent
		n.wh.addr = n.addr
	}
	return w
}

// config is a session's configuration: epoch and the candidate indexes of
// its primary and secondary data copies; the third candidate holds the
// witness.
type config struct {
	E    uint32
	P, Q uint8
}

// home is the configuration of a session that never failed over.
var home = config{E: 0, P: 0, Q: 1}

// wit is the candidate index of the witness.
func (c config) wit() uint8 { return 3 - c.P - c.Q }

func configOf(e envelope.Envelope) config { return config{E: e.E, P: e.P, Q: e.Q} }

// candidates are a key's three best nodes by rendezvous score.
type candidates [3]*node

func (w *witness) candidates(key string) candidates {
	r := rendezvous.Rank(w.s.seeds, key)
	return candidates{w.s.nodes[r[0]], w.s.nodes[r[1]], w.s.nodes[r[2]]}
}

// configFor returns the configuration this process last saw for key.
func (w *witness) configFor(key string) config {
	w.mu.Lock()
	defer w.mu.Unlock()
	if c, ok := w.cfgs[key]; ok {
		return c
	}
	return home
}

// remember caches key's configuration.
func (w *witness) remember(key string, c config) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if c == home {
		delete(w.cfgs, key)
		return
	}
	if _, ok := w.cfgs[key]; !ok && len(w.cfgs) >= maxConfigs {
		for k := range w.cfgs { // drop one: a miss costs one anomaly read
			delete(w.cfgs, k)
			break
		}
	}
	w.cfgs[key] = c
}

// timeoutFor returns the session timeout last seen in key's envelope.
func (w *witness) timeoutFor(key string) (uint32, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	t, ok := w.tenv[key]
	return t, ok
}

// rememberTimeout caches key's session timeout (bounded as the
// configurations are).
func (w *witness) rememberTimeout(key string, t uint32) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, ok := w.tenv[key]; !ok && len(w.tenv) >= maxConfigs {
		for k := range w.tenv {
			delete(w.tenv, k)
			break
		}
	}
	w.tenv[key] = t
}

// newEnvelope returns the envelope of a new session's first record (R8)
// of configuration c, with a new lifetime (docs/replication.md §16 item
// 5): random, never 0. Every other record is derived from a record read
// or written, and carries its lifetime. A client write, it carries
// itself (Carries, §17: version 5).
func (w *witness) newEnvelope(c config, v uint64, timeout uint32) envelope.Envelope {
	n := rand.Uint64()
	return envelope.Envelope{E: c.E, P: c.P, Q: c.Q, V: v, Nonce: n, Carries: n, Digest: w.digest, Timeout: timeout, Lifetime: newLifetime()}
}

// newLifetime draws a lifetime: random, not 0 (0 is unknown).
func newLifetime() uint64 {
	for {
		if l := rand.Uint64(); l != 0 {
			return l
		}
	}
}

// recreated reports whether c holds a data record of a known lifetime
// other than env's (envelope.OtherLifetime): the session of env was
// deleted or expired and created again since, so no row that decides by
// one chain of versions of env's configuration may answer from c.
func (w *witness) recreated(c *copyRead, env envelope.Envelope) bool {
	return c.st == stData && envelope.OtherLifetime(c.env, env) && !w.s.hooks.lifetimeIgnored
}

// checkTTL converts a client TTL to memcached's expiration and the
// envelope's timeout; a TTL over MaxTimeout fails with ErrServer (R3).
func (w *witness) checkTTL(ttl time.Duration) (exp int32, timeout uint32, err error) {
	if ttl > w.s.cfg.MaxTimeout {
		return 0, 0, fmt.Errorf("memcached: ttl %v exceeds Config.MaxTimeout %v: %w", ttl, w.s.cfg.MaxTimeout, provider.ErrServer)
	}
	exp, err = expiration(ttl, time.Now())
	if err != nil {
		return 0, 0, err
	}
	return exp, uint32((ttl + time.Second - 1) / time.Second), nil
}

func (w *witness) emit(kind provider.EventKind, n *node, detail string, err error) {
	addr := ""
	if n != nil {
		addr = n.addr
	}
	w.s.cfg.OnEvent.Emit(provider.Event{Kind: kind, Node: addr, Detail: detail, Err: err})
}
