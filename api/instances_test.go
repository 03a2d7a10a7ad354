package api_test

import (
	"encoding/json"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/kalcifer/kalcifer/store"
)

type instanceDetailJSON struct {
	store.Instance
	State    json.RawMessage `json:"state"`
	Timeline []store.Step    `json:"timeline"`
	Snapshot json.RawMessage `json:"snapshot"`
}

// seed stores an instance as the engine would, through the store: the
// engine that creates instances is not part of these tests. The clock
// moves on first, so that instances sort by creation.
func (e *env) seed(tenantID string, in store.Instance, steps []store.Step, deliveries ...store.Delivery) store.Instance {
	e.t.Helper()
	e.clock.Advance(time.Millisecond)
	in.TenantID, in.UpdatedAt = tenantID, e.clock.Now()
	in.ID = store.NewID("ins", in.UpdatedAt)
	errs := e.store.Instances().Commit(e.t.Context(), []store.Commit{{Instance: in, Create: true, Steps: steps, Deliveries: deliveries}})
	if errs[0] != nil {
		e.t.Fatalf("seed instance: %v", errs[0])
	}
	in.Epoch = 1
	return in
}

func step(node, typ, outcome string) store.Step {
	return store.Step{NodeID: node, NodeType: typ, Version: 1, TokenID: "t1", Outcome: outcome, StartedAt: start, FinishedAt: start}
}

// ids lists the ids of a page answered for path, asserting it is one page.
func ids(e *env, path string) []string {
	e.t.Helper()
	p := ok[struct {
		Data []struct {
			ID string `json:"id"`
		} `json:"data"`
		NextAfter string `json:"next_after"`
	}](e.do("GET", path, nil), http.StatusOK)
	if p.Data == nil {
		e.t.Fatalf("%s: data is null", path)
	}
	out := []string{}
	for _, x := range p.Data {
		out = append(out, x.ID)
	}
	return out
}

type runtimeFixture struct {
	j1, j2         journeyJSON
	c1, c2, c3     store.Customer
	i1, i2, i3, i4 store.Instance
}

// seedRuntime stores four instances of two journeys for three customers,
// with steps and deliveries.
func (e *env) seedRuntime() runtimeFixture {
	e.t.Helper()
	var f runtimeFixture
	f.j1, f.j2 = e.createJourney("one", validGraph()), e.createJourney("two", validGraph())
	f.c1, f.c2, f.c3 = e.createCustomer("c1"), e.createCustomer("c2"), e.createCustomer("c3")
	tenant := e.tenant.ID
	f.i1 = e.seed(tenant, store.Instance{JourneyID: f.j1.ID, Version: 1, CustomerID: f.c1.ID, Status: store.InstanceRunning, Nodes: []string{"email_1"}},
		[]store.Step{step("entry_1", "event_entry", "completed")},
		store.Delivery{Key: "i1:email_1:1", NodeID: "email_1", Channel: "email", Payload: json.RawMessage(`{"to":"c1"}`)})
	f.i2 = e.seed(tenant, store.Instance{JourneyID: f.j1.ID, Version: 1, CustomerID: f.c2.ID, Status: store.InstanceWaiting, Nodes: []string{"wait_1"},
		Snapshot: json.RawMessage(`{"tokens":[{"id":"t1","node":"wait_1"}]}`)},
		[]store.Step{step("entry_1", "event_entry", "completed"), step("email_1", "send_email", "completed")},
		store.Delivery{Key: "i2:sms_1:1", NodeID: "sms_1", Channel: "sms", Status: store.DeliverySent, Payload: json.RawMessage(`{}`)})
	f.i3 = e.seed(tenant, store.Instance{JourneyID: f.j1.ID, Version: 2, CustomerID: f.c3.ID, Status: store.InstanceCompleted, Nodes: []string{}}, nil)
	f.i4 = e.seed(tenant, store.Instance{JourneyID: f.j2.ID, Version: 1, CustomerID: f.c1.ID, Status: store.InstanceWaiting, Nodes: []string{"wait_1", "email_1"}}, nil,
		store.Delivery{Key: "i4:email_1:1", NodeID: "email_1", Channel: "email", Status: store.DeliveryFailed, Payload: json.RawMessage(`{}`)})
	return f
}

