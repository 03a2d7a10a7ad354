package actors

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/kalcifer/kalcifer/store"
	"github.com/kalcifer/kalcifer/store/sqlite/sqlitetest"
	"github.com/kalcifer/kalcifer/supervisor"
)

// claimsRig is a store with a tenant and two customers, and a clock tests move.
type claimsRig struct {
	st         store.Store
	tenant     string
	alice, bob string
	clock      *supervisor.ManualClock
}

var errBoom = errors.New("boom")

func newClaimsRig(t *testing.T) *claimsRig {
	t.Helper()
	ctx := context.Background()
	st := sqlitetest.Open(t)
	rig := &claimsRig{st: st, clock: supervisor.NewManualClock(time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC))}
	ten, err := st.Tenants().CreateTenant(ctx, "acme", rig.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	rig.tenant = ten.ID
	for name, id := range map[string]*string{"alice": &rig.alice, "bob": &rig.bob} {
		cus, _, err := st.Customers().UpsertCustomer(ctx, ten.ID, name, store.CustomerPatch{}, rig.clock.Now())
		if err != nil {
			t.Fatal(err)
		}
		*id = cus.ID
	}
	return rig
}

// TestFireDueRefiresAFailedTimerOnceItsLeaseLapses: a timer whose fire
// failed stays claimed, so the next pass does not fire it again at once;
// once the lease lapses, a pass does.
func TestFireDueRefiresAFailedTimerOnceItsLeaseLapses(t *testing.T) {
	ctx := context.Background()
	rig := newClaimsRig(t)
	in := store.Instance{ID: store.NewID("ins", rig.clock.Now()), TenantID: rig.tenant, JourneyID: "jrn_x", Version: 1,
		CustomerID: rig.alice, Status: store.InstanceWaiting, Snapshot: json.RawMessage(`{}`), UpdatedAt: rig.clock.Now()}
	err := rig.st.Instances().Commit(ctx, []store.Commit{{Instance: in, Create: true,
		Timers: []store.Timer{{TokenID: "ok", DueAt: rig.clock.Now()}, {TokenID: "bad", DueAt: rig.clock.Now()}}}})[0]
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	fired := map[string]int{}
	fire := func(_ context.Context, tm store.Timer) error {
		mu.Lock()
		defer mu.Unlock()
		fired[tm.TokenID]++
		if tm.TokenID == "bad" {
			return errBoom
		}
		return nil
	}
	s := NewTimerService(rig.st.Instances(), fire, rig.clock.Now, time.Hour, slog.New(slog.DiscardHandler), nil)
	pass := func(wantN, wantFailed int) {
		t.Helper()
		if n, failed, err := s.FireDue(ctx); err != nil || n != wantN || failed != wantFailed {
			t.Fatalf("FireDue = %d, %d, %v; want %d, %d", n, failed, err, wantN, wantFailed)
		}
	}
	// The fire of "ok" did not commit, so its timer stays too: both are
	// claimed again only once the lease lapses.
	pass(2, 1)
	pass(0, 0)
	rig.clock.Advance(s.lease - time.Microsecond)
	pass(0, 0)
	rig.clock.Advance(time.Microsecond)
	pass(2, 1)
	if fired["ok"] != 2 || fired["bad"] != 2 {
		t.Fatalf("fired %v", fired)
	}
}

// TestSweepGoesPastEventsItFailsToRoute: a page of events whose routing
// failed no longer stops the sweep, as the claim of the next page passes
// over them; they are routed by a sweep after their lease lapses.
func TestSweepGoesPastEventsItFailsToRoute(t *testing.T) {
	ctx := context.Background()
	rig := newClaimsRig(t)
	// A full page of alice's events, then bob's, older than the grace.
	var events []store.Event
	for i := range 1500 {
		c := rig.alice
		if i >= 1000 {
			c = rig.bob
		}
		events = append(events, store.Event{CustomerID: c, Type: "x", ReceivedAt: rig.clock.Now().Add(time.Duration(i) * time.Millisecond)})
	}
	if _, _, err := rig.st.Events().AppendEvents(ctx, rig.tenant, events); err != nil {
		t.Fatal(err)
	}
	rig.clock.Advance(time.Minute)
	aliceDown := true
	route := func(_ context.Context, e store.Event) error {
		if e.CustomerID == rig.alice && aliceDown {
			return errBoom
		}
		return nil
	}
	r := NewRouter(rig.st.Events(), route, rig.clock.Now, 4, time.Hour, slog.New(slog.DiscardHandler))
	if n, err := r.Sweep(ctx, r.grace); n != 500 || !errors.Is(err, errBoom) {
		t.Fatalf("first sweep routed %d, %v; want 500 and the routing error", n, err)
	}
	aliceDown = false
	if n, err := r.Sweep(ctx, r.grace); n != 0 || err != nil {
		t.Fatalf("sweep within the lease routed %d, %v; want 0", n, err)
	}
	rig.clock.Advance(r.lease)
	if n, err := r.Sweep(ctx, r.grace); n != 1000 || err != nil {
		t.Fatalf("sweep after the lease routed %d, %v; want 1000", n, err)
	}
	if n, err := r.Sweep(ctx, 0); n != 0 || err != nil {
		t.Fatalf("sweep of nothing routed %d, %v", n, err)
	}
}
