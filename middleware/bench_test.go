package middleware

import (
	"net/http"
	"testing"

	"github.com/sessionlock/sessionlock/session"
)

// BenchmarkRequest measures one request through the middleware on the
// memory store, per mode, for an existing session that the handler reads
// (and, where allowed, writes) and answers with a short body; Exclusive
// also without response buffering.
func BenchmarkRequest(b *testing.B) {
	for _, bc := range []struct {
		name string
		mode Mode
		cfg  Config
	}{
		{"exclusive", Exclusive, Config{}},
		{"exclusive-unbuffered", Exclusive, Config{Unbuffered: true}},
		{"readonly", ReadOnly, Config{}},
		{"lockfree", LockFree, Config{}},
		{"off", Off, Config{}},
	} {
		mode := bc.mode
		b.Run(bc.name, func(b *testing.B) {
			e := newEnv(b, envOptions{config: bc.cfg})
			id := e.create(map[string]any{"n": 0}, 0)
			h := e.m.WithMode(mode, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				s := FromContext(r.Context())
				if s == nil || s.ReadOnly() {
					return
				}
				n, _, _ := session.Get[int](s, "n")
				_ = s.Set("n", n+1)
				_, _ = w.Write([]byte(`{"ok":true}`))
			}))
			r := request("POST", "/", id)
			b.ReportAllocs()
			for b.Loop() {
				if w := serve(h, r); w.Code != http.StatusOK {
					b.Fatalf("status %d", w.Code)
				}
			}
		})
	}
}
