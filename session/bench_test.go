package session_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/sessionlock/sessionlock/session"
)

type benchCart struct {
	ID      int64
	Owner   string
	Items   []benchItem
	Created time.Time
}

type benchItem struct {
	SKU   string
	Qty   int
	Price float64
}

// benchValues returns a session of 10 values that encodes to about 2 KB.
func benchValues(b testing.TB) *session.Values {
	b.Helper()
	v := session.NewValues(nil)
	for i := range 10 {
		var val any
		switch i % 3 {
		case 0:
			val = benchCart{
				ID:      int64(i) << 40,
				Owner:   fmt.Sprintf("user-%d@example.com", i),
				Items:   []benchItem{{"SKU-0001", 2, 9.99}, {"SKU-0002", 1, 19.5}},
				Created: time.Date(2025, 1, 2, 3, 4, 5, 6, time.UTC),
			}
		case 1:
			val = strings.Repeat("lorem ipsum ", 30)
		case 2:
			val = map[string]int{"a": i, "bb": i * 2, "ccc": i * 3, "dddd": i * 4, "eeeee": i * 5}
		}
		if err := v.Set(fmt.Sprintf("key-%02d", i), val); err != nil {
			b.Fatal(err)
		}
	}
	return v
}

func BenchmarkEncode(b *testing.B) {
	v := benchValues(b)
	data, err := v.Encode(0)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Encode(0); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecode(b *testing.B) {
	data, err := benchValues(b).Encode(0)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := session.DecodeValues(data, nil, 0); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkGetTyped(b *testing.B) {
	v := benchValues(b)
	b.ReportAllocs()
	for b.Loop() {
		c, ok, err := session.Get[benchCart](v, "key-00")
		if err != nil || !ok || len(c.Items) != 2 {
			b.Fatal("bad read", err)
		}
	}
}

func TestBenchSessionSize(t *testing.T) {
	data, err := benchValues(t).Encode(0)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("bench session: %d bytes", len(data))
	if len(data) < 1800 || len(data) > 2300 {
		t.Fatalf("bench session is %d bytes, want about 2 KB", len(data))
	}
}
