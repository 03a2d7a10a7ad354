package outbox

import (
	"sync"
	"time"
)

// breaker stops sends to a provider account that keeps failing, so that a
// provider outage costs one probe per cool-down instead of every pending
// message's attempts. Closed, it counts consecutive failures; at
// threshold it opens for cooldown; then one send is let through (half
// open), whose outcome closes it or opens it again for twice as long, up
// to maxCooldown.
type breaker struct {
	threshold   int
	cooldown    time.Duration
	maxCooldown time.Duration

	mu       sync.Mutex
	failures int
	open     bool
	until    time.Time
	wait     time.Duration
	probing  bool
}

func newBreaker(threshold int, cooldown, maxCooldown time.Duration) *breaker {
	return &breaker{threshold: threshold, cooldown: cooldown, maxCooldown: maxCooldown, wait: cooldown}
}

// allow says whether a send may go now, and whether it is the probe of a
// circuit that was open; when it may not go, retry is when to ask again.
// A send allowed must be followed by done, or by cancel if it did not go
// after all, with the probe flag allow returned.
func (b *breaker) allow(now time.Time) (ok, probe bool, retry time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case !b.open:
		return true, false, time.Time{}
	case b.probing:
		return false, false, now.Add(b.cooldown)
	case now.Before(b.until):
		return false, false, b.until
	}
	b.probing = true
	return true, true, time.Time{}
}

// cancel gives back an allowance whose send did not go.
func (b *breaker) cancel(probe bool) {
	if !probe {
		return
	}
	b.mu.Lock()
	b.probing = false
	b.mu.Unlock()
}

// done records a send's outcome: failed is a failure of the provider (a
// retryable error), not of the message. Only the probe's failure doubles
// the cool-down; the failures of sends let through before the circuit
// opened count towards opening it.
func (b *breaker) done(now time.Time, probe, failed bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if probe {
		b.probing = false
	}
	if !failed {
		b.failures, b.open, b.wait = 0, false, b.cooldown
		return
	}
	b.failures++
	switch {
	case probe:
		b.wait = min(2*b.wait, b.maxCooldown)
	case b.open || b.failures < b.threshold:
		return
	}
	b.open, b.until = true, now.Add(b.wait)
}
