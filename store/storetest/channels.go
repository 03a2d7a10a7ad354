package storetest

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/kalcifer/kalcifer/store"
)

// pendingMail commits an instance of w for a new customer with one email
// delivery and returns the delivery as stored.
func pendingMail(t *testing.T, w world, key string) store.Delivery {
	t.Helper()
	in := w.instance(w.newCustomer(t, key), key)
	d := store.Delivery{Key: key, NodeID: "mail", Channel: "email", Payload: json.RawMessage(`{}`)}
	if err := w.commit(store.Commit{Instance: in, Create: true, Deliveries: []store.Delivery{d}}); err != nil {
		t.Fatal(err)
	}
	ds := must(w.s.Deliveries().ListDeliveries(context.Background(), w.tenant, store.DeliveryFilter{InstanceID: in.ID}))(t)
	wantEqual(t, len(ds), 1)
	return ds[0]
}

// testDeliveryAttempts: an attempt begins only under the claim that holds
// the delivery, and what it records is read back.
func testDeliveryAttempts(t *testing.T, s store.Store) {
	ctx := context.Background()
	ds := s.Deliveries()
	w := newWorld(t, s, "acme")
	pendingMail(t, w, "k1")
	claimed := must(ds.ClaimDeliveries(ctx, at(10), time.Minute, 0))(t)
	wantEqual(t, len(claimed), 1)
	d := claimed[0]
	d.Attempts, d.AttemptStarted, d.Provider = 1, at(11), "smtp"
	stale := d
	stale.ClaimUntil = at(5)
	wantErr(t, ds.BeginAttempt(ctx, stale), store.ErrConflict)
	if err := ds.BeginAttempt(ctx, d); err != nil {
		t.Fatal(err)
	}
	got := must(ds.GetDelivery(ctx, w.tenant, d.ID))(t)
	wantEqual(t, got.AttemptStarted, stored(at(11)))
	wantEqual(t, got.Attempts, 1)
	wantEqual(t, got.Provider, "smtp")

	// Another claim, once the lease lapsed, sees the attempt under way, and
	// the first claim can begin no attempt any more.
	again := must(ds.ClaimDeliveries(ctx, at(71), time.Minute, 0))(t)
	wantEqual(t, len(again), 1)
	wantEqual(t, again[0].AttemptStarted, stored(at(11)))
	wantErr(t, ds.BeginAttempt(ctx, d), store.ErrConflict)

	// A deferral keeps it pending, unclaimable until its time.
	deferred := again[0]
	deferred.AttemptStarted, deferred.ClaimUntil, deferred.ErrorCode, deferred.Error = time.Time{}, at(500), "429", "throttled"
	deferred.UpdatedAt = at(72)
	if err := ds.UpdateDelivery(ctx, deferred); err != nil {
		t.Fatal(err)
	}
	wantEqual(t, len(must(ds.ClaimDeliveries(ctx, at(499), time.Minute, 0))(t)), 0)
	last := must(ds.ClaimDeliveries(ctx, at(500), time.Minute, 0))(t)
	wantEqual(t, len(last), 1)
	wantEqual(t, last[0].ErrorCode, "429")
	wantEqual(t, last[0].AttemptStarted, time.Time{})

	sent := last[0]
	sent.Status, sent.ProviderMessageID, sent.SentAt, sent.UpdatedAt = store.DeliverySent, "m-1", ptr(at(501)), at(501)
	if err := ds.UpdateDelivery(ctx, sent); err != nil {
		t.Fatal(err)
	}
	got = must(ds.GetDelivery(ctx, w.tenant, d.ID))(t)
	wantEqual(t, *got.SentAt, stored(at(501)))
	wantErr(t, errOf(ds.GetDelivery(ctx, newWorld(t, s, "globex").tenant, d.ID)), store.ErrNotFound)
}

