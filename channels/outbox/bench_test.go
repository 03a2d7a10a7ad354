package outbox

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kalcifer/kalcifer/channels"
	"github.com/kalcifer/kalcifer/channels/accounts"
	"github.com/kalcifer/kalcifer/channels/webhook"
	"github.com/kalcifer/kalcifer/netguard"
	"github.com/kalcifer/kalcifer/store"
	"github.com/kalcifer/kalcifer/store/postgres"
	"github.com/kalcifer/kalcifer/store/postgres/pgtest"
	"github.com/kalcifer/kalcifer/store/sqlite/sqlitetest"
)

// BenchmarkDispatchWebhooks sends b.N deliveries through the dispatcher
// to a webhook receiver on loopback, over real HTTP with signatures, and
// reports deliveries per second and the latency from each delivery's
// commit to its send, while the dispatcher runs, woken by each commit as
// the engine wakes it. "burst" commits them 50 to an instance as fast as
// it can (throughput; the latency is then mostly the queue); "paced"
// commits one every 5 ms, below capacity (latency).
//
//	go test -run XXX -bench DispatchWebhooks -benchtime 5000x ./channels/outbox/
func BenchmarkDispatchWebhooks(b *testing.B) {
	for _, backend := range []struct {
		name string
		open func(testing.TB) store.Store
	}{
		{"sqlite", sqlitetest.Open},
		{"postgres", func(tb testing.TB) store.Store {
			st, err := postgres.Open(context.Background(), pgtest.NewDatabase(tb), 20)
			if err == nil {
				err = st.Migrate(context.Background())
			}
			if err != nil {
				tb.Fatal(err)
			}
			tb.Cleanup(func() { st.Close() })
			return st
		}},
	} {
		b.Run(backend.name+"/burst", func(b *testing.B) { benchmarkDispatch(b, backend.open(b), 50, 0) })
		b.Run(backend.name+"/paced", func(b *testing.B) { benchmarkDispatch(b, backend.open(b), 1, 5*time.Millisecond) })
	}
}

func benchmarkDispatch(b *testing.B, st store.Store, perInstance int, pace time.Duration) {
	ctx := context.Background()
	var received atomic.Int64
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		received.Add(1)
	}))
	b.Cleanup(receiver.Close)
	ten, err := st.Tenants().CreateTenant(ctx, "bench", time.Now())
	if err != nil {
		b.Fatal(err)
	}
	cus, _, err := st.Customers().UpsertCustomer(ctx, ten.ID, "c", store.CustomerPatch{}, time.Now())
	if err != nil {
		b.Fatal(err)
	}
	guard := netguard.New([]netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")})
	logger := slog.New(slog.DiscardHandler)
	m, err := accounts.New(accounts.Options{Store: st.Providers(), Kinds: []channels.Kind{webhook.Kind},
		Deps: channels.Deps{HTTP: guard.HTTPClient(10*time.Second, nil), Now: time.Now, Logger: logger}})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := st.Providers().CreateProvider(ctx, store.ProviderConfig{TenantID: ten.ID, Name: "hooks", Kind: "webhook",
		DefaultFor: []string{"webhook"}, Settings: json.RawMessage(`{}`), CreatedAt: time.Now(), UpdatedAt: time.Now()}); err != nil {
		b.Fatal(err)
	}
	d, err := New(Options{Store: st, Accounts: m, Logger: logger, Poll: time.Second})
	if err != nil {
		b.Fatal(err)
	}
	payload := json.RawMessage(`{"config": {"url": "` + receiver.URL + `/hook"}, "event": {"type": "signed_up"}}`)
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	b.ResetTimer()
	start := time.Now()
	go func() {
		defer close(done)
		d.Run(runCtx)
	}()
	for i := 0; i < b.N; i += perInstance {
		if pace > 0 {
			time.Sleep(pace) // the rate customers reach send nodes at
		}
		now := time.Now()
		in := store.Instance{ID: store.NewID("ins", now), TenantID: ten.ID, JourneyID: "jrn_bench", Version: 1, CustomerID: cus.ID,
			Status: store.InstanceCompleted, Snapshot: json.RawMessage(`{}`), CreatedAt: now, UpdatedAt: now}
		c := store.Commit{Instance: in, Create: true}
		for k := i; k < min(i+perInstance, b.N); k++ {
			c.Deliveries = append(c.Deliveries, store.Delivery{Key: fmt.Sprintf("%s:%d", in.ID, k), NodeID: "hook", Channel: "webhook", Payload: payload})
		}
		if err := st.Instances().Commit(ctx, []store.Commit{c})[0]; err != nil {
			b.Fatal(err)
		}
		d.Wake()
	}
	for received.Load() < int64(b.N) {
		time.Sleep(time.Millisecond) // waiting for real sends to a real server
	}
	elapsed := time.Since(start)
	b.StopTimer()
	stop()
	<-done
	sent, err := st.Deliveries().ListDeliveries(ctx, ten.ID, store.DeliveryFilter{Status: store.DeliverySent})
	if err != nil {
		b.Fatal(err)
	}
	if len(sent) != b.N {
		b.Fatalf("%d of %d recorded sent", len(sent), b.N)
	}
	latencies := make([]time.Duration, len(sent))
	for i, dl := range sent {
		latencies[i] = dl.SentAt.Sub(dl.CreatedAt)
	}
	slices.Sort(latencies)
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "deliveries/s")
	b.ReportMetric(float64(latencies[len(latencies)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(latencies[len(latencies)*99/100].Microseconds())/1000, "p99-ms")
}
