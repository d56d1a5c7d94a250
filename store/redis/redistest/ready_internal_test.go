package redistest

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"
)

// TestReadyIsThisProcess: a server started for a port that another
// test's redis-server answers on is not ready because that one answers
// (the CI's redis cluster was once built over a node of another test:
// "Node … is not empty"). The process under test listens elsewhere (a
// later --port wins), so it never answers on the port probed: the probe
// must time out. The code before (anyPID) took the other server's reply
// for its own.
func TestReadyIsThisProcess(t *testing.T) {
	ctx := context.Background()
	other, err := Start(ctx, Config{})
	if errors.Is(err, ErrNoBinary) {
		t.Skip("redis-server not installed")
	}
	if err != nil {
		t.Fatal(err)
	}
	defer other.Stop()
	for _, anyPID := range []bool{false, true} {
		elsewhere, err := freePort()
		if err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		cfg := Config{StartTimeout: 300 * time.Millisecond, Args: []string{"--port", strconv.Itoa(elsewhere)}}
		s := &Server{cfg: cfg, bin: other.bin, port: other.port, dir: dir, anyPID: anyPID}
		err = s.start(ctx)
		s.Kill()
		switch {
		case anyPID && err != nil:
			t.Fatalf("the code before: %v, want ready (fooled by the other server)", err)
		case !anyPID && err == nil:
			t.Fatal("ready, though the server answering is another process")
		}
		t.Logf("anyPID=%v: %v", anyPID, err)
	}
}
