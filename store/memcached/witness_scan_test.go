package memcached_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/internal/mcserver"
	"github.com/sessionlock/sessionlock/internal/testwait"
	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/store/memcached"
)

// scanEvery is the RepairEvery of the scan tests: short, or with
// SESSIONLOCK_SCAN_OFF=1 in the environment the scan turned off (the code
// before the scan), under which each of them fails.
func scanEvery() time.Duration {
	if os.Getenv("SESSIONLOCK_SCAN_OFF") != "" {
		return -1
	}
	return 100 * time.Millisecond
}

// rawDelete deletes key on addr.
func rawDelete(t testing.TB, addr, key string) {
	t.Helper()
	require.NoError(t, raw(t, addr).Delete(key))
}

// rawCommand sends one command line to addr and returns its reply: one
// line, or with multi every line up to END.
func rawCommand(t testing.TB, addr, cmd string, multi bool) []string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, time.Second)
	require.NoError(t, err)
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	_, err = c.Write([]byte(cmd + "\r\n"))
	require.NoError(t, err)
	r := bufio.NewReader(c)
	var lines []string
	for {
		line, err := r.ReadString('\n')
		require.NoError(t, err)
		line = strings.TrimRight(line, "\r\n")
		lines = append(lines, line)
		if !multi || line == "END" {
			return lines
		}
	}
}

// waitScans waits (bounded) until s has finished n more scans.
func waitScans(t *testing.T, s *memcached.Store, n int64) {
	t.Helper()
	from := memcached.ScanRuns(s)
	testwait.Until(t, 20*time.Second, fmt.Sprintf("%d more repair scans", n), func() bool { return memcached.ScanRuns(s) >= from+n })
}

// TestRepairEveryDefault: Config's zero value scans every
// DefaultRepairEvery.
func TestRepairEveryDefault(t *testing.T) {
	s, err := memcached.New(memcached.Config{Nodes: []string{"127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"}, Backup: memcached.BackupWitness})
	require.NoError(t, err)
	defer s.Close()
	require.Equal(t, memcached.DefaultRepairEvery, memcached.RepairEvery(s))
}

// TestScanRestoresWitness: sessions nobody touches whose witness was
// deleted get it back from the repair scan (§9), with no call; sessions
// listed whole on their candidates are not visited.
func TestScanRestoresWitness(t *testing.T) {
	_, s := witnessSetup(t, memcached.Config{RepairEvery: scanEvery()})
	ctx := context.Background()
	var keys []string
	for i := range 12 {
		key := fmt.Sprintf("scan-wit-%d", i)
		_, err := s.Add(ctx, key, record(1, "v"), time.Hour)
		require.NoError(t, err)
		keys = append(keys, key)
	}
	for _, key := range keys[:4] {
		rawDelete(t, memcached.WitnessCandidates(s, key)[2], key)
	}
	testwait.Until(t, 10*time.Second, "the deleted witnesses back, with no call", func() bool {
		for _, key := range keys[:4] {
			if rawGet(t, memcached.WitnessCandidates(s, key)[2], key).flags != 2 {
				return false
			}
		}
		return true
	})
	waitScans(t, s, 1) // the scan that repaired may have been running
	visits := memcached.ScanVisits(s)
	waitScans(t, s, 2)
	require.Equal(t, visits, memcached.ScanVisits(s), "sessions listed whole are not visited")
	require.Positive(t, memcached.ScanListed(s))
	for _, key := range keys {
		e, err := s.Get(ctx, key)
		require.NoError(t, err)
		require.Equal(t, record(1, "v"), e.Value)
	}
}

// TestScanFailsOverIdleSession: a session nobody touches whose primary's
// node was killed is failed over by the repair scan: its data is on the
// two survivors without a call, and this process's next read succeeds on
// its first round trip, reporting no failover of its own. Failed over,
// the session is not visited again while the dead node holds its
// witness's place; restarted, the node gets the witness.
func TestScanFailsOverIdleSession(t *testing.T) {
	events := &eventLog{}
	servers, s := witnessSetup(t, memcached.Config{RepairEvery: scanEvery(), OnEvent: events.add})
	ctx := context.Background()
	const key = "scan-idle"
	_, err := s.Add(ctx, key, record(1, "idle"), time.Hour)
	require.NoError(t, err)
	cands := memcached.WitnessCandidates(s, key)
	serverAt(t, servers, cands[0]).Kill()
	testwait.Until(t, 15*time.Second, "the idle session failed over onto the two survivors", func() bool {
		return rawGet(t, cands[1], key).flags == 1 && rawGet(t, cands[2], key).flags == 1
	})
	// The visit emits its event once its copy is stored: wait for it too.
	testwait.Until(t, 5*time.Second, "the scan's visit to report the failover (its event)", func() bool {
		return events.count(provider.EventFailover, cands[0]) > 0
	})
	// The visit that failed it over may still complete its copy: let
	// that scan end, and one more.
	waitScans(t, s, 2)
	visits := memcached.ScanVisits(s)
	waitScans(t, s, 2)
	require.Equal(t, visits, memcached.ScanVisits(s), "failed over, the session is not visited again while its witness's node is down")
	failovers := len(events.all())
	e, err := s.Get(ctx, key)
	require.NoError(t, err)
	require.Equal(t, record(1, "idle"), e.Value)
	require.Len(t, events.all(), failovers, "the read found the session in place: no failover, no node failed")
	// Back (empty), the node gets the session's witness from the scan.
	require.NoError(t, serverAt(t, servers, cands[0]).Restart(ctx))
	testwait.Until(t, 15*time.Second, "the witness on the restarted node, with no call", func() bool {
		return rawGet(t, cands[0], key).flags == 2
	})
}

