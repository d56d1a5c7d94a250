package harness

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"time"

	"github.com/sessionlock/sessionlock/internal/mcserver"
	"github.com/sessionlock/sessionlock/internal/netdelay"
	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/store/couchbase"
	"github.com/sessionlock/sessionlock/store/memcached"
	"github.com/sessionlock/sessionlock/store/memstore"
	"github.com/sessionlock/sessionlock/store/redis"
	"github.com/sessionlock/sessionlock/store/redis/redistest"
	"github.com/sessionlock/sessionlock/store/sqlstore/pgserver"
)

// storeSpec says how an app server reaches the store. It is JSON so that
// the harness can hand it to app server processes.
type storeSpec struct {
	Backend string   `json:"backend"`
	Nodes   []string `json:"nodes,omitempty"`
	PGDSN   string   `json:"pg_dsn,omitempty"`
	// Backup is Config.Backup: the memcached store's replication mode.
	Backup    string    `json:"backup,omitempty"`
	Couchbase Couchbase `json:"couchbase,omitzero"`
	// Dial maps a node address (as placement sees it, in Nodes) to the
	// address this app server dials instead: one process's own proxy to a
	// node, for -partition.
	Dial map[string]string `json:"dial,omitempty"`
	// Cluster: Nodes are a Redis Cluster's nodes (redis backend).
	Cluster bool `json:"cluster,omitempty"`
	// WaitReplicas is the redis store's WaitReplicas.
	WaitReplicas int           `json:"wait_replicas,omitempty"`
	WaitTimeout  time.Duration `json:"wait_timeout,omitempty"`
	// RepairEvery is Config.RepairEvery: the memcached store's repair
	// scan period (0: the store's default).
	RepairEvery time.Duration `json:"repair_every,omitempty"`
}

// backupMode is the memcached.BackupMode that Config.Backup names: ""
// (or "default") is the store's default, the witness scheme on 3 or more
// nodes, a backup copy on 2, one copy on 1.
func backupMode(s string) (memcached.BackupMode, error) {
	switch s {
	case "", "default":
		return memcached.BackupDefault, nil
	case "on":
		return memcached.BackupOn, nil
	case "off":
		return memcached.BackupOff, nil
	case "witness":
		return memcached.BackupWitness, nil
	}
	return 0, fmt.Errorf("unknown -backup %q (want default, on, off or witness)", s)
}

// ErrUnreachable is wrapped by Run when the store cannot be reached.
var ErrUnreachable = errors.New("harness: store not reachable")

// openStore connects to the store spec describes. The memory backend has
// no address and cannot be opened this way.
func openStore(ctx context.Context, spec storeSpec) (provider.Store, error) {
	return openStoreEvents(ctx, spec, nil)
}

// openStoreEvents is openStore with the store's node events sent to
// onEvent (nil: none).
func openStoreEvents(ctx context.Context, spec storeSpec, onEvent provider.EventFunc) (provider.Store, error) {
	switch spec.Backend {
	case BackendMemcached:
		mc, err := memcachedConfig(spec, onEvent)
		if err != nil {
			return nil, err
		}
		return memcached.New(mc)
	case BackendTiered:
		return openTiered(ctx, spec, onEvent)
	case BackendRedis:
		rc := redis.Config{Addr: spec.Nodes[0], WaitReplicas: spec.WaitReplicas, WaitTimeout: spec.WaitTimeout}
		if spec.Cluster {
			rc.Addr, rc.ClusterAddrs = "", spec.Nodes
		}
		return redis.New(rc)
	case BackendCouchbase:
		cb := spec.Couchbase
		s, err := couchbase.New(ctx, couchbase.Config{
			ConnStr: cb.ConnStr, Username: cb.Username, Password: cb.Password, Bucket: cb.Bucket,
			Timeouts: couchbase.Timeouts{Connect: 10 * time.Second},
		})
		if err != nil {
			return nil, fmt.Errorf("%w: couchbase at %s, bucket %q: %w", ErrUnreachable, cb.ConnStr, cb.Bucket, err)
		}
		return s, nil
	}
	return nil, fmt.Errorf("harness: backend %q cannot be opened by address", spec.Backend)
}

// memcachedConfig is the memcached store's configuration for spec: its
// nodes, its backup mode, its repair scan's period, a node's address redirected by spec.Dial (a
// partition's proxy) and the store's node events sent to onEvent. The
// memcached backend and tiered's cache are built by it alike.
func memcachedConfig(spec storeSpec, onEvent provider.EventFunc) (memcached.Config, error) {
	mode, err := backupMode(spec.Backup)
	if err != nil {
		return memcached.Config{}, err
	}
	mc := memcached.Config{Nodes: spec.Nodes, Backup: mode, OnEvent: onEvent, RepairEvery: spec.RepairEvery}
	if len(spec.Dial) > 0 {
		mc.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			if to, ok := spec.Dial[addr]; ok {
				addr = to
			}
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		}
	}
	return mc, nil
}

// backend is the store of one run and what the harness started for it.
type backend struct {
	spec    storeSpec      // how app servers reach the store
	mem     provider.Store // the memory backend's one store
	nodes   []managedNode
	cluster *redistest.Cluster // -managed-cluster; its Servers are nodes
	pg      *pgserver.Server
	proxies []*netdelay.Proxy
	latency time.Duration
}

// managedNode is a store process the harness started (memcached or
// redis-server), which the fault options kill, restart and flush.
type managedNode interface {
	Addr() string
	Kill()
	Restart(ctx context.Context) error
	FlushAll(ctx context.Context) error
	Pause() error  // SIGSTOP
	Resume() error // SIGCONT
	Stop()
}

