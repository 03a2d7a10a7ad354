package api_test

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kalcifer/kalcifer/actors"
	"github.com/kalcifer/kalcifer/api"
	"github.com/kalcifer/kalcifer/cluster"
	"github.com/kalcifer/kalcifer/store"
)

// fakeEngine records what the API hands the engine and answers as told.
// The engine itself is exercised through HTTP in package e2e.
type fakeEngine struct {
	mu       sync.Mutex
	ingested []actors.Incoming
	targets  []actors.Target
	entry    []string
	actions  []string
	changed  []string
	// err fails every call; refuse refuses every input; action is what
	// InstanceAction returns.
	err    error
	refuse *actors.Error
	action error
	// migrations lists the migrations started ("tenant journey id") and
	// the controls asked ("action id percent").
	migrations []string
}

func (f *fakeEngine) results(n int) []actors.Result {
	out := make([]actors.Result, n)
	for i := range out {
		if f.refuse != nil {
			out[i].Error = f.refuse
			continue
		}
		out[i] = actors.Result{EventID: fmt.Sprintf("evt_%d", i), CustomerID: "cus_1", InstanceID: fmt.Sprintf("ins_%d", i), Status: store.InstanceRunning}
	}
	return out
}

func (f *fakeEngine) Ingest(_ context.Context, _ store.Tenant, in []actors.Incoming) ([]actors.Result, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ingested = append(f.ingested, in...)
	if f.err != nil {
		return nil, f.err
	}
	return f.results(len(in)), nil
}

func (f *fakeEngine) Enrol(_ context.Context, _ store.Tenant, _, entryType string, targets []actors.Target) ([]actors.Result, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.targets = append(f.targets, targets...)
	f.entry = append(f.entry, entryType)
	if f.err != nil {
		return nil, f.err
	}
	return f.results(len(targets)), nil
}

func (f *fakeEngine) InstanceAction(_ context.Context, tenantID, instanceID, action, reason string) (store.Instance, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.actions = append(f.actions, action+" "+instanceID+" "+reason)
	return store.Instance{ID: instanceID, TenantID: tenantID, Status: store.InstancePaused}, f.action
}

func (f *fakeEngine) RunMigration(_ context.Context, tenantID, journeyID, migrationID string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.migrations = append(f.migrations, tenantID+" "+journeyID+" "+migrationID)
	return f.err
}

func (f *fakeEngine) ControlMigration(_ context.Context, tenantID, journeyID, migrationID, action string, percent int) (store.Migration, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.migrations = append(f.migrations, fmt.Sprintf("%s %s %d", action, migrationID, percent))
	return store.Migration{ID: migrationID, TenantID: tenantID, JourneyID: journeyID, Status: store.MigrationPaused}, f.action
}

func (f *fakeEngine) ReleaseInstance(_ context.Context, tenantID, instanceID, nodeID string) (store.Instance, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.actions = append(f.actions, "release "+instanceID+" "+nodeID)
	return store.Instance{ID: instanceID, TenantID: tenantID, Status: store.InstanceRunning, Nodes: []string{nodeID}}, f.action
}

func (f *fakeEngine) JourneyChanged(_ context.Context, _, journeyID string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.changed = append(f.changed, journeyID)
}

func (f *fakeEngine) Members(context.Context) []cluster.MemberState {
	return []cluster.MemberState{
		{ID: "a", Address: "10.0.0.1:7947", State: "alive", Self: true, Activations: map[string]int64{"instance": 2}},
		{ID: "b", Address: "10.0.0.2:7947", State: "suspect", Error: "ask kalcifer-stats: grain call timed out"},
	}
}

// withEngine runs test on both stores with a fake engine behind the API.
func withEngine(t *testing.T, test func(t *testing.T, e *env, f *fakeEngine)) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			f := &fakeEngine{}
			test(t, newEnv(t, b.open(t), func(o *api.Options) { o.Engine = f }), f)
		})
	}
}

