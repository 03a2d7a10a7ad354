package e2e

// One end-to-end test (at least) per node type, each run on both stores:
// the journey is published and customers enrolled through the API, the
// manual clock moved and the engine settled, and what the node did read
// back through the API (instance, timeline, deliveries, customer).

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kalcifer/kalcifer/engine"
	"github.com/kalcifer/kalcifer/store"
)

type step struct {
	Seq      int64           `json:"seq"`
	NodeID   string          `json:"node_id"`
	NodeType string          `json:"node_type"`
	TokenID  string          `json:"token_id"`
	Outcome  string          `json:"outcome"`
	Branch   string          `json:"branch"`
	Input    json.RawMessage `json:"input"`
	Output   json.RawMessage `json:"output"`
	Error    string          `json:"error"`
}

// String shows the step with its input and output as JSON text, for messages.
func (s step) String() string {
	return fmt.Sprintf("{%s %s %s branch=%q input=%s output=%s error=%q}", s.NodeID, s.NodeType, s.Outcome, s.Branch, s.Input, s.Output, s.Error)
}

// out decodes the step's output; an absent output is an empty map.
func (s step) out(t testing.TB) map[string]any {
	t.Helper()
	m := map[string]any{}
	if len(s.Output) > 0 {
		if err := json.Unmarshal(s.Output, &m); err != nil {
			t.Fatalf("output of step %s: %v", s.NodeID, err)
		}
	}
	return m
}

func (s step) in(t testing.TB) map[string]any {
	t.Helper()
	m := map[string]any{}
	if len(s.Input) > 0 {
		if err := json.Unmarshal(s.Input, &m); err != nil {
			t.Fatalf("input of step %s: %v", s.NodeID, err)
		}
	}
	return m
}

// instanceView is GET /instances/{id}: the instance, its state and timeline.
type instanceView struct {
	instance
	State struct {
		Context map[string]any `json:"context"`
		Goals   []string       `json:"goals"`
	} `json:"state"`
	Timeline []step `json:"timeline"`
}

// view fetches an instance with its timeline.
func (e *env) view(id string) instanceView {
	e.t.Helper()
	return ok[instanceView](e.do("GET", "/instances/"+id, nil), http.StatusOK)
}

// steps are the instance's steps at a node, in order.
func (v instanceView) steps(nodeID string) []step {
	var out []step
	for _, s := range v.Timeline {
		if s.NodeID == nodeID {
			out = append(out, s)
		}
	}
	return out
}

// one asserts the instance ran the node exactly once and returns the step.
func (v instanceView) one(t testing.TB, nodeID string) step {
	t.Helper()
	s := v.steps(nodeID)
	if len(s) != 1 {
		t.Fatalf("instance %s has %d steps at %s, want 1; timeline %s", v.ID, len(s), nodeID, v.path())
	}
	return s[0]
}

// path is the timeline as node:outcome[/branch], for messages.
func (v instanceView) path() string {
	parts := make([]string, len(v.Timeline))
	for i, s := range v.Timeline {
		parts[i] = s.NodeID + ":" + s.Outcome
		if s.Branch != "" {
			parts[i] += "/" + s.Branch
		}
		if s.Error != "" {
			parts[i] += "(" + s.Error + ")"
		}
	}
	return strings.Join(parts, " → ")
}

// visited lists the distinct nodes of the timeline in first-visit order.
func (v instanceView) visited() []string {
	var out []string
	for _, s := range v.Timeline {
		if !slices.Contains(out, s.NodeID) {
			out = append(out, s.NodeID)
		}
	}
	return out
}

// expect asserts the instance is in status want and returns its view.
func (e *env) expect(id, want string) instanceView {
	e.t.Helper()
	v := e.view(id)
	if v.Status != want {
		e.t.Fatalf("instance %s is %s (%s), want %s; timeline %s", id, v.Status, v.Error, want, v.path())
	}
	return v
}

type fullDelivery struct {
	ID                string          `json:"id"`
	Key               string          `json:"key"`
	JourneyID         string          `json:"journey_id"`
	InstanceID        string          `json:"instance_id"`
	CustomerID        string          `json:"customer_id"`
	NodeID            string          `json:"node_id"`
	Channel           string          `json:"channel"`
	Payload           json.RawMessage `json:"payload"`
	Status            string          `json:"status"`
	Provider          string          `json:"provider"`
	ProviderMessageID string          `json:"provider_message_id"`
	Error             string          `json:"error"`
	Attempts          int             `json:"attempts"`
	OpenedAt          *time.Time      `json:"opened_at"`
}

// payload is what a channel node hands the dispatcher.
type payload struct {
	Config  map[string]any `json:"config"`
	Event   map[string]any `json:"event"`
	Context map[string]any `json:"context"`
}

func (d fullDelivery) payload(t testing.TB) payload {
	t.Helper()
	var p payload
	if err := json.Unmarshal(d.Payload, &p); err != nil {
		t.Fatalf("payload of delivery %s: %v: %s", d.ID, err, d.Payload)
	}
	return p
}

// allDeliveries follows the pages of GET /deliveries?query.
func (e *env) allDeliveries(query string) []fullDelivery {
	e.t.Helper()
	var out []fullDelivery
	after := ""
	for {
		path := "/deliveries?limit=200&" + query
		if after != "" {
			path += "&after=" + after
		}
		p := ok[struct {
			Data      []fullDelivery `json:"data"`
			NextAfter string         `json:"next_after"`
		}](e.do("GET", path, nil), http.StatusOK)
		out = append(out, p.Data...)
		if p.NextAfter == "" {
			return out
		}
		after = p.NextAfter
	}
}

// nodesOf lists the node ids of deliveries, sorted.
func nodesOf(ds []fullDelivery) []string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = d.NodeID
	}
	slices.Sort(out)
	return out
}

type customerView struct {
	ID         string         `json:"id"`
	ExternalID string         `json:"external_id"`
	Email      string         `json:"email"`
	Phone      string         `json:"phone"`
	Name       string         `json:"name"`
	Timezone   string         `json:"timezone"`
	Properties map[string]any `json:"properties"`
	Tags       []string       `json:"tags"`
}

// customer fetches a customer by external id.
func (e *env) customer(externalID string) customerView {
	e.t.Helper()
	return ok[customerView](e.do("GET", "/customers/"+externalID+"?by=external_id", nil), http.StatusOK)
}

// putCustomer creates a customer with the given profile, and the addresses
// reach gives where the profile has none.
func (e *env) putCustomer(externalID string, profile map[string]any) customerView {
	e.t.Helper()
	full := maps.Clone(profile)
	if full == nil {
		full = map[string]any{}
	}
	for k, v := range address(externalID) {
		if _, set := full[k]; !set {
			full[k] = v
		}
	}
	e.reachable.Store(externalID, true)
	return ok[customerView](e.do("PUT", "/customers/"+externalID, full), http.StatusCreated)
}

