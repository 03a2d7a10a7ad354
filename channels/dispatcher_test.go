package channels

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kalcifer/kalcifer/store"
	"github.com/kalcifer/kalcifer/store/sqlite/sqlitetest"
)

// outbox is a store whose outbox holds one pending delivery for each of
// the channels, committed at now.
func outbox(t *testing.T, now time.Time, channels ...string) (store.Store, store.Tenant) {
	t.Helper()
	ctx := context.Background()
	st := sqlitetest.Open(t)
	ten, err := st.Tenants().CreateTenant(ctx, "acme", now)
	if err != nil {
		t.Fatal(err)
	}
	cus, _, err := st.Customers().UpsertCustomer(ctx, ten.ID, "alice", store.CustomerPatch{}, now)
	if err != nil {
		t.Fatal(err)
	}
	in := store.Instance{ID: store.NewID("ins", now), TenantID: ten.ID, JourneyID: "jrn_x", Version: 1, CustomerID: cus.ID,
		Status: store.InstanceWaiting, Snapshot: json.RawMessage(`{}`), CreatedAt: now, UpdatedAt: now}
	commit := store.Commit{Instance: in, Create: true}
	for i, ch := range channels {
		node := fmt.Sprintf("%s_%d", ch, i)
		commit.Deliveries = append(commit.Deliveries, store.Delivery{Key: in.ID + ":" + node + ":1", NodeID: node, Channel: ch, Payload: json.RawMessage(`{}`)})
	}
	if err := st.Instances().Commit(ctx, []store.Commit{commit})[0]; err != nil {
		t.Fatal(err)
	}
	return st, ten
}

func TestDispatcherSendsEachPendingDeliveryOnce(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC)
	st, ten := outbox(t, now, "email", "sms")
	var logs bytes.Buffer
	d := NewDispatcher(st.Deliveries(), st.Customers(), LogSender{Logger: slog.New(slog.NewJSONHandler(&logs, nil))},
		func() time.Time { return now.Add(time.Second) }, time.Minute, slog.Default())
	if n, err := d.DispatchOnce(ctx); err != nil || n != 2 {
		t.Fatalf("first pass: %d, %v", n, err)
	}
	if n, err := d.DispatchOnce(ctx); err != nil || n != 0 {
		t.Fatalf("a second pass must find nothing pending: %d, %v", n, err)
	}
	sent, err := st.Deliveries().ListDeliveries(ctx, ten.ID, store.DeliveryFilter{Status: store.DeliverySent})
	if err != nil || len(sent) != 2 {
		t.Fatalf("sent deliveries: %d, %v", len(sent), err)
	}
	for _, dl := range sent {
		if dl.Provider != "log" || dl.ProviderMessageID != dl.Key || dl.Attempts != 1 {
			t.Errorf("delivery %+v", dl)
		}
	}
	if strings.Count(logs.String(), `"msg":"delivery sent"`) != 2 {
		t.Errorf("want two log lines:\n%s", logs.String())
	}
}

// countingSender counts the sends of each delivery. Each send takes took
// on a clock that only sends move.
type countingSender struct {
	mu      sync.Mutex
	sends   map[string]int
	took    time.Duration
	elapsed time.Duration
}

func (*countingSender) Provider() string { return "counting" }

func (s *countingSender) Send(_ context.Context, d store.Delivery) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sends[d.Key]++
	s.elapsed += s.took
	return d.Key, nil
}

// since is the sender's clock, started at start.
func (s *countingSender) since(start time.Time) func() time.Time {
	return func() time.Time {
		s.mu.Lock()
		defer s.mu.Unlock()
		return start.Add(s.elapsed)
	}
}

// TestDispatchersShareAnOutbox runs two dispatchers, as two processes would,
// on one outbox: their claims keep them from sending a delivery twice.
func TestDispatchersShareAnOutbox(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC)
	st, _ := outbox(t, now, slices.Repeat([]string{"email"}, 100)...)
	sender := &countingSender{sends: map[string]int{}}
	var wg sync.WaitGroup
	for range 2 {
		d := NewDispatcher(st.Deliveries(), st.Customers(), sender, sender.since(now), time.Minute, slog.Default())
		d.batch = 7
		wg.Go(func() {
			for {
				n, err := d.DispatchOnce(ctx)
				if err != nil {
					t.Error(err)
				}
				if err != nil || n == 0 {
					return
				}
			}
		})
	}
	wg.Wait()
	if len(sender.sends) != 100 {
		t.Fatalf("%d deliveries sent, want 100", len(sender.sends))
	}
	for key, n := range sender.sends {
		if n != 1 {
			t.Errorf("%s sent %d times", key, n)
		}
	}
}