// engineRoutes are one valid call of each engine route.
var engineRoutes = []struct{ path, body string }{
	{"/events", `{"customer_id":"ada","type":"signed_up"}`},
	{"/events/batch", `{"events":[{"customer_id":"ada","type":"signed_up"}]}`},
	{"/identify", `{"userId":"ada"}`},
	{"/track", `{"userId":"ada","event":"signed_up"}`},
	{"/batch", `{"batch":[{"type":"track","userId":"ada","event":"signed_up"}]}`},
	{"/journeys/jrn_1/trigger", `{"customer_id":"ada"}`},
	{"/webhooks/jrn_1", `{"customer_id":"ada"}`},
	{"/instances/ins_1/pause", ``},
	{"/instances/ins_1/resume", ``},
	{"/instances/ins_1/cancel", `{"reason":"done"}`},
	{"/instances/ins_1/release", `{"node_id":"n1"}`},
	{"/journeys/jrn_1/instances/release", `{"node_id":"n1"}`},
	{"/journeys/jrn_1/migrations/mig_1/pause", ``},
	{"/journeys/jrn_1/migrations/mig_1/resume", ``},
	{"/journeys/jrn_1/migrations/mig_1/abort", ``},
	{"/journeys/jrn_1/migrations/mig_1/rollout", `{"rollout_percent":50}`},
}

func TestEngineRoutesWithoutEngine(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		for _, r := range engineRoutes {
			e.do("POST", r.path, r.body).fails(http.StatusServiceUnavailable, "engine_unavailable")
			e.as("kal_wrong", "POST", r.path, r.body).fails(http.StatusUnauthorized, "invalid_api_key")
		}
	})
}

func TestEngineInputIsChecked(t *testing.T) {
	tooMany := `{"events":[` + strings.Repeat(`{"customer_id":"a","type":"t"},`, 1000) + `{"customer_id":"a","type":"t"}]}`
	cases := []struct {
		path, body  string
		code, field string
	}{
		{"/events", `{}`, "missing_field", "customer_id"},
		{"/events", `{"customer_id":"ada"}`, "missing_field", "type"},
		{"/events", `{"customer_id":" ","type":"x"}`, "invalid_field", "customer_id"},
		{"/events", `{"customer_id":"ada","type":"x","timestamp":"yesterday"}`, "invalid_field", "timestamp"},
		{"/events", `{"customer_id":"ada","type":"x","properties":"big"}`, "invalid_field", "properties"},
		{"/events", `{"customer_id":"ada","type":"x","typo":1}`, "unknown_field", "typo"},
		{"/events", `{"customer_id":"ada","type":"` + strings.Repeat("x", 256) + `"}`, "invalid_field", "type"},
		{"/events/batch", `{}`, "missing_field", "events"},
		{"/events/batch", `{"events":[]}`, "invalid_field", "events"},
		{"/events/batch", tooMany, "invalid_field", "events"},
		{"/events/batch", `{"events":[{"customer_id":"a","type":"t"},{"customer_id":"b"}]}`, "missing_field", "events[1].type"},
		{"/identify", `{"anonymousId":"anon-1","traits":{"email":"a@example.com"}}`, "missing_field", "userId"},
		{"/identify", `{"userId":42}`, "invalid_field", "userId"},
		{"/identify", `{"userId":"ada","traits":{"email":5}}`, "invalid_field", "traits.email"},
		{"/identify", `{"userId":"ada","traits":{"timezone":"Mars/Olympus"}}`, "invalid_field", "traits.timezone"},
		{"/identify", `{"userId":"ada","traits":"vip"}`, "invalid_field", "traits"},
		{"/track", `{"userId":"ada"}`, "missing_field", "event"},
		{"/track", `{"userId":"ada","event":"x","timestamp":"last week"}`, "invalid_field", "timestamp"},
		{"/batch", `{"batch":[{"type":"page","userId":"ada"}]}`, "invalid_field", "batch[0].type"},
		{"/batch", `{"batch":[{"type":"track","userId":"ada","event":"x"},{"type":"track","anonymousId":"z","event":"x"}]}`, "missing_field", "batch[1].userId"},
		{"/batch", `{"batch":[]}`, "invalid_field", "batch"},
		{"/journeys/jrn_1/trigger", `{}`, "missing_field", "customers"},
		{"/journeys/jrn_1/trigger", `{"customers":[]}`, "invalid_field", "customers"},
		{"/journeys/jrn_1/trigger", `{"customer_id":5}`, "invalid_field", "customer_id"},
		{"/journeys/jrn_1/trigger", `{"customers":[{"customer_id":"a"}],"customer_id":"b"}`, "invalid_field", "customers"},
		{"/journeys/jrn_1/trigger", `{"customers":[{"customer_id":"a"},{"data":{}}]}`, "missing_field", "customers[1].customer_id"},
		{"/instances/ins_1/cancel", `{"reason":"` + strings.Repeat("x", 1001) + `"}`, "invalid_field", "reason"},
	}
	withEngine(t, func(t *testing.T, e *env, f *fakeEngine) {
		for _, c := range cases {
			body := e.do("POST", c.path, c.body).fails(http.StatusBadRequest, c.code)
			if !strings.Contains(string(body.Error.Details), `"`+c.field+`"`) {
				t.Errorf("%s %.80s: details %s, want field %s", c.path, c.body, body.Error.Details, c.field)
			}
		}
		if len(f.ingested)+len(f.targets)+len(f.actions) != 0 {
			t.Fatalf("bad input reached the engine: %+v %+v %+v", f.ingested, f.targets, f.actions)
		}
	})
}

