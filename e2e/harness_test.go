// Package e2e drives the whole engine through the HTTP API: a store, the
// actor runtime and the API server in one process, on SQLite and on
// PostgreSQL.
//
// These tests start Proto.Actor in-process, and its cluster code has data
// races of its own, so they run WITHOUT -race: the Makefile lists ./e2e/...
// in NORACE_PKGS.
//
// Time only moves when a test advances the manual clock; settle then does
// synchronously what the runtime's services would do on their next poll, so
// no test sleeps.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kalcifer/kalcifer/actors"
	"github.com/kalcifer/kalcifer/api"
	"github.com/kalcifer/kalcifer/channels"
	"github.com/kalcifer/kalcifer/channels/accounts"
	"github.com/kalcifer/kalcifer/channels/providers"
	"github.com/kalcifer/kalcifer/channels/status"
	"github.com/kalcifer/kalcifer/nodes"
	"github.com/kalcifer/kalcifer/secrets"
	"github.com/kalcifer/kalcifer/store"
	"github.com/kalcifer/kalcifer/store/postgres"
	"github.com/kalcifer/kalcifer/store/postgres/pgtest"
	"github.com/kalcifer/kalcifer/store/sqlite"
	"github.com/kalcifer/kalcifer/supervisor"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

var backends = []struct {
	name string
	open func(context.Context, testing.TB) (store.Store, error)
}{
	{"sqlite", func(ctx context.Context, t testing.TB) (store.Store, error) {
		return sqlite.Open(ctx, filepath.Join(t.TempDir(), "kalcifer.db"))
	}},
	{"postgres", func(ctx context.Context, t testing.TB) (store.Store, error) {
		return postgres.Open(ctx, pgtest.NewDatabase(t), 8)
	}},
}

var start = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)

// env is one engine and one API server over one fresh store, with a tenant
// and its API key.
type env struct {
	t      *testing.T
	store  store.Store
	clock  *supervisor.ManualClock
	rt     *actors.Runtime
	url    string
	key    string
	tenant store.Tenant
	// metrics is the registry the runtime's metrics are in.
	metrics *prometheus.Registry
	// reachable holds the customers given an address on every channel;
	// the envs of subtests share it.
	reachable *sync.Map
}

// address is an email address, a phone number and a push token.
func address(customer string) map[string]any {
	return map[string]any{"email": customer + "@example.com", "phone": "+15550100", "push_tokens": []string{"tok-" + customer}}
}

// reach gives the customer an email address, a phone number and a push
// token, once, so that what journeys send them goes out.
func (e *env) reach(customer string) {
	e.t.Helper()
	if _, done := e.reachable.LoadOrStore(customer, true); done {
		return
	}
	e.giveAddress(customer)
}

// giveAddress gives the customer an email address, a phone number and a push
// token, and returns the customer's id.
func (e *env) giveAddress(customer string) string {
	e.t.Helper()
	r := e.do("PUT", "/customers/"+url.PathEscape(customer), address(customer))
	if r.status != http.StatusOK && r.status != http.StatusCreated {
		e.t.Fatalf("give %s an address: %d %s", customer, r.status, r.body)
	}
	e.reachable.Store(customer, true)
	return ok[struct{ ID string }](r, r.status).ID
}

// forEachStore runs test against a fresh engine on each store.
func forEachStore(t *testing.T, test func(t *testing.T, e *env)) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			test(t, newEnv(t, b.open))
		})
	}
}

func newEnv(t *testing.T, open func(context.Context, testing.TB) (store.Store, error)) *env {
	t.Helper()
	return newEnvWith(t, open, http.DefaultClient)
}

