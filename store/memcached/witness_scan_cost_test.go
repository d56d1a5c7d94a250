//go:build linux

package memcached_test

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/internal/mcserver"
	"github.com/sessionlock/sessionlock/store/memcached"
	"github.com/sessionlock/sessionlock/store/memcached/internal/envelope"
)

// TestScanCost measures one repair scan over 100,000 sessions (each node
// of three holds 100,000 items: a data copy, a data copy or a witness of
// each), filled raw with the scheme's item shapes: the time, the bytes
// read from each node, this process's CPU time and allocations, and each
// memcached's CPU time; once at the scan's rate (50,000 keys/s per node)
// and once unbounded. Every session is whole: the scan visits only the few
// whose item the crawler missed. Run
// with SESSIONLOCK_SCAN_COST=1 (it fills 300,000 items).
func TestScanCost(t *testing.T) {
	if os.Getenv("SESSIONLOCK_SCAN_COST") == "" {
		t.Skip("SESSIONLOCK_SCAN_COST=1 measures the repair scan's cost")
	}
	const sessions = 100_000
	servers := mcserver.StartForTest(t, 3, mcserver.Config{MemoryMB: 256})
	w := newWire()
	s := newStore(t, servers, memcached.Config{Backup: memcached.BackupWitness, DialContext: w.dial, RepairEvery: -1})
	addrs := mcserver.Addrs(servers)
	conns := make(map[string]*bufio.ReadWriter)
	for _, a := range addrs {
		c, err := net.Dial("tcp", a)
		require.NoError(t, err)
		defer c.Close()
		conns[a] = bufio.NewReadWriter(bufio.NewReader(c), bufio.NewWriterSize(c, 1<<16))
	}
	data := make([]byte, envelope.Size+150)
	wit := make([]byte, envelope.Size)
	for i := range sessions {
		key := fmt.Sprintf("sl:%043d", i) // a 46-byte key, as the provider's
		cands := memcached.WitnessCandidates(s, key)
		for j, a := range cands {
			v, flags, exp := data, 1, 3600
			if j == 2 {
				v, flags, exp = wit, 2, 7200
			}
			fmt.Fprintf(conns[a], "ms %s %d T%d F%d q\r\n%s\r\n", key, len(v), exp, flags, v)
		}
	}
	for _, rw := range conns {
		_, _ = rw.WriteString("mn\r\n")
		require.NoError(t, rw.Flush())
		line, err := rw.ReadString('\n')
		require.NoError(t, err)
		require.Equal(t, "MN\r\n", line, "every item stored")
	}
	for _, a := range addrs {
		n, err := strconv.Atoi(stat(t, a, "curr_items"))
		require.NoError(t, err)
		require.GreaterOrEqual(t, n, sessions, "%s: nothing evicted", a) // and the incarnation key
	}
	for _, rate := range []int{50_000, 0} {
		memcached.SetScanRates(s, rate, 0)
		before := make(map[string]uint64)
		cpu := make(map[string]float64)
		for _, a := range addrs {
			before[a] = w.at(a).recv
			cpu[a] = nodeCPU(t, a)
		}
		var ru0, ru1 syscall.Rusage
		var m0, m1 runtime.MemStats
		require.NoError(t, syscall.Getrusage(syscall.RUSAGE_SELF, &ru0))
		runtime.ReadMemStats(&m0)
		visits, listed := memcached.ScanVisits(s), memcached.ScanListed(s)
		start := time.Now()
		memcached.RunScan(s)
		took := time.Since(start)
		runtime.ReadMemStats(&m1)
		require.NoError(t, syscall.Getrusage(syscall.RUSAGE_SELF, &ru1))
		// The crawler misses the odd item that moves between LRU
		// segments while it runs: its session gets a visit.
		visited, kept := memcached.ScanVisits(s)-visits, memcached.ScanListed(s)-listed
		require.Less(t, visited, int64(sessions/1000), "whole sessions are not visited")
		require.InDelta(t, 3*sessions, kept, 3*sessions/1000, "every item listed")
		var bytes []string
		var nodeCPUs []string
		for _, a := range addrs {
			bytes = append(bytes, strconv.FormatUint(w.at(a).recv-before[a], 10))
			nodeCPUs = append(nodeCPUs, fmt.Sprintf("%.2fs", nodeCPU(t, a)-cpu[a]))
		}
		self := time.Duration(syscall.TimevalToNsec(ru1.Utime)+syscall.TimevalToNsec(ru1.Stime)) -
			time.Duration(syscall.TimevalToNsec(ru0.Utime)+syscall.TimevalToNsec(ru0.Stime))
		t.Logf("rate %d keys/s per node (0: unbounded): one scan of %d sessions (%d items per node) took %v; %d lines kept, %d visits; bytes read per node %s; this process's CPU %v, %d MB allocated (%d allocations); memcached CPU per node %s",
			rate, sessions, sessions, took.Round(time.Millisecond), kept, visited, strings.Join(bytes, " "), self.Round(time.Millisecond),
			(m1.TotalAlloc-m0.TotalAlloc)>>20, m1.Mallocs-m0.Mallocs, strings.Join(nodeCPUs, " "))
	}
}

