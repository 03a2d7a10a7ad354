package cluster

import (
	"testing"
	"time"
)

// TestWatchStalls feeds the watchdog ticks with chosen times: regular ticks, even late ones within the
// limit, never trip it; the first gap past the limit does, once, with the gap.
func TestWatchStalls(t *testing.T) {
	ticks := make(chan time.Time)
	stalls := make(chan time.Duration, 2)
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		watchStalls(ticks, time.Second, func(gap time.Duration) { stalls <- gap }, nil)
	}()
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, d := range []time.Duration{0, 250 * time.Millisecond, 250 * time.Millisecond, time.Second, 900 * time.Millisecond} {
		at = at.Add(d)
		ticks <- at
	}
	select {
	case gap := <-stalls:
		t.Fatalf("stall reported after gaps within the limit: %s", gap)
	default:
	}
	ticks <- at.Add(3 * time.Second)
	<-exited
	if gap := <-stalls; gap != 3*time.Second {
		t.Fatalf("stall gap = %s, want 3s", gap)
	}
	if len(stalls) != 0 {
		t.Fatal("stall reported twice")
	}
}

// TestWatchStallsStops returns when done closes, reporting nothing.
func TestWatchStallsStops(t *testing.T) {
	done := make(chan struct{})
	close(done)
	watchStalls(make(chan time.Time), time.Second, func(time.Duration) { t.Fatal("stall reported") }, done)
}

func TestSuspicionTimeout(t *testing.T) {
	if got := (Gossip{}).SuspicionTimeout(); got != 4*time.Second {
		t.Fatalf("default suspicion timeout = %s, want 4s (1s probes × 4)", got)
	}
	if got := (Gossip{ProbeInterval: 200 * time.Millisecond, SuspicionMult: 2}).SuspicionTimeout(); got != 400*time.Millisecond {
		t.Fatalf("suspicion timeout = %s, want 400ms", got)
	}
}
