//go:build !unix

package memcached

import "net"

// connCheck does not check connections on this system (see
// conncheck_unix.go).
func connCheck(net.Conn) error { return nil }