// stat returns the value of `stats` name on addr.
func stat(t *testing.T, addr, name string) string {
	t.Helper()
	for _, line := range rawCommand(t, addr, "stats", true) {
		if v, ok := strings.CutPrefix(line, "STAT "+name+" "); ok {
			return v
		}
	}
	return ""
}

// nodeCPU returns addr's memcached CPU time so far, in seconds.
func nodeCPU(t *testing.T, addr string) float64 {
	u, err := strconv.ParseFloat(stat(t, addr, "rusage_user"), 64)
	require.NoError(t, err)
	s, err := strconv.ParseFloat(stat(t, addr, "rusage_system"), 64)
	require.NoError(t, err)
	return u + s
}

// TestScanFailoverCost measures the visits of one scan after a node
// died: 10,000 sessions on three nodes, a node killed, one scan (visits
// unbounded) fails over the two thirds whose data was on it. Run with
// SESSIONLOCK_SCAN_COST=1.
func TestScanFailoverCost(t *testing.T) {
	if os.Getenv("SESSIONLOCK_SCAN_COST") == "" {
		t.Skip("SESSIONLOCK_SCAN_COST=1 measures the repair scan's cost")
	}
	const sessions = 10_000
	servers := mcserver.StartForTest(t, 3, mcserver.Config{MemoryMB: 64})
	s := newStore(t, servers, memcached.Config{Backup: memcached.BackupWitness, RepairEvery: -1, FailoverAfter: 700 * time.Millisecond})
	ctx := t.Context()
	for i := range sessions {
		_, err := s.Add(ctx, fmt.Sprintf("sl:%043d", i), record(1, "v"), time.Hour)
		require.NoError(t, err)
	}
	servers[0].Kill()
	memcached.SetScanRates(s, 50_000, 0)
	visits := memcached.ScanVisits(s)
	start := time.Now()
	memcached.RunScan(s)
	took := time.Since(start)
	visited := memcached.ScanVisits(s) - visits
	require.Positive(t, visited)
	start = time.Now()
	memcached.RunScan(s)
	again := time.Since(start)
	t.Logf("%d sessions, a node killed: one scan visited %d in %v (%.0f visits/s, the first waiting F = 700 ms); the next scan visited %d in %v",
		sessions, visited, took.Round(time.Millisecond), float64(visited)/took.Seconds(),
		memcached.ScanVisits(s)-visits-visited, again.Round(time.Millisecond))
	for i := range 100 {
		_, err := s.Get(ctx, fmt.Sprintf("sl:%043d", i))
		require.NoError(t, err)
	}
}