// enrolWith triggers the journey for targets ({customer_id, data?}) and
// returns the per-target results.
func (e *env) enrolWith(journeyID string, targets ...map[string]any) []enrolment {
	e.t.Helper()
	for _, target := range targets {
		if id, ok := target["customer_id"].(string); ok {
			e.reach(id)
		}
	}
	r := e.do("POST", "/journeys/"+journeyID+"/trigger", map[string]any{"customers": targets})
	return ok[struct{ Results []enrolment }](r, http.StatusOK).Results
}

// enrolOne triggers the journey for one customer and asserts it entered.
func (e *env) enrolOne(journeyID, customer string, data map[string]any) enrolment {
	e.t.Helper()
	target := map[string]any{"customer_id": customer}
	if data != nil {
		target["data"] = data
	}
	res := e.enrolWith(journeyID, target)
	if len(res) != 1 || res[0].Error != nil || res[0].InstanceID == "" || res[0].CustomerID != customer {
		e.t.Fatalf("trigger of %s for %s: %+v", journeyID, customer, res)
	}
	return res[0]
}

// instanceFor finds the customer's one instance of the journey.
func (e *env) instanceFor(journeyID, externalID string) instance {
	e.t.Helper()
	c := e.customer(externalID)
	var found []instance
	for _, in := range e.instances(journeyID) {
		if in.CustomerID == c.ID {
			found = append(found, in)
		}
	}
	if len(found) != 1 {
		e.t.Fatalf("customer %s has %d instances of %s, want 1: %+v", externalID, len(found), journeyID, found)
	}
	return found[0]
}

// graph builds a journey from nodes and explicit edges.
func graph(nodes []map[string]any, edges ...map[string]any) map[string]any {
	ns := make([]any, len(nodes))
	for i, n := range nodes {
		ns[i] = n
	}
	es := make([]any, len(edges))
	for i, ed := range edges {
		es[i] = ed
	}
	return map[string]any{"nodes": ns, "edges": es}
}

func triggerEntry() map[string]any {
	return node("entry", "event_entry", map[string]any{"event_type": "manual_only"})
}

func tag(id, typ, name string) map[string]any {
	return node(id, typ, map[string]any{"tag": name})
}

func condition(id, expression string) map[string]any {
	return node(id, "condition", map[string]any{"expression": expression})
}

// --- entry nodes ---

func TestNodeEventEntry(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		g := graph([]map[string]any{
			node("signup", "event_entry", map[string]any{"event_type": "signed_up", "filter": map[string]any{"plan": "premium"}}),
			node("referral", "event_entry", map[string]any{"event_type": "referred"}),
			email("hello_signup"), email("hello_referral"),
		}, edge("signup", "hello_signup", ""), edge("referral", "hello_referral", ""))
		j := e.publish(g)

		// Neither the wrong filter value nor a missing one nor another
		// event type enrols.
		e.event("ada", "signed_up", map[string]any{"properties": map[string]any{"plan": "basic"}})
		e.event("ada", "signed_up", nil)
		e.event("ada", "logged_in", map[string]any{"properties": map[string]any{"plan": "premium"}})
		e.settle()
		if in := e.instances(j); len(in) != 0 {
			t.Fatalf("%d instances from events that do not match the entry: %+v", len(in), in)
		}

		ev := e.event("ada", "signed_up", map[string]any{"properties": map[string]any{"plan": "premium", "source": "ads"}})
		e.event("bob", "referred", map[string]any{"properties": map[string]any{"by": "ada"}})
		e.settle()

		ada := e.expect(e.instanceFor(j, "ada").ID, store.InstanceCompleted)
		if got := ada.visited(); !slices.Equal(got, []string{"signup", "hello_signup"}) {
			t.Fatalf("ada's path %s", ada.path())
		}
		if s := ada.one(t, "signup"); s.NodeType != "event_entry" || s.Outcome != engine.OutcomeCompleted {
			t.Fatalf("entry step %+v", s)
		}
		entry, _ := ada.State.Context["entry"].(map[string]any)
		props, _ := entry["properties"].(map[string]any)
		if entry["id"] != ev.EventID || entry["type"] != "signed_up" || props["source"] != "ads" {
			t.Fatalf("context.entry %v, want the signed_up event %s", ada.State.Context["entry"], ev.EventID)
		}
		ds := e.allDeliveries("instance_id=" + ada.ID)
		if len(ds) != 1 || ds[0].NodeID != "hello_signup" || ds[0].payload(t).Event["id"] != ev.EventID {
			t.Fatalf("ada's deliveries %+v", ds)
		}

		bob := e.expect(e.instanceFor(j, "bob").ID, store.InstanceCompleted)
		if got := bob.visited(); !slices.Equal(got, []string{"referral", "hello_referral"}) {
			t.Fatalf("bob entered through the wrong entry: %s", bob.path())
		}
		e.sent(bob.ID, "hello_referral")
	})
}

func TestNodeSegmentEntry(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		// The engine has no segments yet: nothing enrols through
		// segment_entry by itself, a manual trigger enrols at it, and the
		// webhook route, which needs a webhook_entry, refuses.
		j := e.publish(chain(node("vips", "segment_entry", map[string]any{"segment_id": "seg_vip"}), tag("mark", "add_tag", "vip_journey")))

		e.event("ada", "seg_vip", nil)
		e.event("ada", "segment_entered", map[string]any{"properties": map[string]any{"segment_id": "seg_vip"}})
		e.advance(day)
		if in := e.instances(j); len(in) != 0 {
			t.Fatalf("events enrolled through segment_entry: %+v", in)
		}

		e.do("POST", "/webhooks/"+j, map[string]any{"customer_id": "ada"}).fails(http.StatusUnprocessableEntity, "no_entry_node")
		if in := e.instances(j); len(in) != 0 {
			t.Fatalf("the refused webhook enrolled: %+v", in)
		}

		res := e.enrolOne(j, "ada", map[string]any{"why": "backfill"})
		if res.Status != store.InstanceCompleted {
			t.Fatalf("trigger %+v", res)
		}
		v := e.expect(res.InstanceID, store.InstanceCompleted)
		if len(v.Timeline) == 0 || v.Timeline[0].NodeID != "vips" || v.Timeline[0].NodeType != "segment_entry" || v.Timeline[0].Outcome != engine.OutcomeCompleted {
			t.Fatalf("timeline %s, want to start at the segment_entry", v.path())
		}
		if tr, _ := v.State.Context["trigger"].(map[string]any); tr["why"] != "backfill" {
			t.Fatalf("context.trigger %v", v.State.Context["trigger"])
		}
		if c := e.customer("ada"); !slices.Contains(c.Tags, "vip_journey") {
			t.Fatalf("tags %v", c.Tags)
		}
		e.only(j)
	})
}

