package memcached

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/store/memcached/internal/envelope"
)

// TestParseDumpLine: memcached 1.6.18's `lru_crawler metadump` lines (key
// URL-encoded: "a%20b" is listed as "a%2520b").
func TestParseDumpLine(t *testing.T) {
	d, err := parseDumpLine([]byte("key=a%2520b exp=1796068105 la=1796068005 cas=2 fetch=no cls=1 size=70"))
	require.NoError(t, err)
	require.Equal(t, dumpLine{key: "a%20b", exp: 1796068105, size: 70}, d)
	d, err = parseDumpLine([]byte("key=foo exp=-1 la=1796068005 cas=1 fetch=no cls=1 size=69"))
	require.NoError(t, err)
	require.Equal(t, dumpLine{key: "foo", exp: -1, size: 69}, d)
	for _, bad := range []string{"", "key= exp=1 size=2", "key=x exp=1", "key=%zz exp=1 size=3", "exp=1 size=3"} {
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
