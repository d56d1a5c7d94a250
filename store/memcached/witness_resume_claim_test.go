package memcached

import (
	"testing"
	"time"

	"github.com/sessionlock/sessionlock/store/memcached/internal/envelope"
)

// Review-resume-4 N3 (pure logic of the list): two visits of one key in
// a process (the loop and a scan visitor) must not resume it at once, and
// a visit whose read came before another's resumption must act on the
// entry as that one left it (its mark "unknown at the primary, onto this
// blank"), not on what it saw before: the later visit's put-back erased
// the mark, and a Delete then let the session be served again. claimResume
// gives one resumption a key at a time and the entry as it is once
// claimed.
func TestClaimResume(t *testing.T) {
	// The broken variant (resumeUnclaimed: the code before claimed
	// nothing) grants the second claim.
	broken := newClaimRepairer(true)
	id := envelope.Identity{P: 0, Q: 1, V: 1, Nonce: 7}
	broken.addUnknown("k", unknownRecord{id: id}, time.Now().Add(time.Minute))
	_, _, _ = broken.claimResume("k", id)
	if _, _, ok := broken.claimResume("k", id); !ok {
		t.Fatal("broken variant: the second claim was refused; this test would not see the defect")
	}

	r := newClaimRepairer(false)
	r.addUnknown("k", unknownRecord{id: id}, time.Now().Add(time.Minute))

	first, release, ok := r.claimResume("k", id)
	if !ok || first.atP {
		t.Fatalf("first claim: ok %v, record %+v; want the listed record, unknown at the secondary", ok, first)
	}
	if _, _, ok := r.claimResume("k", id); ok {
		t.Fatal("a second resumption of the key was claimed while the first runs")
	}
	// The first resumption records itself as unknown at the primary
	// before its CAS, then ends.
	marked := unknownRecord{id: id, atP: true, p: copyToken{cand: 0, cas: 42, inc: 1}}
	r.updateUnknown("k", marked)
	release()
	second, release2, ok := r.claimResume("k", id)
	if !ok || second != marked {
		t.Fatalf("claim after the first ended: ok %v, record %+v; want %+v", ok, second, marked)
	}
	release2()
	if _, _, ok := r.claimResume("k", envelope.Identity{Nonce: 8}); ok {
		t.Fatal("a record not listed was claimed")
	}
	if _, _, ok := r.claimResume("k", id); !ok {
		t.Fatal("a refused claim (not listed) left the key claimed")
	}
}

// newClaimRepairer is a repairer with no Store behind it (its list only),
// the broken variant resumeUnclaimed when unclaimed.
func newClaimRepairer(unclaimed bool) *repairer {
	s := &Store{}
	s.hooks.resumeUnclaimed = unclaimed
	return &repairer{w: &witness{s: s}, unknowns: make(map[string]unknownAdd), claimed: make(map[string]bool)}
}