func TestNodeWebhookEntry(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		// The event entry comes first in the graph: the webhook must still
		// enrol at the webhook_entry, and the trigger at the first entry.
		g := graph([]map[string]any{
			eventEntry("ordered"),
			node("hook", "webhook_entry", nil),
			condition("big", "context.trigger.amount >= 100"),
			tag("tag_big", "add_tag", "big_spender"), tag("tag_small", "add_tag", "small_spender"),
			email("from_event"),
		}, edge("entry", "from_event", ""), edge("hook", "big", ""),
			edge("big", "tag_big", "true"), edge("big", "tag_small", "false"))
		j := e.publish(g)

		for customer, amount := range map[string]float64{"ada": 250, "bob": 20} {
			res := ok[enrolment](e.do("POST", "/webhooks/"+j, map[string]any{"customer_id": customer, "data": map[string]any{"amount": amount}}),
				http.StatusAccepted)
			if res.InstanceID == "" || res.CustomerID != customer || res.Status != store.InstanceCompleted {
				t.Fatalf("webhook for %s: %+v", customer, res)
			}
			v := e.expect(res.InstanceID, store.InstanceCompleted)
			if s := v.Timeline[0]; s.NodeID != "hook" || s.NodeType != "webhook_entry" {
				t.Fatalf("%s's timeline %s, want to start at the webhook_entry", customer, v.path())
			}
			if tr, _ := v.State.Context["trigger"].(map[string]any); tr["amount"] != amount {
				t.Fatalf("context.trigger %v, want amount %v", v.State.Context["trigger"], amount)
			}
			if d := e.deliveries(res.InstanceID); len(d) != 0 {
				t.Fatalf("the webhook path sent %+v", d)
			}
		}
		if tags := e.customer("ada").Tags; !slices.Equal(tags, []string{"big_spender"}) {
			t.Fatalf("ada's tags %v", tags)
		}
		if tags := e.customer("bob").Tags; !slices.Equal(tags, []string{"small_spender"}) {
			t.Fatalf("bob's tags %v", tags)
		}

		// A trigger enrols at the first entry node, the event_entry.
		res := e.enrolOne(j, "cat", nil)
		v := e.expect(res.InstanceID, store.InstanceCompleted)
		if got := v.visited(); !slices.Equal(got, []string{"entry", "from_event"}) {
			t.Fatalf("triggered path %s", v.path())
		}
		e.settle()
		e.sent(res.InstanceID, "from_event")
	})
}

// --- channel nodes ---

// channelCase publishes entry → the channel node → a wait, enrols by event
// and checks the one delivery: recorded with its key, sent once through the
// log provider, and not sent again as the engine keeps running.
func channelCase(t *testing.T, e *env, nodeType, channel string, config map[string]any) {
	t.Helper()
	e.putCustomer("ada", map[string]any{"email": "ada@example.com", "phone": "+447700900123", "name": "Ada",
		"push_tokens": []string{"tok-1"}})
	j := e.publish(chain(eventEntry("ordered"), node("send", nodeType, config), wait("later", "1h"), email("after")))
	ev := e.event("ada", "ordered", map[string]any{"properties": map[string]any{"order_id": "o-42"}})
	e.settle()
	in := e.instanceFor(j, "ada")
	v := e.expect(in.ID, store.InstanceWaiting)

	ds := e.allDeliveries("instance_id=" + in.ID)
	if len(ds) != 1 {
		t.Fatalf("deliveries %+v, want one from send", ds)
	}
	d := ds[0]
	key := in.ID + ":send:1"
	if d.NodeID != "send" || d.Channel != channel || d.Key != key || d.JourneyID != j || d.InstanceID != in.ID ||
		d.CustomerID != in.CustomerID {
		t.Fatalf("delivery %+v, want channel %s and key %s", d, channel, key)
	}
	if d.Status != store.DeliverySent || d.Provider != "log" || d.ProviderMessageID != key || d.Attempts != 1 || d.Error != "" {
		t.Fatalf("delivery %+v, want sent once via log", d)
	}
	p := d.payload(t)
	for k, want := range config {
		if got, _ := json.Marshal(p.Config[k]); string(got) != string(mustJSON(t, want)) {
			t.Errorf("payload config %s = %s, want %s", k, got, mustJSON(t, want))
		}
	}
	if p.Event["id"] != ev.EventID {
		t.Errorf("payload event %v, want %s", p.Event, ev.EventID)
	}
	s := v.one(t, "send")
	if s.NodeType != nodeType || s.Outcome != engine.OutcomeCompleted || s.out(t)["delivery_key"] != key {
		t.Fatalf("send step %+v", s)
	}

	// Settling again and finishing the journey sends nothing twice.
	e.settle()
	e.advance(time.Hour)
	e.expect(in.ID, store.InstanceCompleted)
	ds = e.allDeliveries("instance_id=" + in.ID)
	if got := nodesOf(ds); !slices.Equal(got, []string{"after", "send"}) {
		t.Fatalf("deliveries from %v, want after and send", got)
	}
	for _, d := range ds {
		if d.NodeID == "send" && (d.Attempts != 1 || d.Status != store.DeliverySent) {
			t.Fatalf("send's delivery after more settling %+v", d)
		}
	}
	if n := len(e.allDeliveries("journey_id=" + j + "&status=sent")); n != 2 {
		t.Fatalf("%d sent deliveries in the journey, want 2", n)
	}
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestNodeSendEmail(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		channelCase(t, e, "send_email", "email", map[string]any{"subject": "Order {{ event.order_id }}",
			"body": "<p>Thanks {{ profile.name }}</p>", "from": "Acme <hello@acme.example>"})
	})
}

func TestNodeSendSMS(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		channelCase(t, e, "send_sms", "sms", map[string]any{"body": "Order {{ event.order_id }} is confirmed"})
	})
}

func TestNodeSendPush(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		channelCase(t, e, "send_push", "push", map[string]any{"title": "Order confirmed", "body": "Order {{ event.order_id }}",
			"data": map[string]any{"order": "{{ event.order_id }}"}})
	})
}

func TestNodeSendWhatsApp(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		tpl, err := e.store.Templates().CreateTemplate(context.Background(), store.Template{TenantID: e.tenant.ID, Name: "order confirmed",
			Channel: "whatsapp", Content: json.RawMessage(`{"template": "order_confirmed", "params": ["{{ event.properties.order_id }}"]}`), CreatedAt: start})
		if err != nil {
			t.Fatal(err)
		}
		channelCase(t, e, "send_whatsapp", "whatsapp", map[string]any{"template_id": tpl.ID, "language": "en_US"})
	})
}

func TestNodeCallWebhook(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		channelCase(t, e, "call_webhook", "webhook", map[string]any{"url": "https://hooks.example.com/orders", "method": "PUT",
			"headers": map[string]any{"X-Order": "{{ event.order_id }}"}, "body": map[string]any{"order": "{{ event.order_id }}"}})
	})
}

// --- logic nodes ---

