package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/kalcifer/kalcifer/store"
)

// runtimeTests cover customers, events, instances and deliveries.
var runtimeTests = []struct {
	name string
	fn   func(t *testing.T, s store.Store)
}{
	{"TenantSettings", testTenantSettings},
	{"Customers", testCustomers},
	{"ListCustomers", testListCustomers},
	{"ConcurrentUpsert", testConcurrentUpsert},
	{"Events", testEvents},
	{"ClaimUnroutedEvents", testClaimUnroutedEvents},
	{"CommitCreate", testCommitCreate},
	{"OneActiveInstance", testOneActiveInstance},
	{"Epoch", testEpoch},
	{"CommitBatch", testCommitBatch},
	{"TimersAndWaits", testTimersAndWaits},
	{"ClaimDueTimers", testClaimDueTimers},
	{"Steps", testSteps},
	{"Deliveries", testDeliveries},
	{"ConcurrentClaims", testConcurrentClaims},
	{"DeliveryAttempts", testDeliveryAttempts},
	{"DeliveryEvents", testDeliveryEvents},
	{"Providers", testProviders},
	{"Templates", testTemplates},
	{"CountSends", testCountSends},
	{"CountAtNodes", testCountAtNodes},
	{"ListInstances", testListInstances},
	{"RuntimeTenantIsolation", testRuntimeTenantIsolation},
	{"GroupCommitter", testGroupCommitter},
}

// world is a tenant with a journey and a customer.
type world struct {
	s        store.Store
	tenant   string
	journey  string
	customer string
}

func newWorld(t testing.TB, s store.Store, name string) world {
	t.Helper()
	ctx := context.Background()
	ten, err := s.Tenants().CreateTenant(ctx, name, t0)
	if err != nil {
		t.Fatal(err)
	}
	j, err := s.Journeys().CreateJourney(ctx, store.Journey{TenantID: ten.ID, Name: "welcome", CreatedAt: t0}, graphA)
	if err != nil {
		t.Fatal(err)
	}
	w := world{s: s, tenant: ten.ID, journey: j.ID}
	w.customer = w.newCustomer(t, "alice")
	return w
}

func (w world) newCustomer(t testing.TB, externalID string) string {
	t.Helper()
	c, _, err := w.s.Customers().UpsertCustomer(context.Background(), w.tenant, externalID, store.CustomerPatch{}, t0)
	if err != nil {
		t.Fatal(err)
	}
	return c.ID
}

// instance is a running instance of the world's journey for customer.
func (w world) instance(customer, entryKey string) store.Instance {
	return store.Instance{
		ID: store.NewID("ins", t0), TenantID: w.tenant, JourneyID: w.journey, Version: 1, CustomerID: customer,
		Status: store.InstanceRunning, Nodes: []string{"start"}, EntryKey: entryKey,
		Snapshot: json.RawMessage(`{"tokens": [{"id": "t1", "node": "start"}]}`), CreatedAt: at(1), UpdatedAt: at(1),
	}
}

func (w world) commit(c store.Commit) error {
	return w.s.Instances().Commit(context.Background(), []store.Commit{c})[0]
}

// create commits in as a new instance and returns it as stored.
func (w world) create(t testing.TB, in store.Instance) store.Instance {
	t.Helper()
	if err := w.commit(store.Commit{Instance: in, Create: true}); err != nil {
		t.Fatal(err)
	}
	in.Epoch, in.CreatedAt, in.UpdatedAt = 1, stored(in.CreatedAt), stored(in.UpdatedAt)
	return in
}

// sameInstance compares instances, snapshots by value.
func sameInstance(t *testing.T, got, want store.Instance) {
	t.Helper()
	wantGraph(t, got.Snapshot, want.Snapshot)
	got.Snapshot, want.Snapshot = nil, nil
	wantEqual(t, got, want)
}

func ids[T any](items []T, id func(T) string) []string {
	out := []string{}
	for _, it := range items {
		out = append(out, id(it))
	}
	return out
}

func instanceID(in store.Instance) string { return in.ID }
func deliveryKey(d store.Delivery) string { return d.Key }
func timerToken(tm store.Timer) string    { return tm.TokenID }

func testTenantSettings(t *testing.T, s store.Store) {
	ctx := context.Background()
	ts := s.Tenants()
	ten := newTenant(t, s, "acme")
	wantEqual(t, ten.Settings, store.TenantSettings{})
	on := store.TenantSettings{RejectUnknownCustomers: true}
	got := must(ts.UpdateTenantSettings(ctx, ten.ID, on))(t)
	wantEqual(t, got, store.Tenant{ID: ten.ID, Name: ten.Name, Settings: on, CreatedAt: ten.CreatedAt})
	wantEqual(t, must(ts.GetTenant(ctx, ten.ID))(t), got)
	wantEqual(t, must(ts.ListTenants(ctx))(t), []store.Tenant{got})
	wantEqual(t, must(ts.UpdateTenantSettings(ctx, ten.ID, store.TenantSettings{}))(t).Settings, store.TenantSettings{})
	wantErr(t, errOf(ts.UpdateTenantSettings(ctx, "ten_missing", on)), store.ErrNotFound)
}

func ptr[T any](v T) *T { return &v }

func testCustomers(t *testing.T, s store.Store) {
	ctx := context.Background()
	cs := s.Customers()
	ten := newTenant(t, s, "acme")
	c, created := must2(cs.UpsertCustomer(ctx, ten.ID, "u1", store.CustomerPatch{
		Email: ptr("a@example.com"), Properties: map[string]any{"plan": "free", "age": 30, "gone": nil},
		AddTags: []string{"vip", "beta", "vip"}, Preferences: map[string]bool{"sms": false},
	}, t0))(t)
	if !created || c.ID[:4] != "cus_" {
		t.Fatalf("created %v, id %q", created, c.ID)
	}
	wantEqual(t, c, store.Customer{ID: c.ID, TenantID: ten.ID, ExternalID: "u1", Email: "a@example.com",
		Properties: map[string]any{"plan": "free", "age": 30}, Tags: []string{"vip", "beta"},
		Preferences: map[string]bool{"sms": false}, PushTokens: []string{}, CreatedAt: stored(t0), UpdatedAt: stored(t0)})
	got := must(cs.GetCustomer(ctx, ten.ID, c.ID))(t)
	wantEqual(t, got.Properties, map[string]any{"plan": "free", "age": float64(30)})
	got.Properties = c.Properties
	wantEqual(t, got, c)

	// A second upsert patches: nil removes a property, tags neither repeat
	// nor stay when removed, preferences merge, push tokens are replaced.
	up, created := must2(cs.UpsertCustomer(ctx, ten.ID, "u1", store.CustomerPatch{
		Name: ptr("Ann"), Properties: map[string]any{"plan": "pro", "age": nil},
		AddTags: []string{"beta", "paid"}, RemoveTags: []string{"vip", "never"},
		Preferences: map[string]bool{"email": true}, PushTokens: &[]string{"tok"},
	}, at(5)))(t)
	want := store.Customer{ID: c.ID, TenantID: ten.ID, ExternalID: "u1", Email: "a@example.com", Name: "Ann",
		Properties: map[string]any{"plan": "pro"}, Tags: []string{"beta", "paid"},
		Preferences: map[string]bool{"sms": false, "email": true}, PushTokens: []string{"tok"},
		CreatedAt: stored(t0), UpdatedAt: stored(at(5))}
	if created {
		t.Fatal("second upsert created")
	}
	wantEqual(t, up, want)
	wantEqual(t, must(cs.GetCustomerByExternalID(ctx, ten.ID, "u1"))(t), want)

	patched := must(cs.PatchCustomer(ctx, ten.ID, c.ID, store.CustomerPatch{
		Email: ptr(""), Timezone: ptr("Europe/Paris"), Phone: ptr("+33"), RemoveTags: []string{"beta"}, PushTokens: &[]string{},
	}, at(6)))(t)
	want.Email, want.Timezone, want.Phone, want.Tags, want.PushTokens, want.UpdatedAt = "", "Europe/Paris", "+33", []string{"paid"}, []string{}, stored(at(6))
	wantEqual(t, patched, want)
	wantEqual(t, must(cs.GetCustomer(ctx, ten.ID, c.ID))(t), want)

	wantErr(t, errOf(cs.PatchCustomer(ctx, ten.ID, "cus_missing", store.CustomerPatch{}, at(7))), store.ErrNotFound)
	wantErr(t, errOf(cs.GetCustomer(ctx, ten.ID, "cus_missing")), store.ErrNotFound)
	wantErr(t, errOf(cs.GetCustomerByExternalID(ctx, ten.ID, "u2")), store.ErrNotFound)
	wantErr(t, errOf3(cs.UpsertCustomer(ctx, "ten_missing", "u1", store.CustomerPatch{}, t0)), store.ErrNotFound)
}

