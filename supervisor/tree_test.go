package supervisor_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kalcifer/kalcifer/supervisor"
)

// scripted is a service that runs until cancelled or told to fail.
type scripted struct {
	name   string
	starts atomic.Int32
	fail   chan error
	panics chan struct{}
}

func newScripted(name string) *scripted {
	return &scripted{name: name, fail: make(chan error), panics: make(chan struct{})}
}

func (s *scripted) Name() string { return s.name }

func (s *scripted) Run(ctx context.Context) error {
	s.starts.Add(1)
	select {
	case <-ctx.Done():
		return nil
	case err := <-s.fail:
		return err
	case <-s.panics:
		panic("scripted panic")
	}
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// startTree runs a tree until the test ends; done is closed when Run returns, with its result in *result.
func startTree(t *testing.T, opts supervisor.TreeOptions, children ...supervisor.Service) (cancel context.CancelFunc, done chan struct{}, result *error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done = make(chan struct{})
	result = new(error)
	tree := supervisor.NewTree(opts, children...)
	go func() {
		*result = tree.Run(ctx)
		close(done)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return cancel, done, result
}

func starts(ss ...*scripted) []int32 {
	var out []int32
	for _, s := range ss {
		out = append(out, s.starts.Load())
	}
	return out
}

func TestOneForOneRestartsOnlyTheCrashedChild(t *testing.T) {
	clock := supervisor.NewManualClock(time.Unix(0, 0))
	a, b, c := newScripted("a"), newScripted("b"), newScripted("c")
	startTree(t, supervisor.TreeOptions{Strategy: supervisor.OneForOne, Policy: supervisor.Policy{Clock: clock, Logger: quiet(),
		BackoffBase: time.Second}}, a, b, c)
	eventually(t, "all started", func() bool { return a.starts.Load() == 1 && b.starts.Load() == 1 && c.starts.Load() == 1 })

	b.fail <- errors.New("boom")
	eventually(t, "backoff wait", func() bool { return clock.Waiters() == 1 })
	if b.starts.Load() != 1 {
		t.Fatal("b restarted before its backoff passed")
	}
	clock.Advance(time.Second)
	eventually(t, "b restarted", func() bool { return b.starts.Load() == 2 })
	if got := starts(a, b, c); got[0] != 1 || got[2] != 1 {
		t.Fatalf("starts = %v, want a and c untouched", got)
	}
}

func TestRestForOneRestartsTheChildAndThoseAfterIt(t *testing.T) {
	clock := supervisor.NewManualClock(time.Unix(0, 0))
	a, b, c := newScripted("a"), newScripted("b"), newScripted("c")
	startTree(t, supervisor.TreeOptions{Strategy: supervisor.RestForOne, Policy: supervisor.Policy{Clock: clock, Logger: quiet()}}, a, b, c)
	eventually(t, "all started", func() bool { return c.starts.Load() == 1 })

	b.panics <- struct{}{}
	eventually(t, "backoff wait", func() bool { return clock.Waiters() == 1 })
	clock.Advance(100 * time.Millisecond)
	eventually(t, "b and c restarted", func() bool { return b.starts.Load() == 2 && c.starts.Load() == 2 })
	if a.starts.Load() != 1 {
		t.Fatalf("a restarted under rest_for_one for a later child: starts = %v", starts(a, b, c))
	}
}

func TestBackoffDoublesAndIntensityGivesUp(t *testing.T) {
	clock := supervisor.NewManualClock(time.Unix(0, 0))
	a, b := newScripted("a"), newScripted("b")
	_, done, result := startTree(t, supervisor.TreeOptions{Policy: supervisor.Policy{Clock: clock, Logger: quiet(), MaxRestarts: 2,
		Window: time.Minute, BackoffBase: time.Second}}, a, b)
	eventually(t, "started", func() bool { return b.starts.Load() == 1 })

	b.fail <- errors.New("first")
	eventually(t, "first backoff", func() bool { return clock.Waiters() == 1 })
	clock.Advance(time.Second)
	eventually(t, "restart 1", func() bool { return b.starts.Load() == 2 })

	b.fail <- errors.New("second")
	eventually(t, "second backoff", func() bool { return clock.Waiters() == 1 })
	clock.Advance(time.Second)
	if b.starts.Load() != 2 {
		t.Fatal("second backoff did not double")
	}
	clock.Advance(time.Second)
	eventually(t, "restart 2", func() bool { return b.starts.Load() == 3 })

	b.fail <- errors.New("third")
	select {
	case <-done:
		if !errors.Is(*result, supervisor.ErrGaveUp) {
			t.Fatalf("Run = %v, want ErrGaveUp", *result)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("tree did not give up")
	}
}

func TestCrashesOutsideTheWindowDoNotCount(t *testing.T) {
	clock := supervisor.NewManualClock(time.Unix(0, 0))
	a := newScripted("a")
	_, done, result := startTree(t, supervisor.TreeOptions{Policy: supervisor.Policy{Clock: clock, Logger: quiet(), MaxRestarts: 1,
		Window: time.Minute, BackoffBase: time.Millisecond}}, a)
	for i := int32(1); i <= 3; i++ {
		eventually(t, "started", func() bool { return a.starts.Load() == i })
		a.fail <- errors.New("crash")
		eventually(t, "backoff", func() bool { return clock.Waiters() == 1 })
		clock.Advance(2 * time.Minute)
	}
	eventually(t, "fourth start", func() bool { return a.starts.Load() == 4 })
	select {
	case <-done:
		t.Fatalf("tree gave up on spaced-out crashes: %v", *result)
	default:
	}
}

// cleanExit returns nil at once: a finished service, not a crash.
type cleanExit struct{ runs atomic.Int32 }

func (c *cleanExit) Name() string { return "clean" }
func (c *cleanExit) Run(context.Context) error {
	c.runs.Add(1)
	return nil
}

func TestCancelStopsChildrenAndNilIsACleanStop(t *testing.T) {
	clock := supervisor.NewManualClock(time.Unix(0, 0))
	a, clean := newScripted("a"), &cleanExit{}
	inner := supervisor.NewTree(supervisor.TreeOptions{Name: "inner", Policy: supervisor.Policy{Clock: clock, Logger: quiet()}}, clean)
	cancel, done, result := startTree(t, supervisor.TreeOptions{Policy: supervisor.Policy{Clock: clock, Logger: quiet()}}, a, inner)
	eventually(t, "started", func() bool { return a.starts.Load() == 1 && clean.runs.Load() == 1 })
	cancel()
	select {
	case <-done:
		if *result != nil {
			t.Fatalf("Run after cancel = %v, want nil", *result)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("tree did not stop on cancel")
	}
	if clean.runs.Load() != 1 || clock.Waiters() != 0 {
		t.Fatalf("a service returning nil was restarted (runs %d)", clean.runs.Load())
	}
}
