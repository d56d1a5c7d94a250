package sim

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/sessionlock/sessionlock/provider"
)

// Coverage counts, per fault kind and per place in a request, how many
// seeds had a fault of that kind strike a request at that place: between
// two of its store operations ("get/lock": after the Get that read the
// session, before the CAS that locks it), or during one ("in commit").
// A fault with a duration counts where it struck and, as "<kind> heal",
// where it ended.
type Coverage struct {
	Seeds int
	Hits  map[string]map[string]int // kind -> place -> seeds
}

// NewCoverage returns an empty Coverage.
func NewCoverage() *Coverage { return &Coverage{Hits: make(map[string]map[string]int)} }

// opLabel names a store operation by what it does in the request.
func opLabel(name string) string {
	switch name {
	case "cas", "add":
		return "lock"
	case "commit-cas":
		return "commit"
	case "renew-cas":
		return "renew"
	case "read-get":
		return "read"
	case "read-touch":
		return "touch"
	case "read-gat":
		return "read"
	case "lf-commit-cas":
		return "lf-commit"
	case "release-cas":
		return "release"
	}
	return name
}

// place names where instant t falls in rq, or "" outside it.
func place(rq *Request, t time.Duration) string {
	if t < rq.Call || t > rq.Ret || len(rq.Ops) == 0 {
		return ""
	}
	ops := rq.Ops
	prev := "start"
	for _, op := range ops {
		if t <= op.Call {
			return prev + "/" + opLabel(op.Name)
		}
		if t < op.Ret {
			return "in " + opLabel(op.Name)
		}
		prev = opLabel(op.Name)
	}
	return prev + "/end"
}

// Add counts one seed's run.
func (c *Coverage) Add(r *Result) {
	c.Seeds++
	seen := map[[2]string]bool{}
	note := func(kind, where string) {
		k := [2]string{kind, where}
		if where == "" || seen[k] {
			return
		}
		seen[k] = true
		if c.Hits[kind] == nil {
			c.Hits[kind] = make(map[string]int)
		}
		c.Hits[kind][where]++
	}
	for _, h := range r.Hits {
		note(string(h.Kind), "any")
		if h.Double {
			note(string(FaultDouble), "any")
		}
		if h.Kind == FaultExpiry {
			for _, where := range expiryPlaces(r, h.Session) {
				note(string(h.Kind), where)
			}
			if h.LiveCopies == 1 {
				note(string(h.Kind), "probe between copies' expiry")
			}
			continue
		}
		for _, rq := range r.Requests {
			note(string(h.Kind), place(rq, h.Start))
			if h.End > h.Start {
				note(string(h.Kind)+" heal", place(rq, h.End))
			}
		}
	}
}

// Print writes the coverage: one line per fault kind, its places by
// number of seeds.
func (c *Coverage) Print(w io.Writer) {
	fmt.Fprintf(w, "coverage over %d seeds (seeds with a fault of the kind striking a request at that place):\n", c.Seeds)
	var kinds []string
	for k := range c.Hits {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	for _, k := range kinds {
		places := c.Hits[k]
		var names []string
		for p := range places {
			if p != "any" {
				names = append(names, p)
			}
		}
		slices.SortFunc(names, func(a, b string) int {
			if d := places[b] - places[a]; d != 0 {
				return d
			}
			return strings.Compare(a, b)
		})
		parts := make([]string, len(names))
		for i, n := range names {
			parts[i] = fmt.Sprintf("%s %d", n, places[n])
		}
		fmt.Fprintf(w, "  %-16s %4d seeds: %s\n", k, places["any"], strings.Join(parts, ", "))
	}
}

// Count returns how many seeds had kind strike at place.
func (c *Coverage) Count(kind, place string) int { return c.Hits[kind][place] }

// expiryPlaces names what the requests on session s (short own timeout)
// met: "read after idle" (a read more than half its timeout after the
// last operation that surely set its expiry, before it could expire),
// "read in rounding" (between its timeout and the store's rounding: it
// may or may not be there), "read past expiry" (a violation), "gone in
// rounding", "gone past expiry" (found absent, correctly), "gone early"
// (a loss).
func expiryPlaces(r *Result, s int) []string {
	timeout := r.Timeouts[s]
	var all []*Request
	for _, rq := range append(slices.Clone(r.Requests), r.Finals...) {
		if rq.Session == s {
			all = append(all, rq)
		}
	}
	var out []string
	for _, rq := range all {
		at, ok := readAt(rq)
		switch {
		case errors.Is(rq.Err, provider.ErrNotFound):
			switch {
			case rq.Call > goneAfter(r, all, rq.Call, timeout):
				out = append(out, "gone past expiry")
			case rq.Ret < aliveUntil(r, all, rq.Call, timeout):
				out = append(out, "gone early")
			default:
				out = append(out, "gone in rounding")
			}
		case rq.Seen && ok:
			alive := aliveUntil(r, all, at, timeout)
			switch {
			case at > goneAfter(r, all, at, timeout):
				out = append(out, "read past expiry")
			case at >= alive:
				out = append(out, "read in rounding")
			case at-(alive-timeout) > timeout/2:
				out = append(out, "read after idle")
			}
		}
	}
	return out
}
