package harness

import "sort"

// timeline is what the HTML report draws: one lane per request, grouped
// by session, and the raw figures of the histograms.
type timeline struct {
	Start, End int64 // Unix ns: the first request sent, the last answer
	Workload   int64 // Unix ns: the workload's start, which events count from
	Lanes      []lane
	Omitted    int // requests left out of the lanes (TimelineMax)
	Events     []Event

	Waits     []float64 // ms, exclusive and read-only requests
	Latencies []float64 // ms, successful requests, client side
	Holds     []float64 // ms, exclusive requests
}

// lane is one request in the timeline.
type lane struct {
	ID        uint64
	Browser   int
	Route     string
	OK        bool
	Reason    string
	Exclusive bool
	Sent      int64
	Recv      int64
	// Server side; zero when unknown.
	Arrive, Start, Done int64
	Proc                int
}

func buildTimeline(o observations, limit int) timeline {
	tl := timeline{Start: o.start, End: o.end, Workload: o.start, Events: o.events}
	byBrowser := map[int][]*request{}
	for _, r := range o.requests {
		byBrowser[r.Browser] = append(byBrowser[r.Browser], r)
		if r.Sent > 0 && (tl.Start == 0 || r.Sent < tl.Start) {
			tl.Start = r.Sent
		}
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
	}
	browsers := make([]int, 0, len(byBrowser))
	for b := range byBrowser {
		browsers = append(browsers, b)
	}
	sort.Ints(browsers)
	for _, b := range browsers {
		rs := byBrowser[b]
		if len(tl.Lanes) >= limit {
			tl.Omitted += len(rs)
			continue
		}
		sort.Slice(rs, func(i, j int) bool { return rs[i].Sent < rs[j].Sent })
		for _, r := range rs {
			if len(tl.Lanes) >= limit {
				tl.Omitted++
				continue
			}
			l := lane{
				ID: r.ID, Browser: r.Browser, Route: r.Route, OK: r.ok(), Reason: r.Reason,
				Exclusive: routes[r.Route].exclusive, Sent: r.Sent, Recv: r.Recv, Proc: r.Proc,
			}
			if t, ok := o.timings[r.ID]; ok {
				l.Arrive, l.Done, l.Proc = t.Arrive, t.Done, t.Proc
				if t.ran() {
					l.Start = t.Start
				}
			}
			tl.Lanes = append(tl.Lanes, l)
		}
	}
	return tl
}