func TestInstanceFilters(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		f := e.seedRuntime()
		for _, tc := range []struct {
			path string
			want []store.Instance
		}{
			{"/instances", []store.Instance{f.i1, f.i2, f.i3, f.i4}},
			{"/instances?journey_id=" + f.j1.ID, []store.Instance{f.i1, f.i2, f.i3}},
			{"/instances?status=waiting", []store.Instance{f.i2, f.i4}},
			{"/instances?status=completed", []store.Instance{f.i3}},
			{"/instances?status=paused", nil},
			{"/instances?version=2", []store.Instance{f.i3}},
			{"/instances?customer_id=" + f.c1.ID, []store.Instance{f.i1, f.i4}},
			{"/instances?node=email_1", []store.Instance{f.i1, f.i4}},
			{"/instances?node=wait_1&journey_id=" + f.j1.ID, []store.Instance{f.i2}},
			{"/instances?journey_id=" + f.j1.ID + "&status=waiting&version=1&customer_id=" + f.c2.ID + "&node=wait_1", []store.Instance{f.i2}},
			{"/journeys/" + f.j1.ID + "/instances", []store.Instance{f.i1, f.i2, f.i3}},
			{"/journeys/" + f.j2.ID + "/instances?status=waiting", []store.Instance{f.i4}},
			{"/journeys/" + f.j1.ID + "/instances?customer_id=" + f.c1.ID, []store.Instance{f.i1}},
			{"/customers/" + f.c1.ID + "/instances", []store.Instance{f.i1, f.i4}},
			{"/customers/c3/instances?by=external_id", nil},
		} {
			want := []string{}
			for _, in := range tc.want {
				want = append(want, in.ID)
			}
			if got := ids(e, tc.path); !slices.Equal(got, want) {
				t.Errorf("%s: %v, want %v", tc.path, got, want)
			}
		}
		all := []string{f.i1.ID, f.i2.ID, f.i3.ID, f.i4.ID}
		if got := pageIDs(e, "/instances?limit=3", 3); !slices.Equal(got, all) {
			t.Fatalf("paged %v, want %v", got, all)
		}
		if got := pageIDs(e, "/journeys/"+f.j1.ID+"/instances?limit=1", 1); !slices.Equal(got, all[:3]) {
			t.Fatalf("paged %v, want %v", got, all[:3])
		}
		for _, q := range []string{"status=done", "status=Running", "version=0", "version=x", "limit=0", "limit=201"} {
			e.do("GET", "/instances?"+q, nil).fails(http.StatusBadRequest, "invalid_parameter")
			e.do("GET", "/journeys/"+f.j1.ID+"/instances?"+q, nil).fails(http.StatusBadRequest, "invalid_parameter")
		}
		e.do("GET", "/journeys/jrn_nope/instances", nil).fails(http.StatusNotFound, "journey_not_found")
	})
}

