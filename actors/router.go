package actors

import (
	"cmp"
	"context"
	"hash/fnv"
	"log/slog"
	"sync"
	"time"

	"github.com/kalcifer/kalcifer/store"
)

// Router delivers committed events to their customers' grains. Events of one
// customer go through one shard, in order; shards run in parallel. An event
// is marked routed only after its customer grain handled it, so an event that
// was committed but not routed when its process stopped or died is found by
// a sweep, of this node or another, and routed then. Routing twice is
// harmless: enrolment is keyed by the event id and instances ignore an event
// they have seen.
type Router struct {
	events store.Events
	route  func(ctx context.Context, e store.Event) error
	now    func() time.Time
	shards []chan store.Event
	// grace is how old an unrouted event must be before the sweep takes it,
	// so the sweep does not race the shards for fresh events.
	grace time.Duration
	sweep time.Duration
	// lease is how long the events a sweep claims are its own: the sweeps
	// of other nodes pass over them until it lapses.
	lease time.Duration
	log   *slog.Logger
	// mu makes sweeps one at a time, so that a sweep that claims nothing
	// (Settle's, after the loop's) returns only once the sweeps before it
	// have routed what they claimed.
	mu sync.Mutex
}

// NewRouter returns a router with the given number of shards. Its sweeps
// lease the events they claim for 30 s.
func NewRouter(events store.Events, route func(context.Context, store.Event) error, now func() time.Time,
	shards int, sweep time.Duration, log *slog.Logger) *Router {
	r := &Router{events: events, route: route, now: now, grace: 10 * time.Second, sweep: sweep, lease: 30 * time.Second, log: log}
	for range max(shards, 1) {
		r.shards = append(r.shards, make(chan store.Event, 1024))
	}
	return r
}

// Name identifies the router in the supervision tree.
func (r *Router) Name() string { return "event-router" }

// Enqueue hands committed events to their shards, waiting while a shard is
// full: that wait is the backpressure that slows ingestion down to the rate
// events can be routed. Events still unqueued when ctx ends are left to the
// sweep; they are committed, so nothing is lost.
func (r *Router) Enqueue(ctx context.Context, events []store.Event) {
	for _, e := range events {
		select {
		case r.shard(e.CustomerID) <- e:
		case <-ctx.Done():
			return
		}
	}
}

func (r *Router) shard(customerID string) chan store.Event {
	h := fnv.New32a()
	h.Write([]byte(customerID))
	return r.shards[h.Sum32()%uint32(len(r.shards))]
}

// Run routes until ctx ends: one goroutine per shard, one that marks
// routed events, and the sweep.
func (r *Router) Run(ctx context.Context) error {
	routed := make(chan store.Event, 4096)
	var shards sync.WaitGroup
	for _, ch := range r.shards {
		shards.Add(1)
		go func() {
			defer shards.Done()
			r.runShard(ctx, ch, routed)
		}()
	}
	marked := make(chan struct{})
	go func() {
		defer close(marked)
		r.markRouted(ctx, routed)
	}()
	// Failures are logged by Sweep; the events stay unrouted, for a sweep
	// once their lease lapses.
	_, _ = r.Sweep(ctx, 0)
	ticker := time.NewTicker(r.sweep)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			shards.Wait()
			close(routed)
			<-marked
			return nil
		case <-ticker.C:
			_, _ = r.Sweep(ctx, r.grace)
		}
	}
}

// Sweep routes the unrouted events received at least minAge ago, a page at
// a time: it claims a page, routes it (customers in parallel, each
// customer's events in order) and marks the events routed before it claims
// the next. An event whose routing failed stays claimed until its lease
// lapses, when a sweep takes it again; until then no claim returns it, so
// such events do not hold the sweep up: it goes on until a page comes back
// short. It returns how many events it routed and the first failure, which
// it has also logged.
func (r *Router) Sweep(ctx context.Context, minAge time.Duration) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	const page = 1000
	total := 0
	var firstErr error
	for ctx.Err() == nil {
		now := r.now()
		events, err := r.events.ClaimUnroutedEvents(ctx, now.Add(-minAge), now, r.lease, page)
		if err != nil {
			if ctx.Err() == nil {
				r.log.Warn("sweep unrouted events", "error", err)
			}
			return total, cmp.Or(firstErr, err)
		}
		groups := map[chan store.Event][]store.Event{}
		for _, e := range events {
			groups[r.shard(e.CustomerID)] = append(groups[r.shard(e.CustomerID)], e)
		}
		var (
			mu     sync.Mutex
			routed = map[string][]string{}
			wg     sync.WaitGroup
		)
		for _, group := range groups {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for _, e := range group {
					err := r.route(ctx, e)
					mu.Lock()
					if err != nil {
						firstErr = cmp.Or(firstErr, err)
					} else {
						routed[e.TenantID] = append(routed[e.TenantID], e.ID)
						total++
					}
					mu.Unlock()
					if err != nil {
						r.log.Warn("route event", "tenant_id", e.TenantID, "event_id", e.ID, "error", err)
					}
				}
			}()
		}
		wg.Wait()
		for tenant, ids := range routed {
			if err := r.events.MarkRouted(ctx, tenant, ids, r.now()); err != nil {
				r.log.Warn("mark events routed", "tenant_id", tenant, "events", len(ids), "error", err)
				return total, cmp.Or(firstErr, err)
			}
		}
		if len(events) < page {
			break
		}
	}
	return total, firstErr
}

// runShard routes a shard's events in order and passes the routed ones on
// to be marked.
func (r *Router) runShard(ctx context.Context, ch chan store.Event, routed chan<- store.Event) {
	for {
		var e store.Event
		select {
		case <-ctx.Done():
			return
		case e = <-ch:
		}
		if err := r.route(ctx, e); err != nil {
			if ctx.Err() == nil {
				r.log.Warn("route event", "tenant_id", e.TenantID, "event_id", e.ID, "customer_id", e.CustomerID, "error", err)
			}
			continue
		}
		routed <- e
	}
}

// markRouted records routed events in few writes: whatever has queued up
// while the previous write ran goes in the next, so a busy router costs one
// write per batch rather than per event. Marks still queued when the
// process dies are lost, which only means those events are routed again.
func (r *Router) markRouted(ctx context.Context, routed <-chan store.Event) {
	byTenant := map[string][]string{}
	for e := range routed {
		byTenant[e.TenantID] = append(byTenant[e.TenantID], e.ID)
	drain:
		for n := 1; n < 1024; n++ {
			select {
			case more, ok := <-routed:
				if !ok {
					break drain
				}
				byTenant[more.TenantID] = append(byTenant[more.TenantID], more.ID)
			default:
				break drain
			}
		}
		for tenant, ids := range byTenant {
			if err := r.events.MarkRouted(context.WithoutCancel(ctx), tenant, ids, r.now()); err != nil {
				r.log.Warn("mark events routed", "tenant_id", tenant, "events", len(ids), "error", err)
			}
		}
		clear(byTenant)
	}
}