func testListCustomers(t *testing.T, s store.Store) {
	ctx := context.Background()
	cs := s.Customers()
	ten := newTenant(t, s, "acme")
	var all, tagged []store.Customer
	for i := range 5 {
		p := store.CustomerPatch{}
		if i%2 == 0 {
			p.AddTags = []string{"other", "vip"}
		}
		c, _ := must2(cs.UpsertCustomer(ctx, ten.ID, fmt.Sprintf("u%d", i), p, at(i)))(t)
		all = append(all, c)
		if i%2 == 0 {
			tagged = append(tagged, c)
		}
	}
	wantEqual(t, must(cs.ListCustomers(ctx, ten.ID, store.CustomerFilter{}))(t), all)
	wantEqual(t, must(cs.ListCustomers(ctx, ten.ID, store.CustomerFilter{Tag: "vip"}))(t), tagged)
	wantEqual(t, must(cs.ListCustomers(ctx, ten.ID, store.CustomerFilter{Tag: "vip", After: tagged[0].ID, Limit: 1}))(t), tagged[1:2])
	wantEqual(t, must(cs.ListCustomers(ctx, ten.ID, store.CustomerFilter{Tag: "vi"}))(t), []store.Customer(nil))
	wantEqual(t, allPages(t, 2, func(after string, limit int) ([]store.Customer, error) {
		return cs.ListCustomers(ctx, ten.ID, store.CustomerFilter{After: after, Limit: limit})
	}, func(c store.Customer) string { return c.ID }), all)
}

// testConcurrentUpsert races upserts of one new external id: one creates,
// the others patch the same customer, and no patch is lost.
func testConcurrentUpsert(t *testing.T, s store.Store) {
	ctx := context.Background()
	ten := newTenant(t, s, "acme")
	const n = 10
	results := make(chan store.Customer, n)
	createdCount := make(chan bool, n)
	next := make(chan int, n)
	for i := range n {
		next <- i
	}
	for _, err := range Concurrently(n, func() error {
		tag := fmt.Sprintf("t%d", <-next)
		c, created, err := s.Customers().UpsertCustomer(ctx, ten.ID, "u1", store.CustomerPatch{AddTags: []string{tag}}, t0)
		results <- c
		createdCount <- created
		return err
	}) {
		if err != nil {
			t.Fatal(err)
		}
	}
	close(results)
	close(createdCount)
	creators := 0
	for created := range createdCount {
		if created {
			creators++
		}
	}
	wantEqual(t, creators, 1)
	first := <-results
	for c := range results {
		wantEqual(t, c.ID, first.ID)
	}
	wantEqual(t, len(must(s.Customers().GetCustomer(ctx, ten.ID, first.ID))(t).Tags), n)
}

func testEvents(t *testing.T, s store.Store) {
	ctx := context.Background()
	es := s.Events()
	w := newWorld(t, s, "acme")
	bob := w.newCustomer(t, "bob")
	batch := []store.Event{
		{CustomerID: w.customer, MessageID: "m1", Type: "signed_up", Properties: json.RawMessage(`{"plan": "pro"}`), Timestamp: at(1), ReceivedAt: at(10)},
		{CustomerID: w.customer, MessageID: "m2", Type: "clicked", Timestamp: at(2), ReceivedAt: at(10)},
		{CustomerID: w.customer, MessageID: "m1", Type: "signed_up", Timestamp: at(3), ReceivedAt: at(10)},
		{CustomerID: bob, Type: "clicked", ReceivedAt: at(11)},
	}
	got, seen := must2(es.AppendEvents(ctx, w.tenant, batch))(t)
	wantEqual(t, seen, []bool{false, false, true, false})
	wantEqual(t, got[2], got[0])
	e1 := got[0]
	if e1.ID[:4] != "evt_" || e1.TenantID != w.tenant || e1.RoutedAt != nil {
		t.Fatalf("stored event %+v", e1)
	}
	wantEqual(t, e1.Timestamp, stored(at(1)))
	wantEqual(t, e1.ReceivedAt, stored(at(10)))
	wantGraph(t, e1.Properties, []byte(`{"plan": "pro"}`))
	wantGraph(t, got[1].Properties, []byte(`{}`))
	// Without a message id an event is its own message; without a
	// timestamp it happened when received.
	wantEqual(t, got[3].MessageID, got[3].ID)
	wantEqual(t, got[3].Timestamp, stored(at(11)))

	again, seen := must2(es.AppendEvents(ctx, w.tenant, []store.Event{
		{CustomerID: w.customer, MessageID: "m2", Type: "changed", ReceivedAt: at(20)},
		{CustomerID: w.customer, MessageID: "m3", Type: "opened", Timestamp: at(4), ReceivedAt: at(20)},
	}))(t)
	wantEqual(t, seen, []bool{true, false})
	wantEqual(t, again[0].ID, got[1].ID)
	wantEqual(t, again[0].Type, "clicked")

	mine := must(es.ListCustomerEvents(ctx, w.tenant, w.customer, 0))(t)
	wantEqual(t, ids(mine, func(e store.Event) string { return e.MessageID }), []string{"m3", "m2", "m1"})
	wantEqual(t, len(must(es.ListCustomerEvents(ctx, w.tenant, w.customer, 2))(t)), 2)
	wantEqual(t, len(must(es.ListCustomerEvents(ctx, w.tenant, bob, 0))(t)), 1)

	// A batch is stored whole or not at all.
	_, _, err := es.AppendEvents(ctx, w.tenant, []store.Event{
		{CustomerID: w.customer, MessageID: "m4", Type: "x"},
		{CustomerID: "cus_missing", MessageID: "m5", Type: "x"},
	})
	wantErr(t, err, store.ErrNotFound)
	wantEqual(t, len(must(es.ListCustomerEvents(ctx, w.tenant, w.customer, 0))(t)), 3)
}