func TestInstanceTimeline(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		f := e.seedRuntime()
		// A later step commits after the instance's first ones and is
		// numbered after them.
		next := f.i2
		next.UpdatedAt = e.clock.Now()
		next.Status, next.Nodes = store.InstanceCompleted, []string{}
		done := step("wait_1", "wait_for_event", "branched")
		done.Branch, done.Output = "event_received", json.RawMessage(`{"event":"email_opened"}`)
		if errs := e.store.Instances().Commit(t.Context(), []store.Commit{{Instance: next, Steps: []store.Step{done}}}); errs[0] != nil {
			t.Fatal(errs[0])
		}

		got := ok[instanceDetailJSON](e.do("GET", "/instances/"+f.i2.ID, nil), http.StatusOK)
		if got.ID != f.i2.ID || got.TenantID != e.tenant.ID || got.JourneyID != f.j1.ID || got.CustomerID != f.c2.ID ||
			got.Status != "completed" || got.Version != 1 || len(got.Nodes) != 0 {
			t.Fatalf("instance %+v", got.Instance)
		}
		var state struct{ Tokens []struct{ ID, Node string } }
		if err := json.Unmarshal(got.State, &state); err != nil || len(state.Tokens) != 1 || state.Tokens[0].Node != "wait_1" {
			t.Fatalf("state %s (%v)", got.State, err)
		}
		if got.Snapshot != nil {
			t.Fatalf("the raw snapshot leaked as well: %s", got.Snapshot)
		}
		var timeline []string
		for i, st := range got.Timeline {
			if st.Seq != int64(i+1) {
				t.Fatalf("step %d has seq %d", i, st.Seq)
			}
			timeline = append(timeline, st.NodeID+":"+st.Outcome)
		}
		if !slices.Equal(timeline, []string{"entry_1:completed", "email_1:completed", "wait_1:branched"}) {
			t.Fatalf("timeline %v", timeline)
		}
		var output struct{ Event string }
		if last := got.Timeline[2]; last.Branch != "event_received" || last.NodeType != "wait_for_event" ||
			json.Unmarshal(last.Output, &output) != nil || output.Event != "email_opened" {
			t.Fatalf("last step %+v", last)
		}

		bare := e.do("GET", "/instances/"+f.i3.ID, nil)
		var raw map[string]json.RawMessage
		if err := json.Unmarshal(ok[json.RawMessage](bare, http.StatusOK), &raw); err != nil {
			t.Fatal(err)
		}
		if string(raw["timeline"]) != "[]" || string(raw["state"]) != "null" || raw["ended_at"] == nil {
			t.Fatalf("instance without steps or state: %s", bare.body)
		}
		if active := ids(e, "/customers/"+f.c2.ID+"/instances"); len(active) != 0 {
			t.Fatal("a completed instance is still listed as the customer's")
		}
		e.do("GET", "/instances/ins_nope", nil).fails(http.StatusNotFound, "instance_not_found")
	})
}

func TestDeliveryFilters(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		f := e.seedRuntime()
		all := ok[struct{ Data []store.Delivery }](e.do("GET", "/deliveries", nil), http.StatusOK)
		keys := map[string]string{}
		var allIDs []string
		for _, d := range all.Data {
			keys[d.ID] = d.Key
			allIDs = append(allIDs, d.ID)
		}
		if len(all.Data) != 3 {
			t.Fatalf("deliveries %+v", all.Data)
		}
		first := all.Data[slices.IndexFunc(all.Data, func(d store.Delivery) bool { return d.Key == "i1:email_1:1" })]
		if first.JourneyID != f.j1.ID || first.InstanceID != f.i1.ID || first.CustomerID != f.c1.ID || first.Channel != "email" ||
			first.Status != "pending" || !json.Valid(first.Payload) {
			t.Fatalf("delivery %+v", first)
		}
		byKeys := func(path string) []string {
			t.Helper()
			out := []string{}
			for _, id := range ids(e, path) {
				out = append(out, keys[id])
			}
			slices.Sort(out)
			return out
		}
		for _, tc := range []struct {
			path string
			want []string
		}{
			{"/deliveries?journey_id=" + f.j1.ID, []string{"i1:email_1:1", "i2:sms_1:1"}},
			{"/deliveries?journey_id=" + f.j2.ID, []string{"i4:email_1:1"}},
			{"/deliveries?instance_id=" + f.i2.ID, []string{"i2:sms_1:1"}},
			{"/deliveries?customer_id=" + f.c1.ID, []string{"i1:email_1:1", "i4:email_1:1"}},
			{"/deliveries?status=failed", []string{"i4:email_1:1"}},
			{"/deliveries?status=sent&customer_id=" + f.c2.ID, []string{"i2:sms_1:1"}},
			{"/deliveries?status=bounced", []string{}},
			{"/deliveries?instance_id=" + f.i3.ID, []string{}},
		} {
			if got := byKeys(tc.path); !slices.Equal(got, tc.want) {
				t.Errorf("%s: %v, want %v", tc.path, got, tc.want)
			}
		}
		if got := pageIDs(e, "/deliveries?limit=1", 1); !slices.Equal(got, allIDs) {
			t.Fatalf("paged %v, want %v", got, allIDs)
		}
		for _, q := range []string{"status=queued", "limit=0", "limit=x"} {
			e.do("GET", "/deliveries?"+q, nil).fails(http.StatusBadRequest, "invalid_parameter")
		}
	})
}
