package cluster

import (
	"time"
)

// watchStalls calls onStall once, and returns, when two consecutive ticks are further apart than limit:
// the process was paused (SIGSTOP, a frozen VM, a swap storm) long enough for the other members to declare
// it dead and take its grains over. Its activations are then stale; epoch fencing stops their writes, and
// the owner of onStall ends the process so that it comes back as a new member. The ticks are a
// time.Ticker's: each carries the monotonic time it fired at, and a paused process fires none until it
// resumes. It also returns when done closes.
func watchStalls(ticks <-chan time.Time, limit time.Duration, onStall func(gap time.Duration), done <-chan struct{}) {
	var last time.Time
	for {
		var t time.Time
		select {
		case <-done:
			return
		case t = <-ticks:
		}
		if gap := t.Sub(last); !last.IsZero() && gap > limit {
			onStall(gap)
			return
		}
		last = t
	}
}
