package couchbase

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"sync"

	"github.com/sessionlock/sessionlock/provider"
	"github.com/sessionlock/sessionlock/record"
)

// Layout is how a value is laid out in a Couchbase document.
type Layout string

const (
	// LayoutBinary stores each value as it is, a binary document. It is
	// the default: the fewest bytes for reads and whole writes.
	LayoutBinary Layout = "binary"

	// LayoutSubdoc stores a session record (package record) as a JSON
	// document with its frame (header and checksum, record.Split) and its
	// values apart, both base64:
	//
	//	{"h":"<record frame>","v":"<values>"}
	//
	// A change that leaves the values as they are (taking, renewing or
	// releasing the lock, clearing an action flag) is written with a
	// sub-document MutateIn of "h" alone, under the document's CAS, so the
	// session's values do not cross the network again. Reads and whole
	// writes move a third more bytes (base64). Values that are not version
	// 1 records are stored as binary documents. The store recognises such a
	// change for keys it read or wrote recently (Config.HeaderCacheSize).
	LayoutSubdoc Layout = "subdoc"
)

// doc is a Couchbase document body and its format.
type doc struct {
	body []byte
	json bool // a LayoutSubdoc document, else binary
}

// subdocJSON is the JSON form of a LayoutSubdoc document. encoding/json
// reads the base64 strings into byte slices.
type subdocJSON struct {
	H []byte `json:"h"`
	V []byte `json:"v"`
}

// encodeDoc returns the document that stores value in layout l.
func encodeDoc(value []byte, l Layout) doc {
	if l != LayoutSubdoc {
		return doc{body: value}
	}
	h, v, ok := record.Split(value)
	if !ok {
		return doc{body: value}
	}
	enc := base64.StdEncoding
	b := make([]byte, 0, 14+enc.EncodedLen(len(h))+enc.EncodedLen(len(v)))
	b = append(b, `{"h":"`...)
	b = enc.AppendEncode(b, h)
	b = append(b, `","v":"`...)
	b = enc.AppendEncode(b, v)
	b = append(b, `"}`...)
	return doc{body: b, json: true}
}

// headerValue is the "h" field of value, as the JSON string MutateIn sends.
func headerValue(value []byte) (string, bool) {
	h, _, ok := record.Split(value)
	if !ok {
		return "", false
	}
	return base64.StdEncoding.EncodeToString(h), true
}

// decodeDoc returns the value a document stores, in either layout.
// Errors wrap provider.ErrCorrupt.
func decodeDoc(d doc) ([]byte, error) {
	if !d.json {
		return d.body, nil
	}
	var j subdocJSON
	if err := json.Unmarshal(d.body, &j); err != nil {
		return nil, fmt.Errorf("couchbase: %w: JSON document is not a session record: %v", provider.ErrCorrupt, err)
	}
	value, err := record.Join(j.H, j.V)
	if err != nil {
		return nil, fmt.Errorf("couchbase: record header field: %w", err)
	}
	return value, nil
}

// valuesDigest identifies the values of a version 1 record, or ok false.
func valuesDigest(value []byte) (digest [sha256.Size]byte, ok bool) {
	_, v, ok := record.Split(value)
	if !ok {
		return digest, false
	}
	return sha256.Sum256(v), true
}

// sameValues reports whether a and b are version 1 records with the same
// values (their headers may differ).
func sameValues(a, b []byte) bool {
	_, va, ok := record.Split(a)
	if !ok {
		return false
	}
	_, vb, ok := record.Split(b)
	return ok && bytes.Equal(va, vb)
}

// version is what the store last saw of a LayoutSubdoc document: its CAS
// and the digest of its values.
type version struct {
	cas    uint64
	digest [sha256.Size]byte
}

// versionCache remembers, per key, the version of the LayoutSubdoc
// document this store last read or wrote. A CompareAndSwap whose CAS is the
// remembered one and whose values have the remembered digest changes only
// the header, so it is sent as a MutateIn of "h": the server's CAS check
// proves the document still holds exactly those values.
type versionCache struct {
	mu  sync.Mutex
	max int
	m   map[string]version
}

func newVersionCache(max int) *versionCache {
	if max <= 0 {
		return nil
	}
	return &versionCache{max: max, m: make(map[string]version)}
}

// remember records that key holds value (a LayoutSubdoc document) at cas.
func (c *versionCache) remember(key string, cas uint64, value []byte) {
	if c == nil {
		return
	}
	dg, ok := valuesDigest(value)
	if !ok {
		c.forget(key)
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[key]; !ok && len(c.m) >= c.max {
		for k := range c.m { // evict an arbitrary entry
			delete(c.m, k)
			break
		}
	}
	c.m[key] = version{cas: cas, digest: dg}
}

// unchanged reports whether writing value at cas leaves the values of the
// remembered version of key as they are.
func (c *versionCache) unchanged(key string, cas uint64, value []byte) bool {
	if c == nil {
		return false
	}
	dg, ok := valuesDigest(value)
	if !ok {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.m[key]
	return ok && v.cas == cas && v.digest == dg
}

func (c *versionCache) forget(key string) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.m, key)
}

func (c *versionCache) len() int {
	if c == nil {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}