// newEnvWith is newEnv whose provider accounts reach out through client.
func newEnvWith(t *testing.T, open func(context.Context, testing.TB) (store.Store, error), client *http.Client) *env {
	t.Helper()
	ctx := context.Background()
	st, err := open(ctx, t)
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { _ = st.Close() })
	if err := st.Migrate(ctx); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	e := &env{t: t, store: st, clock: supervisor.NewManualClock(start), reachable: &sync.Map{}}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	// The services' own polls are set beyond any test's length, so that
	// only settle moves timers and the outbox.
	box, err := secrets.New(bytes.Repeat([]byte{7}, secrets.KeySize))
	if err != nil {
		t.Fatal(err)
	}
	accts, err := accounts.New(accounts.Options{Store: st.Providers(), Kinds: providers.All(), Box: box, Fallback: "log",
		Deps: channels.Deps{HTTP: client, Now: e.clock.Now, Logger: logger}})
	if err != nil {
		t.Fatal(err)
	}
	e.metrics = prometheus.NewRegistry()
	e.rt, err = actors.Start(ctx, actors.Options{Store: st, Nodes: nodes.Default(), Logger: logger, Now: e.clock.Now,
		TimerPoll: time.Hour, DispatchPoll: time.Hour, Accounts: accts, Registerer: e.metrics})
	if err != nil {
		t.Fatalf("start runtime: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := e.rt.Stop(ctx); err != nil {
			t.Errorf("stop runtime: %v", err)
		}
	})
	srv, err := api.New(api.Options{Store: st, Nodes: nodes.Default(), Logger: logger, Now: e.clock.Now,
		Engine: e.rt, RateLimit: 1e6, RateBurst: 1e6, EventRateLimit: 1e6, EventRateBurst: 1e6,
		Accounts: accts, Intake: &status.Intake{Store: st, Accounts: accts, Now: e.clock.Now, Emit: e.rt.IngestStatus}})
	if err != nil {
		t.Fatalf("api.New: %v", err)
	}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	e.url = ts.URL + api.BasePath
	e.tenant, e.key, err = store.CreateTenantWithKey(ctx, st.Tenants(), "acme", e.clock.Now())
	if err != nil {
		t.Fatalf("create tenant: %v", err)
	}
	return e
}

// with returns the env reporting to t, for subtests sharing one engine.
func (e *env) with(t *testing.T) *env {
	c := *e
	c.t = t
	return &c
}

// settle fires the timers due now, routes the events and sends the outbox,
// until the engine is idle.
func (e *env) settle() {
	e.t.Helper()
	if err := e.rt.Settle(context.Background()); err != nil {
		e.t.Fatalf("settle: %v", err)
	}
}

// advance moves the clock, then lets the engine catch up.
func (e *env) advance(d time.Duration) {
	e.t.Helper()
	e.clock.Advance(d)
	e.settle()
}

type response struct {
	t      testing.TB
	status int
	body   []byte
}

// send makes one call with the tenant's key; a string or []byte body is
// sent as is, anything else as JSON.
func (e *env) send(method, path string, body any, header map[string]string) response {
	e.t.Helper()
	var data []byte
	switch b := body.(type) {
	case nil:
	case string:
		data = []byte(b)
	case []byte:
		data = b
	default:
		var err error
		if data, err = json.Marshal(b); err != nil {
			e.t.Fatalf("marshal request body: %v", err)
		}
	}
	req, err := http.NewRequestWithContext(context.Background(), method, e.url+path, bytes.NewReader(data))
	if err != nil {
		e.t.Fatalf("new request: %v", err)
	}
	req.Header.Set("Authorization", "Bearer "+e.key)
	req.Header.Set("Content-Type", "application/json")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	out, err := io.ReadAll(res.Body)
	if err != nil {
		e.t.Fatalf("read response: %v", err)
	}
	return response{t: e.t, status: res.StatusCode, body: out}
}

func (e *env) do(method, path string, body any) response {
	e.t.Helper()
	return e.send(method, path, body, nil)
}

// ok asserts the status and decodes the body into a fresh T.
func ok[T any](r response, status int) T {
	r.t.Helper()
	if r.status != status {
		r.t.Fatalf("status %d, want %d: %s", r.status, status, r.body)
	}
	var v T
	if err := json.Unmarshal(r.body, &v); err != nil {
		r.t.Fatalf("decode %s: %v", r.body, err)
	}
	return v
}

type refusal struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// fails asserts an error response with the given status and code.
func (r response) fails(status int, code string) {
	r.t.Helper()
	body := ok[struct{ Error refusal }](r, status)
	if body.Error.Code != code {
		r.t.Fatalf("code %q, want %q: %s", body.Error.Code, code, r.body)
	}
}

// publish creates a journey from graph and publishes it, which activates it.
func (e *env) publish(graph map[string]any) string {
	e.t.Helper()
	j := ok[struct{ ID string }](e.do("POST", "/journeys", map[string]any{"name": "journey", "graph": graph}), http.StatusCreated)
	published := ok[struct{ Journey struct{ Status string } }](e.do("POST", "/journeys/"+j.ID+"/versions/1/publish", nil), http.StatusOK)
	if published.Journey.Status != store.JourneyActive {
		e.t.Fatalf("published journey is %s", published.Journey.Status)
	}
	return j.ID
}

type eventResult struct {
	EventID    string   `json:"event_id"`
	CustomerID string   `json:"customer_id"`
	Duplicate  bool     `json:"duplicate"`
	Error      *refusal `json:"error"`
}

// event posts an event and asserts it was committed.
func (e *env) event(customer, eventType string, fields map[string]any) eventResult {
	e.t.Helper()
	e.reach(customer)
	body := map[string]any{"customer_id": customer, "type": eventType}
	for k, v := range fields {
		body[k] = v
	}
	return ok[eventResult](e.do("POST", "/events", body), http.StatusAccepted)
}

