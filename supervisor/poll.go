package supervisor

import (
	"context"
	"time"
)

// Waker tells a polling service to look for work now instead of at its next tick. Wakes that arrive
// before the service looks count as one, and Wake never blocks.
type Waker chan struct{}

// NewWaker returns a Waker with room for the one pending wake.
func NewWaker() Waker { return make(Waker, 1) }

// Wake asks for a pass now.
func (w Waker) Wake() {
	select {
	case w <- struct{}{}:
	default:
	}
}

// Poll runs pass until ctx ends: again at once when it reports that more work is waiting, otherwise at
// the next wake or every interval, whichever comes first.
func Poll(ctx context.Context, interval time.Duration, wake Waker, pass func(context.Context) (more bool)) {
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		if pass(ctx) {
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-wake:
		case <-ticker.C:
		}
	}
}