// TestScanForeignKeysAndDisabledCrawler: the scan leaves keys that are
// not the store's alone (no visit: no blank left on another node, no
// "record of another node list" reported), and a node whose crawler is
// disabled is reported once (EventWarning) while the scan goes on
// repairing the sessions of the other nodes.
func TestScanForeignKeysAndDisabledCrawler(t *testing.T) {
	servers := mcserver.StartForTest(t, 4, mcserver.Config{MemoryMB: 32})
	events := &eventLog{}
	s := newStore(t, servers, memcached.Config{Backup: memcached.BackupWitness, FailoverAfter: 700 * time.Millisecond,
		RepairEvery: scanEvery(), OnEvent: events.add})
	ctx := context.Background()
	addrs := mcserver.Addrs(servers)
	off := addrs[0]
	require.Equal(t, []string{"OK"}, rawCommand(t, off, "lru_crawler disable", false))
	key := ""
	for i := 0; key == ""; i++ {
		k := fmt.Sprintf("scan-crawl-%d", i)
		if !strings.Contains(strings.Join(memcached.WitnessCandidates(s, k), " "), off) {
			key = k
		}
	}
	_, err := s.Add(ctx, key, record(1, "v"), time.Hour)
	require.NoError(t, err)
	cands := memcached.WitnessCandidates(s, key)
	// Keys of another application: no expiry, a value of any size with
	// client flags, an empty one without (shaped as a blank), a
	// data-sized one with an expiry; each on one node only.
	type foreign struct {
		addr, key string
		value     []byte
		exp       int
		flags     uint32
	}
	var fs []foreign
	for i, a := range addrs {
		fs = append(fs,
			foreign{a, fmt.Sprintf("other:%d:a", i), []byte(strings.Repeat("x", 300)), 0, 5},
			foreign{a, fmt.Sprintf("other:%d:b", i), []byte{}, 600, 0},
			foreign{a, fmt.Sprintf("other:%d:c", i), []byte(strings.Repeat("y", 200)), 600, 1},
		)
	}
	for _, f := range fs {
		rawSet(t, f.addr, f.key, f.value, f.exp, f.flags)
	}
	rawDelete(t, cands[2], key)
	testwait.Until(t, 10*time.Second, "the witness back, around a node with its crawler disabled", func() bool {
		return rawGet(t, cands[2], key).flags == 2
	})
	waitScans(t, s, 3)
	require.Equal(t, 1, events.countDetail(provider.EventWarning, off, "lru_crawler disabled"), "reported once")
	require.Zero(t, events.countKind(provider.EventFallback), "no foreign key visited")
	for _, f := range fs {
		for _, a := range addrs {
			it := rawGet(t, a, f.key)
			if a != f.addr {
				require.False(t, it.found, "%s: nothing written on %s", f.key, a)
				continue
			}
			require.True(t, it.found, f.key)
			require.Equal(t, f.value, it.value, f.key)
			require.Equal(t, f.flags, it.flags, f.key)
		}
	}
}

// all returns the events recorded so far.
func (l *eventLog) all() []provider.Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]provider.Event(nil), l.events...)
}

// countKind counts the events of kind, any node.
func (l *eventLog) countKind(kind provider.EventKind) int {
	n := 0
	for _, e := range l.all() {
		if e.Kind == kind {
			n++
		}
	}
	return n
}

// countDetail counts the events of kind on node whose detail starts with
// prefix.
func (l *eventLog) countDetail(kind provider.EventKind, node, prefix string) int {
	n := 0
	for _, e := range l.all() {
		if e.Kind == kind && e.Node == node && strings.HasPrefix(e.Detail, prefix) {
			n++
		}
	}
	return n
}

// TestScanExpiredWhileNodeDown: a session that expired while its
// primary's node was down leaves a lone witness on its third candidate
// (TW, hours) unless the scan's visit fails the session over first;
// once the node is back, no witness of it is left, with no call (failed
// over, or buried by R14), and it reads not found.
func TestScanExpiredWhileNodeDown(t *testing.T) {
	servers, s := witnessSetup(t, memcached.Config{RepairEvery: scanEvery()})
	ctx := context.Background()
	const key = "scan-expired"
	_, err := s.Add(ctx, key, record(1, "short"), 2*time.Second)
	require.NoError(t, err)
	cands := memcached.WitnessCandidates(s, key)
	victim := serverAt(t, servers, cands[0])
	victim.Kill()
	testwait.Until(t, 10*time.Second, "the secondary's copy expired", func() bool {
		return rawGet(t, cands[1], key).flags != 1
	})
	require.NoError(t, victim.Restart(ctx))
	testwait.Until(t, 15*time.Second, "the lone witness retired, with no call", func() bool {
		return rawGet(t, cands[2], key).flags != 2
	})
	_, err = s.Get(ctx, key)
	require.ErrorIs(t, err, provider.ErrNotFound)
}