type instance struct {
	ID         string   `json:"id"`
	JourneyID  string   `json:"journey_id"`
	CustomerID string   `json:"customer_id"`
	Status     string   `json:"status"`
	Nodes      []string `json:"nodes"`
	Error      string   `json:"error"`
}

// instances lists the journey's instances.
func (e *env) instances(journeyID string) []instance {
	e.t.Helper()
	return ok[struct{ Data []instance }](e.do("GET", "/journeys/"+journeyID+"/instances", nil), http.StatusOK).Data
}

// only asserts the journey has exactly one instance and returns it.
func (e *env) only(journeyID string) instance {
	e.t.Helper()
	in := e.instances(journeyID)
	if len(in) != 1 {
		e.t.Fatalf("journey %s has %d instances, want 1: %+v", journeyID, len(in), in)
	}
	return in[0]
}

// status asserts the journey's one instance is in the wanted status.
func (e *env) status(journeyID, want string) instance {
	e.t.Helper()
	in := e.only(journeyID)
	if in.Status != want {
		e.t.Fatalf("instance %s is %s (%s), want %s", in.ID, in.Status, in.Error, want)
	}
	return in
}

type delivery struct {
	NodeID   string `json:"node_id"`
	Channel  string `json:"channel"`
	Status   string `json:"status"`
	Provider string `json:"provider"`
}

// deliveries lists the instance's deliveries.
func (e *env) deliveries(instanceID string) []delivery {
	e.t.Helper()
	return ok[struct{ Data []delivery }](e.do("GET", "/deliveries?instance_id="+instanceID, nil), http.StatusOK).Data
}

// sent asserts the instance's deliveries were sent through the log
// provider from exactly the given nodes, in any order.
func (e *env) sent(instanceID string, nodeIDs ...string) {
	e.t.Helper()
	ds := e.deliveries(instanceID)
	got := make([]string, 0, len(ds))
	for _, d := range ds {
		if d.Status != store.DeliverySent || d.Provider != "log" {
			e.t.Errorf("delivery from %s is %s via %q, want sent via log", d.NodeID, d.Status, d.Provider)
		}
		got = append(got, d.NodeID)
	}
	slices.Sort(got)
	want := slices.Sorted(slices.Values(nodeIDs))
	if !slices.Equal(got, want) {
		e.t.Fatalf("deliveries from %v, want %v", got, want)
	}
}

type enrolment struct {
	CustomerID string   `json:"customer_id"`
	InstanceID string   `json:"instance_id"`
	Status     string   `json:"status"`
	Error      *refusal `json:"error"`
}

// trigger enrols customers by hand and returns the per-customer results.
func (e *env) trigger(journeyID string, header map[string]string, customers ...string) []enrolment {
	e.t.Helper()
	targets := make([]map[string]any, len(customers))
	for i, c := range customers {
		e.reach(c)
		targets[i] = map[string]any{"customer_id": c}
	}
	r := e.send("POST", "/journeys/"+journeyID+"/trigger", map[string]any{"customers": targets}, header)
	return ok[struct{ Results []enrolment }](r, http.StatusOK).Results
}

// Graph builders.

func node(id, typ string, config map[string]any) map[string]any {
	n := map[string]any{"id": id, "type": typ}
	if config != nil {
		n["config"] = config
	}
	return n
}

// chain links the nodes one after the other.
func chain(nodes ...map[string]any) map[string]any {
	var edges []any
	for i := 1; i < len(nodes); i++ {
		edges = append(edges, edge(nodes[i-1]["id"].(string), nodes[i]["id"].(string), ""))
	}
	list := make([]any, len(nodes))
	for i, n := range nodes {
		list[i] = n
	}
	return map[string]any{"nodes": list, "edges": edges}
}

func edge(source, target, branch string) map[string]any {
	e := map[string]any{"id": source + "-" + target, "source": source, "target": target}
	if branch != "" {
		e["branch"] = branch
	}
	return e
}

func eventEntry(eventType string) map[string]any {
	return node("entry", "event_entry", map[string]any{"event_type": eventType})
}

func email(id string) map[string]any {
	return node(id, "send_email", map[string]any{"subject": "Hello", "body": "<p>" + id + "</p>"})
}

func wait(id, duration string) map[string]any {
	return node(id, "wait", map[string]any{"duration": duration})
}

// welcome is the journey most tests run: an email on sign-up, a day's
// wait, then a second email.
func welcome() map[string]any {
	return chain(eventEntry("signed_up"), email("welcome"), wait("pause", "1d"), email("follow_up"))
}