func TestNodeWait(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		j := e.publish(chain(triggerEntry(), email("before"), wait("pause", "2h"), email("after")))
		in := e.enrolOne(j, "ada", nil)
		if in.Status != store.InstanceWaiting {
			t.Fatalf("trigger %+v", in)
		}
		v := e.expect(in.InstanceID, store.InstanceWaiting)
		if !slices.Equal(v.Nodes, []string{"pause"}) {
			t.Fatalf("nodes %v, want [pause]", v.Nodes)
		}
		s := v.one(t, "pause")
		if s.Outcome != engine.OutcomeWaiting || !sameTime(t, s.out(t)["until"], start.Add(2*time.Hour)) {
			t.Fatalf("wait step %+v", s)
		}
		e.settle()
		e.sent(in.InstanceID, "before")

		e.advance(2*time.Hour - time.Second)
		e.expect(in.InstanceID, store.InstanceWaiting)
		e.sent(in.InstanceID, "before")

		e.advance(time.Second)
		v = e.expect(in.InstanceID, store.InstanceCompleted)
		ps := v.steps("pause")
		if len(ps) != 2 || ps[1].Outcome != engine.OutcomeResumed || !sameTime(t, ps[1].in(t)["timer"], start.Add(2*time.Hour)) {
			t.Fatalf("pause steps %+v; timeline %s", ps, v.path())
		}
		if len(v.Nodes) != 0 {
			t.Fatalf("completed instance at nodes %v", v.Nodes)
		}
		e.sent(in.InstanceID, "before", "after")

		// A 0s wait costs no timer: the customer goes straight through.
		j0 := e.publish(chain(triggerEntry(), wait("pause", "0s"), email("after")))
		res := e.enrolOne(j0, "bob", nil)
		if res.Status != store.InstanceCompleted {
			t.Fatalf("0s wait: %+v", res)
		}
		e.settle()
		e.sent(res.InstanceID, "after")
	})
}

// sameTime reports whether an RFC 3339 string from JSON is the instant want.
func sameTime(t testing.TB, v any, want time.Time) bool {
	t.Helper()
	s, _ := v.(string)
	got, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Errorf("time %v: %v", v, err)
		return false
	}
	if !got.Equal(want) {
		t.Errorf("time %s, want %s", got.UTC(), want.UTC())
		return false
	}
	return true
}

func TestNodeWaitUntil(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		newYork, err := time.LoadLocation("America/New_York")
		if err != nil {
			t.Fatal(err)
		}
		tokyo, _ := time.LoadLocation("Asia/Tokyo")
		paris, _ := time.LoadLocation("Europe/Paris")
		if start.Weekday() != time.Monday {
			t.Fatalf("the test assumes the clock starts on a Monday, not %s", start.Weekday())
		}

		t.Run("time of day in the customer's timezone", func(t *testing.T) {
			e := e.with(t)
			e.putCustomer("ny", map[string]any{"timezone": "America/New_York"})
			e.putCustomer("tokyo", map[string]any{"timezone": "Asia/Tokyo"})
			e.putCustomer("nozone", map[string]any{"email": "nozone@example.com"})
			j := e.publish(chain(triggerEntry(),
				node("morning", "wait_until", map[string]any{"time_of_day": "09:00", "timezone": "Europe/Paris"}),
				email("good_morning")))
			// 09:00 UTC is 04:00 in New York (EST), 18:00 in Tokyo and 10:00
			// in Paris: the next 09:00 is later today, tomorrow, tomorrow.
			want := map[string]time.Time{
				"ny":     time.Date(2026, 3, 2, 9, 0, 0, 0, newYork),
				"tokyo":  time.Date(2026, 3, 3, 9, 0, 0, 0, tokyo),
				"nozone": time.Date(2026, 3, 3, 9, 0, 0, 0, paris),
			}
			ids := map[string]string{}
			for c, at := range want {
				res := e.enrolOne(j, c, nil)
				ids[c] = res.InstanceID
				v := e.expect(res.InstanceID, store.InstanceWaiting)
				if s := v.one(t, "morning"); s.Outcome != engine.OutcomeWaiting || !sameTime(t, s.out(t)["until"], at) {
					t.Fatalf("%s waits with %+v, want until %s", c, s, at.UTC())
				}
			}
			// Walk the clock to each wake-up in turn.
			order := slices.SortedFunc(maps.Keys(want), func(a, b string) int { return want[a].Compare(want[b]) })
			for i, c := range order {
				e.advance(want[c].Sub(e.clock.Now()) - time.Second)
				e.expect(ids[c], store.InstanceWaiting)
				e.advance(time.Second)
				v := e.expect(ids[c], store.InstanceCompleted)
				if ws := v.steps("morning"); len(ws) != 2 || ws[1].Outcome != engine.OutcomeResumed {
					t.Fatalf("%s's timeline %s", c, v.path())
				}
				e.sent(ids[c], "good_morning")
				for _, later := range order[i+1:] {
					e.expect(ids[later], store.InstanceWaiting)
				}
			}
		})

		t.Run("days of week", func(t *testing.T) {
			e := e.with(t)
			e.putCustomer("utc", map[string]any{"timezone": "UTC"})
			j := e.publish(chain(triggerEntry(),
				node("wednesday", "wait_until", map[string]any{"time_of_day": "08:00", "days_of_week": []string{"wed", "sat"}}),
				email("midweek")))
			res := e.enrolOne(j, "utc", nil)
			at := time.Date(2026, 3, 4, 8, 0, 0, 0, time.UTC) // Wednesday
			if s := e.view(res.InstanceID).one(t, "wednesday"); !sameTime(t, s.out(t)["until"], at) {
				t.Fatalf("wait step %+v, want until %s", s, at)
			}
			e.advance(at.Sub(e.clock.Now()) - time.Minute)
			e.expect(res.InstanceID, store.InstanceWaiting)
			e.advance(time.Minute)
			e.expect(res.InstanceID, store.InstanceCompleted)
			e.sent(res.InstanceID, "midweek")
		})

		t.Run("datetime", func(t *testing.T) {
			e := e.with(t)
			at := e.clock.Now().Add(36 * time.Hour).Truncate(time.Hour)
			j := e.publish(chain(triggerEntry(),
				node("launch", "wait_until", map[string]any{"datetime": at.Format(time.RFC3339)}), email("launched")))
			res := e.enrolOne(j, "ada", nil)
			e.advance(at.Sub(e.clock.Now()) - time.Second)
			e.expect(res.InstanceID, store.InstanceWaiting)
			e.advance(time.Second)
			e.expect(res.InstanceID, store.InstanceCompleted)
			e.sent(res.InstanceID, "launched")

			// A moment already past lets the customer through at once.
			res = e.enrolOne(j, "bob", nil)
			if res.Status != store.InstanceCompleted {
				t.Fatalf("past datetime: %+v", res)
			}
		})
	})
}

