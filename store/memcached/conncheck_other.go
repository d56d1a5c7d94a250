//go:build !unix

package memcached

import "net"

// connCheck does not check connections on this system (see
// conncheck_unix.go).
func connCheck(net.Conn) error { return nil }

// replyReady is never sure on this system (see conncheck_unix.go): the
// witness touch's reply is read on a goroutine.
func replyReady(*metaConn) bool { return false }
