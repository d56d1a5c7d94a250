package harness

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/sessionlock/sessionlock/stress/internal/counterlin"
)

// counterCheckTimeout bounds porcupine's search on one session's counter
// history (counterlin.Check); a history it cannot decide in that time is
// counted as unchecked (Result.CounterUnchecked), never as a pass.
const counterCheckTimeout = 5 * time.Second

// counterHistory builds session by session the counter histories of a run
// (counterlin), in Unix ns of the harness's clock: an acknowledged
// increment (incr, slow) is an increment from the value it returned less
// one, from its sending to its answer; an acknowledged read (read, and
// append, which reads the counter under the lock) a read of the value it
// returned. A failed increment is left out when it surely did not write:
// its handler never ran (the app server's record has no start), or it was
// answered with a definite 4xx (409: fenced, nothing written). Any other
// failure (no answer, a 5xx: ErrOutcomeUnknown among them) may have
// applied at any time after it was sent: an increment of unknown outcome
// from the counter its handler read, or from any value when no app
// server recorded it. Sessions the read-back did not find, or found
// unavailable, have no checkable history (their loss is a violation of
// its own) and are left out.
func counterHistory(o observations) map[string][]counterlin.Op {
	hist := map[string][]counterlin.Op{}
	for _, r := range o.requests {
		ri := routes[r.Route]
		if !ri.increment && r.Route != RouteRead && r.Route != RouteAppend {
			continue
		}
		if r.ok() {
			op := counterlin.Op{Read: !ri.increment, N: r.Value, Call: r.Sent, Return: r.Recv}
			if ri.increment {
				op.N--
			}
			hist[r.SID] = append(hist[r.SID], op)
			continue
		}
		if !ri.increment || r.Status/100 == 4 {
			continue
		}
		t, ok := o.timings[r.ID]
		if ok && !t.ran() {
			continue
		}
		op := counterlin.Op{Maybe: true, AnyN: !ok || !t.CounterRead, N: t.Counter, Call: r.Sent, Return: counterlin.Never}
		sid := sessionOf(o, r)
		hist[sid] = append(hist[sid], op)
	}
	for sid := range hist {
		if st := o.states[sid]; !st.Found || st.Unavailable {
			delete(hist, sid)
		}
	}
	return hist
}

// checkCounters checks that every session's counter history is
// linearizable (counterHistory, counterlin.Check): a read that missed an
// increment acknowledged before it was sent, or saw one that had not
// been, or two reads that disagree on the order, break it.
func checkCounters(o observations, res *Result) {
	hist := counterHistory(o)
	sids := make([]string, 0, len(hist))
	for sid := range hist {
		sids = append(sids, sid)
	}
	sort.Strings(sids)
	start := time.Now()
	for _, sid := range sids {
		ops := hist[sid]
		res.CounterHistories++
		res.CounterOps += len(ops)
		res.CounterOpsMax = max(res.CounterOpsMax, len(ops))
		for _, op := range ops {
			if op.Maybe {
				res.CounterMaybeOps++
			}
		}
		t0 := time.Now()
		v := counterlin.Check(ops, counterCheckTimeout)
		res.CounterCheckMaxMs = max(res.CounterCheckMaxMs, ms(int64(time.Since(t0))))
		switch v {
		case counterlin.NotLinearizable:
			res.CounterNotLinearizable++
			res.finding("counter not linearizable: session %s…: no linearization of its %d counter operations: %s",
				sidTag(sid), len(ops), describeOps(o, ops))
		case counterlin.Unchecked:
			res.CounterUnchecked++
			res.finding("counter unchecked: session %s…: porcupine did not decide its %d counter operations within %v", sidTag(sid), len(ops), counterCheckTimeout)
		}
	}
	res.CounterCheckMs = ms(int64(time.Since(start)))
}

// describeOps lists a history's operations for a finding, in ms from the
// workload's start, up to a bound.
func describeOps(o observations, ops []counterlin.Op) string {
	ops = append([]counterlin.Op(nil), ops...)
	sort.Slice(ops, func(i, j int) bool { return ops[i].Call < ops[j].Call })
	const most = 24
	var b strings.Builder
	for i, op := range ops {
		if i == most {
			fmt.Fprintf(&b, " … (%d more)", len(ops)-most)
			break
		}
		if i > 0 {
			b.WriteString(", ")
		}
		d := counterlin.Model.DescribeOperation(op, nil)
		if op.Return == counterlin.Never {
			fmt.Fprintf(&b, "%s [%.0f ms, -]", d, ms(op.Call-o.start))
			continue
		}
		fmt.Fprintf(&b, "%s [%.0f, %.0f ms]", d, ms(op.Call-o.start), ms(op.Return-o.start))
	}
	return b.String()
}
