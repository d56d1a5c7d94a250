package memcached

import (
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/store/memcached/internal/envelope"
)

// TestParseDumpLine: memcached 1.6.18's `lru_crawler metadump` lines (key
// URL-encoded: "a%20b" is listed as "a%2520b").
func TestParseDumpLine(t *testing.T) {
	d, err := parseDumpLine([]byte("key=a%2520b exp=1796068105 la=1796068005 cas=2 fetch=no cls=1 size=70"))
	require.NoError(t, err)
	require.Equal(t, dumpLine{key: []byte("a%20b"), exp: 1796068105, size: 70}, d)
	d, err = parseDumpLine([]byte("key=foo exp=-1 la=1796068005 cas=1 fetch=no cls=1 size=69"))
	require.NoError(t, err)
	require.Equal(t, dumpLine{key: []byte("foo"), exp: -1, size: 69}, d)
	d, err = parseDumpLine([]byte("key=sl%3Aab%2fc exp=1 la=1 cas=1 fetch=no cls=1 size=3"))
	require.NoError(t, err)
	require.Equal(t, "sl:ab/c", string(d.key))
	for _, bad := range []string{"", "key= exp=1 size=2", "key=x exp=1", "key=%zz exp=1 size=3", "key=a%2 exp=1 size=3", "key=a% exp=1 size=3", "exp=1 size=3"} {
		_, err := parseDumpLine([]byte(bad))
		require.Error(t, err, bad)
	}
}

// TestKindOf: an item's size (memcached's header of 56 bytes, the key
// and its NUL, the value and its CRLF, 4 bytes of nonzero client flags)
// says blank, witness or other.
func TestKindOf(t *testing.T) {
	const nkey = 10
	require.Equal(t, sizedBlank, kindOf(-1, nkey, 56+nkey+1+2))
	require.Equal(t, sizedWitness, kindOf(-1, nkey, 56+nkey+1+envelope.Size+2+4))
	require.Equal(t, sizedWitness, kindOf(48, nkey, 48+nkey+1+envelope.Size+2+4))
	require.Equal(t, sizedOther, kindOf(-1, nkey, 56+nkey+1+envelope.Size+20+2+4))
}

// TestCandidateIndex: the scan's candidate index of a node (no
// allocation) is its position in candidates, or -1 when it is none.
func TestCandidateIndex(t *testing.T) {
	s, err := New(Config{Nodes: []string{"127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3", "127.0.0.1:4", "127.0.0.1:5"},
		Backup: BackupWitness, RepairEvery: -1})
	require.NoError(t, err)
	defer s.Close()
	for i := range 2000 {
		key := "sl:" + strconv.Itoa(i)
		cs := s.wit.candidates(key)
		for _, n := range s.nodes {
			want := -1
			for j, c := range cs {
				if c == n {
					want = j
				}
			}
			require.Equal(t, want, s.wit.candidateIndex([]byte(key), n), key)
		}
	}
}