func TestEventsReachTheEngine(t *testing.T) {
	withEngine(t, func(t *testing.T, e *env, f *fakeEngine) {
		res := ok[map[string]any](e.do("POST", "/events", map[string]any{"customer_id": "ada", "type": "signed_up",
			"message_id": "m-1", "properties": map[string]any{"plan": "pro"}, "timestamp": "2026-03-01T08:00:00+01:00"}), http.StatusAccepted)
		if res["event_id"] != "evt_0" || res["customer_id"] != "ada" || res["duplicate"] != false {
			t.Fatalf("response %v", res)
		}
		in := f.ingested[0]
		if in.ExternalID != "ada" || in.Type != "signed_up" || in.MessageID != "m-1" || in.Properties["plan"] != "pro" ||
			!in.Timestamp.Equal(time.Date(2026, 3, 1, 7, 0, 0, 0, time.UTC)) || in.Traits != nil {
			t.Fatalf("engine got %+v", in)
		}

		// Segment sends its write key as the user name of Basic auth, and
		// fields Kalcifer ignores.
		basic := "Basic " + base64.StdEncoding.EncodeToString([]byte(e.key+":"))
		r := e.send(request{method: "POST", path: "/identify", key: new(string), header: map[string]string{"Authorization": basic},
			body: `{"type":"identify","userId":"ada","anonymousId":"a-1","context":{"ip":"1.2.3.4"},"sentAt":"2026-03-01T09:00:00Z",
				"traits":{"email":"ada@example.com","phone":"+33600000000","name":"Ada","timezone":"Europe/Paris","plan":"pro","email_verified":null}}`})
		if got := ok[map[string]any](r, http.StatusOK); got["success"] != true || len(got) != 1 {
			t.Fatalf("identify answered %v", got)
		}
		id := f.ingested[1]
		p := id.Traits
		if id.Type != "" || p == nil || *p.Email != "ada@example.com" || *p.Phone != "+33600000000" || *p.Name != "Ada" ||
			*p.Timezone != "Europe/Paris" || p.Properties["plan"] != "pro" || len(p.Properties) != 2 {
			t.Fatalf("identify reached the engine as %+v %+v", id, p)
		}
		ok[map[string]any](e.do("POST", "/batch", `{"batch":[{"type":"identify","userId":"bob"},
			{"type":"track","userId":"bob","event":"paid","properties":{"amount":5},"messageId":"t-1"}],"sentAt":"x"}`), http.StatusOK)
		if b, tr := f.ingested[2], f.ingested[3]; b.Traits == nil || tr.Type != "paid" || tr.MessageID != "t-1" || tr.Properties["amount"] != 5.0 {
			t.Fatalf("batch reached the engine as %+v %+v", b, tr)
		}
	})
}

