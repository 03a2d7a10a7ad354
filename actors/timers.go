package actors

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kalcifer/kalcifer/store"
	"github.com/kalcifer/kalcifer/supervisor"
)

// TimerService fires due timers: it claims them in the store and hands each
// to its instance grain, whose commit removes the timer. A claim leases the
// timers to this node, so no other node of the cluster fires them at the
// same time. A timer whose grain fails stays claimed until the lease lapses
// and is then fired again, by whichever node claims it first; so is a timer
// whose node died before firing it. The engine ignores a timer that no
// longer matches a waiting token, so a timer never acts twice.
type TimerService struct {
	timers store.Instances
	fire   func(ctx context.Context, t store.Timer) error
	now    func() time.Time
	poll   time.Duration
	lease  time.Duration
	batch  int
	wake   supervisor.Waker
	log    *slog.Logger
	lag    prometheus.Histogram
	// mu makes passes one at a time, so that a pass that claims nothing
	// (Settle's, after the loop's) returns only once the passes before it
	// have fired what they claimed.
	mu sync.Mutex
}

// NewTimerService returns a service that looks for due timers every poll,
// and at once after Wake. It leases the timers it claims for 10 s.
func NewTimerService(timers store.Instances, fire func(context.Context, store.Timer) error, now func() time.Time,
	poll time.Duration, log *slog.Logger, reg prometheus.Registerer) *TimerService {
	lag := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "kalcifer_timer_lag_seconds",
		Help:    "How late timers fire: the time between a timer's due time and its firing.",
		Buckets: []float64{.001, .005, .01, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300},
	})
	if reg != nil {
		reg.MustRegister(lag)
	}
	return &TimerService{timers: timers, fire: fire, now: now, poll: poll, lease: 10 * time.Second, batch: 512,
		wake: supervisor.NewWaker(), log: log, lag: lag}
}

// Name identifies the service in the supervision tree.
func (s *TimerService) Name() string { return "timer-service" }

// Wake makes the service look for due timers now, e.g. after a commit set a
// timer due sooner than the next poll.
func (s *TimerService) Wake() { s.wake.Wake() }

// Run fires timers until ctx ends.
func (s *TimerService) Run(ctx context.Context) error {
	supervisor.Poll(ctx, s.poll, s.wake, func(ctx context.Context) bool {
		n, _, err := s.FireDue(ctx)
		if err != nil && ctx.Err() == nil {
			s.log.Warn("fire due timers", "error", err)
		}
		// A full batch means more may be due. The timers of this one that
		// failed stay claimed, so claiming again at once gets others.
		return n == s.batch
	})
	return nil
}

// FireDue claims one batch of due timers and fires them, several at a time;
// it returns how many it claimed and how many of those failed to fire. A
// timer that failed stays claimed until its lease lapses, and is then fired
// again by the first pass, of any node, to claim it.
func (s *TimerService) FireDue(ctx context.Context) (int, int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	due, err := s.timers.ClaimDueTimers(ctx, now, s.lease, s.batch)
	if err != nil {
		return 0, 0, err
	}
	var failed atomic.Int64
	const parallel = 32
	sem := make(chan struct{}, parallel)
	var wg sync.WaitGroup
	for _, t := range due {
		s.lag.Observe(now.Sub(t.DueAt).Seconds())
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := s.fire(ctx, t); err != nil {
				failed.Add(1)
				if ctx.Err() == nil {
					s.log.Warn("fire timer", "tenant_id", t.TenantID, "instance_id", t.InstanceID, "token_id", t.TokenID, "error", err)
				}
			}
		}()
	}
	wg.Wait()
	return len(due), int(failed.Load()), nil
}
