package harness

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestWireLog: with WireEnv and LogDirEnv set, a wrapped connection logs
// each write and read (quoted) and its close, and still exposes its socket
// (the memcached store's idle checks need it); with WireEnv unset nothing
// is opened.
func TestWireLog(t *testing.T) {
	dir := t.TempDir()
	t.Setenv(LogDirEnv, dir)
	t.Setenv(WireEnv, "")
	off, err := openWireLog("off.log")
	require.NoError(t, err)
	require.Nil(t, off)

	t.Setenv(WireEnv, "1")
	l, err := openWireLog("app-0-wire.log")
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		buf := make([]byte, 64)
		n, _ := c.Read(buf)
		_, _ = c.Write([]byte("HD c7\r\n"))
		_, _ = c.Read(buf[n:])
	}()
	nc, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	c := l.wrap(nc, "node-a")
	_, ok := c.(syscall.Conn)
	require.True(t, ok, "the wrapped connection hides its socket")
	_, err = c.Write([]byte("ms k 1 C5\r\nx\r\n"))
	require.NoError(t, err)
	buf := make([]byte, 64)
	n, err := c.Read(buf)
	require.NoError(t, err)
	require.Equal(t, "HD c7\r\n", string(buf[:n]))
	require.NoError(t, c.Close())
	require.NoError(t, l.Close())

	b, err := os.ReadFile(filepath.Join(dir, "app-0-wire.log"))
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	require.Len(t, lines, 4, string(b))
	for i, want := range []string{` c1 node-a dial "127.0.0.1:`, ` c1 node-a > "ms k 1 C5\r\nx\r\n"`, ` c1 node-a < "HD c7\r\n"`, ` c1 node-a close ""`} {
		require.Contains(t, lines[i], want)
	}
}
