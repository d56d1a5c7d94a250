package mcserver_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sessionlock/sessionlock/internal/mcserver"
)

// roundTrip sends one command to addr and returns the first reply line.
func roundTrip(t *testing.T, addr, cmd string) (string, error) {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return "", err
	}
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := fmt.Fprint(nc, cmd); err != nil {
		return "", err
	}
	line, err := bufio.NewReader(nc).ReadString('\n')
	return strings.TrimSpace(line), err
}

func TestStartAnswersAndCounts(t *testing.T) {
	srv := mcserver.StartForTest(t, 1, mcserver.Config{})[0]
	ctx := context.Background()
	require.True(t, strings.HasPrefix(srv.Addr(), "127.0.0.1:"))

	before, err := srv.Stats(ctx)
	require.NoError(t, err)
	line, err := roundTrip(t, srv.Addr(), "set k 0 60 1\r\nx\r\n")
	require.NoError(t, err)
	require.Equal(t, "STORED", line)
	line, err = roundTrip(t, srv.Addr(), "get k\r\n")
	require.NoError(t, err)
	require.Equal(t, "VALUE k 0 1", line)

	after, err := srv.Stats(ctx)
	require.NoError(t, err)
	require.Equal(t, before.Uint("cmd_set")+1, after.Uint("cmd_set"))
	require.Equal(t, before.Uint("cmd_get")+1, after.Uint("cmd_get"))
	require.NotEmpty(t, after["version"])

	require.NoError(t, srv.FlushAll(ctx))
	line, err = roundTrip(t, srv.Addr(), "get k\r\n")
	require.NoError(t, err)
	require.Equal(t, "END", line)
}

func TestKillRestartComesBackEmptyOnSamePort(t *testing.T) {
	srv := mcserver.StartForTest(t, 1, mcserver.Config{})[0]
	addr := srv.Addr()
	_, err := roundTrip(t, addr, "set k 0 60 1\r\nx\r\n")
	require.NoError(t, err)

	srv.Kill()
	require.False(t, srv.Running())
	_, err = roundTrip(t, addr, "version\r\n")
	require.Error(t, err, "a killed server must refuse connections")

	require.NoError(t, srv.Restart(context.Background()))
	require.True(t, srv.Running())
	require.Equal(t, addr, srv.Addr())
	line, err := roundTrip(t, addr, "get k\r\n")
	require.NoError(t, err)
	require.Equal(t, "END", line, "a restarted server is empty")

	// Restart of a running server also comes back empty.
	_, err = roundTrip(t, addr, "set k 0 60 1\r\nx\r\n")
	require.NoError(t, err)
	require.NoError(t, srv.Restart(context.Background()))
	line, err = roundTrip(t, addr, "get k\r\n")
	require.NoError(t, err)
	require.Equal(t, "END", line)
}

func TestPauseResume(t *testing.T) {
	srv := mcserver.StartForTest(t, 1, mcserver.Config{})[0]
	require.NoError(t, srv.Pause())
	nc, err := net.DialTimeout("tcp", srv.Addr(), time.Second)
	require.NoError(t, err) // the kernel still accepts
	_ = nc.SetDeadline(time.Now().Add(100 * time.Millisecond))
	_, err = fmt.Fprint(nc, "version\r\n")
	require.NoError(t, err)
	_, err = bufio.NewReader(nc).ReadString('\n')
	var ne net.Error
	require.ErrorAs(t, err, &ne)
	require.True(t, ne.Timeout(), "a paused server answers nothing")
	nc.Close()

	require.NoError(t, srv.Resume())
	line, err := roundTrip(t, srv.Addr(), "version\r\n")
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(line, "VERSION "))

	// Kill ends a paused process too.
	require.NoError(t, srv.Pause())
	srv.Kill()
	require.Error(t, srv.Pause())
}

func TestStartNDistinctPortsAndStop(t *testing.T) {
	servers := mcserver.StartForTest(t, 3, mcserver.Config{MemoryMB: 16, MaxItemSize: 2 << 20})
	addrs := mcserver.Addrs(servers)
	seen := map[string]bool{}
	for _, a := range addrs {
		require.False(t, seen[a])
		seen[a] = true
	}
	st, err := servers[0].Stats(context.Background())
	require.NoError(t, err)
	require.Equal(t, uint64(16<<20), st.Uint("limit_maxbytes"))
	big := strings.Repeat("x", 3<<19) // 1.5 MiB: over memcached's default limit
	line, err := roundTrip(t, addrs[0], fmt.Sprintf("set big 0 60 %d\r\n%s\r\n", len(big), big))
	require.NoError(t, err)
	require.Equal(t, "STORED", line, "MaxItemSize is passed as -I")

	for _, s := range servers {
		s.Stop()
		s.Stop() // idempotent
		_, err := roundTrip(t, s.Addr(), "version\r\n")
		require.Error(t, err)
	}
}

func TestMissingBinary(t *testing.T) {
	_, err := mcserver.Start(context.Background(), mcserver.Config{Binary: "no-such-memcached-binary"})
	require.ErrorIs(t, err, mcserver.ErrNoBinary)
}

func TestBadArgumentsFailFast(t *testing.T) {
	if _, err := exec.LookPath("memcached"); err != nil {
		t.Skip(mcserver.SkipMessage)
	}
	start := time.Now()
	_, err := mcserver.Start(context.Background(), mcserver.Config{Args: []string{"--no-such-flag"}})
	require.Error(t, err)
	require.False(t, errors.Is(err, mcserver.ErrNoBinary))
	require.Less(t, time.Since(start), mcserver.DefaultStartTimeout, "an exiting process is noticed, not waited out")
}

func TestSkipsWithoutBinary(t *testing.T) {
	t.Setenv("PATH", t.TempDir()) // a PATH without memcached
	t.Setenv(mcserver.EnvRequire, "")
	var inner *testing.T
	t.Run("inner", func(t *testing.T) {
		inner = t
		mcserver.StartForTest(t, 1, mcserver.Config{})
		t.Fatal("not reached: StartForTest skips")
	})
	require.True(t, inner.Skipped())
}