// startManaged starts cfg.Managed local processes of the backend's server.
func (b *backend) startManaged(ctx context.Context, cfg Config) ([]string, error) {
	var addrs []string
	if cfg.ManagedCluster {
		c, err := redistest.StartCluster(ctx, ClusterMasters, 1, redistest.Config{})
		if err != nil {
			return nil, fmt.Errorf("harness: start a Redis Cluster of %d masters with one replica each: %w", ClusterMasters, err)
		}
		b.cluster = c
		for _, s := range c.Servers {
			b.nodes = append(b.nodes, s)
		}
		return c.Addrs(), nil
	}
	if cfg.Backend == BackendRedis {
		servers, err := redistest.StartN(ctx, cfg.Managed, redistest.Config{})
		if err != nil {
			return nil, fmt.Errorf("harness: start %d redis-server processes: %w", cfg.Managed, err)
		}
		for _, s := range servers {
			b.nodes = append(b.nodes, s)
			addrs = append(addrs, s.Addr())
		}
		return addrs, nil
	}
	servers, err := mcserver.StartN(ctx, cfg.Managed, mcserver.Config{})
	if err != nil {
		return nil, fmt.Errorf("harness: start %d memcached processes: %w", cfg.Managed, err)
	}
	for _, s := range servers {
		b.nodes = append(b.nodes, s)
		addrs = append(addrs, s.Addr())
	}
	return addrs, nil
}

// startBackend starts (or connects to) the store cfg asks for, with
// latency proxies in front when cfg.Latency is set.
func startBackend(ctx context.Context, cfg Config) (b *backend, err error) {
	b = &backend{spec: storeSpec{Backend: cfg.Backend, Backup: cfg.Backup, Cluster: cfg.ManagedCluster, WaitReplicas: cfg.RedisWait, WaitTimeout: cfg.RedisWaitTimeout, RepairEvery: cfg.RepairEvery}, latency: cfg.Latency}
	defer func() {
		if err != nil {
			b.close()
		}
	}()
	switch cfg.Backend {
	case BackendMemory:
		b.mem = memstore.New(memstore.Config{})
		return b, nil
	case BackendCouchbase:
		if cfg.Latency > 0 {
			return b, fmt.Errorf("%w: -latency is not supported with couchbase (its clients learn the nodes' addresses from the cluster)", ErrConfig)
		}
		b.spec.Couchbase = cfg.Couchbase
		return b, b.probe(ctx)
	}
	// memcached, tiered and redis
	nodes := cfg.Nodes
	if cfg.Managed > 0 {
		if nodes, err = b.startManaged(ctx, cfg); err != nil {
			return b, err
		}
	}
	for _, n := range nodes {
		addr, err := b.proxied(n)
		if err != nil {
			return b, err
		}
		b.spec.Nodes = append(b.spec.Nodes, addr)
	}
	if cfg.Backend == BackendTiered {
		dsn := cfg.PGDSN
		if dsn == "" {
			b.pg, err = pgserver.Start(ctx, pgserver.Config{})
			if err != nil {
				return b, fmt.Errorf("harness: start PostgreSQL (or give -pg-dsn): %w", err)
			}
			dsn = b.pg.DSN()
		}
		if b.spec.PGDSN, err = b.proxiedDSN(dsn); err != nil {
			return b, err
		}
	}
	return b, b.probe(ctx)
}

// probe checks that the store answers, so that an unreachable store is
// one clear error instead of thousands of failed requests.
func (b *backend) probe(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	s, err := openStore(ctx, b.spec)
	if err != nil {
		return err
	}
	defer s.Close()
	_, err = s.Get(ctx, "stress-probe")
	if err != nil && !errors.Is(err, provider.ErrNotFound) {
		return fmt.Errorf("%w: %s: %w", ErrUnreachable, b.spec.Backend, err)
	}
	return nil
}

// proxied returns the address app servers dial for addr: a latency proxy's
// when latency is on, else addr.
func (b *backend) proxied(addr string) (string, error) {
	if b.latency <= 0 {
		return addr, nil
	}
	p, err := netdelay.Start(addr, b.latency)
	if err != nil {
		return "", err
	}
	b.proxies = append(b.proxies, p)
	return p.Addr(), nil
}

// proxiedDSN puts a latency proxy between the app servers and the
// PostgreSQL server of a URL-form DSN.
func (b *backend) proxiedDSN(dsn string) (string, error) {
	if b.latency <= 0 {
		return dsn, nil
	}
	u, err := url.Parse(dsn)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return "", fmt.Errorf("%w: -latency needs a postgres:// URL DSN", ErrConfig)
	}
	host, port := u.Hostname(), u.Port()
	if port == "" {
		port = "5432"
	}
	addr, err := b.proxied(net.JoinHostPort(host, port))
	if err != nil {
		return "", err
	}
	u.Host = addr
	return u.String(), nil
}

// store returns a store for one in-process app server: the shared memory
// store, or a new client of the network store.
func (b *backend) store(ctx context.Context) (provider.Store, error) {
	if b.mem != nil {
		if b.latency > 0 {
			// No network to slow down: every operation waits a round
			// trip instead.
			return delayStore{Store: b.mem, delay: 2 * b.latency}, nil
		}
		return nopCloser{b.mem}, nil
	}
	return openStore(ctx, b.spec)
}

// nopCloser shares a store without letting its users close it.
type nopCloser struct{ provider.Store }

func (nopCloser) Close() error { return nil }

// close stops everything the backend started.
func (b *backend) close() {
	if b.mem != nil {
		_ = b.mem.Close()
	}
	for _, p := range b.proxies {
		_ = p.Close()
	}
	for _, n := range b.nodes {
		n.Stop()
	}
	if b.pg != nil {
		_ = b.pg.Stop()
	}
}
