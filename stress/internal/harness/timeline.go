package harness

import (
	"fmt"
	"sort"
)

// MaxLanes is the most sessions the HTML timeline draws a lane for. With
// more sessions it draws every k-th session (k = ceil(sessions /
// MaxLanes)): sessions 0, k, 2k, ...
const MaxLanes = 200

// LanesPerPage is how many lanes the HTML timeline shows at once; a pager
// turns the pages (printing shows them all).
const LanesPerPage = 25

// timeline is what the HTML report draws: one lane per session drawn,
// each holding the session's requests, and the raw figures of the
// distributions.
//
// The sampling rule, which keeps a report's size bounded: sessions as
// MaxLanes says; then each lane gets an equal share of Config.TimelineMax
// requests. A lane whose bursts exceed its share draws its first bursts in
// full (half the share) and then every j-th later burst, j chosen so that
// the drawn requests stay within the share. Requests outside bursts (a
// crashed holder's) are always drawn. Setup requests (first page loads and
// probes, before the workload started) are not drawn.
type timeline struct {
	Workload int64 // Unix ns: the workload's start, the time axis' 0
	End      int64 // Unix ns: the last answer
	Lanes    []sessionLane
	Sessions int    // sessions of the run
	Drawn    int    // requests drawn
	Omitted  int    // workload requests left out by the sampling rule
	Sampling string // the rule as it applied to this run, in words; empty when everything is drawn
	Stride   int    // a lane for every Stride-th session
	Events   []Event

	Waits     []float64 // ms, exclusive and read-only requests
	Latencies []float64 // ms, successful requests, client side
	Holds     []float64 // ms, exclusive requests
}

// sessionLane is one session's lane.
type sessionLane struct {
	Browser int
	Bars    []bar // by time sent
	Bursts  int   // the session's bursts; BurstsDrawn of them are drawn
	Drawn   int
}

// bar is one request in the timeline.
type bar struct {
	ID     uint64
	Route  string
	Burst  int // the burst's number within its session, from 0; -1 outside bursts
	OK     bool
	Reason string
	Sent   int64
	Recv   int64
	// Server side; zero when unknown.
	Arrive, Start, Done int64
	Proc                int
}

func buildTimeline(o observations, limit int) timeline {
	tl := timeline{Workload: o.start, End: o.end, Events: o.events, Sessions: len(o.sids)}
	byBrowser := map[int][]*request{}
	for _, r := range o.requests {
		tl.End = max(tl.End, r.Recv)
		t, ok := o.timings[r.ID]
		ri := routes[r.Route]
		if r.ok() {
			tl.Latencies = append(tl.Latencies, ms(r.Recv-r.Sent))
		}
		if ok && t.ran() {
			if ri.exclusive || ri.readOnly {
				tl.Waits = append(tl.Waits, ms(t.Start-t.Arrive))
			}
			if ri.exclusive {
				tl.Holds = append(tl.Holds, ms(t.Done-t.Start))
			}
		}
		if r.Sent >= o.start {
			byBrowser[r.Browser] = append(byBrowser[r.Browser], r)
		}
	}
	sessions := max(tl.Sessions, len(byBrowser))
	stride := max(1, (sessions+MaxLanes-1)/MaxLanes)
	lanes := (sessions + stride - 1) / stride
	share := max(1, limit/max(lanes, 1))
	var thinned []int // browsers whose bursts were thinned
	for b := 0; b < sessions; b += stride {
		rs := byBrowser[b]
		sort.Slice(rs, func(i, j int) bool { return rs[i].Sent < rs[j].Sent || rs[i].Sent == rs[j].Sent && rs[i].ID < rs[j].ID })
		// Number the session's bursts in the order they were sent.
		seq := map[int]int{}
		for _, r := range rs {
			if _, ok := seq[r.Burst]; !ok && r.Burst >= 0 {
				seq[r.Burst] = len(seq)
			}
		}
		keep := keepBursts(len(seq), len(rs), share)
		if keep != nil {
			thinned = append(thinned, b)
		}
		l := sessionLane{Browser: b, Bursts: len(seq)}
		for _, r := range rs {
			n := -1
			if r.Burst >= 0 {
				n = seq[r.Burst]
				if keep != nil && !keep(n) {
					tl.Omitted++
					continue
				}
			}
			br := bar{ID: r.ID, Route: r.Route, Burst: n, OK: r.ok(), Reason: r.Reason, Sent: r.Sent, Recv: r.Recv, Proc: r.Proc}
			if t, ok := o.timings[r.ID]; ok {
				br.Arrive, br.Done, br.Proc = t.Arrive, t.Done, t.Proc
				if t.ran() {
					br.Start = t.Start
				}
			}
			l.Bars = append(l.Bars, br)
		}
		l.Drawn = len(l.Bars)
		tl.Drawn += l.Drawn
		tl.Lanes = append(tl.Lanes, l)
	}
	for b := range byBrowser {
		if b%stride != 0 {
			tl.Omitted += len(byBrowser[b])
		}
	}
	if stride > 1 {
		tl.Sampling = fmt.Sprintf("%d sessions, %d lanes: a lane = every %s session (sessions 0, %d, %d, ...). ", sessions, lanes, ordinal(stride), stride, 2*stride)
	}
	if tl.Omitted > 0 {
		tl.Sampling += fmt.Sprintf("Showing %d of %d requests", tl.Drawn, tl.Drawn+tl.Omitted)
		if len(thinned) > 0 {
			tl.Sampling += fmt.Sprintf(": each lane's first bursts in full, then every few bursts (at most about %d requests a lane, -timeline-max %d)", share, limit)
		}
		tl.Sampling += "."
	}
	tl.Stride = stride
	return tl
}

// keepBursts returns which of a lane's n bursts (of total requests) to
// draw within share requests: nil for all of them; else the first ones in
// full, for half the share, then every j-th.
func keepBursts(n, total, share int) func(int) bool {
	if total <= share || n == 0 {
		return nil
	}
	per := max(1, total/n) // requests per burst
	allowed := max(1, share/per)
	first := max(1, allowed/2)
	rest := allowed - first
	if rest <= 0 {
		return func(i int) bool { return i < first }
	}
	j := (n - first + rest - 1) / rest
	return func(i int) bool { return i < first || (i-first)%j == 0 }
}

// ordinal is n as "2nd", "3rd", "11th".
func ordinal(n int) string {
	suffix := "th"
	switch {
	case n%100 >= 11 && n%100 <= 13:
	case n%10 == 1:
		suffix = "st"
	case n%10 == 2:
		suffix = "nd"
	case n%10 == 3:
		suffix = "rd"
	}
	return fmt.Sprintf("%d%s", n, suffix)
}
