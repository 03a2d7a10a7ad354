package cluster

import (
	"time"
)

// watchStalls calls onStall once, and returns, when two consecutive ticks are further apart than limit:
// the process was paused (SIGSTOP, a frozen VM, a swap storm) long enough for the other members to declare
// it dead and take its grains over. Its activations are then stale; epoch fencing stops their writes, and
// the owner of onStall ends the process so that it comes back as a new member. Each tick carries the
// time it was taken (see clockTicks); a paused process takes none until it resumes. It also returns when
// done closes.
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

// clockTicks sends time.Now() about every interval until done closes. A time.Ticker's own values are the
// times its ticks were due, so the first tick after a pause would not show the pause; reading the clock
// when the tick is taken does.
func clockTicks(interval time.Duration, done <-chan struct{}) <-chan time.Time {
	out := make(chan time.Time)
	go func() {
		ticker := time.NewTicker(interval)
		defer ticker.Stop()
		for {
			select {
			case <-done:
				return
			case <-ticker.C:
			}
			select {
			case out <- time.Now():
			case <-done:
				return
			}
		}
	}()
	return out
}