func testClaimUnroutedEvents(t *testing.T, s store.Store) {
	ctx := context.Background()
	es := s.Events()
	a, b := newWorld(t, s, "a"), newWorld(t, s, "b")
	ea, _ := must2(es.AppendEvents(ctx, a.tenant, []store.Event{
		{CustomerID: a.customer, MessageID: "1", Type: "x", ReceivedAt: at(3)},
		{CustomerID: a.customer, MessageID: "2", Type: "x", ReceivedAt: at(1)},
	}))(t)
	eb, _ := must2(es.AppendEvents(ctx, b.tenant, []store.Event{{CustomerID: b.customer, MessageID: "1", Type: "x", ReceivedAt: at(2)}}))(t)
	// claim claims with a lease of a minute.
	claim := func(receivedBefore, now, limit int) []store.Event {
		t.Helper()
		return must(es.ClaimUnroutedEvents(ctx, at(receivedBefore), at(now), time.Minute, limit))(t)
	}
	eventID := func(e store.Event) string { return e.ID }
	// Only events received by receivedBefore, oldest first, of any tenant.
	wantEqual(t, claim(2, 10, 0), []store.Event{ea[1], eb[0]})
	// Leased events are not claimed again, until the lease lapses.
	wantEqual(t, ids(claim(10, 10, 0), eventID), []string{ea[0].ID})
	wantEqual(t, ids(claim(10, 69, 0), eventID), []string{})
	wantEqual(t, ids(claim(10, 70, 2), eventID), []string{ea[1].ID, eb[0].ID})

	if err := es.MarkRouted(ctx, a.tenant, []string{ea[1].ID, eb[0].ID, "evt_missing"}, at(5)); err != nil {
		t.Fatal(err)
	}
	// b's event was named with a's tenant: it stays unrouted. A routed
	// event is not claimed, its lease lapsed or not.
	wantEqual(t, ids(claim(10, 200, 0), eventID), []string{eb[0].ID, ea[0].ID})
	if err := es.MarkRouted(ctx, a.tenant, []string{ea[0].ID, ea[1].ID}, at(9)); err != nil {
		t.Fatal(err)
	}
	if err := es.MarkRouted(ctx, a.tenant, nil, at(9)); err != nil {
		t.Fatal(err)
	}
	routed := must(es.ListCustomerEvents(ctx, a.tenant, a.customer, 0))(t)
	byMessage := map[string]store.Event{}
	for _, e := range routed {
		byMessage[e.MessageID] = e
	}
	wantEqual(t, *byMessage["2"].RoutedAt, stored(at(5)))
	wantEqual(t, *byMessage["1"].RoutedAt, stored(at(9)))
	wantEqual(t, ids(claim(10, 1000, 0), eventID), []string{eb[0].ID})
}