// testDeliveryEvents: provider statuses find their delivery by id or by
// message id, are recorded once, and are counted.
func testDeliveryEvents(t *testing.T, s store.Store) {
	ctx := context.Background()
	ds := s.Deliveries()
	w := newWorld(t, s, "acme")
	d := pendingMail(t, w, "k1")
	pendingMail(t, w, "k2")
	d.Status, d.Provider, d.ProviderMessageID, d.UpdatedAt = store.DeliverySent, "sendgrid", "sg-1", at(5)
	if err := ds.UpdateDelivery(ctx, d); err != nil {
		t.Fatal(err)
	}
	deliver := func(d store.Delivery) store.Delivery {
		d.Status, d.DeliveredAt = store.DeliveryDelivered, ptr(at(7))
		return d
	}
	ev := store.DeliveryEvent{TenantID: w.tenant, Provider: "sendgrid", MessageID: "sg-1", Type: "delivered", EventID: "e1",
		At: at(7), ReceivedAt: at(8)}
	got, recorded := must2(ds.RecordDeliveryEvent(ctx, ev, deliver))(t)
	wantEqual(t, recorded, true)
	wantEqual(t, got.Status, store.DeliveryDelivered)
	wantEqual(t, got.ID, d.ID)
	// The same event again is not recorded and changes nothing.
	_, recorded = must2(ds.RecordDeliveryEvent(ctx, ev, func(d store.Delivery) store.Delivery {
		t.Fatal("a repeated event was applied")
		return d
	}))(t)
	wantEqual(t, recorded, false)
	opened := store.DeliveryEvent{TenantID: w.tenant, DeliveryID: d.ID, Type: "opened", EventID: "e2", At: at(9), ReceivedAt: at(9)}
	got, recorded = must2(ds.RecordDeliveryEvent(ctx, opened, func(d store.Delivery) store.Delivery {
		d.OpenedAt = ptr(at(9))
		return d
	}))(t)
	wantEqual(t, recorded, true)
	wantEqual(t, *got.OpenedAt, stored(at(9)))
	wantEqual(t, *must(ds.GetDelivery(ctx, w.tenant, d.ID))(t).DeliveredAt, stored(at(7)))

	// Delivered before its send was recorded (a fast provider): recording
	// the send keeps it delivered.
	early := pendingMail(t, w, "k3")
	must2(ds.RecordDeliveryEvent(ctx, store.DeliveryEvent{TenantID: w.tenant, DeliveryID: early.ID, Type: "delivered", EventID: "e3",
		At: at(6), ReceivedAt: at(6)}, func(d store.Delivery) store.Delivery {
		d.DeliveredAt = ptr(at(6))
		return d
	}))(t)
	wantEqual(t, must(ds.GetDelivery(ctx, w.tenant, early.ID))(t).Status, store.DeliveryPending)
	early.Status, early.SentAt, early.UpdatedAt = store.DeliverySent, ptr(at(7)), at(7)
	if err := ds.UpdateDelivery(ctx, early); err != nil {
		t.Fatal(err)
	}
	wantEqual(t, must(ds.GetDelivery(ctx, w.tenant, early.ID))(t).Status, store.DeliveryDelivered)

	// A bounce reported before the send was recorded wins over it.
	bounced := pendingMail(t, w, "k4")
	must2(ds.RecordDeliveryEvent(ctx, store.DeliveryEvent{TenantID: w.tenant, DeliveryID: bounced.ID, Type: "bounced", EventID: "e4",
		At: at(6), ReceivedAt: at(6)}, func(d store.Delivery) store.Delivery { return d }))(t)
	bounced.Status, bounced.UpdatedAt = store.DeliverySent, at(7)
	if err := ds.UpdateDelivery(ctx, bounced); err != nil {
		t.Fatal(err)
	}
	wantEqual(t, must(ds.GetDelivery(ctx, w.tenant, bounced.ID))(t).Status, store.DeliveryBounced)
	// A delivery decided meanwhile takes no other outcome but sent.
	late := early
	late.Status, late.ErrorCode = store.DeliveryFailed, "outcome_unknown"
	wantErr(t, ds.UpdateDelivery(ctx, late), store.ErrNotFound)
	wantEqual(t, must(ds.GetDelivery(ctx, w.tenant, early.ID))(t).Status, store.DeliveryDelivered)

	unknown := ev
	unknown.MessageID = "sg-nope"
	wantErr(t, errOf3(ds.RecordDeliveryEvent(ctx, unknown, deliver)), store.ErrNotFound)
	otherTenant := opened
	otherTenant.TenantID = newWorld(t, s, "globex").tenant
	wantErr(t, errOf3(ds.RecordDeliveryEvent(ctx, otherTenant, deliver)), store.ErrNotFound)

	wantEqual(t, must(ds.CountDeliveries(ctx, w.tenant, store.DeliveryFilter{}))(t), []store.DeliveryCount{
		{Channel: "email", Status: store.DeliveryBounced, Count: 1},
		{Channel: "email", Status: store.DeliveryDelivered, Count: 2},
		{Channel: "email", Status: store.DeliveryPending, Count: 1},
		{Channel: "email", Status: "opened", Count: 1},
	})
	wantEqual(t, must(ds.CountDeliveries(ctx, w.tenant, store.DeliveryFilter{Channel: "sms"}))(t), []store.DeliveryCount(nil))
	wantEqual(t, len(must(ds.ListDeliveries(ctx, w.tenant, store.DeliveryFilter{Channel: "email"}))(t)), 4)
}

