package supervisor_test

import (
	"context"
	"testing"
	"time"

	"github.com/kalcifer/kalcifer/supervisor"
)

// TestPoll: a pass that reports more work runs again at once; otherwise the next pass waits for a wake
// (the interval here is far beyond the test).
func TestPoll(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	wake := supervisor.NewWaker()
	passes := make(chan int)
	done := make(chan struct{})
	n := 0
	go func() {
		defer close(done)
		supervisor.Poll(ctx, time.Hour, wake, func(context.Context) bool {
			n++
			passes <- n
			return n < 3 // three passes back to back, then wait
		})
	}()
	for want := 1; want <= 3; want++ {
		if got := <-passes; got != want {
			t.Fatalf("pass %d, want %d", got, want)
		}
	}
	wake.Wake()
	if got := <-passes; got != 4 {
		t.Fatalf("pass after wakes %d, want 4", got)
	}
	cancel()
	<-done
}

// Wakes sent before the service looks count as one, and Wake never blocks.
func TestWakerCoalesces(t *testing.T) {
	w := supervisor.NewWaker()
	w.Wake()
	w.Wake()
	if len(w) != 1 {
		t.Fatalf("%d pending wakes, want 1", len(w))
	}
}