func testCommitCreate(t *testing.T, s store.Store) {
	ctx := context.Background()
	is := s.Instances()
	w := newWorld(t, s, "acme")
	in := w.instance(w.customer, "evt_1")
	in.Epoch = 42
	err := w.commit(store.Commit{Instance: in, Create: true,
		Steps:      []store.Step{{NodeID: "start", NodeType: "event_entry", Version: 1, TokenID: "t1", Outcome: "completed", StartedAt: at(1), FinishedAt: at(1)}},
		Deliveries: []store.Delivery{{Key: "k1", NodeID: "mail", Channel: "email", Payload: json.RawMessage(`{"to": "a"}`)}},
		Timers:     []store.Timer{{TokenID: "t1", DueAt: at(100)}},
		Waits:      []store.Wait{{EventType: "opened"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := in
	want.Epoch, want.CreatedAt, want.UpdatedAt = 1, stored(at(1)), stored(at(1))
	sameInstance(t, must(is.GetInstance(ctx, w.tenant, in.ID))(t), want)
	sameInstance(t, must(is.ActiveInstance(ctx, w.tenant, w.journey, w.customer))(t), want)
	sameInstance(t, must(is.LastInstance(ctx, w.tenant, w.journey, w.customer))(t), want)
	wantEqual(t, len(must(is.ListSteps(ctx, w.tenant, in.ID))(t)), 1)
	wantEqual(t, must(is.WaitingFor(ctx, w.tenant, w.customer, "opened"))(t), []string{in.ID})
	wantEqual(t, must(is.ClaimDueTimers(ctx, at(100), time.Minute, 0))(t),
		[]store.Timer{{TenantID: w.tenant, InstanceID: in.ID, CustomerID: w.customer, TokenID: "t1", DueAt: stored(at(100))}})
	ds := must(s.Deliveries().ListDeliveries(ctx, w.tenant, store.DeliveryFilter{}))(t)
	wantEqual(t, len(ds), 1)
	d := ds[0]
	if d.ID[:4] != "dlv_" || d.Status != store.DeliveryPending || d.InstanceID != in.ID || d.JourneyID != w.journey ||
		d.CustomerID != w.customer || d.TenantID != w.tenant || !d.CreatedAt.Equal(stored(at(1))) {
		t.Fatalf("delivery %+v", d)
	}
	wantGraph(t, d.Payload, []byte(`{"to": "a"}`))

	// An instance without an id gets one.
	other := w.newCustomer(t, "bob")
	anon := w.instance(other, "")
	anon.ID = ""
	if err := w.commit(store.Commit{Instance: anon, Create: true}); err != nil {
		t.Fatal(err)
	}
	if id := must(is.ActiveInstance(ctx, w.tenant, w.journey, other))(t).ID; id[:4] != "ins_" {
		t.Fatalf("assigned id %q", id)
	}

	// Ending sets EndedAt, once.
	done := want
	done.Status, done.Nodes, done.UpdatedAt = store.InstanceCompleted, nil, at(7)
	if err := w.commit(store.Commit{Instance: done}); err != nil {
		t.Fatal(err)
	}
	done.Nodes, done.UpdatedAt, done.EndedAt = []string{}, stored(at(7)), ptr(stored(at(7)))
	sameInstance(t, must(is.GetInstance(ctx, w.tenant, in.ID))(t), done)
	again := done
	again.UpdatedAt = at(8)
	if err := w.commit(store.Commit{Instance: again}); err != nil {
		t.Fatal(err)
	}
	wantEqual(t, must(is.GetInstance(ctx, w.tenant, in.ID))(t).EndedAt, done.EndedAt)
	wantErr(t, errOf(is.ActiveInstance(ctx, w.tenant, w.journey, w.customer)), store.ErrNotFound)

	// Terminal stays terminal.
	revived := done
	revived.Status = store.InstanceRunning
	wantErr(t, w.commit(store.Commit{Instance: revived}), store.ErrConflict)

	// The entry key is spent even once the instance ended; a new entry
	// after the end is welcome and becomes the last instance.
	replay := w.instance(w.customer, "evt_1")
	wantErr(t, w.commit(store.Commit{Instance: replay, Create: true}), store.ErrDuplicateEntry)
	later := w.instance(w.customer, "evt_2")
	later.CreatedAt = at(2)
	next := w.create(t, later)
	wantEqual(t, must(is.LastInstance(ctx, w.tenant, w.journey, w.customer))(t).ID, next.ID)
	wantErr(t, errOf(is.LastInstance(ctx, w.tenant, "jrn_other", w.customer)), store.ErrNotFound)

	// Two instances may share an empty entry key.
	third := w.newCustomer(t, "carol")
	w.create(t, w.instance(third, ""))
	wantErr(t, w.commit(store.Commit{Instance: w.instance(third, ""), Create: true}), store.ErrActiveInstance)
	wantErr(t, w.commit(store.Commit{Instance: w.instance("cus_missing", "e"), Create: true}), store.ErrNotFound)
	wantErr(t, w.commit(store.Commit{Instance: w.instance(third, "e3")}), store.ErrNotFound)
}

// testOneActiveInstance races creates of one journey for one customer.
func testOneActiveInstance(t *testing.T, s store.Store) {
	ctx := context.Background()
	w := newWorld(t, s, "acme")
	var winner string
	ins := make(chan store.Instance, 10)
	for i := range 10 {
		ins <- w.instance(w.customer, fmt.Sprintf("entry-%d", i))
	}
	wantEqual(t, wins(t, store.ErrActiveInstance, Concurrently(10, func() error {
		in := <-ins
		if err := w.commit(store.Commit{Instance: in, Create: true}); err != nil {
			return err
		}
		winner = in.ID
		return nil
	})), 1)
	active := must(s.Instances().ActiveInstance(ctx, w.tenant, w.journey, w.customer))(t)
	wantEqual(t, active.ID, winner)
	wantEqual(t, len(must(s.Instances().ListInstances(ctx, w.tenant, store.InstanceFilter{}))(t)), 1)

	active.Status = store.InstanceExited
	if err := w.commit(store.Commit{Instance: active}); err != nil {
		t.Fatal(err)
	}
	w.create(t, w.instance(w.customer, "entry-after"))
}

func testEpoch(t *testing.T, s store.Store) {
	ctx := context.Background()
	is := s.Instances()
	w := newWorld(t, s, "acme")
	in := w.create(t, w.instance(w.customer, "e"))
	claimed := must(is.ClaimInstance(ctx, w.tenant, in.ID))(t)
	want := in
	want.Epoch = 2
	sameInstance(t, claimed, want)

	// The first activation, now a zombie, can no longer write.
	zombie := in
	zombie.Status = store.InstanceWaiting
	wantErr(t, w.commit(store.Commit{Instance: zombie, Steps: []store.Step{{NodeID: "x"}}}), store.ErrStaleEpoch)
	sameInstance(t, must(is.GetInstance(ctx, w.tenant, in.ID))(t), want)
	wantEqual(t, len(must(is.ListSteps(ctx, w.tenant, in.ID))(t)), 0)

	owner := claimed
	owner.Status, owner.UpdatedAt = store.InstanceWaiting, at(3)
	if err := w.commit(store.Commit{Instance: owner}); err != nil {
		t.Fatal(err)
	}
	wantEqual(t, must(is.GetInstance(ctx, w.tenant, in.ID))(t).Status, store.InstanceWaiting)
	wantEqual(t, must(is.ClaimInstance(ctx, w.tenant, in.ID))(t).Epoch, int64(3))
	wantErr(t, w.commit(store.Commit{Instance: owner}), store.ErrStaleEpoch)
	wantErr(t, errOf(is.ClaimInstance(ctx, w.tenant, "ins_missing")), store.ErrNotFound)
	missing := owner
	missing.ID = "ins_missing"
	wantErr(t, w.commit(store.Commit{Instance: missing}), store.ErrNotFound)
}

// testCommitBatch commits a batch in which some commits fail: those roll
// back alone, the others persist.
func testCommitBatch(t *testing.T, s store.Store) {
	ctx := context.Background()
	is := s.Instances()
	w := newWorld(t, s, "acme")
	bob, carol := w.newCustomer(t, "bob"), w.newCustomer(t, "carol")
	existing := w.create(t, w.instance(w.customer, "e0"))
	stale := existing
	stale.Epoch = 7
	stale.Status = store.InstanceFailed
	a, b := w.instance(bob, "e1"), w.instance(carol, "e2")
	delivery := func(key string) []store.Delivery { return []store.Delivery{{Key: key, Channel: "email"}} }
	patch := func(tag string) *store.CustomerPatch { return &store.CustomerPatch{AddTags: []string{tag}} }
	errs := is.Commit(ctx, []store.Commit{
		{Instance: a, Create: true, Deliveries: delivery("a"), Customer: patch("a"), Steps: []store.Step{{NodeID: "n"}}},
		{Instance: stale, Deliveries: delivery("stale"), Customer: patch("stale"), Timers: []store.Timer{{TokenID: "t", DueAt: at(1)}}},
		{Instance: w.instance(bob, "e3"), Create: true, Deliveries: delivery("dup"), Customer: patch("dup")},
		{Instance: b, Create: true, Deliveries: delivery("b"), Waits: []store.Wait{{EventType: "opened"}}},
		{Instance: w.instance("cus_missing", "e4"), Create: true, Deliveries: delivery("orphan")},
	})
	wantEqual(t, len(errs), 5)
	for i, want := range []error{nil, store.ErrStaleEpoch, store.ErrActiveInstance, nil, store.ErrNotFound} {
		if !errors.Is(errs[i], want) {
			t.Errorf("commit %d: got %v, want %v", i, errs[i], want)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	wantEqual(t, slices.Sorted(slices.Values(ids(must(is.ListInstances(ctx, w.tenant, store.InstanceFilter{}))(t), instanceID))),
		slices.Sorted(slices.Values([]string{existing.ID, a.ID, b.ID})))
	sameInstance(t, must(is.GetInstance(ctx, w.tenant, existing.ID))(t), existing)
	wantEqual(t, slices.Sorted(slices.Values(ids(must(s.Deliveries().ListDeliveries(ctx, w.tenant, store.DeliveryFilter{}))(t), deliveryKey))),
		[]string{"a", "b"})
	wantEqual(t, must(s.Customers().GetCustomer(ctx, w.tenant, bob))(t).Tags, []string{"a"})
	wantEqual(t, must(s.Customers().GetCustomer(ctx, w.tenant, w.customer))(t).Tags, []string{})
	wantEqual(t, len(must(is.ListSteps(ctx, w.tenant, a.ID))(t)), 1)
	wantEqual(t, must(is.ClaimDueTimers(ctx, at(10), time.Minute, 0))(t), []store.Timer(nil))
	wantEqual(t, must(is.WaitingFor(ctx, w.tenant, carol, "opened"))(t), []string{b.ID})
	wantEqual(t, is.Commit(ctx, nil), []error{})
}

func testTimersAndWaits(t *testing.T, s store.Store) {
	ctx := context.Background()
	is := s.Instances()
	w, other := newWorld(t, s, "acme"), newWorld(t, s, "globex")
	in := w.instance(w.customer, "e")
	err := w.commit(store.Commit{Instance: in, Create: true,
		Timers: []store.Timer{{TokenID: "t1", DueAt: at(30)}, {TokenID: "t2", DueAt: at(10), CustomerID: "cus_someone_else"}},
		Waits:  []store.Wait{{EventType: "opened"}, {EventType: "clicked"}, {EventType: "opened"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	theirs := other.instance(other.customer, "e")
	err = other.commit(store.Commit{Instance: theirs, Create: true, Timers: []store.Timer{{TokenID: "t1", DueAt: at(20)}}})
	if err != nil {
		t.Fatal(err)
	}
	// A claim without a lease leaves the timers it returns free, so due
	// reads what is due at now, as long as now does not go back.
	due := func(now, limit int) []store.Timer {
		t.Helper()
		return must(is.ClaimDueTimers(ctx, at(now), 0, limit))(t)
	}
	wantEqual(t, due(9, 0), []store.Timer(nil))
	// A timer names its instance's customer, whatever the commit's timer said.
	wantEqual(t, due(20, 0), []store.Timer{{TenantID: w.tenant, InstanceID: in.ID, CustomerID: w.customer, TokenID: "t2", DueAt: stored(at(10))},
		{TenantID: other.tenant, InstanceID: theirs.ID, CustomerID: other.customer, TokenID: "t1", DueAt: stored(at(20))}})
	wantEqual(t, len(due(30, 1)), 1)
	wantEqual(t, ids(due(30, 0), timerToken), []string{"t2", "t1", "t1"})
	wantEqual(t, must(is.WaitingFor(ctx, w.tenant, w.customer, "opened"))(t), []string{in.ID})
	wantEqual(t, must(is.WaitingFor(ctx, w.tenant, w.customer, "clicked"))(t), []string{in.ID})

	// Each commit replaces the instance's timers and waits.
	in.Epoch = 1
	err = w.commit(store.Commit{Instance: in, Timers: []store.Timer{{TokenID: "t3", DueAt: at(5)}},
		Waits: []store.Wait{{EventType: "bought"}}})
	if err != nil {
		t.Fatal(err)
	}
	wantEqual(t, ids(due(30, 0), timerToken), []string{"t3", "t1"})
	wantEqual(t, must(is.WaitingFor(ctx, w.tenant, w.customer, "opened"))(t), []string(nil))
	wantEqual(t, must(is.WaitingFor(ctx, w.tenant, w.customer, "bought"))(t), []string{in.ID})
	if err := w.commit(store.Commit{Instance: in}); err != nil {
		t.Fatal(err)
	}
	wantEqual(t, ids(due(30, 0), timerToken), []string{"t1"})
	wantEqual(t, must(is.WaitingFor(ctx, w.tenant, w.customer, "bought"))(t), []string(nil))
}

func testClaimDueTimers(t *testing.T, s store.Store) {
	ctx := context.Background()
	is := s.Instances()
	w, other := newWorld(t, s, "acme"), newWorld(t, s, "globex")
	in := w.instance(w.customer, "e")
	timers := []store.Timer{{TokenID: "t1", DueAt: at(30)}, {TokenID: "t2", DueAt: at(10)}}
	if err := w.commit(store.Commit{Instance: in, Create: true, Timers: timers}); err != nil {
		t.Fatal(err)
	}
	theirs := other.instance(other.customer, "e")
	if err := other.commit(store.Commit{Instance: theirs, Create: true, Timers: []store.Timer{{TokenID: "t1", DueAt: at(20)}}}); err != nil {
		t.Fatal(err)
	}
	// claim claims with a lease of a minute and names the timers claimed
	// mine/t… and theirs/t….
	claim := func(now, limit int) []string {
		t.Helper()
		return ids(must(is.ClaimDueTimers(ctx, at(now), time.Minute, limit))(t), func(tm store.Timer) string {
			return map[string]string{in.ID: "mine", theirs.ID: "theirs"}[tm.InstanceID] + "/" + tm.TokenID
		})
	}
	wantEqual(t, claim(9, 0), []string{})
	// The earliest due first, of any tenant, up to the limit.
	wantEqual(t, claim(30, 2), []string{"mine/t2", "theirs/t1"})
	// A leased timer is not claimed again until its lease lapses.
	wantEqual(t, claim(30, 0), []string{"mine/t1"})
	wantEqual(t, claim(89, 0), []string{})
	wantEqual(t, claim(90, 0), []string{"mine/t2", "theirs/t1", "mine/t1"})

	// A commit that replaces the instance's timers writes them unleased;
	// a timer it removes is not claimed again.
	in.Epoch = 1
	if err := w.commit(store.Commit{Instance: in, Timers: timers[:1]}); err != nil {
		t.Fatal(err)
	}
	wantEqual(t, claim(100, 0), []string{"mine/t1"})
	wantEqual(t, claim(1000, 0), []string{"theirs/t1", "mine/t1"})
}

func testSteps(t *testing.T, s store.Store) {
	ctx := context.Background()
	is := s.Instances()
	w := newWorld(t, s, "acme")
	in := w.instance(w.customer, "e")
	step := func(node string) store.Step {
		return store.Step{NodeID: node, NodeType: "wait", Version: 1, TokenID: "t1", Outcome: "branched", Branch: "yes",
			Input: json.RawMessage(`{"a": 1}`), Output: json.RawMessage(`[1]`), Error: "e", StartedAt: at(1), FinishedAt: at(2)}
	}
	if err := w.commit(store.Commit{Instance: in, Create: true, Steps: []store.Step{step("a"), step("b")}}); err != nil {
		t.Fatal(err)
	}
	in.Epoch = 1
	explicit := step("c")
	explicit.Seq = 10
	if err := w.commit(store.Commit{Instance: in, Steps: []store.Step{explicit, step("d")}}); err != nil {
		t.Fatal(err)
	}
	if err := w.commit(store.Commit{Instance: in, Steps: []store.Step{step("e")}}); err != nil {
		t.Fatal(err)
	}
	got := must(is.ListSteps(ctx, w.tenant, in.ID))(t)
	var seqs []int64
	for _, st := range got {
		seqs = append(seqs, st.Seq)
	}
	wantEqual(t, seqs, []int64{1, 2, 10, 11, 12})
	wantEqual(t, ids(got, func(st store.Step) string { return st.NodeID }), []string{"a", "b", "c", "d", "e"})
	first := got[0]
	wantGraph(t, first.Input, []byte(`{"a": 1}`))
	wantGraph(t, first.Output, []byte(`[1]`))
	first.Input, first.Output = nil, nil
	want := step("a")
	want.InstanceID, want.Seq, want.Input, want.Output, want.StartedAt, want.FinishedAt = in.ID, 1, nil, nil, stored(at(1)), stored(at(2))
	wantEqual(t, first, want)
	wantErr(t, w.commit(store.Commit{Instance: in, Steps: []store.Step{explicit}}), store.ErrConflict)
	wantEqual(t, len(must(is.ListSteps(ctx, w.tenant, in.ID))(t)), 5)
}

func testDeliveries(t *testing.T, s store.Store) {
	ctx := context.Background()
	ds := s.Deliveries()
	w, other := newWorld(t, s, "acme"), newWorld(t, s, "globex")
	in := w.instance(w.customer, "e")
	mail := func(key string, created int) store.Delivery {
		return store.Delivery{Key: key, NodeID: "mail", Channel: "email", Payload: json.RawMessage(`{"v": "` + key + `"}`), CreatedAt: at(created)}
	}
	if err := w.commit(store.Commit{Instance: in, Create: true, Deliveries: []store.Delivery{mail("k1", 3), mail("k2", 1), mail("k1", 9)}}); err != nil {
		t.Fatal(err)
	}
	theirs := other.instance(other.customer, "e")
	if err := other.commit(store.Commit{Instance: theirs, Create: true, Deliveries: []store.Delivery{mail("k1", 2)}}); err != nil {
		t.Fatal(err)
	}
	// A replayed step commits its deliveries again: they are ignored.
	in.Epoch = 1
	replay := mail("k2", 50)
	replay.Payload = json.RawMessage(`{"v": "changed"}`)
	if err := w.commit(store.Commit{Instance: in, Deliveries: []store.Delivery{replay, mail("k3", 4)}}); err != nil {
		t.Fatal(err)
	}
	mine := must(ds.ListDeliveries(ctx, w.tenant, store.DeliveryFilter{}))(t)
	wantEqual(t, len(mine), 3)
	byKey := map[string]store.Delivery{}
	for _, d := range mine {
		byKey[d.Key] = d
	}
	wantGraph(t, byKey["k1"].Payload, []byte(`{"v": "k1"}`))
	wantGraph(t, byKey["k2"].Payload, []byte(`{"v": "k2"}`))
	wantEqual(t, byKey["k2"].CreatedAt, stored(at(1)))

	// claim claims with a lease of a minute.
	claim := func(now, limit int) []store.Delivery {
		t.Helper()
		return must(ds.ClaimDeliveries(ctx, at(now), time.Minute, limit))(t)
	}
	// The oldest first, of any tenant, up to the limit.
	pending := claim(100, 2)
	wantEqual(t, ids(pending, deliveryKey), []string{"k2", "k1"})
	wantEqual(t, pending[0].ClaimUntil, stored(at(160)))
	pending[0].ClaimUntil = time.Time{}
	wantEqual(t, pending[0], byKey["k2"])
	wantEqual(t, pending[1].TenantID, other.tenant)
	// A leased delivery is not claimed again until its lease lapses.
	wantEqual(t, ids(claim(100, 0), deliveryKey), []string{"k1", "k3"})
	wantEqual(t, ids(claim(159, 0), deliveryKey), []string{})

	sent := byKey["k2"]
	sent.Status, sent.Provider, sent.ProviderMessageID, sent.Attempts, sent.UpdatedAt = store.DeliverySent, "smtp", "pm-1", 1, at(60)
	sent.Payload = json.RawMessage(`{"ignored": true}`)
	if err := ds.UpdateDelivery(ctx, sent); err != nil {
		t.Fatal(err)
	}
	// A delivery no longer pending is not claimed, its lease lapsed or not.
	reclaimed := claim(160, 0)
	wantEqual(t, ids(reclaimed, deliveryKey), []string{"k1", "k1", "k3"})
	// Released, pending deliveries are claimed again at once; releasing a
	// sent one changes nothing.
	if err := ds.ReleaseDeliveries(ctx, append(reclaimed[1:], sent)); err != nil {
		t.Fatal(err)
	}
	wantEqual(t, ids(claim(161, 0), deliveryKey), []string{"k1", "k3"})
	got := must(ds.ListDeliveries(ctx, w.tenant, store.DeliveryFilter{Status: store.DeliverySent}))(t)
	wantEqual(t, len(got), 1)
	wantGraph(t, got[0].Payload, []byte(`{"v": "k2"}`))
	sent.Payload, got[0].Payload = nil, nil
	sent.UpdatedAt = stored(at(60))
	wantEqual(t, got[0], sent)
	missing := sent
	missing.ID = "dlv_missing"
	wantErr(t, ds.UpdateDelivery(ctx, missing), store.ErrNotFound)
	invalid := sent
	invalid.Status = "lost"
	if err := ds.UpdateDelivery(ctx, invalid); err == nil {
		t.Fatal("unknown status accepted")
	}

	wantEqual(t, len(must(ds.ListDeliveries(ctx, w.tenant, store.DeliveryFilter{InstanceID: in.ID, JourneyID: w.journey, CustomerID: w.customer}))(t)), 3)
	wantEqual(t, must(ds.ListDeliveries(ctx, w.tenant, store.DeliveryFilter{InstanceID: theirs.ID}))(t), []store.Delivery(nil))
	paged := allPages(t, 2, func(after string, limit int) ([]store.Delivery, error) {
		return ds.ListDeliveries(ctx, w.tenant, store.DeliveryFilter{After: after, Limit: limit})
	}, func(d store.Delivery) string { return d.ID })
	wantEqual(t, ids(paged, deliveryKey), ids(mine, deliveryKey))
}

// testConcurrentClaims claims timers, deliveries and events from 8
// goroutines at once until none is left: each is claimed exactly once.
func testConcurrentClaims(t *testing.T, s store.Store) {
	ctx := context.Background()
	w := newWorld(t, s, "acme")
	const n = 200
	var timers []store.Timer
	var deliveries []store.Delivery
	var events []store.Event
	for i := range n {
		timers = append(timers, store.Timer{TokenID: fmt.Sprintf("t%03d", i), DueAt: at(i % 10)})
		deliveries = append(deliveries, store.Delivery{Key: fmt.Sprintf("k%03d", i), Channel: "email", CreatedAt: at(i % 10)})
		events = append(events, store.Event{CustomerID: w.customer, Type: "x", ReceivedAt: at(i % 10)})
	}
	if err := w.commit(store.Commit{Instance: w.instance(w.customer, "e"), Create: true, Timers: timers, Deliveries: deliveries}); err != nil {
		t.Fatal(err)
	}
	must2(s.Events().AppendEvents(ctx, w.tenant, events))(t)
	now := at(100)
	t.Run("timers", func(t *testing.T) {
		claimedOnce(t, n, func() ([]store.Timer, error) { return s.Instances().ClaimDueTimers(ctx, now, time.Hour, 7) }, timerToken)
	})
	t.Run("deliveries", func(t *testing.T) {
		claimedOnce(t, n, func() ([]store.Delivery, error) { return s.Deliveries().ClaimDeliveries(ctx, now, time.Hour, 7) }, deliveryKey)
	})
	t.Run("events", func(t *testing.T) {
		claimedOnce(t, n, func() ([]store.Event, error) { return s.Events().ClaimUnroutedEvents(ctx, now, now, time.Hour, 7) },
			func(e store.Event) string { return e.ID })
	})
}

// claimedOnce claims from 8 goroutines at once, each until a claim comes
// back empty, and checks that n rows were claimed, each once.
func claimedOnce[T any](t *testing.T, n int, claim func() ([]T, error), id func(T) string) {
	var mu sync.Mutex
	claims := map[string]int{}
	for _, err := range Concurrently(8, func() error {
		for {
			rows, err := claim()
			if err != nil || len(rows) == 0 {
				return err
			}
			mu.Lock()
			for _, r := range rows {
				claims[id(r)]++
			}
			mu.Unlock()
		}
	}) {
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(claims) != n {
		t.Fatalf("%d rows claimed, want %d", len(claims), n)
	}
	for id, times := range claims {
		if times != 1 {
			t.Errorf("%s claimed %d times", id, times)
		}
	}
}

func testCountSends(t *testing.T, s store.Store) {
	ctx := context.Background()
	is := s.Instances()
	w := newWorld(t, s, "acme")
	bob := w.newCustomer(t, "bob")
	send := func(key, channel, status string, created int) store.Delivery {
		return store.Delivery{Key: key, Channel: channel, Status: status, CreatedAt: at(created)}
	}
	// Two journeys: caps count across all the tenant's journeys.
	j2 := must(s.Journeys().CreateJourney(ctx, store.Journey{TenantID: w.tenant, Name: "other"}, nil))(t)
	in2 := w.instance(w.customer, "e2")
	in2.JourneyID = j2.ID
	for _, c := range []store.Commit{
		{Instance: w.instance(w.customer, "e1"), Create: true, Deliveries: []store.Delivery{
			send("1", "email", "", 10), send("2", "email", store.DeliverySent, 20), send("3", "sms", store.DeliveryFailed, 30),
			send("4", "email", store.DeliverySkipped, 40)}},
		{Instance: in2, Create: true, Deliveries: []store.Delivery{send("5", "email", "", 50)}},
		{Instance: w.instance(bob, "e3"), Create: true, Deliveries: []store.Delivery{send("6", "email", "", 50)}},
	} {
		if err := w.commit(c); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		channel string
		since   int
		want    int
	}{{"email", 0, 3}, {"email", 10, 3}, {"email", 11, 2}, {"email", 50, 1}, {"email", 51, 0},
		{"sms", 0, 1}, {"push", 0, 0}, {"", 0, 4}, {"", 30, 2}} {
		got := must(is.CountSends(ctx, w.tenant, w.customer, tc.channel, at(tc.since)))(t)
		if got != tc.want {
			t.Errorf("CountSends(%q, since %d) = %d, want %d", tc.channel, tc.since, got, tc.want)
		}
	}
}

func testListInstances(t *testing.T, s store.Store) {
	ctx := context.Background()
	is := s.Instances()
	w, other := newWorld(t, s, "acme"), newWorld(t, s, "globex")
	j2 := must(s.Journeys().CreateJourney(ctx, store.Journey{TenantID: w.tenant, Name: "other"}, nil))(t)
	var all []store.Instance
	for i, spec := range []struct {
		journey, status string
		version         int
		nodes           []string
	}{
		{w.journey, store.InstanceRunning, 1, []string{"a"}},
		{w.journey, store.InstanceWaiting, 2, []string{"b", "c"}},
		{j2.ID, store.InstanceRunning, 1, []string{"b"}},
		{j2.ID, store.InstanceCompleted, 1, []string{}},
		{w.journey, store.InstancePaused, 2, []string{"a"}},
	} {
		in := w.instance(w.newCustomer(t, fmt.Sprintf("u%d", i)), "")
		in.ID = store.NewID("ins", at(i))
		in.JourneyID, in.Status, in.Version, in.Nodes = spec.journey, spec.status, spec.version, spec.nodes
		all = append(all, w.create(t, in))
	}
	theirs := other.create(t, other.instance(other.customer, ""))

	for name, tc := range map[string]struct {
		f    store.InstanceFilter
		want []int
	}{
		"all":      {store.InstanceFilter{}, []int{0, 1, 2, 3, 4}},
		"journey":  {store.InstanceFilter{JourneyID: j2.ID}, []int{2, 3}},
		"status":   {store.InstanceFilter{Status: store.InstanceRunning}, []int{0, 2}},
		"version":  {store.InstanceFilter{JourneyID: w.journey, Version: 2}, []int{1, 4}},
		"customer": {store.InstanceFilter{CustomerID: all[3].CustomerID}, []int{3}},
		"node":     {store.InstanceFilter{NodeID: "b"}, []int{1, 2}},
		"node a":   {store.InstanceFilter{NodeID: "a", Status: store.InstancePaused}, []int{4}},
		"page":     {store.InstanceFilter{After: all[1].ID, Limit: 2}, []int{2, 3}},
		"none":     {store.InstanceFilter{NodeID: "z"}, nil},
	} {
		var want []string
		for _, i := range tc.want {
			want = append(want, all[i].ID)
		}
		got := must(is.ListInstances(ctx, w.tenant, tc.f))(t)
		if g := ids(got, instanceID); !slices.Equal(g, want) {
			t.Errorf("%s: got %v, want %v", name, g, want)
		}
	}
	sameInstance(t, must(is.ListInstances(ctx, w.tenant, store.InstanceFilter{Limit: 1}))(t)[0], all[0])

	// Non-terminal instances of one customer, across journeys.
	c := all[0].CustomerID
	in := w.instance(c, "")
	in.ID, in.JourneyID = store.NewID("ins", at(10)), j2.ID
	w.create(t, in)
	wantEqual(t, ids(must(is.CustomerInstances(ctx, w.tenant, c))(t), instanceID), []string{all[0].ID, in.ID})
	wantEqual(t, must(is.CustomerInstances(ctx, w.tenant, all[3].CustomerID))(t), []store.Instance(nil))

	// Recoverable: running instances of every tenant last updated by a
	// time, paged by id.
	touched := all[2]
	touched.UpdatedAt = at(50)
	if err := w.commit(store.Commit{Instance: touched}); err != nil {
		t.Fatal(err)
	}
	recoverable := func(updatedBefore int) []string {
		t.Helper()
		return ids(allPages(t, 3, func(after string, limit int) ([]store.Instance, error) {
			return is.Recoverable(ctx, at(updatedBefore), after, limit)
		}, instanceID), instanceID)
	}
	wantEqual(t, recoverable(0), []string{})
	wantEqual(t, recoverable(49), slices.Sorted(slices.Values([]string{all[0].ID, in.ID, theirs.ID})))
	wantEqual(t, recoverable(50), slices.Sorted(slices.Values([]string{all[0].ID, all[2].ID, in.ID, theirs.ID})))
}

// testRuntimeTenantIsolation calls every runtime method with one tenant's
// id and another tenant's records: each must miss, and change nothing.
func testRuntimeTenantIsolation(t *testing.T, s store.Store) {
	ctx := context.Background()
	cs, es, is, ds := s.Customers(), s.Events(), s.Instances(), s.Deliveries()
	mine, theirs := newWorld(t, s, "mine"), newWorld(t, s, "theirs")
	theirs.customer = theirs.newCustomer(t, "zed")
	cust := must(cs.GetCustomer(ctx, theirs.tenant, theirs.customer))(t)
	evs, _ := must2(es.AppendEvents(ctx, theirs.tenant, []store.Event{{CustomerID: theirs.customer, MessageID: "m", Type: "x"}}))(t)
	in := theirs.instance(theirs.customer, "e")
	err := theirs.commit(store.Commit{Instance: in, Create: true,
		Deliveries: []store.Delivery{{Key: "k", Channel: "email"}},
		Timers:     []store.Timer{{TokenID: "t", DueAt: at(1)}}, Waits: []store.Wait{{EventType: "x"}},
		Steps: []store.Step{{NodeID: "n"}}})
	if err != nil {
		t.Fatal(err)
	}
	in = must(is.GetInstance(ctx, theirs.tenant, in.ID))(t)
	d := must(ds.ListDeliveries(ctx, theirs.tenant, store.DeliveryFilter{}))(t)[0]

	hijack := in
	hijack.TenantID, hijack.Status = mine.tenant, store.InstanceFailed
	stolen := d
	stolen.TenantID, stolen.Status = mine.tenant, store.DeliveryFailed
	notFound := map[string]error{
		"GetCustomer":             errOf(cs.GetCustomer(ctx, mine.tenant, theirs.customer)),
		"GetCustomerByExternalID": errOf(cs.GetCustomerByExternalID(ctx, mine.tenant, cust.ExternalID)),
		"PatchCustomer":           errOf(cs.PatchCustomer(ctx, mine.tenant, theirs.customer, store.CustomerPatch{Name: ptr("x")}, at(1))),
		"AppendEvents":            errOf3(es.AppendEvents(ctx, mine.tenant, []store.Event{{CustomerID: theirs.customer, Type: "x"}})),
		"Commit update":           mine.commit(store.Commit{Instance: hijack}),
		"Commit create":           mine.commit(store.Commit{Instance: mine.instance(theirs.customer, "e9"), Create: true}),
		"ClaimInstance":           errOf(is.ClaimInstance(ctx, mine.tenant, in.ID)),
		"GetInstance":             errOf(is.GetInstance(ctx, mine.tenant, in.ID)),
		"ActiveInstance":          errOf(is.ActiveInstance(ctx, mine.tenant, theirs.journey, theirs.customer)),
		"LastInstance":            errOf(is.LastInstance(ctx, mine.tenant, theirs.journey, theirs.customer)),
		"UpdateDelivery":          ds.UpdateDelivery(ctx, stolen),
	}
	for method, err := range notFound {
		if !errors.Is(err, store.ErrNotFound) {
			t.Errorf("%s with another tenant's id: got %v, want ErrNotFound", method, err)
		}
	}
	if err := es.MarkRouted(ctx, mine.tenant, []string{evs[0].ID}, at(1)); err != nil {
		t.Fatal(err)
	}
	// Another tenant's external id is free in mine.
	namesake, created := must2(cs.UpsertCustomer(ctx, mine.tenant, cust.ExternalID, store.CustomerPatch{}, at(1)))(t)
	if !created || namesake.ID == cust.ID {
		t.Fatalf("upsert of another tenant's external id: created %v, %s", created, namesake.ID)
	}

	wantEqual(t, len(must(cs.ListCustomers(ctx, mine.tenant, store.CustomerFilter{}))(t)), 2)
	wantEqual(t, must(es.ListCustomerEvents(ctx, mine.tenant, theirs.customer, 0))(t), []store.Event(nil))
	wantEqual(t, must(is.ListInstances(ctx, mine.tenant, store.InstanceFilter{}))(t), []store.Instance(nil))
	wantEqual(t, must(is.ListSteps(ctx, mine.tenant, in.ID))(t), []store.Step(nil))
	wantEqual(t, must(is.CustomerInstances(ctx, mine.tenant, theirs.customer))(t), []store.Instance(nil))
	wantEqual(t, must(is.WaitingFor(ctx, mine.tenant, theirs.customer, "x"))(t), []string(nil))
	wantEqual(t, must(is.CountSends(ctx, mine.tenant, theirs.customer, "", t0))(t), 0)
	wantEqual(t, must(ds.ListDeliveries(ctx, mine.tenant, store.DeliveryFilter{}))(t), []store.Delivery(nil))

	// Nothing of theirs changed.
	wantEqual(t, must(cs.GetCustomer(ctx, theirs.tenant, theirs.customer))(t), cust)
	sameInstance(t, must(is.GetInstance(ctx, theirs.tenant, in.ID))(t), in)
	wantEqual(t, must(ds.ListDeliveries(ctx, theirs.tenant, store.DeliveryFilter{}))(t), []store.Delivery{d})
	wantEqual(t, len(must(es.ListCustomerEvents(ctx, theirs.tenant, theirs.customer, 0))(t)), 1)
	now := time.Now()
	wantEqual(t, ids(must(es.ClaimUnroutedEvents(ctx, now, now, time.Minute, 0))(t), func(e store.Event) string { return e.ID }), []string{evs[0].ID})
	wantEqual(t, len(must(is.ListSteps(ctx, theirs.tenant, in.ID))(t)), 1)
	wantEqual(t, must(is.CountSends(ctx, theirs.tenant, theirs.customer, "", t0))(t), 1)
}

// testCountAtNodes: instances that have not ended count at each node one
// of their tokens is at, per journey version.
func testCountAtNodes(t *testing.T, s store.Store) {
	ctx := context.Background()
	w, other := newWorld(t, s, "acme"), newWorld(t, s, "globex")
	add := func(w world, version int, status string, nodes ...string) {
		t.Helper()
		customer := store.NewID("c", t0)
		in := w.instance(w.newCustomer(t, customer), customer)
		in.Version, in.Status, in.Nodes = version, status, nodes
		w.create(t, in)
	}
	add(w, 1, store.InstanceWaiting, "wait")
	add(w, 1, store.InstanceRunning, "wait", "mail")
	add(w, 1, store.InstancePaused, "mail")
	add(w, 1, store.InstanceCompleted, "wait")
	add(w, 2, store.InstanceWaiting, "wait")
	add(other, 1, store.InstanceWaiting, "wait")
	wantEqual(t, must(s.Instances().CountAtNodes(ctx, w.tenant, w.journey, 1))(t), map[string]int{"wait": 2, "mail": 2})
	wantEqual(t, must(s.Instances().CountAtNodes(ctx, w.tenant, w.journey, 2))(t), map[string]int{"wait": 1})
	wantEqual(t, must(s.Instances().CountAtNodes(ctx, w.tenant, w.journey, 3))(t), map[string]int{})
	wantEqual(t, must(s.Instances().CountByVersion(ctx, w.tenant, w.journey))(t), []store.VersionCount{
		{Version: 1, Status: store.InstanceCompleted, Count: 1}, {Version: 1, Status: store.InstancePaused, Count: 1},
		{Version: 1, Status: store.InstanceRunning, Count: 1}, {Version: 1, Status: store.InstanceWaiting, Count: 1},
		{Version: 2, Status: store.InstanceWaiting, Count: 1},
	})
	wantEqual(t, must(s.Instances().CountByVersion(ctx, other.tenant, w.journey))(t), []store.VersionCount(nil))
}
