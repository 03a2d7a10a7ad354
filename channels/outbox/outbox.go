// Package outbox sends what journeys commit to send. Its dispatcher claims
// pending deliveries, makes each into a message and sends it through the
// tenant's provider account, and records the outcome: sent with the
// provider's message id, skipped or failed with a stable code, or deferred
// (a retry's backoff, quiet hours, a throttle, an open circuit).
package outbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/kalcifer/kalcifer/channels/accounts"
	"github.com/kalcifer/kalcifer/channels/compose"
	"github.com/kalcifer/kalcifer/store"
	"github.com/kalcifer/kalcifer/supervisor"
)

// Codes a delivery records when the dispatcher, not the provider, decides.
const (
	CodeOptedOut         = "opted_out"
	CodeNoProvider       = "no_provider"
	CodeOutcomeUnknown   = "outcome_unknown"
	CodeRetriesExhausted = "retries_exhausted"
	CodeTemplateNotFound = "template_not_found"
	CodeQuietHours       = "quiet_hours"
	CodeThrottled        = "throttled"
	CodeCircuitOpen      = "circuit_open"
)

// Options configure a Dispatcher.
type Options struct {
	Store    store.Store
	Accounts *accounts.Manager
	// Renderer renders messages; default a new one.
	Renderer *compose.Renderer
	Now      func() time.Time
	// Poll is how often the outbox is polled besides wake-ups; default 1 s.
	Poll   time.Duration
	Logger *slog.Logger
	// Registerer receives the dispatcher's metrics; nil registers none.
	Registerer prometheus.Registerer
	// Workers is how many sends run at once; default 8.
	Workers int
	// MaxAttempts is how many times a retryable failure is tried; default 8.
	MaxAttempts int
	// Backoff is the wait after the first retryable failure, doubled at
	// each further one up to MaxBackoff; defaults 30 s and 1 h.
	Backoff, MaxBackoff time.Duration
	// Jitter returns numbers in [0, 1) that spread the retries; default
	// math/rand.
	Jitter func() float64
	// Nodes says how many nodes send at once (the cluster's members): each
	// sends its share of an account's rate and burst. Default 1.
	Nodes func() int
	// Lease is how long the deliveries a pass claims are its own to send,
	// and Batch how many it claims; defaults 20 s and 32.
	Lease time.Duration
	Batch int
}

// Dispatcher moves pending deliveries out of the outbox.
type Dispatcher struct {
	o      Options
	wake   supervisor.Waker
	log    *slog.Logger
	m      metrics
	guards sync.Map // account id → *guard

	// Claims make passes disjoint, those of different processes as those
	// of this one. mu makes this process's passes one at a time besides,
	// so that a pass that claims nothing (a Settle's, after the loop's)
	// returns only once the passes before it have sent what they claimed.
	mu sync.Mutex
}

// guard is an account's throttle and circuit breaker, shared by every
// journey that sends through the account on this node. The throttle has
// this node's share of the account's rate.
type guard struct {
	version time.Time
	limiter *rate.Limiter
	breaker *breaker
	mu      sync.Mutex
	nodes   int
}

// share sets the throttle to this node's share of the account's rate and
// burst among nodes nodes.
func (g *guard) share(now time.Time, a *accounts.Account, nodes int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if nodes == g.nodes {
		return
	}
	g.nodes = nodes
	limit, burst := shareOf(a, nodes)
	g.limiter.SetLimitAt(now, limit)
	g.limiter.SetBurstAt(now, burst)
}

// admit decides whether a send may start at now: the throttle has a
// token, which it takes, and the breaker lets the send through (probe
// says it is the breaker's probe). Otherwise it takes nothing and answers
// the code and until when to wait. The token is looked at before it is
// reserved, under the guard's lock: a reservation cancelled gives its
// token back only as far as later reservations allow, so reserving and
// cancelling lost tokens whenever workers interleaved.
func (g *guard) admit(now time.Time) (token *rate.Reservation, probe bool, until time.Time, code string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if limit := g.limiter.Limit(); limit != rate.Inf {
		if tokens := g.limiter.TokensAt(now); tokens < 1 {
			wait := time.Duration((1 - tokens) / float64(limit) * float64(time.Second))
			// At least a millisecond: the store keeps microseconds, and a wait
			// rounded down to none would be claimed again at once, in a loop.
			return nil, false, now.Add(max(wait, time.Millisecond)), CodeThrottled
		}
	}
	ok, probe, retry := g.breaker.allow(now)
	if !ok {
		return nil, false, retry, CodeCircuitOpen
	}
	return g.limiter.ReserveN(now, 1), probe, time.Time{}, ""
}

