package status

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/kalcifer/kalcifer/channels"
	"github.com/kalcifer/kalcifer/channels/accounts"
	"github.com/kalcifer/kalcifer/channels/postmark"
	"github.com/kalcifer/kalcifer/secrets"
	"github.com/kalcifer/kalcifer/store"
	"github.com/kalcifer/kalcifer/store/sqlite/sqlitetest"
)

var t0 = time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC)

// TestApplyIgnoresOrder: whatever order statuses arrive in, and however
// often, the delivery ends the same.
func TestApplyIgnoresOrder(t *testing.T) {
	types := []string{channels.StatusDelivered, channels.StatusOpened, channels.StatusClicked, channels.StatusBounced, channels.StatusFailed}
	rapid.Check(t, func(t *rapid.T) {
		events := rapid.SliceOfN(rapid.Custom(func(t *rapid.T) store.DeliveryEvent {
			return store.DeliveryEvent{Type: rapid.SampledFrom(types).Draw(t, "type"),
				At: t0.Add(time.Duration(rapid.IntRange(0, 100).Draw(t, "at")) * time.Minute)}
		}), 1, 8).Draw(t, "events")
		start := store.Delivery{Status: rapid.SampledFrom([]string{store.DeliverySent, store.DeliveryPending}).Draw(t, "status")}
		final := func(order []store.DeliveryEvent) store.Delivery {
			d := start
			for _, ev := range order {
				d = Apply(d, ev)
			}
			return d
		}
		a := final(events)
		shuffled := rapid.Permutation(events).Draw(t, "order")
		b := final(append(shuffled, shuffled[0]))
		if a.Status != b.Status || !sameTime(a.DeliveredAt, b.DeliveredAt) || !sameTime(a.OpenedAt, b.OpenedAt) || !sameTime(a.ClickedAt, b.ClickedAt) {
			t.Fatalf("order changed the outcome: %+v vs %+v", a, b)
		}
		if start.Status == store.DeliveryPending && a.Status != store.DeliveryPending {
			t.Fatalf("a status moved an unsent delivery to %s", a.Status)
		}
		if a.ClickedAt != nil && (a.OpenedAt == nil || a.DeliveredAt == nil) {
			t.Fatalf("clicked without opened and delivered: %+v", a)
		}
	})
}

func sameTime(a, b *time.Time) bool {
	return (a == nil) == (b == nil) && (a == nil || a.Equal(*b))
}

// TestReceive takes Postmark callbacks (Basic auth) through a real store.
func TestReceive(t *testing.T) {
	ctx := context.Background()
	st := sqlitetest.Open(t)
	ten, err := st.Tenants().CreateTenant(ctx, "acme", t0)
	if err != nil {
		t.Fatal(err)
	}
	box, err := secrets.New(make([]byte, secrets.KeySize))
	if err != nil {
		t.Fatal(err)
	}
	deps := channels.Deps{HTTP: http.DefaultClient, Now: func() time.Time { return t0 }, Logger: slog.Default()}
	m, err := accounts.New(accounts.Options{Store: st.Providers(), Kinds: []channels.Kind{postmark.Kind}, Box: box, Deps: deps})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := m.Prepare(ten.ID, accounts.Input{Name: "pm", Kind: "postmark", Config: map[string]json.RawMessage{
		"server_token": json.RawMessage(`"tok"`), "from": json.RawMessage(`"shop@example.com"`),
		"webhook_username": json.RawMessage(`"hook"`), "webhook_password": json.RawMessage(`"s3cret"`)}}, nil, t0)
	if err != nil {
		t.Fatal(err)
	}
	acct, err := st.Providers().CreateProvider(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	cus, _, err := st.Customers().UpsertCustomer(ctx, ten.ID, "alice", store.CustomerPatch{}, t0)
	if err != nil {
		t.Fatal(err)
	}
	in := store.Instance{ID: store.NewID("ins", t0), TenantID: ten.ID, JourneyID: "jrn_1", Version: 1, CustomerID: cus.ID,
		Status: store.InstanceWaiting, Snapshot: json.RawMessage(`{}`), CreatedAt: t0, UpdatedAt: t0}
	if err := st.Instances().Commit(ctx, []store.Commit{{Instance: in, Create: true, Deliveries: []store.Delivery{{Key: "k", NodeID: "mail",
		Channel: "email", Payload: json.RawMessage(`{}`), Status: store.DeliverySent, Provider: acct.ID, ProviderMessageID: "pm-1"}}}})[0]; err != nil {
		t.Fatal(err)
	}
	var emitted []Event
	intake := &Intake{Store: st, Accounts: m, Now: func() time.Time { return t0.Add(time.Hour) },
		Emit: func(_ context.Context, tenant store.Tenant, external string, e Event) error {
			if tenant.ID != ten.ID || external != "alice" {
				t.Errorf("emitted for %s/%s", tenant.ID, external)
			}
			emitted = append(emitted, e)
			return nil
		}}
	post := func(user, pass, body string) (Result, error) {
		r := httptest.NewRequest("POST", "/callbacks", strings.NewReader(body))
		r.SetBasicAuth(user, pass)
		return intake.Receive(ctx, ten.ID, acct.ID, r, []byte(body))
	}
	open := `{"RecordType": "Open", "MessageID": "pm-1", "ReceivedAt": "2026-11-26T09:30:00Z"}`
	if res, err := post("hook", "s3cret", open); err != nil || res != (Result{Recorded: 1}) {
		t.Fatalf("open: %+v, %v", res, err)
	}
	if res, err := post("hook", "s3cret", open); err != nil || res != (Result{Repeated: 1}) {
		t.Fatalf("repeat: %+v, %v", res, err)
	}
	// The repeat is emitted again, under the same id, in case its first
	// emission failed after the status was recorded.
	if len(emitted) != 2 || emitted[1].ID != emitted[0].ID {
		t.Fatalf("emitted %+v", emitted)
	}
	emitted = emitted[:1]
	if res, err := post("hook", "s3cret", `{"RecordType": "Delivery", "MessageID": "other", "DeliveredAt": "2026-11-26T09:10:00Z"}`); err != nil || res != (Result{Unmatched: 1}) {
		t.Fatalf("unknown message: %+v, %v", res, err)
	}
	if _, err := post("hook", "wrong", open); !errors.Is(err, channels.ErrBadSignature) {
		t.Fatalf("bad credentials: %v", err)
	}
	d, err := st.Deliveries().ListDeliveries(ctx, ten.ID, store.DeliveryFilter{})
	if err != nil || len(d) != 1 || d[0].Status != store.DeliveryDelivered || d[0].OpenedAt == nil || !d[0].OpenedAt.Equal(t0.Add(30*time.Minute)) {
		t.Fatalf("delivery after the open: %+v, %v", d, err)
	}
	if len(emitted) != 1 || emitted[0].Type != "email_opened" || emitted[0].ID != "delivery:"+d[0].ID+":opened" ||
		emitted[0].Properties["journey_id"] != "jrn_1" {
		t.Fatalf("emitted %+v", emitted)
	}
	if _, err := intake.Receive(ctx, ten.ID, "prv_missing", httptest.NewRequest("POST", "/", nil), nil); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown account: %v", err)
	}
}
