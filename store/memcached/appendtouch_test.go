package memcached

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

// TestAppendTouchFindsKeyGone: an append that memcached stored but whose
// touch, the next command, found the key gone (the item expired between
// the two: memcached's append keeps the item's expiry, and its clock may
// tick past it between two commands of one round trip) is reported as
// the key gone (errMiss), not as done: the TTL was set on nothing, and
// the value appended went with its key. Before, it succeeded with no
// token touched, and the provider took a lock on a record already gone
// (stress/sim TestSimOneCopy seed 31: "record vanished while lock … was
// held" 6 ms after the acquire). Pooled and pipelined connections; the
// broken variant (SetAppendTouchLostOK) must fail the check.
func TestAppendTouchFindsKeyGone(t *testing.T) {
	for _, pipelined := range []bool{false, true} {
		for _, broken := range []bool{false, true} {
			t.Run(fmt.Sprintf("pipelined=%v/broken=%v", pipelined, broken), func(t *testing.T) {
				err := appendTouchFindsKeyGone(t, pipelined, broken)
				switch {
				case broken && err == nil:
					t.Fatal("the broken variant passed the check")
				case !broken && err != nil:
					t.Fatal(err)
				}
			})
		}
	}
}

func appendTouchFindsKeyGone(t *testing.T, pipelined, broken bool) error {
	f := newFakeMC()
	f.items["k"] = []byte("v")
	f.expire = "k"
	c := &metaClient{addr: "fake:1", timeout: time.Minute, maxIdle: 1, dial: f.dial, touchLostOK: broken}
	if pipelined {
		c.pipe = newPipeline(c, 1)
	}
	t.Cleanup(c.close)
	newCAS, touched, err := c.appendTouch(t.Context(), "k", []byte("d"), 1, 6)
	if !errors.Is(err, errAppendedGone) || !errors.Is(err, errMiss) {
		return fmt.Errorf("append stored, touch found the key gone: appendTouch = (%d, %d, %v), want errAppendedGone (a miss)", newCAS, touched, err)
	}
	if touched != 0 {
		return fmt.Errorf("appendTouch = (%d, %d, %v), want no touched token", newCAS, touched, err)
	}
	// The connection stayed in step: the next command gets its own reply.
	if _, err := c.getOne(t.Context(), "k", 0); !errors.Is(err, errMiss) {
		return fmt.Errorf("get after: %v, want errMiss", err)
	}
	return nil
}
