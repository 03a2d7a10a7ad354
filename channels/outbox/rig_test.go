package outbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/kalcifer/kalcifer/channels"
	"github.com/kalcifer/kalcifer/channels/accounts"
	"github.com/kalcifer/kalcifer/channels/logprovider"
	"github.com/kalcifer/kalcifer/store"
	"github.com/kalcifer/kalcifer/store/sqlite/sqlitetest"
	"github.com/kalcifer/kalcifer/supervisor"
)

var t0 = time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC)

// rig is an outbox on a real SQLite store, a fake provider behind the
// tenant's accounts and a manual clock.
type rig struct {
	t        *testing.T
	st       store.Store
	tenant   store.Tenant
	customer store.Customer
	clock    *supervisor.ManualClock
	fake     *fake
	manager  *accounts.Manager
}

// fake is a provider that records what reaches it. fail, if set, decides
// each send's outcome.
type fake struct {
	mu       sync.Mutex
	received map[string]int // idempotency key → requests
	accepted map[string]int // idempotency key → messages taken
	times    []time.Time
	clock    func() time.Time
	took     time.Duration
	advance  func(time.Duration)
	fail     func(m channels.Message) error
}

func (f *fake) Send(ctx context.Context, m channels.Message) (string, error) {
	f.mu.Lock()
	f.received[m.Key]++
	f.times = append(f.times, f.clock())
	fail := f.fail
	f.mu.Unlock()
	if f.took > 0 {
		f.advance(f.took)
	}
	if fail != nil {
		if err := fail(m); err != nil {
			return "", err
		}
	}
	if err := ctx.Err(); err != nil {
		return "", err
	}
	f.mu.Lock()
	f.accepted[m.Key]++
	f.mu.Unlock()
	return "msg-" + m.DeliveryID, nil
}

func (f *fake) counts() (received, accepted map[string]int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return clone(f.received), clone(f.accepted)
}

func clone(m map[string]int) map[string]int {
	c := make(map[string]int, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

// fakeKind is the fake as a provider kind; idempotent says whether it
// claims to drop repeated keys.
func fakeKind(name string, f *fake, idempotent bool) channels.Kind {
	return channels.Kind{Name: name, Channels: []string{"email", "sms", "push", "whatsapp", "webhook"}, Idempotent: idempotent,
		New: func(json.RawMessage, channels.Deps) (channels.Provider, error) { return f, nil }}
}

func newRig(t *testing.T, idempotent bool) *rig {
	t.Helper()
	ctx := context.Background()
	st := sqlitetest.Open(t)
	ten, err := st.Tenants().CreateTenant(ctx, "acme", t0)
	if err != nil {
		t.Fatal(err)
	}
	email, phone := "alice@example.com", "+15550100"
	cus, _, err := st.Customers().UpsertCustomer(ctx, ten.ID, "alice",
		store.CustomerPatch{Email: &email, Phone: &phone, PushTokens: &[]string{"tok"}}, t0)
	if err != nil {
		t.Fatal(err)
	}
	clock := supervisor.NewManualClock(t0)
	f := &fake{received: map[string]int{}, accepted: map[string]int{}, clock: clock.Now, advance: clock.Advance}
	m, err := accounts.New(accounts.Options{Store: st.Providers(), Kinds: []channels.Kind{fakeKind("fake", f, idempotent), logprovider.Kind},
		Fallback: "fake", Deps: channels.Deps{Now: clock.Now, Logger: slog.Default()}})
	if err != nil {
		t.Fatal(err)
	}
	return &rig{t: t, st: st, tenant: ten, customer: cus, clock: clock, fake: f, manager: m}
}

// commit commits an instance of a new journey with one delivery per
// channel, with config as each node's configuration.
func (r *rig) commit(config string, channels ...string) []store.Delivery {
	r.t.Helper()
	now := r.clock.Now()
	in := store.Instance{ID: store.NewID("ins", now), TenantID: r.tenant.ID, JourneyID: store.NewID("jrn", now), Version: 1,
		CustomerID: r.customer.ID, Status: store.InstanceWaiting, Snapshot: json.RawMessage(`{}`), CreatedAt: now, UpdatedAt: now}
	c := store.Commit{Instance: in, Create: true}
	for i, ch := range channels {
		node := fmt.Sprintf("%s_%d", ch, i)
		c.Deliveries = append(c.Deliveries, store.Delivery{Key: in.ID + ":" + node + ":1", NodeID: node, Channel: ch,
			Payload: json.RawMessage(`{"config": ` + config + `}`)})
	}
	if err := r.st.Instances().Commit(context.Background(), []store.Commit{c})[0]; err != nil {
		r.t.Fatal(err)
	}
	ds, err := r.st.Deliveries().ListDeliveries(context.Background(), r.tenant.ID, store.DeliveryFilter{InstanceID: in.ID})
	if err != nil {
		r.t.Fatal(err)
	}
	return ds
}

func (r *rig) dispatcher(change func(*Options)) *Dispatcher {
	r.t.Helper()
	o := Options{Store: r.st, Accounts: r.manager, Now: r.clock.Now, Logger: slog.Default(), Jitter: func() float64 { return 0.5 }}
	if change != nil {
		change(&o)
	}
	d, err := New(o)
	if err != nil {
		r.t.Fatal(err)
	}
	return d
}

// drain runs passes until one handles nothing and does not crash.
func (r *rig) drain(d *Dispatcher) {
	r.t.Helper()
	for {
		n, err := d.DispatchOnce(context.Background())
		if err != nil && !errors.Is(err, errCrash) {
			r.t.Fatal(err)
		}
		if n == 0 && err == nil {
			return
		}
	}
}

func (r *rig) get(id string) store.Delivery {
	r.t.Helper()
	d, err := r.st.Deliveries().GetDelivery(context.Background(), r.tenant.ID, id)
	if err != nil {
		r.t.Fatal(err)
	}
	return d
}

func (r *rig) all() []store.Delivery {
	r.t.Helper()
	ds, err := r.st.Deliveries().ListDeliveries(context.Background(), r.tenant.ID, store.DeliveryFilter{})
	if err != nil {
		r.t.Fatal(err)
	}
	return ds
}

func (r *rig) settings(s store.TenantSettings) {
	r.t.Helper()
	if _, err := r.st.Tenants().UpdateTenantSettings(context.Background(), r.tenant.ID, s); err != nil {
		r.t.Fatal(err)
	}
}

func (r *rig) account(p store.ProviderConfig) {
	r.t.Helper()
	p.TenantID, p.CreatedAt, p.UpdatedAt = r.tenant.ID, r.clock.Now(), r.clock.Now()
	if _, err := r.st.Providers().CreateProvider(context.Background(), p); err != nil {
		r.t.Fatal(err)
	}
	r.manager.Invalidate(r.tenant.ID)
}

func want(t interface {
	Helper()
	Fatalf(string, ...any)
}, d store.Delivery, status, code string) {
	t.Helper()
	if d.Status != status || d.ErrorCode != code {
		t.Fatalf("delivery %s is %s/%s (%s), want %s/%s", d.Key, d.Status, d.ErrorCode, d.Error, status, code)
	}
}

// errCrash is a process dying mid-send, between the provider's answer
// and the record: the attempt stays begun. The dispatcher recovers the
// panic and stops the pass, leaving the delivery as a crash would.
var errCrash = errors.New("crash")

func crash() error { panic(errCrash) }
