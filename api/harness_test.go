package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kalcifer/kalcifer/api"
	"github.com/kalcifer/kalcifer/nodes"
	"github.com/kalcifer/kalcifer/store"
	"github.com/kalcifer/kalcifer/store/postgres"
	"github.com/kalcifer/kalcifer/store/postgres/pgtest"
	"github.com/kalcifer/kalcifer/store/sqlite"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// clock is the injectable clock: tests move time instead of sleeping.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func openSQLite(t testing.TB) store.Store {
	t.Helper()
	return migrated(t, func(ctx context.Context) (store.Store, error) {
		return sqlite.Open(ctx, filepath.Join(t.TempDir(), "kalcifer.db"))
	})
}

func openPostgres(t testing.TB) store.Store {
	t.Helper()
	url := pgtest.NewDatabase(t)
	return migrated(t, func(ctx context.Context) (store.Store, error) {
		return postgres.Open(ctx, url, 4)
	})
}

func migrated(t testing.TB, open func(context.Context) (store.Store, error)) store.Store {
	t.Helper()
	st, err := open(t.Context())
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { _ = st.Close() })
	if err := st.Migrate(t.Context()); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	return st
}

var backends = []struct {
	name string
	open func(testing.TB) store.Store
}{
	{"sqlite", openSQLite},
	{"postgres", openPostgres},
}

// env is one server over one fresh store, with a tenant and its API key.
type env struct {
	t      testing.TB
	store  store.Store
	clock  *clock
	logs   *api.LogBuffer
	url    string
	key    string
	tenant store.Tenant
}

var start = time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)

func newEnv(t testing.TB, st store.Store, configure ...func(*api.Options)) *env {
	t.Helper()
	e := &env{t: t, store: st, clock: &clock{now: start}, logs: &api.LogBuffer{}}
	opts := api.Options{
		Store:     st,
		Nodes:     nodes.Default(),
		Logger:    slog.New(slog.NewJSONHandler(e.logs, nil)),
		Now:       e.clock.Now,
		Version:   "test",
		RateLimit: 1e6,
		RateBurst: 1e6,
	}
	for _, c := range configure {
		c(&opts)
	}
	srv, err := api.New(opts)
	if err != nil {
		t.Fatalf("api.New: %v", err)
	}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	e.url = ts.URL + api.BasePath
	e.tenant, e.key = e.newTenant("acme")
	return e
}

func (e *env) newTenant(name string) (store.Tenant, string) {
	e.t.Helper()
	tenant, secret, err := store.CreateTenantWithKey(e.t.Context(), e.store.Tenants(), name, e.clock.Now())
	if err != nil {
		e.t.Fatalf("create tenant: %v", err)
	}
	return tenant, secret
}

// with returns the env reporting to t, for fuzz targets and subtests.
func (e *env) with(t testing.TB) *env {
	c := *e
	c.t = t
	return &c
}

// forEachStore runs test against a fresh server on each store.
func forEachStore(t *testing.T, test func(t *testing.T, e *env), configure ...func(*api.Options)) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			test(t, newEnv(t, b.open(t), configure...))
		})
	}
}

type response struct {
	t      testing.TB
	status int
	header http.Header
	body   []byte
}

// request describes one call; body is sent as is when it is a string or
// []byte and as JSON otherwise.
type request struct {
	method, path string
	body         any
	key          *string
	header       map[string]string
}