// TestDispatcherStopsBeforeItsLeaseLapses: a pass never starts a send
// that could outlive its claim, as another process may claim the delivery
// once the lease lapses; it releases what it did not send, and the next
// pass sends it.
func TestDispatcherStopsBeforeItsLeaseLapses(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC)
	st, ten := outbox(t, now, "email", "sms", "push", "webhook")
	// Each send takes 8 s of the 20 s lease: the pass sends at 0 and 8 s,
	// and at 16 s, with 4 s left, stops.
	sender := &countingSender{sends: map[string]int{}, took: 8 * time.Second}
	d := NewDispatcher(st.Deliveries(), st.Customers(), sender, sender.since(now), time.Minute, slog.Default())
	if n, err := d.DispatchOnce(ctx); err != nil || n != 2 {
		t.Fatalf("first pass: %d, %v; want 2 sent", n, err)
	}
	// Released, the other two are claimed at once by the next pass.
	if n, err := d.DispatchOnce(ctx); err != nil || n != 2 {
		t.Fatalf("second pass: %d, %v; want the 2 released", n, err)
	}
	pending, err := st.Deliveries().ListDeliveries(ctx, ten.ID, store.DeliveryFilter{Status: store.DeliveryPending})
	if err != nil || len(pending) != 0 || len(sender.sends) != 4 {
		t.Fatalf("%d pending, %d sent, %v", len(pending), len(sender.sends), err)
	}
	for key, n := range sender.sends {
		if n != 1 {
			t.Errorf("%s sent %d times", key, n)
		}
	}
}

// slowSender takes longer than the deadline it is given.
type slowSender struct{ countingSender }

func (s *slowSender) Send(ctx context.Context, d store.Delivery) (string, error) {
	<-ctx.Done()
	return "", ctx.Err()
}

// TestDispatcherSendHasTheLeaseAsDeadline: a send that outlives the claim
// is cut off, and the delivery stays pending (not failed) for another claim.
func TestDispatcherSendHasTheLeaseAsDeadline(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC)
	st, ten := outbox(t, now, "email")
	d := NewDispatcher(st.Deliveries(), st.Customers(), &slowSender{}, func() time.Time { return now }, time.Minute, slog.Default())
	d.lease = 50 * time.Millisecond
	if n, err := d.DispatchOnce(ctx); n != 0 || err == nil {
		t.Fatalf("pass with a send past its claim: %d, %v", n, err)
	}
	pending, err := st.Deliveries().ListDeliveries(ctx, ten.ID, store.DeliveryFilter{Status: store.DeliveryPending})
	if err != nil || len(pending) != 1 {
		t.Fatalf("%d pending, %v; want the delivery still pending", len(pending), err)
	}
	if again, err := st.Deliveries().ClaimDeliveries(ctx, now, time.Minute, 0); err != nil || len(again) != 1 {
		t.Fatalf("claim after the cut-off send: %d, %v; want it released", len(again), err)
	}
}

// cancellingSender ends the pass's context during its first send, as a
// drain does while a send is in flight.
type cancellingSender struct {
	countingSender
	cancel context.CancelFunc
}

func (s *cancellingSender) Send(ctx context.Context, d store.Delivery) (string, error) {
	s.cancel()
	if ctx.Err() != nil {
		return "", ctx.Err()
	}
	return s.countingSender.Send(ctx, d)
}

// TestDispatcherDrains: a pass whose context ends finishes and records the
// send in flight, sends nothing more, and releases the rest, which another
// process claims at once rather than after the lease.
func TestDispatcherDrains(t *testing.T) {
	now := time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC)
	st, ten := outbox(t, now, "email", "sms", "push")
	ctx, cancel := context.WithCancel(context.Background())
	sender := &cancellingSender{countingSender: countingSender{sends: map[string]int{}}, cancel: cancel}
	d := NewDispatcher(st.Deliveries(), st.Customers(), sender, func() time.Time { return now }, time.Minute, slog.Default())
	if n, err := d.DispatchOnce(ctx); n != 1 || err == nil {
		t.Fatalf("drained pass: %d, %v; want 1 and the context's error", n, err)
	}
	sent, err := st.Deliveries().ListDeliveries(context.Background(), ten.ID, store.DeliveryFilter{Status: store.DeliverySent})
	if err != nil || len(sent) != 1 || len(sender.sends) != 1 {
		t.Fatalf("%d recorded sent, %d sends, %v; want the send in flight recorded", len(sent), len(sender.sends), err)
	}
	other := NewDispatcher(st.Deliveries(), st.Customers(), &sender.countingSender, func() time.Time { return now }, time.Minute, slog.Default())
	if n, err := other.DispatchOnce(context.Background()); n != 2 || err != nil {
		t.Fatalf("another process at the same instant: %d, %v; want the 2 released", n, err)
	}
	for key, n := range sender.sends {
		if n != 1 {
			t.Errorf("%s sent %d times", key, n)
		}
	}
}
