package memcached

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/internal/mcserver"
)

// TestFanoutReplyAfterSlowCopy: wdoAll reads the copies' replies in turn,
// so a copy's reply waits in its socket while an earlier copy's node does
// not answer until Timeout. That reply came in time: the write it answers
// is stored, not of unknown outcome, and its node answered. A read past
// the deadline that had passed meanwhile fails the write without looking
// at it: with wop.timely returning at once this test fails (the live
// copy's error is an i/o timeout).
func TestFanoutReplyAfterSlowCopy(t *testing.T) {
	servers := mcserver.StartForTest(t, 3, mcserver.Config{MemoryMB: 32})
	s, err := New(Config{Nodes: mcserver.Addrs(servers), Backup: BackupWitness, Timeout: 300 * time.Millisecond})
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	ctx := context.Background()
	slow, live, wit := s.nodes[0], s.nodes[1], s.nodes[2]
	var slowSrv *mcserver.Server
	for _, srv := range servers {
		if srv.Addr() == slow.addr {
			slowSrv = srv
		}
	}
	const key = "fanout"
	toks := map[*node]witItem{}
	for _, n := range []*node{slow, live, wit} {
		_, err := n.wcas(ctx, key, []byte("v1"), 60, kindData, 0, 0) // pools a connection
		require.NoError(t, err)
		it, err := n.wget(ctx, key, " c")
		require.NoError(t, err)
		toks[n] = it
	}
	require.NoError(t, slowSrv.Pause())
	t.Cleanup(func() { _ = slowSrv.Resume() })

	var scas, lcas uint64
	var wi witItem
	sop := slow.wcasOp(ctx, key, []byte("v2"), 60, kindData, toks[slow].cas, toks[slow].inc, &scas)
	lop := live.wcasOp(ctx, key, []byte("v2"), 60, kindData, toks[live].cas, toks[live].inc, &lcas)
	top := wit.wgetOp(ctx, key, " c", &wi)
	top.detach = true
	then := make(chan struct{})
	top.then = func() { close(then) }
	wdoAll(sop, lop, top)
	require.Error(t, sop.err, "the paused node answered")
	require.NoError(t, lop.err, "the live copy's reply, in time, was not read")
	require.NotZero(t, lcas)
	require.False(t, live.wh.isFailed())
	live.wh.mu.Lock()
	since := live.wh.since
	live.wh.mu.Unlock()
	require.True(t, since.IsZero(), "the live node counted unanswered")
	select {
	case <-then:
	case <-time.After(5 * time.Second):
		t.Fatal("the detached op's then did not run")
	}
	require.NoError(t, top.err)
	require.NotNil(t, wi.metaItem)
}

// TestFanoutDialsAtOnce: the ops of nodes with no pooled connection are
// opened at once, so a node that takes the connection but does not answer
// its incarnation read (a paused process: the kernel accepts) does not
// hold up another copy's write until the call's context has ended. With
// the opens one after the other (wdoAll without its dialling goroutines)
// the live copy's write fails with the context's error, its outcome
// unknown.
func TestFanoutDialsAtOnce(t *testing.T) {
	servers := mcserver.StartForTest(t, 2, mcserver.Config{MemoryMB: 32})
	// Witness-scheme clients (an incarnation read on every connection) of
	// the two nodes, with no Store: nothing else dials them.
	nodes := make([]*node, 2)
	for i, srv := range servers {
		a := srv.Addr()
		nodes[i] = &node{addr: a, meta: &metaClient{addr: a, timeout: 500 * time.Millisecond, maxIdle: 4, hello: helloIncarnation, labelSem: make(chan struct{}, 1)}, wh: witHealth{after: time.Minute, addr: a}}
		t.Cleanup(nodes[i].meta.close)
	}
	ctx := context.Background()
	const key = "dials"
	toks := make([]witItem, 2)
	for i, n := range nodes {
		_, err := n.wcas(ctx, key, []byte("v1"), 60, kindData, 0, 0)
		require.NoError(t, err)
		toks[i], err = n.wget(ctx, key, " c")
		require.NoError(t, err)
		n.meta.closeIdle()
	}
	for _, srv := range servers {
		if srv.Addr() == nodes[0].addr {
			require.NoError(t, srv.Pause())
			t.Cleanup(func() { _ = srv.Resume() })
		}
	}
	cctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	var pcas, qcas uint64
	pop := nodes[0].wcasOp(cctx, key, []byte("v2"), 60, kindData, toks[0].cas, toks[0].inc, &pcas)
	qop := nodes[1].wcasOp(cctx, key, []byte("v2"), 60, kindData, toks[1].cas, toks[1].inc, &qcas)
	wdoAll(pop, qop)
	require.Error(t, pop.err, "the paused node answered")
	require.NoError(t, qop.err, "the live copy's write waited for the paused node's dial")
	require.NotZero(t, qcas)
}
