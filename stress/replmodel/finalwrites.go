package replmodel

import "fmt"

// The availability of writes (Scope.FinalWrites, review-3 M3): issue 13
// promises that with one node down, unreachable, flushed or restarted, a
// request started a failover time after the fault succeeds, exclusive
// writes included; only requests in flight at the fault may end unknown.
// The final read checks that a read decides; these checks run a write.

// soloSetup picks the client that runs the final writes: a new one when
// the scope has fewer than three, else the first, once its program is
// done. Its program gets one more step, the write.
func (x *explorer) soloSetup() {
	progs := x.sc.Programs
	c := 0
	if len(progs) < maxClients {
		c = len(progs)
	}
	x.soloC = c
	x.soloProgs = make([][]OpKind, max(len(progs), c+1))
	copy(x.soloProgs, progs)
	if c < len(progs) && value(c, uint8(len(progs[c]))) >= value(c+1, 0) {
		panic("replmodel: Scope.FinalWrites: the writer's program is too long for unique write values")
	}
	x.soloProgs[c] = append(append([]OpKind(nil), x.soloProgs[c]...), RMW)
	if x.sc.Timed && c >= len(x.sc.SessionT) {
		// A new client: the longest session timeout.
		x.sc.SessionT = append(append([]uint8(nil), x.sc.SessionT...), x.sc.MaxT)
	}
}

// soloMaxIter is the decisions a final write's Get may make before it
// reports unavailable: as many as the final read's. A Get of a running
// client makes at most maxIter (a bound of the search, not the store's:
// its cap is maxAnomalyReads counted reads); one that starts after a
// fault may need a failover, the completion of its fence and R9's
// witness (three) before R2 returns the session.
const soloMaxIter = 4

// finalWrites runs the final writes from s, in which every client is done
// and the final read returned a value: with no node dead, and then with
// each node the check covers dead. It reports whether all were
// acknowledged; if not, the violation is recorded with its trace.
func (x *explorer) finalWrites(s *state) bool {
	if s.Deadline || s.NFSeen || s.Faults > 1 {
		// The session's timeout has run out (a write may find it
		// gone), or two faults: nothing is promised.
		return true
	}
	if !x.soloWrite(s, -1) {
		return false
	}
	for k := range numNodes {
		if s.Faults != 0 && s.Hit != 1<<k {
			continue // another node's fault and this one's: a double fault
		}
		if x.creates() && s.Max == 0 {
			// Nothing acknowledged or observed: an Add abandoned
			// half-way is no session yet, and one fault may leave it
			// undecidable until it expires (review-2 m11, as the final
			// read).
			x.res.FinalWritesExcused++
			continue
		}
		if it := s.N[k].Item; s.ExcOpen && it.K == data && it.NoWit && !presentItem(s.N[3-it.P-it.Q].Item) {
			// R8's stated exception (excFault): k's death would remove
			// a data copy of a nowit configuration whose third node
			// holds nothing while the window is open; the lone copy
			// left is ErrUnavailable until R9 stores the witness.
			x.res.FinalWritesExcused++
			continue
		}
		if !x.soloWrite(s, k) {
			return false
		}
	}
	return true
}

// soloWrite runs one final write from s, node dead (-1: none) holding no
// answer, through the explorer's own steps (startOp, deliver, advance): no
// other client runs, and each command the writer sends is delivered at
// once, in the order of the message slots. Commands already in flight
// stay there (late: the network may hold them). It reports whether the
// write was acknowledged, recording the violation otherwise.
func (x *explorer) soloWrite(s *state, dead int) bool {
	t := *s
	c := x.soloC
	saved := x.sc.Programs
	x.sc.Programs = x.soloProgs
	depth := len(x.trace)
	defer func() {
		x.sc.Programs = saved
		x.trace = x.trace[:depth]
	}()
	var before [maxMsgs]bool
	for i := range t.M {
		before[i] = t.M[i].Used
	}
	pc := uint8(len(x.soloProgs[c]) - 1)
	cl := &t.C[c]
	cl.Phase, cl.Pc, cl.Susp = phIdle, pc, [numNodes]bool{}
	solo := step{kind: stSolo, c: uint8(c)}
	if dead >= 0 {
		cl.Susp[dead] = true
		solo.n, solo.aux = uint8(dead), 1
	}
	x.trace = append(x.trace, solo, step{kind: stStart, c: uint8(c), aux: uint8(RMW)})
	x.iterCap = soloMaxIter
	defer func() { x.iterCap = maxIter }()
	acks, res := x.acks, x.res // the write's steps count in no Result field
	phase := phIdle
	v := x.startOp(&t, c)
	for range 256 {
		if v != "" || t.C[c].Pc != pc {
			break
		}
		i := -1
		for j := range t.M {
			if t.M[j].Used && !before[j] {
				i = j
				break
			}
		}
		if i < 0 {
			v = fmt.Sprintf("c%d's write alone is stuck in phase %s with nothing in flight (a model error)", c, phaseNames[t.C[c].Phase])
			break
		}
		phase = t.C[c].Phase
		m := t.M[i]
		if int(m.Node) == dead {
			// Only an Add sends to a node it holds failed: no answer.
			t.M[i] = msg{}
			if !m.Orphan && t.C[c].R[dead].St == rPending {
				t.C[c].R[dead].St = rTimeout
				x.trace = append(x.trace, step{kind: stTimeout, c: uint8(c), n: uint8(dead), aux: phase})
				v = x.maybeAdvance(&t, c)
			}
			continue
		}
		x.trace = append(x.trace, step{kind: stDeliver, m: m})
		v = x.deliver(&t, i)
	}
	switch {
	case v != "":
	case t.C[c].Pc == pc:
		v = fmt.Sprintf("c%d's write alone did not end after 256 steps (a model error)", c)
	case x.acks > acks:
		x.res = res
		if dead < 0 {
			x.res.FinalWrites++
		} else {
			x.res.FinalWritesDead++
		}
		return true
	default:
		where := "with no node dead"
		if dead >= 0 {
			where = fmt.Sprintf("with node %d dead", dead)
		}
		v = fmt.Sprintf("a write run alone after every client is done, %s, was not acknowledged: %s (its last round: %s)",
			where, soloOutcome(&t, c, pc), phaseNames[phase])
	}
	x.res = res
	x.fail(v, &t)
	return false
}

// soloOutcome names what client c's final write, program step pc, that
// was not acknowledged answered.
func soloOutcome(t *state, c int, pc uint8) string {
	switch nv := value(c, pc); {
	case t.C[c].New.Val != nv:
		return "its Get returned no value (ErrUnavailable or not found)"
	case t.Failed[nv]:
		return "reported not applied (ErrCASConflict)"
	}
	return "ErrOutcomeUnknown"
}

// presentItem: a record that is not "nothing here" (data or a witness).
func presentItem(r Rec) bool { return r.K == data || r.K == witness }
