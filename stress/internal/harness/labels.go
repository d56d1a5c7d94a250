package harness

import (
	"fmt"
	"strings"
)

// routeMode names the session mode of a route: exclusive, read-only or
// lock-free.
func routeMode(route string) string {
	ri, ok := routes[route]
	switch {
	case !ok:
		return "unknown mode"
	case ri.exclusive:
		return "exclusive"
	case ri.readOnly:
		return "read-only"
	}
	return "lock-free"
}

// faultStyle is how reports show one kind of fault: in one neutral family
// (dark greys, told apart by their line's pattern), so that no fault looks
// like a route's colour.
type faultStyle struct {
	Label string // legend text
	Color string // CSS colour of its markers: a dark grey
	Line  string // CSS border-style of its line: solid, dashed, dotted, double
}

// faultStyles maps the Fault* kinds (and kinds other work adds, such as a
// Redis master kill) to their labels, greys and line patterns. A kind
// missing here is still drawn, labelled by its name, in the fallback
// style.
var faultStyles = map[string]faultStyle{
	FaultKillNode:    {"node killed", "#111111", "solid"},
	FaultRestartNode: {"node restarted", "#111111", "dashed"},
	FaultFlush:       {"cache flushed", "#111111", "dotted"},
	FaultCrashHolder: {"lock holder crashed", "#111111", "double"},
	FaultError:       {"fault injection failed", "#8a8a8a", "dotted"},
	"pause_node":     {"node paused", "#4d4d4d", "dashed"},
	"partition":      {"network partition", "#4d4d4d", "dotted"},
	"pause_app":      {"app server paused", "#4d4d4d", "solid"},
	"kill_master":    {"Redis master killed", "#4d4d4d", "double"},
	"stall_replicas": {"Redis replicas stalled", "#4d4d4d", "dashed"},
}

// fallbackFault draws kinds faultStyles does not know.
var fallbackFault = faultStyle{Color: "#6b6b6b", Line: "solid"}

// styleOf returns the style of a fault kind, with a fallback for kinds
// faultStyles does not list: the kind's name, underscores as spaces.
func styleOf(kind string) faultStyle {
	if s, ok := faultStyles[kind]; ok {
		return s
	}
	st := fallbackFault
	st.Label = strings.ReplaceAll(kind, "_", " ")
	if st.Label == "" {
		st.Label = "fault"
	}
	return st
}

// swatch is the style's key in legends and tables: a short line drawn in
// its colour and pattern.
func (s faultStyle) swatch() string {
	return fmt.Sprintf("<i class=\"sw fault-sw\" style=\"border-top:3px %s %s\"></i>", s.Line, s.Color)
}

// describe is one line about a fault event, for the terminal and the
// reports' fault tables.
func (e Event) describe() string {
	s := fmt.Sprintf("[%s] ", styleOf(e.Kind).Label)
	if e.Missed {
		return s + "NOT REACHED: " + e.What
	}
	s += fmt.Sprintf("at %.0f ms", e.AtMs)
	if e.DurationMs > 0 {
		s += fmt.Sprintf(" for %.0f ms", e.DurationMs)
	}
	if e.Target != "" {
		s += " on " + e.Target
	}
	return s + ": " + e.What
}