func testProviders(t *testing.T, s store.Store) {
	ctx := context.Background()
	ps := s.Providers()
	w, other := newWorld(t, s, "acme"), newWorld(t, s, "globex")
	p := store.ProviderConfig{TenantID: w.tenant, Name: "mail", Kind: "smtp", DefaultFor: []string{"email"},
		Settings: json.RawMessage(`{"host": "smtp.example.com"}`), Secrets: []byte{0, 1, 2, 255}, Rate: 10, Burst: 20,
		CreatedAt: at(1), UpdatedAt: at(1)}
	created := must(ps.CreateProvider(ctx, p))(t)
	wantEqual(t, created.Secrets, p.Secrets)
	wantEqual(t, created.DefaultFor, []string{"email"})
	wantGraph(t, created.Settings, p.Settings)
	wantErr(t, errOf(ps.CreateProvider(ctx, p)), store.ErrConflict)
	p.TenantID = other.tenant
	must(ps.CreateProvider(ctx, p))(t)

	created.Name, created.DefaultFor, created.Rate, created.UpdatedAt = "mail-2", nil, 0, at(9)
	updated := must(ps.UpdateProvider(ctx, created))(t)
	wantEqual(t, updated.Name, "mail-2")
	wantEqual(t, updated.DefaultFor, []string{})
	wantEqual(t, updated.CreatedAt, stored(at(1)))
	wantEqual(t, updated.UpdatedAt, stored(at(9)))
	listed := must(ps.ListProviders(ctx, w.tenant))(t)
	wantEqual(t, ids(listed, func(p store.ProviderConfig) string { return p.ID }), []string{created.ID})
	wantErr(t, errOf(ps.GetProvider(ctx, other.tenant, created.ID)), store.ErrNotFound)
	wantErr(t, ps.DeleteProvider(ctx, other.tenant, created.ID), store.ErrNotFound)
	if err := ps.DeleteProvider(ctx, w.tenant, created.ID); err != nil {
		t.Fatal(err)
	}
	wantErr(t, errOf(ps.GetProvider(ctx, w.tenant, created.ID)), store.ErrNotFound)
}

func testTemplates(t *testing.T, s store.Store) {
	ctx := context.Background()
	ts := s.Templates()
	w, other := newWorld(t, s, "acme"), newWorld(t, s, "globex")
	v1 := must(ts.CreateTemplate(ctx, store.Template{TenantID: w.tenant, Name: "welcome", Channel: "email",
		Content: json.RawMessage(`{"subject": "Hi {{ customer.name }}"}`), CreatedAt: at(1)}))(t)
	wantEqual(t, v1.Version, 1)
	must(ts.CreateTemplate(ctx, store.Template{TenantID: w.tenant, Name: "code", Channel: "sms", Content: json.RawMessage(`{"body": "x"}`), CreatedAt: at(2)}))(t)
	v2 := must(ts.AddTemplateVersion(ctx, store.Template{TenantID: w.tenant, ID: v1.ID, Name: "welcome!", Channel: "sms",
		Content: json.RawMessage(`{"subject": "Hello"}`), CreatedAt: at(3)}))(t)
	wantEqual(t, v2.Version, 2)
	wantEqual(t, v2.Channel, "email")
	wantEqual(t, must(ts.GetTemplate(ctx, w.tenant, v1.ID, 0))(t).Version, 2)
	wantGraph(t, must(ts.GetTemplate(ctx, w.tenant, v1.ID, 1))(t).Content, v1.Content)
	wantEqual(t, len(must(ts.ListTemplateVersions(ctx, w.tenant, v1.ID))(t)), 2)
	latest := must(ts.ListTemplates(ctx, w.tenant, ""))(t)
	wantEqual(t, len(latest), 2)
	emails := must(ts.ListTemplates(ctx, w.tenant, "email"))(t)
	wantEqual(t, len(emails), 1)
	wantEqual(t, emails[0].Name, "welcome!")
	wantEqual(t, must(ts.ListTemplates(ctx, other.tenant, ""))(t), []store.Template(nil))
	wantErr(t, errOf(ts.GetTemplate(ctx, other.tenant, v1.ID, 0)), store.ErrNotFound)
	wantErr(t, errOf(ts.GetTemplate(ctx, w.tenant, v1.ID, 3)), store.ErrNotFound)
	wantErr(t, errOf(ts.AddTemplateVersion(ctx, store.Template{TenantID: other.tenant, ID: v1.ID, CreatedAt: at(4)})), store.ErrNotFound)
	wantErr(t, ts.DeleteTemplate(ctx, other.tenant, v1.ID), store.ErrNotFound)
	if err := ts.DeleteTemplate(ctx, w.tenant, v1.ID); err != nil {
		t.Fatal(err)
	}
	wantErr(t, errOf(ts.ListTemplateVersions(ctx, w.tenant, v1.ID)), store.ErrNotFound)
}
