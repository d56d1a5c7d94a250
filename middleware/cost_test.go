package middleware

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestStoreOpsPerRequest pins what each mode costs in store operations for
// an existing session, as README.md states it: Off 0; ReadOnly 2 (get,
// touch); Exclusive 3 (get+CAS to lock, then a CAS to release or commit
// from the lock's record and the token its write returned);
// LockFree 2 when it changes nothing (get, touch) and 4 when it changes a
// value (plus get+CAS to merge). A read-only request that pops a value adds
// the get+CAS of its conditional delete.
func TestStoreOpsPerRequest(t *testing.T) {
	type ops struct{ gets, cases, touches, adds int64 }
	for _, tc := range []struct {
		mode   Mode
		change string // "", "set" or "pop"
		want   ops
	}{
		{Off, "", ops{}},
		{ReadOnly, "", ops{gets: 1}},
		{ReadOnly, "pop", ops{gets: 2, cases: 1}},
		{Exclusive, "", ops{gets: 1, cases: 2}},
		{Exclusive, "set", ops{gets: 1, cases: 2}},
		{LockFree, "", ops{gets: 1}},
		{LockFree, "set", ops{gets: 2, cases: 1}},
	} {
		t.Run(fmt.Sprintf("%v-%s", tc.mode, tc.change), func(t *testing.T) {
			e := newEnv(t, envOptions{})
			id := e.create(map[string]any{"n": 1, "flash": "x"}, 0)
			c := e.count
			g, k, tt, a := c.Gets.Load(), c.CASes.Load(), c.Touches.Load(), c.Adds.Load()
			res := serve(e.m.WithMode(tc.mode, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				s := FromContext(r.Context())
				switch tc.change {
				case "set":
					require.NoError(t, s.Set("n", 2))
				case "pop":
					_, err := s.Pop("flash", new(string))
					require.NoError(t, err)
				}
			})), request("GET", "/", id))
			require.Equal(t, http.StatusOK, res.Code)
			got := ops{c.Gets.Load() - g, c.CASes.Load() - k, c.Touches.Load() - tt, c.Adds.Load() - a}
			require.Equal(t, tc.want, got)
		})
	}
}