func TestEngineRefusalsAndFailures(t *testing.T) {
	withEngine(t, func(t *testing.T, e *env, f *fakeEngine) {
		f.refuse = &actors.Error{Code: "unknown_customer", Message: "no such customer"}
		e.do("POST", "/events", engineRoutes[0].body).fails(http.StatusUnprocessableEntity, "unknown_customer")
		e.do("POST", "/track", engineRoutes[3].body).fails(http.StatusUnprocessableEntity, "unknown_customer")
		batch := ok[map[string]any](e.do("POST", "/events/batch", engineRoutes[1].body), http.StatusAccepted)
		if fmt.Sprint(batch) != "map[results:[map[error:map[code:unknown_customer message:no such customer]]]]" {
			t.Fatalf("batch with a refusal %v", batch)
		}
		seg := ok[map[string]any](e.do("POST", "/batch", engineRoutes[4].body), http.StatusOK)
		if fmt.Sprint(seg) != "map[rejected:[map[error:map[code:unknown_customer message:no such customer] index:0]] success:true]" {
			t.Fatalf("segment batch with a refusal %v", seg)
		}

		f.refuse = &actors.Error{Code: "internal", Message: "database is locked"}
		j := e.createJourney("j", validGraph())
		e.do("POST", "/journeys/"+j.ID+"/trigger", engineRoutes[5].body).fails(http.StatusInternalServerError, "internal_error")

		f.refuse = nil
		f.err = fmt.Errorf("ask: %w", cluster.ErrTimeout)
		e.do("POST", "/events", engineRoutes[0].body).fails(http.StatusServiceUnavailable, "engine_unavailable")
		e.do("POST", "/journeys/"+j.ID+"/trigger", engineRoutes[5].body).fails(http.StatusServiceUnavailable, "engine_unavailable")
		f.err = errors.New("disk full")
		e.do("POST", "/events", engineRoutes[0].body).fails(http.StatusInternalServerError, "internal_error")
		if !strings.Contains(e.logs.String(), "disk full") {
			t.Fatalf("the engine failure was not logged:\n%s", e.logs.String())
		}
	})
}

func TestTriggerIdempotencyKey(t *testing.T) {
	withEngine(t, func(t *testing.T, e *env, f *fakeEngine) {
		j := e.createJourney("j", validGraph())
		_, otherKey := e.newTenant("other")
		e.as(otherKey, "POST", "/journeys/"+j.ID+"/trigger", `{"customer_id":"ada"}`).fails(http.StatusNotFound, "journey_not_found")

		r := e.send(request{method: "POST", path: "/journeys/" + j.ID + "/trigger", header: map[string]string{"Idempotency-Key": "k-1"},
			body: `{"customers":[{"customer_id":"ada","data":{"n":1}},{"customer_id":"bob"}]}`})
		res := ok[struct {
			Results []map[string]any
		}](r, http.StatusOK)
		if fmt.Sprint(res.Results) != "[map[customer_id:ada instance_id:ins_0 status:running] map[customer_id:bob instance_id:ins_1 status:running]]" {
			t.Fatalf("results %v", res.Results)
		}
		if f.targets[0].Key != "k-1:ada" || f.targets[1].Key != "k-1:bob" || f.targets[0].Data["n"] != 1.0 || f.entry[0] != "" {
			t.Fatalf("targets %+v entry %q", f.targets, f.entry)
		}
		ok[map[string]any](e.do("POST", "/journeys/"+j.ID+"/trigger", `{"customer_id":"ada"}`), http.StatusOK)
		ok[map[string]any](e.do("POST", "/journeys/"+j.ID+"/trigger", `{"customer_id":"ada"}`), http.StatusOK)
		k1, k2 := f.targets[2].Key, f.targets[3].Key
		if k1 == k2 || !strings.HasSuffix(k1, ":ada") || !strings.HasSuffix(k2, ":ada") {
			t.Fatalf("keys without Idempotency-Key %q %q", k1, k2)
		}
		e.send(request{method: "POST", path: "/journeys/" + j.ID + "/trigger", header: map[string]string{"Idempotency-Key": strings.Repeat("k", 256)},
			body: `{"customer_id":"ada"}`}).fails(http.StatusBadRequest, "invalid_parameter")
	})
}

