//go:build unix

package memcached

import (
	"errors"
	"io"
	"net"
	"syscall"
)

// errUnexpectedData: an idle connection had bytes to read.
var errUnexpectedData = errors.New("memcached: unexpected data on an idle connection")

// connCheck reports whether an idle connection is still usable: a
// non-blocking read finds nothing to read (nil), or the end its peer sent
// (io.EOF: the node closed it, e.g. its process was killed or restarted),
// an error, or bytes no request asked for. A connection that is not a
// socket is not checked.
func connCheck(nc net.Conn) error {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return err
	}
	var cerr error
	// Control, not Read: RawConn.Read fails at once, without calling f,
	// on a connection whose last deadline has passed (every idle pooled
	// connection older than Timeout), which would throw the whole idle
	// pool away. The descriptor is non-blocking (the runtime's poller).
	err = rc.Control(func(fd uintptr) {
		var buf [1]byte
		n, err := syscall.Read(int(fd), buf[:])
		switch {
		case n == 0 && err == nil:
			cerr = io.EOF
		case n > 0:
			cerr = errUnexpectedData
		case errors.Is(err, syscall.EAGAIN), errors.Is(err, syscall.EWOULDBLOCK):
			cerr = nil
		default:
			cerr = err
		}
	})
	if err != nil {
		return err
	}
	return cerr
}

// replyReady reports whether bytes have come on cn that nothing has read
// yet (a peek, without waiting): wdoAll reads the witness touch's reply
// on the caller's goroutine when it is there already. A connection that
// is not a socket is never ready.
func replyReady(cn *metaConn) bool {
	if cn.rw.Reader.Buffered() > 0 {
		return true
	}
	sc, ok := cn.nc.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	ready := false
	// Control: a non-blocking peek (the descriptor is non-blocking), not a
	// wait for the poller as RawConn.Read would.
	_ = rc.Control(func(fd uintptr) {
		var buf [1]byte
		n, _, err := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK)
		ready = n > 0 && err == nil
	})
	return ready
}
