package session_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/session"
)

func TestNewIDShape(t *testing.T) {
	for range 100 {
		id, err := session.NewID()
		require.NoError(t, err)
		require.Len(t, id, session.IDLength)
		for i, c := range id {
			require.Truef(t, ('a' <= c && c <= 'z') || ('2' <= c && c <= '7'), "id %q byte %d = %q", id, i, c)
		}
		require.True(t, session.ValidID(id))
		require.NoError(t, session.CheckID(id))
	}
}

func TestNewIDUnique(t *testing.T) {
	const n = 100000
	seen := make(map[string]struct{}, n)
	for range n {
		id, err := session.NewID()
		require.NoError(t, err)
		_, dup := seen[id]
		require.Falsef(t, dup, "duplicate id %q", id)
		seen[id] = struct{}{}
	}
}

// TestNewIDUsesWholeAlphabet checks that ids are spread over all 32
// characters at every position, which a constant or biased source would not do.
func TestNewIDUsesWholeAlphabet(t *testing.T) {
	var seen [session.IDLength]map[rune]bool
	for i := range seen {
		seen[i] = make(map[rune]bool)
	}
	for range 2000 {
		id, err := session.NewID()
		require.NoError(t, err)
		for i, c := range id {
			seen[i][c] = true
		}
	}
	for i := range seen {
		require.Lenf(t, seen[i], 32, "position %d", i)
	}
}

func TestValidIDRejects(t *testing.T) {
	good := strings.Repeat("a", session.IDLength)
	require.True(t, session.ValidID(good))
	require.True(t, session.ValidID("abcdefghijklmnopqrstuvwxyz234567"))

	bad := map[string]string{
		"empty":          "",
		"short":          good[:session.IDLength-1],
		"long":           good + "a",
		"uppercase":      "A" + good[1:],
		"all uppercase":  strings.ToUpper(good),
		"padding":        good[:session.IDLength-1] + "=",
		"slash":          good[:10] + "/" + good[11:],
		"plus":           good[:10] + "+" + good[11:],
		"NUL":            good[:10] + "\x00" + good[11:],
		"space":          good[:10] + " " + good[11:],
		"trailing space": good[:session.IDLength-1] + " ",
		"digit 0":        good[:10] + "0" + good[11:],
		"digit 1":        good[:10] + "1" + good[11:],
		"digit 8":        good[:10] + "8" + good[11:],
		"digit 9":        good[:10] + "9" + good[11:],
		"unicode":        good[:session.IDLength-2] + "é",
		"unicode long":   good[:session.IDLength-1] + "é",
		"high byte":      good[:10] + "\xff" + good[11:],
		"colon":          good[:10] + ":" + good[11:],
		"newline":        good[:session.IDLength-1] + "\n",
	}
	for name, id := range bad {
		t.Run(name, func(t *testing.T) {
			require.False(t, session.ValidID(id))
			err := session.CheckID(id)
			require.Error(t, err)
			require.True(t, errors.Is(err, session.ErrInvalidID), "error %v does not wrap ErrInvalidID", err)
		})
	}
}

func TestCheckIDDoesNotEchoInput(t *testing.T) {
	secret := "aaaaaaaa" + strings.Repeat("SECRETPAYLOAD", 100)
	err := session.CheckID(secret)
	require.ErrorIs(t, err, session.ErrInvalidID)
	require.NotContains(t, err.Error(), "SECRET")
	require.Less(t, len(err.Error()), 120)

	err = session.CheckID(strings.Repeat("a", 20) + "ZZZZZZZZZZZZ")
	require.ErrorIs(t, err, session.ErrInvalidID)
	require.NotContains(t, err.Error(), "ZZ")
}