func TestNodeWaitForEvent(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		g := graph([]map[string]any{
			eventEntry("order_placed"),
			node("shipped", "wait_for_event", map[string]any{"event_type": "order_shipped", "timeout": "2d",
				"filter": map[string]any{"carrier": "ups"},
				"match":  map[string]any{"order_id": "context.entry.properties.order_id"}}),
			email("ship_mail"), email("late_mail"),
		}, edge("entry", "shipped", ""), edge("shipped", "ship_mail", "event_received"), edge("shipped", "late_mail", "timed_out"))
		j := e.publish(g)

		e.event("ada", "order_placed", map[string]any{"properties": map[string]any{"order_id": "o-1"}})
		e.event("bob", "order_placed", map[string]any{"properties": map[string]any{"order_id": "o-2"}})
		e.settle()
		ada, bob := e.instanceFor(j, "ada").ID, e.instanceFor(j, "bob").ID
		v := e.expect(ada, store.InstanceWaiting)
		if s := v.one(t, "shipped"); s.Outcome != engine.OutcomeWaiting || s.out(t)["event_type"] != "order_shipped" ||
			!sameTime(t, s.out(t)["until"], start.Add(2*day)) {
			t.Fatalf("wait step %+v", s)
		}
		if !slices.Equal(v.Nodes, []string{"shipped"}) {
			t.Fatalf("nodes %v", v.Nodes)
		}

		e.advance(time.Hour)
		// Another order, another carrier, another customer's order: none
		// is ada's shipment.
		e.event("ada", "order_shipped", map[string]any{"properties": map[string]any{"order_id": "o-2", "carrier": "ups"}})
		e.event("ada", "order_shipped", map[string]any{"properties": map[string]any{"order_id": "o-1", "carrier": "dhl"}})
		e.event("ada", "order_placed", map[string]any{"properties": map[string]any{"order_id": "o-1", "carrier": "ups"}})
		e.settle()
		e.expect(ada, store.InstanceWaiting)
		e.expect(bob, store.InstanceWaiting)

		match := e.event("ada", "order_shipped", map[string]any{"properties": map[string]any{"order_id": "o-1", "carrier": "ups"}})
		e.settle()
		v = e.expect(ada, store.InstanceCompleted)
		ws := v.steps("shipped")
		if len(ws) != 2 || ws[1].Outcome != engine.OutcomeBranched && ws[1].Outcome != engine.OutcomeResumed || ws[1].Branch != "event_received" ||
			ws[1].in(t)["event_id"] != match.EventID {
			t.Fatalf("ada's wait steps %+v, want resumed by %s; timeline %s", ws, match.EventID, v.path())
		}
		e.sent(ada, "ship_mail")
		e.expect(bob, store.InstanceWaiting)

		// bob's shipment never comes: the timeout takes the other branch,
		// and a late event changes nothing.
		e.advance(2*day - time.Hour - time.Second)
		e.expect(bob, store.InstanceWaiting)
		e.advance(time.Second)
		v = e.expect(bob, store.InstanceCompleted)
		if ws := v.steps("shipped"); len(ws) != 2 || ws[1].Branch != "timed_out" {
			t.Fatalf("bob's timeline %s", v.path())
		}
		e.event("bob", "order_shipped", map[string]any{"properties": map[string]any{"order_id": "o-2", "carrier": "ups"}})
		e.settle()
		e.expect(bob, store.InstanceCompleted)
		e.sent(bob, "late_mail")
		e.sent(ada, "ship_mail")
	})
}

func TestNodeCondition(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		g := graph([]map[string]any{
			eventEntry("purchase"),
			condition("vip", `profile.plan == "premium" || event.amount > 100`),
			email("vip_mail"), email("standard_mail"),
		}, edge("entry", "vip", ""), edge("vip", "vip_mail", "true"), edge("vip", "standard_mail", "false"))
		j := e.publish(g)
		e.putCustomer("prem", map[string]any{"properties": map[string]any{"plan": "premium"}})
		e.putCustomer("free", map[string]any{"properties": map[string]any{"plan": "free"}})
		e.putCustomer("big", map[string]any{"properties": map[string]any{"plan": "free"}})
		want := map[string]bool{"prem": true, "free": false, "big": true, "unknown": false}
		amounts := map[string]float64{"prem": 10, "free": 10, "big": 150, "unknown": 99}
		for c := range want {
			e.event(c, "purchase", map[string]any{"properties": map[string]any{"amount": amounts[c]}})
		}
		e.settle()
		for c, isVIP := range want {
			in := e.instanceFor(j, c)
			v := e.expect(in.ID, store.InstanceCompleted)
			s := v.one(t, "vip")
			if s.NodeType != "condition" || s.Outcome != engine.OutcomeBranched || s.Branch != fmt.Sprint(isVIP) || s.out(t)["result"] != isVIP {
				t.Fatalf("%s: condition step %+v, want branch %v", c, s, isVIP)
			}
			if isVIP {
				e.sent(in.ID, "vip_mail")
			} else {
				e.sent(in.ID, "standard_mail")
			}
		}

		// After a wait, event is the event that resumed the customer; the
		// entry event stays readable in the context.
		jw := e.publish(graph([]map[string]any{
			eventEntry("cart"), node("paid", "wait_for_event", map[string]any{"event_type": "paid"}),
			condition("big", `event.type == "paid" && event.amount > context.entry.properties.amount`),
			email("upsell"), email("thanks"),
		}, edge("entry", "paid", ""), edge("paid", "big", "event_received"),
			edge("big", "upsell", "true"), edge("big", "thanks", "false")))
		for c, paid := range map[string]float64{"prem": 80, "free": 20} {
			e.event(c, "cart", map[string]any{"properties": map[string]any{"amount": 50}})
			e.settle()
			e.event(c, "paid", map[string]any{"properties": map[string]any{"amount": paid}})
			e.settle()
			in := e.instanceFor(jw, c)
			v := e.expect(in.ID, store.InstanceCompleted)
			if s := v.one(t, "big"); s.Branch != fmt.Sprint(paid > 50) {
				t.Fatalf("%s paid %v: condition %+v", c, paid, s)
			}
		}

		// A condition that cannot be evaluated fails the instance with the reason.
		g2 := e.publish(graph([]map[string]any{triggerEntry(), condition("bad", `profile.plan > 3`), email("x"), email("y")},
			edge("entry", "bad", ""), edge("bad", "x", "true"), edge("bad", "y", "false")))
		res := e.enrolOne(g2, "prem", nil)
		v := e.expect(res.InstanceID, store.InstanceFailed)
		if s := v.one(t, "bad"); s.Outcome != engine.OutcomeFailed || s.Error == "" || !strings.Contains(v.Error, "bad") {
			t.Fatalf("failed condition: step %+v, instance error %q", s, v.Error)
		}
		if d := e.deliveries(res.InstanceID); len(d) != 0 {
			t.Fatalf("failed instance sent %+v", d)
		}
	})
}

