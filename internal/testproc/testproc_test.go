package testproc

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestExitDuringStartReportsOutput(t *testing.T) {
	p, err := Start("sh", "-c", "echo port taken; exit 3")
	if err != nil {
		t.Fatal(err)
	}
	never := func(context.Context) error { return errors.New("not yet") }
	err = p.WaitReady(context.Background(), 10*time.Second, never)
	if !errors.Is(err, ErrExited) || !strings.Contains(err.Error(), "port taken") {
		t.Fatalf("got %v, want ErrExited with the process's output", err)
	}
}

func TestWaitReadyTimesOut(t *testing.T) {
	p, err := Start("sleep", "30")
	if err != nil {
		t.Fatal(err)
	}
	defer p.Kill()
	never := func(context.Context) error { return errors.New("not yet") }
	err = p.WaitReady(context.Background(), 20*time.Millisecond, never)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want a deadline", err)
	}
}

func TestPauseResumeKill(t *testing.T) {
	p, err := Start("sleep", "30")
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Pause(); err != nil {
		t.Fatal(err)
	}
	if err := p.Resume(); err != nil {
		t.Fatal(err)
	}
	if err := p.Pause(); err != nil {
		t.Fatal(err)
	}
	p.Kill() // ends a paused process too, and waits for it
	select {
	case <-p.done:
	default:
		t.Fatal("Kill returned before the process exited")
	}
}