// shareOf is one node's share, among nodes, of an account's rate and
// burst (by default a second's worth).
func shareOf(a *accounts.Account, nodes int) (rate.Limit, int) {
	if a.Rate <= 0 {
		return rate.Inf, 1
	}
	burst := a.Burst
	if burst <= 0 {
		burst = int(a.Rate)
	}
	return rate.Limit(a.Rate / float64(nodes)), max(1, burst/nodes)
}

// New returns a dispatcher.
func New(o Options) (*Dispatcher, error) {
	if o.Store == nil || o.Accounts == nil {
		return nil, errors.New("outbox: Options.Store and Options.Accounts are required")
	}
	if o.Renderer == nil {
		o.Renderer = compose.NewRenderer()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	o.Poll = orDefault(o.Poll, time.Second)
	o.Backoff = orDefault(o.Backoff, 30*time.Second)
	o.MaxBackoff = orDefault(o.MaxBackoff, time.Hour)
	// A pass claims few deliveries for a short lease: what a node that died
	// had claimed waits for the lease to lapse before another node sends it,
	// and a pass must send its batch within the lease.
	o.Lease = orDefault(o.Lease, 20*time.Second)
	o.Batch = orDefault(o.Batch, 32)
	o.Workers = orDefault(o.Workers, 8)
	o.MaxAttempts = orDefault(o.MaxAttempts, 8)
	if o.Jitter == nil {
		o.Jitter = rand.Float64
	}
	if o.Nodes == nil {
		o.Nodes = func() int { return 1 }
	}
	return &Dispatcher{o: o, wake: supervisor.NewWaker(), log: o.Logger, m: newMetrics(o.Registerer)}, nil
}

func orDefault[T int | time.Duration](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
}

// Name identifies the dispatcher in the supervision tree.
func (d *Dispatcher) Name() string { return "outbox-dispatcher" }

// Wake tells the dispatcher that deliveries were committed.
func (d *Dispatcher) Wake() { d.wake.Wake() }

// Run dispatches until ctx ends.
func (d *Dispatcher) Run(ctx context.Context) error {
	supervisor.Poll(ctx, d.o.Poll, d.wake, func(ctx context.Context) bool {
		n, err := d.DispatchOnce(ctx)
		if err != nil && ctx.Err() == nil {
			d.log.Warn("dispatch deliveries", "error", err)
		}
		return n == d.o.Batch // more are waiting
	})
	return nil
}

// DispatchOnce claims one batch of pending deliveries, handles them and
// returns how many it handled. No send outlives the claim, so no other
// process sends the same delivery meanwhile: a send gets the lease that is
// left as its deadline, and no send starts with less than a quarter of
// the lease left; the rest is released for the next claim. When ctx ends
// (the process drains) no further send starts either, and the rest is
// released, so another node sends it at once. An outcome is recorded even
// after ctx ended: a send left unrecorded would be sent again.
func (d *Dispatcher) DispatchOnce(ctx context.Context) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := d.o.Now()
	pending, err := d.o.Store.Deliveries().ClaimDeliveries(ctx, now, d.o.Lease, d.o.Batch)
	if err != nil || len(pending) == 0 {
		return 0, err
	}
	leased := now.Add(d.o.Lease)
	record := context.WithoutCancel(ctx)
	p := &pass{d: d, leased: leased, record: record, tenants: map[string]store.Tenant{}, templates: map[string]*store.Template{}}

	var handled atomic.Int64
	var errs errList
	// Each worker takes the next delivery when it is free, and checks
	// then whether a send may still start.
	var mu sync.Mutex
	next, stopped := 0, len(pending)
	take := func() (store.Delivery, bool) {
		mu.Lock()
		defer mu.Unlock()
		if next >= stopped {
			return store.Delivery{}, false
		}
		if ctx.Err() != nil || leased.Sub(d.o.Now()) < d.o.Lease/4 || errs.any() {
			stopped = next
			return store.Delivery{}, false
		}
		next++
		return pending[next-1], true
	}
	var wg sync.WaitGroup
	for range min(d.o.Workers, len(pending)) {
		wg.Go(func() {
			for dl, ok := take(); ok; dl, ok = take() {
				if err := p.safely(ctx, dl); err != nil {
					errs.add(err)
					continue
				}
				handled.Add(1)
			}
		})
	}
	wg.Wait()
	if stopped < len(pending) {
		errs.add(ctx.Err())
		errs.add(d.release(record, pending[stopped:]))
	}
	return int(handled.Load()), errs.join()
}