func (e *env) send(r request) response {
	e.t.Helper()
	var body io.Reader
	switch b := r.body.(type) {
	case nil:
	case string:
		body = strings.NewReader(b)
	case []byte:
		body = bytes.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			e.t.Fatalf("marshal request body: %v", err)
		}
		body = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(e.t.Context(), r.method, e.url+r.path, body)
	if err != nil {
		e.t.Fatalf("new request: %v", err)
	}
	key := e.key
	if r.key != nil {
		key = *r.key
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range r.header {
		req.Header.Set(k, v)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", r.method, r.path, err)
	}
	defer res.Body.Close()
	data, err := io.ReadAll(res.Body)
	if err != nil {
		e.t.Fatalf("read response: %v", err)
	}
	return response{t: e.t, status: res.StatusCode, header: res.Header, body: data}
}

func (e *env) do(method, path string, body any) response {
	e.t.Helper()
	return e.send(request{method: method, path: path, body: body})
}

func (e *env) as(key, method, path string, body any) response {
	e.t.Helper()
	return e.send(request{method: method, path: path, body: body, key: &key})
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

type apiError struct {
	Error struct {
		Code    string          `json:"code"`
		Message string          `json:"message"`
		Details json.RawMessage `json:"details"`
	} `json:"error"`
}

// fails asserts an error response with the given status and code.
func (r response) fails(status int, code string) apiError {
	r.t.Helper()
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		r.t.Errorf("error content type %q", ct)
	}
	body := ok[apiError](response{t: r.t, status: r.status, header: r.header, body: r.body}, status)
	if body.Error.Code != code {
		r.t.Fatalf("code %q, want %q: %s", body.Error.Code, code, r.body)
	}
	if body.Error.Message == "" {
		r.t.Errorf("error %s has no message", code)
	}
	return body
}

type journeyJSON struct {
	ID            string    `json:"id"`
	TenantID      string    `json:"tenant_id"`
	Name          string    `json:"name"`
	Description   string    `json:"description"`
	Status        string    `json:"status"`
	ActiveVersion int       `json:"active_version"`
	CreatedAt     time.Time `json:"created_at"`
}

type versionJSON struct {
	JourneyID   string          `json:"journey_id"`
	Number      int             `json:"number"`
	Status      string          `json:"status"`
	PublishedAt *time.Time      `json:"published_at"`
	Graph       json.RawMessage `json:"graph"`
}

type problem struct {
	Code   string `json:"code"`
	NodeID string `json:"node_id"`
	EdgeID string `json:"edge_id"`
}

type validationJSON struct {
	Valid    bool      `json:"valid"`
	Problems []problem `json:"problems"`
}

func (e *env) createJourney(name string, graph any) journeyJSON {
	e.t.Helper()
	body := map[string]any{"name": name}
	if graph != nil {
		body["graph"] = graph
	}
	return ok[journeyJSON](e.do("POST", "/journeys", body), http.StatusCreated)
}

func versionPath(journeyID string, n int, suffix string) string {
	return fmt.Sprintf("/journeys/%s/versions/%d%s", journeyID, n, suffix)
}

// validGraph is the SPEC §1 example, completed so that it publishes.
func validGraph() map[string]any {
	return map[string]any{
		"nodes": []any{
			map[string]any{"id": "entry_1", "type": "event_entry", "config": map[string]any{"event_type": "signed_up"}},
			map[string]any{"id": "email_1", "type": "send_email", "config": map[string]any{"template_id": "welcome"}},
			map[string]any{"id": "wait_1", "type": "wait_for_event", "config": map[string]any{"event_type": "email_opened", "timeout": "3d"}},
			map[string]any{"id": "goal_1", "type": "goal_reached", "config": map[string]any{"goal_name": "activated"}},
			map[string]any{"id": "exit_1", "type": "journey_exit"},
		},
		"edges": []any{
			map[string]any{"id": "e1", "source": "entry_1", "target": "email_1"},
			map[string]any{"id": "e2", "source": "email_1", "target": "wait_1"},
			map[string]any{"id": "e3", "source": "wait_1", "target": "goal_1", "branch": "event_received"},
			map[string]any{"id": "e4", "source": "wait_1", "target": "exit_1", "branch": "timed_out"},
		},
	}
}

// brokenGraph has one of each kind of problem the brief names: a cycle, an
// orphan, a missing branch, an unknown type and a bad config.
func brokenGraph() map[string]any {
	return map[string]any{
		"nodes": []any{
			map[string]any{"id": "entry", "type": "event_entry", "config": map[string]any{"event_type": "signed_up"}},
			map[string]any{"id": "check", "type": "condition", "config": map[string]any{"expression": "profile.plan == \"pro\""}},
			map[string]any{"id": "a", "type": "add_tag", "config": map[string]any{"tag": "x"}},
			map[string]any{"id": "b", "type": "remove_tag", "config": map[string]any{"tag": "x"}},
			map[string]any{"id": "orphan", "type": "journey_exit"},
			map[string]any{"id": "mystery", "type": "teleport"},
			map[string]any{"id": "pause", "type": "wait", "config": map[string]any{"duration": "soon"}},
		},
		"edges": []any{
			map[string]any{"id": "e1", "source": "entry", "target": "check"},
			map[string]any{"id": "e2", "source": "check", "target": "a", "branch": "true"},
			map[string]any{"id": "e3", "source": "a", "target": "b"},
			map[string]any{"id": "e4", "source": "b", "target": "a"},
			map[string]any{"id": "e5", "source": "entry", "target": "mystery"},
			map[string]any{"id": "e6", "source": "entry", "target": "pause"},
		},
	}
}

func codes(ps []problem) map[string]bool {
	m := map[string]bool{}
	for _, p := range ps {
		m[p.Code] = true
	}
	return m
}

// assertServing checks the server still answers after bad input.
func (e *env) assertServing() {
	e.t.Helper()
	if r := e.do("GET", "/tenant", nil); r.status != http.StatusOK {
		e.t.Fatalf("server stopped serving: %d %s", r.status, r.body)
	}
}
