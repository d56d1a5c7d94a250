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

// faultStyle is how reports show one kind of fault.
type faultStyle struct {
	Label string // legend text
	Color string // CSS colour of its markers
}

// faultStyles maps the Fault* kinds (and kinds other work adds, such as a
// Redis master kill) to their labels and colours. A kind missing here is
// still drawn, labelled by its name, in fallbackFaultColor.
var faultStyles = map[string]faultStyle{
	FaultKillNode:    {"node killed", "#c0392b"},
	FaultRestartNode: {"node restarted", "#27ae60"},
	FaultFlush:       {"cache flushed", "#8e44ad"},
	FaultCrashHolder: {"lock holder crashed", "#d35400"},
	FaultError:       {"fault injection failed", "#7f8c8d"},
	"pause_node":     {"node paused", "#2980b9"},
	"partition":      {"network partition", "#16a085"},
	"pause_app":      {"app server paused", "#f39c12"},
	"kill_master":    {"Redis master killed", "#e74c3c"},
}

// fallbackFaultColor draws kinds faultStyles does not know.
const fallbackFaultColor = "#34495e"

// styleOf returns the style of a fault kind, with a fallback for kinds
// faultStyles does not list: the kind's name, underscores as spaces.
func styleOf(kind string) faultStyle {
	if s, ok := faultStyles[kind]; ok {
		return s
	}
	label := strings.ReplaceAll(kind, "_", " ")
	if label == "" {
		label = "fault"
	}
	return faultStyle{Label: label, Color: fallbackFaultColor}
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