// safely handles dl, turning a panic (in a provider, say) into the pass's
// error: the process goes on, and the delivery, its attempt possibly
// begun and unrecorded, is left to the next claim as a crash would leave
// it.
func (p *pass) safely(ctx context.Context, dl store.Delivery) (err error) {
	defer func() {
		if r := recover(); r != nil {
			if e, ok := r.(error); ok {
				err = fmt.Errorf("delivery %s: panic: %w", dl.ID, e)
				return
			}
			err = fmt.Errorf("delivery %s: panic: %v", dl.ID, r)
		}
	}()
	return p.handle(ctx, dl)
}

// errList collects the errors of a pass's workers.
type errList struct {
	mu   sync.Mutex
	errs []error
}

func (l *errList) add(err error) {
	if err == nil {
		return
	}
	l.mu.Lock()
	l.errs = append(l.errs, err)
	l.mu.Unlock()
}

func (l *errList) any() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.errs) > 0
}

func (l *errList) join() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return errors.Join(l.errs...)
}

// release gives up the claims on unsent deliveries.
func (d *Dispatcher) release(ctx context.Context, unsent []store.Delivery) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := d.o.Store.Deliveries().ReleaseDeliveries(ctx, unsent); err != nil {
		return fmt.Errorf("release %d unsent deliveries: %w", len(unsent), err)
	}
	return nil
}

// guard returns the account's throttle and breaker, made anew when the
// account's configuration changed, with this node's share of the rate.
func (d *Dispatcher) guard(a *accounts.Account, now time.Time) *guard {
	nodes := max(1, d.o.Nodes())
	g := d.guardOf(a, nodes)
	g.share(now, a, nodes)
	return g
}

func (d *Dispatcher) guardOf(a *accounts.Account, nodes int) *guard {
	old, ok := d.guards.Load(a.ID)
	if ok && old.(*guard).version.Equal(a.Version) {
		return old.(*guard)
	}
	limit, burst := shareOf(a, nodes)
	g := &guard{version: a.Version, limiter: rate.NewLimiter(limit, burst), nodes: nodes,
		breaker: newBreaker(5, 30*time.Second, 10*time.Minute)}
	// Two workers may get here at once: one guard wins and both use it.
	if !ok {
		if won, loaded := d.guards.LoadOrStore(a.ID, g); loaded {
			return won.(*guard)
		}
		return g
	}
	if d.guards.CompareAndSwap(a.ID, old, g) {
		return g
	}
	current, _ := d.guards.Load(a.ID)
	return current.(*guard)
}

// backoff is the wait before attempt+1 after a retryable failure of
// attempt: exponential, with equal jitter (half fixed, half random) so
// that failures at one instant do not all come back at one instant.
func (d *Dispatcher) backoff(attempt int) time.Duration {
	wait := d.o.Backoff
	for i := 1; i < attempt && wait < d.o.MaxBackoff; i++ {
		wait *= 2
	}
	wait = min(wait, d.o.MaxBackoff)
	return wait/2 + time.Duration(d.o.Jitter()*float64(wait/2))
}
