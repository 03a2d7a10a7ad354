package channels

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kalcifer/kalcifer/store"
	"github.com/kalcifer/kalcifer/store/sqlite"
)

func TestDispatcherSendsEachPendingDeliveryOnce(t *testing.T) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "k.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC)
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
	commit := store.Commit{Instance: in, Create: true, Deliveries: []store.Delivery{
		{Key: in.ID + ":email_1:1", NodeID: "email_1", Channel: "email", Payload: json.RawMessage(`{}`)},
		{Key: in.ID + ":sms_1:1", NodeID: "sms_1", Channel: "sms", Payload: json.RawMessage(`{}`)},
	}}
	if err := st.Instances().Commit(ctx, []store.Commit{commit})[0]; err != nil {
		t.Fatal(err)
	}

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