func TestInstanceActionOutcomes(t *testing.T) {
	withEngine(t, func(t *testing.T, e *env, f *fakeEngine) {
		in := ok[map[string]any](e.do("POST", "/instances/ins_1/cancel", `{"reason":"asked"}`), http.StatusOK)
		if in["id"] != "ins_1" || f.actions[0] != "cancel ins_1 asked" {
			t.Fatalf("instance %v, engine got %q", in, f.actions)
		}
		f.action = actors.ErrNoChange
		e.do("POST", "/instances/ins_1/pause", nil).fails(http.StatusConflict, "invalid_transition")
		f.action = fmt.Errorf("get instance: %w", store.ErrNotFound)
		e.do("POST", "/instances/ins_1/resume", nil).fails(http.StatusNotFound, "instance_not_found")
		f.action = &cluster.UnavailableError{Reason: "node stopping"}
		e.do("POST", "/instances/ins_1/resume", nil).fails(http.StatusServiceUnavailable, "engine_unavailable")
	})
}

func TestJourneyChangesReachTheEngine(t *testing.T) {
	withEngine(t, func(t *testing.T, e *env, f *fakeEngine) {
		j := e.createJourney("j", validGraph())
		ok[map[string]any](e.do("POST", versionPath(j.ID, 1, "/publish"), nil), http.StatusOK)
		ok[map[string]any](e.do("POST", "/journeys/"+j.ID+"/pause", nil), http.StatusOK)
		e.do("POST", "/journeys/"+j.ID+"/pause", nil).fails(http.StatusConflict, "invalid_transition")
		if fmt.Sprint(f.changed) != fmt.Sprintf("[%s %s]", j.ID, j.ID) {
			t.Fatalf("engine told of %v", f.changed)
		}
	})
}

func TestEventRateLimitIsSeparate(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		for range 2 {
			ok[map[string]any](e.do("POST", "/events", engineRoutes[0].body), http.StatusAccepted)
		}
		r := e.do("POST", "/track", engineRoutes[3].body)
		r.fails(http.StatusTooManyRequests, "rate_limited")
		if r.header.Get("Retry-After") == "" {
			t.Fatal("no Retry-After")
		}
		e.assertServing()
	}, func(o *api.Options) {
		o.Engine = &fakeEngine{}
		o.EventRateLimit, o.EventRateBurst = 0.001, 2
	})
}

func TestClusterView(t *testing.T) {
	withEngine(t, func(t *testing.T, e *env, _ *fakeEngine) {
		v := ok[struct {
			Self    string `json:"self"`
			Members []struct {
				ID          string           `json:"id"`
				State       string           `json:"state"`
				Self        bool             `json:"self"`
				Activations map[string]int64 `json:"activations"`
				Error       string           `json:"error"`
			} `json:"members"`
		}](e.do("GET", "/cluster", nil), http.StatusOK)
		if v.Self != "a" || len(v.Members) != 2 || !v.Members[0].Self || v.Members[0].Activations["instance"] != 2 {
			t.Fatalf("cluster view %+v", v)
		}
		if m := v.Members[1]; m.State != "suspect" || m.Activations != nil || m.Error == "" {
			t.Fatalf("an unanswering member is %+v, want its error and no counts", m)
		}
		e.as("kal_wrong", "GET", "/cluster", nil).fails(http.StatusUnauthorized, "invalid_api_key")
	})
}

func TestClusterViewWithoutEngine(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		e.do("GET", "/cluster", nil).fails(http.StatusServiceUnavailable, "engine_unavailable")
	})
}