func TestNodeABSplit(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		g := graph([]map[string]any{
			triggerEntry(),
			node("split", "ab_split", map[string]any{"variants": []any{
				map[string]any{"key": "a", "weight": 75}, map[string]any{"key": "b", "weight": 25}}}),
			email("email_a"), email("email_b"),
		}, edge("entry", "split", ""), edge("split", "email_a", "a"), edge("split", "email_b", "b"))
		g["re_entry"] = "after_exit"
		j := e.publish(g)

		const n = 200
		targets := make([]map[string]any, n)
		for i := range targets {
			targets[i] = map[string]any{"customer_id": fmt.Sprintf("cust-%03d", i)}
		}
		// variants enrols everyone once and returns each customer's variant,
		// checked against the timeline and the email they were sent.
		variants := func() map[string]string {
			t.Helper()
			res := e.enrolWith(j, targets...)
			e.settle()
			got := make(map[string]string, n)
			for _, r := range res {
				if r.Error != nil || r.Status != store.InstanceCompleted {
					t.Fatalf("enrolment %+v", r)
				}
				v := e.view(r.InstanceID)
				s := v.one(t, "split")
				if s.Outcome != engine.OutcomeBranched || (s.Branch != "a" && s.Branch != "b") || s.out(t)["variant"] != s.Branch {
					t.Fatalf("%s: split step %+v", r.CustomerID, s)
				}
				if visited := v.visited(); !slices.Equal(visited, []string{"entry", "split", "email_" + s.Branch}) {
					t.Fatalf("%s: path %s", r.CustomerID, v.path())
				}
				got[r.CustomerID] = s.Branch
			}
			return got
		}
		first := variants()
		counts := map[string]int{}
		for _, v := range first {
			counts[v]++
		}
		// 75% of 200 is 150, with a standard deviation of about 6.
		if counts["a"]+counts["b"] != n || counts["a"] < 125 || counts["a"] > 175 {
			t.Fatalf("variants %v, want about 150 a and 50 b", counts)
		}
		byNode := map[string]int{}
		for _, d := range e.allDeliveries("journey_id=" + j) {
			if d.Status != store.DeliverySent {
				t.Fatalf("delivery %+v", d)
			}
			byNode[d.NodeID]++
		}
		if byNode["email_a"] != counts["a"] || byNode["email_b"] != counts["b"] {
			t.Fatalf("deliveries per node %v, variants %v", byNode, counts)
		}

		// Entering again, every customer gets the same variant.
		again := variants()
		for c, v := range first {
			if again[c] != v {
				t.Errorf("%s got %s, then %s", c, v, again[c])
			}
		}
		if n := len(e.allDeliveries("journey_id=" + j)); n != 2*len(first) {
			t.Fatalf("%d deliveries after two rounds, want %d", n, 2*len(first))
		}

		// A holdout leaves the journey at the split, without a message.
		hg := graph([]map[string]any{
			triggerEntry(),
			node("split", "ab_split", map[string]any{"holdout_percent": 20, "variants": []any{
				map[string]any{"key": "a", "weight": 1}, map[string]any{"key": "b", "weight": 1}}}),
			email("email_a"), email("email_b"),
		}, edge("entry", "split", ""), edge("split", "email_a", "a"), edge("split", "email_b", "b"))
		hj := e.publish(hg)
		held := 0
		for _, r := range e.enrolWith(hj, targets[:100]...) {
			v := e.expect(r.InstanceID, store.InstanceCompleted)
			s := v.one(t, "split")
			if s.Outcome == engine.OutcomeEnded {
				if s.out(t)["holdout"] != true || len(v.Timeline) != 2 {
					t.Fatalf("%s held out: %+v; timeline %s", r.CustomerID, s, v.path())
				}
				held++
			} else if s.Outcome != engine.OutcomeBranched {
				t.Fatalf("%s: split step %+v", r.CustomerID, s)
			}
		}
		// 20% of 100 is 20, with a standard deviation of 4.
		if held < 6 || held > 34 {
			t.Fatalf("%d of 100 held out, want about 20", held)
		}
		e.settle()
		if n := len(e.allDeliveries("journey_id=" + hj)); n != 100-held {
			t.Fatalf("%d deliveries with %d of 100 held out", n, held)
		}
	})
}

func TestNodeFrequencyCap(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		capped := graph([]map[string]any{
			triggerEntry(),
			node("cap", "frequency_cap", map[string]any{"max_messages": 2, "time_window": "1d", "channel": "email"}),
			email("promo"), tag("mark", "add_tag", "was_capped"),
		}, edge("entry", "cap", ""), edge("cap", "promo", "allowed"), edge("cap", "mark", "capped"))
		capped["re_entry"] = "after_exit"
		jc := e.publish(capped)
		newsletter := chain(triggerEntry(), email("news"))
		newsletter["re_entry"] = "always"
		jn := e.publish(newsletter)
		texts := chain(triggerEntry(), node("text", "send_sms", map[string]any{"body": "hi"}))
		texts["re_entry"] = "always"
		js := e.publish(texts)

		// check enrols the customer in the capped journey and returns the
		// cap's branch and output.
		check := func(customer, want string, sent float64) {
			t.Helper()
			res := e.enrolOne(jc, customer, nil)
			e.settle()
			v := e.expect(res.InstanceID, store.InstanceCompleted)
			s := v.one(t, "cap")
			out := s.out(t)
			if s.Outcome != engine.OutcomeBranched || s.Branch != want || out["sent"] != sent || out["max"] != 2.0 || out["channel"] != "email" {
				t.Fatalf("%s: cap step %+v, want %s after %v emails", customer, s, want, sent)
			}
			if want == "allowed" {
				e.sent(res.InstanceID, "promo")
			} else {
				e.sent(res.InstanceID)
			}
		}

		check("ada", "allowed", 0)
		e.enrolOne(jn, "ada", nil) // an email from another journey counts too
		e.enrolOne(js, "ada", nil) // an SMS does not
		e.enrolOne(js, "ada", nil)
		e.settle()
		check("ada", "capped", 2)
		if tags := e.customer("ada").Tags; !slices.Equal(tags, []string{"was_capped"}) {
			t.Fatalf("ada's tags %v", tags)
		}
		check("bob", "allowed", 0)

		// The window slides: a day after the sends, they no longer count.
		e.advance(day - time.Minute)
		check("ada", "capped", 2)
		e.advance(2 * time.Minute)
		check("ada", "allowed", 0)
		check("ada", "allowed", 1)
		check("ada", "capped", 2)
	})
}

// --- data nodes ---

func TestNodeUpdateProfile(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		e.putCustomer("ada", map[string]any{"name": "Ada", "email": "ada@example.com",
			"properties": map[string]any{"trial": true, "keep": "yes"}})
		g := graph([]map[string]any{
			triggerEntry(),
			node("upgrade", "update_profile", map[string]any{"fields": map[string]any{
				"plan": "premium", "score": 42, "name": "Ada Lovelace", "timezone": "Europe/London", "trial": nil}}),
			// The next node sees the updated profile within the same step.
			condition("check", `profile.plan == "premium" && profile.name == "Ada Lovelace" && profile.trial == nil`),
			email("premium_mail"), email("other_mail"),
		}, edge("entry", "upgrade", ""), edge("upgrade", "check", ""),
			edge("check", "premium_mail", "true"), edge("check", "other_mail", "false"))
		j := e.publish(g)
		res := e.enrolOne(j, "ada", nil)
		v := e.expect(res.InstanceID, store.InstanceCompleted)
		if s := v.one(t, "upgrade"); s.NodeType != "update_profile" || s.Outcome != engine.OutcomeCompleted {
			t.Fatalf("update step %+v", s)
		}
		if s := v.one(t, "check"); s.Branch != "true" {
			t.Fatalf("condition after the update took %q: %s", s.Branch, v.path())
		}
		e.settle()
		e.sent(res.InstanceID, "premium_mail")

		c := e.customer("ada")
		if c.Name != "Ada Lovelace" || c.Timezone != "Europe/London" || c.Email != "ada@example.com" {
			t.Fatalf("built-in fields %+v", c)
		}
		want := map[string]any{"plan": "premium", "score": 42.0, "keep": "yes"}
		if !maps.Equal(c.Properties, want) {
			t.Fatalf("properties %v, want %v", c.Properties, want)
		}
		if _, leaked := c.Properties["name"]; leaked {
			t.Fatalf("a built-in field became a property: %v", c.Properties)
		}
	})
}

