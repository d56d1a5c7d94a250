package session

import (
	"crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"
)

// IDLength is the length of every session id: 32 characters of lowercase
// RFC 4648 base32 (a-z, 2-7) without padding, encoding 160 random bits.
const IDLength = 32

// idBytes is the number of random bytes behind an id: 20 bytes = 160 bits,
// which base32 encodes into exactly IDLength characters with no spare bits.
const idBytes = 20

// idAlphabet is RFC 4648 base32 in lowercase.
const idAlphabet = "abcdefghijklmnopqrstuvwxyz234567"

// idEncoding never changes after package initialisation.
var idEncoding = base32.NewEncoding(idAlphabet).WithPadding(base32.NoPadding)

// ErrInvalidID is wrapped by every error reporting a malformed session id.
var ErrInvalidID = errors.New("session: invalid session id")

// NewID returns a new random session id of IDLength characters, made from
// 160 bits of crypto/rand. The id is safe in URLs, cookies and store keys.
func NewID() (string, error) {
	var b [idBytes]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("session: generating session id: %w", err)
	}
	return idEncoding.EncodeToString(b[:]), nil
}

// ValidID reports whether id has the exact shape NewID produces: IDLength
// characters, each in a-z or 2-7. It is the one check every id passes before
// it becomes part of a store key.
func ValidID(id string) bool {
	if len(id) != IDLength {
		return false
	}
	for i := 0; i < len(id); i++ {
		if !validIDByte(id[i]) {
			return false
		}
	}
	return true
}

func validIDByte(c byte) bool {
	return ('a' <= c && c <= 'z') || ('2' <= c && c <= '7')
}

// idEchoLen is how much of a bad id CheckID quotes in its error.
const idEchoLen = 8

// CheckID returns nil if id is valid (see ValidID), otherwise an error
// wrapping ErrInvalidID. The error quotes at most the first few bytes of id,
// so a hostile cookie cannot flood the logs.
func CheckID(id string) error {
	if len(id) != IDLength {
		return fmt.Errorf("%w: length %d, want %d (starts %s)", ErrInvalidID, len(id), IDLength, idPrefix(id))
	}
	for i := 0; i < len(id); i++ {
		if !validIDByte(id[i]) {
			return fmt.Errorf("%w: byte %d is not in [a-z2-7] (starts %s)", ErrInvalidID, i, idPrefix(id))
		}
	}
	return nil
}

// idPrefix quotes the first idEchoLen bytes of id.
func idPrefix(id string) string {
	if len(id) > idEchoLen {
		return fmt.Sprintf("%q...", id[:idEchoLen])
	}
	return fmt.Sprintf("%q", id)
}
