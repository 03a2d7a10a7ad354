package supervisor

import (
	"log/slog"
	"time"
)

// Policy is the restart intensity both supervisors apply: up to MaxRestarts
// crashes within Window, each followed by a backoff that starts at
// BackoffBase and doubles up to BackoffMax. Zero values take the defaults
// noted per field.
type Policy struct {
	// MaxRestarts is how many crashes within Window are tolerated; the next
	// one gives up. Default 3.
	MaxRestarts int
	// Window is the period crashes are counted over. Default 1 minute.
	Window time.Duration
	// BackoffBase is the wait after the first crash in the window; each
	// further crash doubles it. Default 100 ms.
	BackoffBase time.Duration
	// BackoffMax caps the wait; its default depends on the supervisor.
	BackoffMax time.Duration
	// Clock defaults to the wall clock.
	Clock Clock
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

func (p Policy) withDefaults(backoffMax time.Duration) Policy {
	if p.MaxRestarts <= 0 {
		p.MaxRestarts = 3
	}
	if p.Window <= 0 {
		p.Window = time.Minute
	}
	if p.BackoffBase <= 0 {
		p.BackoffBase = 100 * time.Millisecond
	}
	if p.BackoffMax <= 0 {
		p.BackoffMax = backoffMax
	}
	if p.Clock == nil {
		p.Clock = SystemClock()
	}
	if p.Logger == nil {
		p.Logger = slog.Default()
	}
	return p
}