func TestNodeAddTag(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		e.putCustomer("ada", map[string]any{"tags": []string{"existing"}})
		g := graph([]map[string]any{
			triggerEntry(), tag("tag", "add_tag", "vip"),
			condition("has", `"vip" in profile.tags`), email("vip_mail"), email("plain_mail"),
		}, edge("entry", "tag", ""), edge("tag", "has", ""), edge("has", "vip_mail", "true"), edge("has", "plain_mail", "false"))
		g["re_entry"] = "after_exit"
		j := e.publish(g)

		for range 2 { // adding a tag the customer has changes nothing
			res := e.enrolOne(j, "ada", nil)
			v := e.expect(res.InstanceID, store.InstanceCompleted)
			if s := v.one(t, "tag"); s.NodeType != "add_tag" || s.Outcome != engine.OutcomeCompleted {
				t.Fatalf("tag step %+v", s)
			}
			if s := v.one(t, "has"); s.Branch != "true" {
				t.Fatalf("the tag was not visible to the next node: %s", v.path())
			}
			e.settle()
			e.sent(res.InstanceID, "vip_mail")
			if tags := slices.Sorted(slices.Values(e.customer("ada").Tags)); !slices.Equal(tags, []string{"existing", "vip"}) {
				t.Fatalf("tags %v, want existing and vip once each", tags)
			}
		}
		e.enrolOne(j, "bob", nil)
		if tags := e.customer("bob").Tags; !slices.Equal(tags, []string{"vip"}) {
			t.Fatalf("bob's tags %v", tags)
		}
		tagged := ok[struct{ Data []customerView }](e.do("GET", "/customers?tag=vip", nil), http.StatusOK).Data
		var ids []string
		for _, c := range tagged {
			ids = append(ids, c.ExternalID)
		}
		slices.Sort(ids)
		if !slices.Equal(ids, []string{"ada", "bob"}) {
			t.Fatalf("customers tagged vip %v", ids)
		}
	})
}

func TestNodeRemoveTag(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		e.putCustomer("ada", map[string]any{"tags": []string{"trial", "keep"}})
		e.putCustomer("bob", map[string]any{"tags": []string{"keep"}})
		g := graph([]map[string]any{
			triggerEntry(), tag("untag", "remove_tag", "trial"),
			condition("still", `"trial" in profile.tags`), email("trial_mail"), email("converted_mail"),
		}, edge("entry", "untag", ""), edge("untag", "still", ""),
			edge("still", "trial_mail", "true"), edge("still", "converted_mail", "false"))
		j := e.publish(g)
		// bob never had the tag: removing it is not an error.
		for _, c := range []string{"ada", "bob"} {
			res := e.enrolOne(j, c, nil)
			v := e.expect(res.InstanceID, store.InstanceCompleted)
			if s := v.one(t, "untag"); s.NodeType != "remove_tag" || s.Outcome != engine.OutcomeCompleted {
				t.Fatalf("%s: remove step %+v", c, s)
			}
			if s := v.one(t, "still"); s.Branch != "false" {
				t.Fatalf("%s: the removed tag was still visible: %s", c, v.path())
			}
			e.settle()
			e.sent(res.InstanceID, "converted_mail")
			if tags := e.customer(c).Tags; !slices.Equal(tags, []string{"keep"}) {
				t.Fatalf("%s's tags %v, want [keep]", c, tags)
			}
		}
	})
}

func TestNodeCustomCode(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		const code = `
if (profile.external_id === "runaway") { while (true) {} }
const amount = context.trigger.amount;
const high = amount >= 100;
return {branch: high ? "high" : "low", context: {score: amount * 2, tier: high ? "gold" : "basic"}, value: "scored"};`
		g := graph([]map[string]any{
			triggerEntry(),
			node("score", "custom_code", map[string]any{"code": code, "timeout_ms": 200, "branches": []string{"high", "low"}}),
			// Reads what the script put in the context.
			condition("check", `context.score == context.trigger.amount * 2`),
			email("gold_mail"), email("basic_mail"), email("mismatch"),
		}, edge("entry", "score", ""), edge("score", "check", "high"), edge("score", "basic_mail", "low"),
			edge("check", "gold_mail", "true"), edge("check", "mismatch", "false"))
		j := e.publish(g)

		for _, c := range []struct {
			customer, branch, tier, mail string
			amount                       float64
		}{{"ada", "high", "gold", "gold_mail", 150}, {"bob", "low", "basic", "basic_mail", 20}} {
			res := e.enrolOne(j, c.customer, map[string]any{"amount": c.amount})
			v := e.expect(res.InstanceID, store.InstanceCompleted)
			s := v.one(t, "score")
			out := s.out(t)
			if s.NodeType != "custom_code" || s.Outcome != engine.OutcomeBranched || s.Branch != c.branch || out["branch"] != c.branch || out["value"] != "scored" {
				t.Fatalf("%s: script step %+v", c.customer, s)
			}
			if v.State.Context["score"] != 2*c.amount || v.State.Context["tier"] != c.tier {
				t.Fatalf("%s: context %v", c.customer, v.State.Context)
			}
			e.settle()
			ds := e.allDeliveries("instance_id=" + res.InstanceID)
			if got := nodesOf(ds); !slices.Equal(got, []string{c.mail}) {
				t.Fatalf("%s: deliveries from %v, want %s; timeline %s", c.customer, got, c.mail, v.path())
			}
			if p := ds[0].payload(t); p.Context["tier"] != c.tier {
				t.Fatalf("%s: delivery context %v", c.customer, p.Context)
			}
		}

		// A script that never ends fails its own instance; the other
		// customer in the same request goes through.
		res := e.enrolWith(j, map[string]any{"customer_id": "runaway", "data": map[string]any{"amount": 500}},
			map[string]any{"customer_id": "calm", "data": map[string]any{"amount": 500}})
		if len(res) != 2 || res[0].Error != nil || res[1].Error != nil {
			t.Fatalf("trigger %+v", res)
		}
		v := e.expect(res[0].InstanceID, store.InstanceFailed)
		if s := v.one(t, "score"); s.Outcome != engine.OutcomeFailed || !strings.Contains(s.Error, "timeout") || !strings.Contains(v.Error, "score") {
			t.Fatalf("runaway script: step %+v, instance error %q", s, v.Error)
		}
		if len(v.Nodes) != 0 {
			t.Fatalf("failed instance still at %v", v.Nodes)
		}
		e.expect(res[1].InstanceID, store.InstanceCompleted)
		e.settle()
		e.sent(res[0].InstanceID)
		e.sent(res[1].InstanceID, "gold_mail")
		// So does a script that allocates without end.
		hog := e.publish(chain(triggerEntry(), node("hog", "custom_code", map[string]any{
			"code": `let a = []; while (true) { a.push("x".repeat(100000)); }`, "memory_mb": 4}), email("never")))
		v = e.expect(e.enrolOne(hog, "hungry", nil).InstanceID, store.InstanceFailed)
		if s := v.one(t, "hog"); s.Outcome != engine.OutcomeFailed || !strings.Contains(s.Error, "memory") {
			t.Fatalf("memory hog: step %+v", s)
		}
		// The engine is still there for the next customer.
		if r := e.enrolOne(j, "after", map[string]any{"amount": 1}); r.Status != store.InstanceCompleted {
			t.Fatalf("after the runaway script: %+v", r)
		}
	})
}

