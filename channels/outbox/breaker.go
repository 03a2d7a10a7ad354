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

// allow says whether a send may go now; when it may not, retry is when to
// ask again. A send allowed must be followed by done, or by cancel if it
// did not go after all.
func (b *breaker) allow(now time.Time) (ok bool, retry time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case !b.open:
		return true, time.Time{}
	case b.probing:
		return false, now.Add(b.cooldown)
	case now.Before(b.until):
		return false, b.until
	}
	b.probing = true
	return true, time.Time{}
}

// cancel gives back an allowance whose send did not go.
func (b *breaker) cancel() {
	b.mu.Lock()
	b.probing = false
	b.mu.Unlock()
}

// done records a send's outcome: failed is a failure of the provider (a
// retryable error), not of the message.
func (b *breaker) done(now time.Time, failed bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	probe := b.probing
	b.probing = false
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
