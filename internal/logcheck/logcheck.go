// Package logcheck is a slog.Handler for tests that fails the test binary
// when a whole session id reaches a log line: message, attributes, groups
// and error strings alike. Install it in the TestMain of every package
// that logs:
//
//	func TestMain(m *testing.M) { os.Exit(logcheck.Main(m)) }
//
// and wrap the handlers of the loggers tests build with Wrap.
package logcheck

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
)

// idPattern matches a whole session id: 32 characters of [a-z2-7]
// (session.IDLength, base32) not inside a longer such run.
var idPattern = regexp.MustCompile(`(^|[^a-z2-7])[a-z2-7]{32}($|[^a-z2-7])`)

// leaks holds the log lines that carried a whole session id.
var (
	mu    sync.Mutex
	leaks []string
)

// Leaks returns the offending log lines seen so far.
func Leaks() []string {
	mu.Lock()
	defer mu.Unlock()
	return append([]string(nil), leaks...)
}

// Truncate forgets the leaks after the first n (for a test that leaks on
// purpose: n = len(Leaks()) before it).
func Truncate(n int) {
	mu.Lock()
	defer mu.Unlock()
	if n < len(leaks) {
		leaks = leaks[:n]
	}
}

// Main installs a checking default logger, runs the tests and returns
// their exit code, 1 when a whole session id reached any checked log.
func Main(m *testing.M) int {
	slog.SetDefault(slog.New(Wrap(slog.Default().Handler())))
	code := m.Run()
	if l := Leaks(); len(l) > 0 {
		fmt.Fprintf(os.Stderr, "logcheck: %d log lines carried a whole session id, first: %s\n", len(l), l[0])
		if code == 0 {
			code = 1
		}
	}
	return code
}

// Wrap returns h checking every record that reaches it.
func Wrap(h slog.Handler) slog.Handler { return &handler{next: h} }

type handler struct {
	next   slog.Handler
	static []string // text of the attributes added by WithAttrs
}

func (h *handler) Enabled(ctx context.Context, l slog.Level) bool { return true }

func (h *handler) Handle(ctx context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(r.Message)
	for _, s := range h.static {
		b.WriteString(" " + s)
	}
	r.Attrs(func(a slog.Attr) bool {
		b.WriteString(" " + attrText(a))
		return true
	})
	if line := b.String(); idPattern.MatchString(line) {
		mu.Lock()
		leaks = append(leaks, line)
		mu.Unlock()
	}
	if !h.next.Enabled(ctx, r.Level) {
		return nil
	}
	return h.next.Handle(ctx, r)
}

func (h *handler) WithAttrs(as []slog.Attr) slog.Handler {
	n := &handler{next: h.next.WithAttrs(as), static: append([]string(nil), h.static...)}
	for _, a := range as {
		n.static = append(n.static, attrText(a))
	}
	return n
}

func (h *handler) WithGroup(name string) slog.Handler {
	return &handler{next: h.next.WithGroup(name), static: h.static}
}

func attrText(a slog.Attr) string {
	v := a.Value.Resolve()
	if v.Kind() == slog.KindGroup {
		var parts []string
		for _, g := range v.Group() {
			parts = append(parts, attrText(g))
		}
		return a.Key + "={" + strings.Join(parts, " ") + "}"
	}
	return a.Key + "=" + v.String()
}