// --- exit nodes ---

func TestNodeGoalReached(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		t.Run("continues", func(t *testing.T) {
			e := e.with(t)
			j := e.publish(chain(triggerEntry(), node("goal", "goal_reached", map[string]any{"goal_name": "activated"}), email("after_goal")))
			res := e.enrolOne(j, "ada", nil)
			v := e.expect(res.InstanceID, store.InstanceCompleted)
			if s := v.one(t, "goal"); s.NodeType != "goal_reached" || s.Outcome != engine.OutcomeCompleted || s.out(t)["goal"] != "activated" {
				t.Fatalf("goal step %+v", s)
			}
			if !slices.Equal(v.State.Goals, []string{"activated"}) {
				t.Fatalf("goals %v", v.State.Goals)
			}
			e.settle()
			e.sent(res.InstanceID, "after_goal")
		})
		t.Run("exit after goal", func(t *testing.T) {
			e := e.with(t)
			// After the welcome, one path reminds in a day while the other
			// waits for the purchase that ends the whole instance.
			g := graph([]map[string]any{
				triggerEntry(), email("welcome"),
				wait("day", "1d"), email("reminder"),
				node("bought", "wait_for_event", map[string]any{"event_type": "purchased"}),
				node("goal", "goal_reached", map[string]any{"goal_name": "converted", "exit_after_goal": true}),
			}, edge("entry", "welcome", ""), edge("welcome", "day", ""), edge("day", "reminder", ""),
				edge("welcome", "bought", ""), edge("bought", "goal", "event_received"))
			j := e.publish(g)
			ada := e.enrolOne(j, "ada", nil)
			bob := e.enrolOne(j, "bob", nil)
			v := e.expect(ada.InstanceID, store.InstanceWaiting)
			if nodes := slices.Sorted(slices.Values(v.Nodes)); !slices.Equal(nodes, []string{"bought", "day"}) {
				t.Fatalf("nodes %v, want day and bought", v.Nodes)
			}

			e.advance(time.Hour)
			e.event("ada", "purchased", nil)
			e.settle()
			v = e.expect(ada.InstanceID, store.InstanceCompleted)
			if s := v.one(t, "goal"); s.Outcome != engine.OutcomeExited || s.out(t)["goal"] != "converted" {
				t.Fatalf("goal step %+v", s)
			}
			if !slices.Equal(v.State.Goals, []string{"converted"}) || len(v.Nodes) != 0 {
				t.Fatalf("goals %v, nodes %v", v.State.Goals, v.Nodes)
			}

			e.advance(day)
			v = e.expect(ada.InstanceID, store.InstanceCompleted)
			if len(v.steps("reminder")) != 0 {
				t.Fatalf("the ended instance went on: %s", v.path())
			}
			e.sent(ada.InstanceID, "welcome")
			// bob did not buy: his reminder went out and he still waits.
			v = e.expect(bob.InstanceID, store.InstanceWaiting)
			if !slices.Equal(v.Nodes, []string{"bought"}) || len(v.State.Goals) != 0 {
				t.Fatalf("bob at %v with goals %v", v.Nodes, v.State.Goals)
			}
			e.sent(bob.InstanceID, "welcome", "reminder")
		})
	})
}

func TestNodeJourneyExit(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		// The entry forks: one path ends at once, the other waits an hour
		// and sends.
		g := graph([]map[string]any{
			triggerEntry(),
			node("stop", "journey_exit", map[string]any{"reason": "only one path goes on"}),
			wait("hour", "1h"), email("later"),
		}, edge("entry", "stop", ""), edge("entry", "hour", ""), edge("hour", "later", ""))
		j := e.publish(g)
		res := e.enrolOne(j, "ada", nil)
		v := e.expect(res.InstanceID, store.InstanceWaiting)
		if !slices.Equal(v.Nodes, []string{"hour"}) {
			t.Fatalf("nodes %v, want [hour]", v.Nodes)
		}
		s := v.one(t, "stop")
		if s.NodeType != "journey_exit" || s.Outcome != engine.OutcomeEnded || s.out(t)["reason"] != "only one path goes on" {
			t.Fatalf("exit step %+v", s)
		}
		if hs := v.steps("hour"); len(hs) != 1 || hs[0].TokenID == s.TokenID {
			t.Fatalf("the two paths share a token: %+v / %+v", hs, s)
		}

		e.advance(time.Hour)
		v = e.expect(res.InstanceID, store.InstanceCompleted)
		e.sent(res.InstanceID, "later")
		if len(v.steps("stop")) != 1 {
			t.Fatalf("timeline %s", v.path())
		}

		// On a branch of its own, journey_exit ends the customer's path
		// there and nothing after the split runs for them.
		g2 := graph([]map[string]any{
			triggerEntry(), condition("eligible", `profile.plan == "pro"`),
			node("out", "journey_exit", nil), email("offer"),
		}, edge("entry", "eligible", ""), edge("eligible", "offer", "true"), edge("eligible", "out", "false"))
		j2 := e.publish(g2)
		e.putCustomer("pro", map[string]any{"properties": map[string]any{"plan": "pro"}})
		pro, free := e.enrolOne(j2, "pro", nil), e.enrolOne(j2, "free", nil)
		e.settle()
		e.sent(pro.InstanceID, "offer")
		e.sent(free.InstanceID)
		v = e.view(free.InstanceID)
		if v.Status != store.InstanceCompleted || len(v.Nodes) != 0 {
			t.Fatalf("free's instance is %s at %v after journey_exit ended its only path", v.Status, v.Nodes)
		}
		if got := v.visited(); !slices.Equal(got, []string{"entry", "eligible", "out"}) || v.one(t, "out").Outcome != engine.OutcomeEnded {
			t.Fatalf("free's path %s", v.path())
		}
	})
}

func TestNodeSendSkipsOptedOutChannel(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		e.putCustomer("ada", map[string]any{"email": "ada@example.com", "phone": "+447700900123",
			"preferences": map[string]any{"email": false}})
		j := e.publish(chain(triggerEntry(), email("mail"), node("text", "send_sms", map[string]any{"body": "hi"})))
		res := e.enrolOne(j, "ada", nil)
		e.settle()
		e.expect(res.InstanceID, store.InstanceCompleted)
		for _, d := range e.allDeliveries("instance_id=" + res.InstanceID) {
			switch {
			case d.NodeID == "mail" && d.Status != store.DeliverySkipped:
				t.Errorf("email to a customer who opted out of email is %s via %q", d.Status, d.Provider)
			case d.NodeID == "text" && d.Status != store.DeliverySent:
				t.Errorf("SMS is %s, want sent", d.Status)
			}
		}
	})
}
