package engine

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kalcifer/kalcifer/journey"
	"github.com/kalcifer/kalcifer/nodes"
)

func TestChannelNodesDeliverWithIdempotencyKeys(t *testing.T) {
	in := newInstance(t, chain(entry(),
		nd("email", "send_email", `{"template_id":"welcome"}`),
		nd("sms", "send_sms", `{"body":"hi"}`),
		nd("push", "send_push", `{"title":"t","body":"b"}`),
		nd("wa", "send_whatsapp", `{"template_id":"w"}`),
		nd("hook", "call_webhook", `{"url":"https://example.com/h"}`)))
	fx := in.start(event("ev1", "signed_up", map[string]any{"plan": "pro"}))
	in.wantStatus(StatusCompleted)
	in.wantPath("entry:completed", "email:completed", "sms:completed", "push:completed", "wa:completed", "hook:completed")
	var channels, keys []string
	for _, d := range fx.Deliveries {
		channels = append(channels, d.Channel)
		keys = append(keys, d.Key)
	}
	if want := []string{"email", "sms", "push", "whatsapp", "webhook"}; !slices.Equal(channels, want) {
		t.Fatalf("channels %v, want %v", channels, want)
	}
	if keys[0] != "i1:email:1" || keys[4] != "i1:hook:1" {
		t.Fatalf("keys %v", keys)
	}
	var payload struct {
		Config  map[string]any `json:"config"`
		Event   *nodes.Event   `json:"event"`
		Context map[string]any `json:"context"`
	}
	if err := json.Unmarshal(fx.Deliveries[0].Payload, &payload); err != nil {
		t.Fatal(err)
	}
	if payload.Config["template_id"] != "welcome" || payload.Event.ID != "ev1" || payload.Context["entry"] == nil {
		t.Fatalf("payload %s", fx.Deliveries[0].Payload)
	}
	if got := output(t, fx.Steps[1])["delivery_key"]; got != "i1:email:1" {
		t.Fatalf("step output delivery_key %v", got)
	}
	if fx.Steps[1].Seq != 2 || fx.Steps[1].NodeType != "send_email" || fx.Steps[1].Version != 3 || !fx.Steps[1].At.Equal(t0) {
		t.Fatalf("step record %+v", fx.Steps[1])
	}
	if fx.Timers != nil || fx.Waits != nil {
		t.Fatalf("a completed instance needs no timers or waits: %+v %+v", fx.Timers, fx.Waits)
	}
}

func TestManualStartAtChosenEntry(t *testing.T) {
	g := graph([]journey.Node{entry(), nd("hook", "webhook_entry", `{}`), nd("seg", "segment_entry", `{"segment_id":"s"}`),
		nd("cond", "condition", `{"expression":"context.trigger.vip == true"}`), nd("yes", "add_tag", `{"tag":"vip"}`)},
		ed("entry", "cond"), ed("hook", "cond"), ed("seg", "cond"), ed("cond", "yes", "true"), ed("cond", "yes", "false"))
	in := newInstance(t, g)
	in.step(Trigger{Kind: TriggerStart, EntryNodeID: "hook", Data: map[string]any{"vip": true}})
	in.wantStatus(StatusCompleted)
	in.wantPath("hook:completed", "cond:branched:true", "yes:completed")
	if in.s.Context["trigger"] == nil || in.s.Context["entry"] != nil {
		t.Fatalf("context %v", in.s.Context)
	}
	if fx := in.step(Trigger{Kind: TriggerStart}); fx.Changed {
		t.Fatal("a second start changed a finished instance")
	}

	other := newInstance(t, g)
	other.step(Trigger{Kind: TriggerStart, EntryNodeID: "cond"})
	other.wantStatus(StatusFailed)
	if other.s.Error != "node cond: not an entry node of this journey version" {
		t.Fatalf("error %q", other.s.Error)
	}
}

func TestWait(t *testing.T) {
	in := newInstance(t, chain(entry(), nd("w", "wait", `{"duration":"1d"}`), nd("zero", "wait", `{"duration":"0s"}`), nd("email", "send_email", `{"template_id":"x"}`)))
	fx := in.start(nil)
	in.wantStatus(StatusWaiting)
	if len(fx.Timers) != 1 || !fx.Timers[0].DueAt.Equal(t0.Add(24*time.Hour)) || fx.Timers[0].TokenID != "t1" {
		t.Fatalf("timers %+v", fx.Timers)
	}
	in.now = t0.Add(23 * time.Hour)
	if fx := in.step(Trigger{Kind: TriggerTimer, TokenID: "t1"}); fx.Changed {
		t.Fatal("an early timer fired")
	}
	if fx := in.step(Trigger{Kind: TriggerTimer, TokenID: "t9"}); fx.Changed {
		t.Fatal("an unknown token's timer fired")
	}
	in.fire("t1")
	in.wantStatus(StatusCompleted)
	in.wantPath("entry:completed", "w:waiting", "w:resumed", "zero:completed", "email:completed")
	if len(in.delivs) != 1 {
		t.Fatalf("deliveries %+v", in.delivs)
	}
	if fx := in.fire("t1"); fx.Changed {
		t.Fatal("a timer fired twice")
	}
}

func TestWaitUntil(t *testing.T) {
	tests := []struct {
		name, config, timezone string
		now                    time.Time
		want                   time.Time // zero: completes at once
	}{
		{"future datetime", `{"datetime":"2030-02-01T09:00:00Z"}`, "", t0, time.Date(2030, 2, 1, 9, 0, 0, 0, time.UTC)},
		{"past datetime", `{"datetime":"2020-02-01T09:00:00Z"}`, "", t0, time.Time{}},
		{"later today in UTC", `{"time_of_day":"09:30"}`, "", t0, time.Date(2030, 1, 7, 9, 30, 0, 0, time.UTC)},
		{"exactly now", `{"time_of_day":"08:00"}`, "", t0, time.Time{}},
		{"tomorrow when passed", `{"time_of_day":"07:00"}`, "", t0, time.Date(2030, 1, 8, 7, 0, 0, 0, time.UTC)},
		{"next allowed weekday", `{"time_of_day":"07:00","days_of_week":["mon"]}`, "", t0, time.Date(2030, 1, 14, 7, 0, 0, 0, time.UTC)},
		{"customer timezone", `{"time_of_day":"10:00","timezone":"Asia/Tokyo"}`, "Europe/Paris", t0, time.Date(2030, 1, 7, 9, 0, 0, 0, time.UTC)},
		{"config timezone fallback", `{"time_of_day":"09:00","timezone":"Asia/Tokyo"}`, "", t0, time.Date(2030, 1, 8, 0, 0, 0, 0, time.UTC)},
		{"bad customer timezone falls back", `{"time_of_day":"09:00","timezone":"Asia/Tokyo"}`, "Mars/Olympus", t0, time.Date(2030, 1, 8, 0, 0, 0, 0, time.UTC)},
		// US clocks spring forward on Sunday 2030-03-10: Saturday 09:00 is
		// 14:00 UTC, Monday 09:00 is 13:00 UTC.
		{"across spring DST", `{"time_of_day":"09:00","days_of_week":["mon"]}`, "America/New_York",
			time.Date(2030, 3, 9, 14, 0, 0, 0, time.UTC), time.Date(2030, 3, 11, 13, 0, 0, 0, time.UTC)},
		{"across autumn DST", `{"time_of_day":"09:00","days_of_week":["mon"]}`, "America/New_York",
			time.Date(2030, 11, 2, 13, 0, 0, 0, time.UTC), time.Date(2030, 11, 4, 14, 0, 0, 0, time.UTC)},
		{"in the spring gap", `{"time_of_day":"02:30","days_of_week":["sun"]}`, "America/New_York",
			time.Date(2030, 3, 9, 14, 0, 0, 0, time.UTC), time.Date(2030, 3, 10, 7, 30, 0, 0, time.UTC)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := newInstance(t, chain(entry(), nd("wu", "wait_until", tt.config)))
			in.now = tt.now
			in.customer.Timezone = tt.timezone
			fx := in.start(nil)
			if tt.want.IsZero() {
				in.wantStatus(StatusCompleted)
				return
			}
			in.wantStatus(StatusWaiting)
			if len(fx.Timers) != 1 || !fx.Timers[0].DueAt.Equal(tt.want) {
				t.Fatalf("timers %+v, want %s", fx.Timers, tt.want)
			}
			in.fire("t1")
			in.wantStatus(StatusCompleted)
		})
	}
}

func waitForEventGraph(config string, received, timedOut string) journey.Graph {
	ns := []journey.Node{entry(), nd("wfe", "wait_for_event", config), nd("got", "add_tag", `{"tag":"got"}`)}
	es := []journey.Edge{ed("entry", "wfe"), ed("wfe", "got", received)}
	if timedOut != "" {
		ns = append(ns, nd("late", "add_tag", `{"tag":"late"}`))
		es = append(es, ed("wfe", "late", timedOut))
	}
	return graph(ns, es...)
}

func TestWaitForEventReceived(t *testing.T) {
	in := newInstance(t, waitForEventGraph(`{"event_type":"paid","timeout":"3d","filter":{"currency":"EUR"},"match":{"order_id":"context.entry.properties.order_id"}}`, "event_received", "timed_out"))
	fx := in.start(event("e0", "signed_up", map[string]any{"order_id": "o-7"}))
	in.wantStatus(StatusWaiting)
	if !slices.Equal(fx.Waits, []string{"paid"}) || len(fx.Timers) != 1 || !fx.Timers[0].DueAt.Equal(t0.Add(72*time.Hour)) {
		t.Fatalf("waits %v timers %+v", fx.Waits, fx.Timers)
	}
	if w := in.s.Tokens[0].Wait; w.Match["order_id"] != "o-7" || !w.StartedAt.Equal(t0) {
		t.Fatalf("wait %+v", w)
	}
	for _, e := range []*nodes.Event{
		event("e1", "other", map[string]any{"currency": "EUR", "order_id": "o-7"}),
		event("e2", "paid", map[string]any{"currency": "USD", "order_id": "o-7"}),
		event("e3", "paid", map[string]any{"currency": "EUR", "order_id": "o-8"}),
		event("e0", "paid", map[string]any{"currency": "EUR", "order_id": "o-7"}), // the entry event's id
	} {
		if fx := in.event(e); fx.Changed {
			t.Fatalf("event %s %v resumed the wait", e.Type, e.Properties)
		}
	}
	in.now = t0.Add(time.Hour)
	fx = in.event(event("e4", "paid", map[string]any{"currency": "EUR", "order_id": "o-7"}))
	in.wantStatus(StatusCompleted)
	in.wantPath("entry:completed", "wfe:waiting", "wfe:resumed:event_received", "got:completed")
	var input map[string]any
	if err := json.Unmarshal(fx.Steps[0].Input, &input); err != nil || input["event_id"] != "e4" || input["event_type"] != "paid" {
		t.Fatalf("resume input %s", fx.Steps[0].Input)
	}
	if fx := in.fire("t1"); fx.Changed {
		t.Fatal("the timeout fired after the event")
	}
}

func TestWaitForEventTimeoutWithCustomNames(t *testing.T) {
	in := newInstance(t, waitForEventGraph(`{"event_type":"paid","timeout":"1h","branches":{"event_received":"paid","timed_out":"unpaid"}}`, "paid", "unpaid"))
	in.start(nil)
	in.fire("t1")
	in.wantStatus(StatusCompleted)
	in.wantPath("entry:completed", "wfe:waiting", "wfe:resumed:unpaid", "late:completed")
	if fx := in.event(event("e1", "paid", nil)); fx.Changed {
		t.Fatal("the event was applied after the timeout")
	}
}

func TestWaitForEventWithoutTimeout(t *testing.T) {
	in := newInstance(t, waitForEventGraph(`{"event_type":"paid","branches":{"event_received":"ok"}}`, "ok", ""))
	if fx := in.start(nil); fx.Timers != nil {
		t.Fatalf("timers %+v", fx.Timers)
	}
	in.event(event("e1", "paid", nil))
	in.wantPath("entry:completed", "wfe:waiting", "wfe:resumed:ok", "got:completed")
}

func conditionGraph(expression string) journey.Graph {
	return graph([]journey.Node{entry(), nd("cond", "condition", `{"expression":`+quote(expression)+`}`),
		nd("yes", "journey_exit", `{"reason":"yes"}`), nd("no", "journey_exit", `{}`)},
		ed("entry", "cond"), ed("cond", "yes", "true"), ed("cond", "no", "false"))
}

func quote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func TestCondition(t *testing.T) {
	tests := []struct {
		expression string
		branch     string // "" means the instance fails
	}{
		{`profile.plan == "free" && profile.email == "a@example.com" && profile.external_id == "ext-1"`, "true"},
		{`event.amount > 100 && event.type == "signed_up"`, "true"},
		{`event.amount > 500`, "false"},
		{`context.entry.properties.amount == 120`, "true"},
		{`profile.missing == nil`, "true"},
		{`int("abc") > 1`, ""},
		{`context.entry.type`, ""},
	}
	for _, tt := range tests {
		in := newInstance(t, conditionGraph(tt.expression))
		fx := in.start(event("e1", "signed_up", map[string]any{"amount": 120.0}))
		if tt.branch == "" {
			in.wantStatus(StatusFailed)
			if !strings.HasPrefix(in.s.Error, "node cond: expression") || fx.Steps[1].Outcome != OutcomeFailed || fx.Steps[1].Error == "" {
				t.Errorf("%s: error %q, steps %+v", tt.expression, in.s.Error, fx.Steps)
			}
			continue
		}
		in.wantStatus(StatusCompleted)
		if got := fx.Steps[1].Branch; got != tt.branch {
			t.Errorf("%s: branch %q, want %q", tt.expression, got, tt.branch)
		}
		if got := output(t, fx.Steps[1])["result"]; got != (tt.branch == "true") {
			t.Errorf("%s: output result %v", tt.expression, got)
		}
	}
}

func TestProfileChangesAreSeenLaterInTheStep(t *testing.T) {
	in := newInstance(t, graph([]journey.Node{entry(),
		nd("up", "update_profile", `{"fields":{"plan":"pro","email":"b@example.com","old":null}}`),
		nd("tag", "add_tag", `{"tag":"vip"}`), nd("untag", "remove_tag", `{"tag":"trial"}`),
		nd("cond", "condition", `{"expression":"profile.plan == \"pro\" && profile.email == \"b@example.com\" && \"vip\" in profile.tags && !(\"trial\" in profile.tags) && profile.old == nil"}`),
		nd("yes", "goal_reached", `{"goal_name":"upgraded"}`), nd("no", "journey_exit", `{}`)},
		ed("entry", "up"), ed("up", "tag"), ed("tag", "untag"), ed("untag", "cond"), ed("cond", "yes", "true"), ed("cond", "no", "false")))
	in.customer.Tags = []string{"trial"}
	in.customer.Properties["old"] = 1.0
	committed := in.customer.Clone()
	fx := in.start(nil)
	in.wantPath("entry:completed", "up:completed", "tag:completed", "untag:completed", "cond:branched:true", "yes:completed")
	want := &nodes.ProfileChange{Set: map[string]any{"plan": "pro", "email": "b@example.com", "old": nil}, AddTags: []string{"vip"}, RemoveTags: []string{"trial"}}
	if !reflect.DeepEqual(fx.Profile, want) {
		t.Fatalf("profile change %+v, want %+v", fx.Profile, want)
	}
	if !slices.Equal(fx.Goals, []string{"upgraded"}) || !slices.Equal(in.s.Goals, []string{"upgraded"}) {
		t.Fatalf("goals %v %v", fx.Goals, in.s.Goals)
	}
	if committed.Properties["plan"] != "free" || !slices.Equal(committed.Tags, []string{"trial"}) {
		t.Fatal("Step changed the caller's customer")
	}
}

func TestGoalReachedExitsInstance(t *testing.T) {
	in := newInstance(t, graph([]journey.Node{entry(), nd("w", "wait", `{"duration":"1h"}`),
		nd("goal", "goal_reached", `{"goal_name":"won","exit_after_goal":true}`)},
		ed("entry", "w"), ed("entry", "goal")))
	in.start(nil)
	in.wantStatus(StatusCompleted)
	in.wantPath("entry:completed", "w:waiting", "goal:exited")
	if len(in.s.Tokens) != 0 || !slices.Equal(in.s.Goals, []string{"won"}) {
		t.Fatalf("state %+v", in.s)
	}
}

func TestJourneyExitEndsOnlyItsToken(t *testing.T) {
	in := newInstance(t, graph([]journey.Node{entry(), nd("exit", "journey_exit", `{}`), nd("w", "wait", `{"duration":"1h"}`)},
		ed("entry", "exit"), ed("entry", "w")))
	in.start(nil)
	in.wantStatus(StatusWaiting)
	in.wantPath("entry:completed", "exit:ended", "w:waiting")
	in.fire(in.s.Tokens[0].ID)
	in.wantStatus(StatusCompleted)
}

func TestParallelBranchesJoin(t *testing.T) {
	in := newInstance(t, graph([]journey.Node{entry(), nd("a", "add_tag", `{"tag":"a"}`), nd("b", "add_tag", `{"tag":"b"}`),
		nd("c", "update_profile", `{"fields":{"c":1}}`), nd("join", "send_email", `{"template_id":"x"}`), nd("end", "journey_exit", `{}`)},
		ed("entry", "a"), ed("entry", "b"), ed("b", "c"), ed("a", "join"), ed("c", "join"), ed("join", "end")))
	in.start(nil)
	in.wantStatus(StatusCompleted)
	in.wantPath("entry:completed", "a:completed", "b:completed", "c:completed", "join:completed", "end:ended")
	if len(in.delivs) != 1 || in.s.Visits["join"] != 1 || in.s.NextToken != 2 {
		t.Fatalf("deliveries %d, visits %v, tokens made %d", len(in.delivs), in.s.Visits, in.s.NextToken)
	}
	for _, s := range in.steps {
		if s.NodeID == "b" && s.TokenID != "t2" || s.NodeID == "a" && s.TokenID != "t1" {
			t.Fatalf("forked token ids: %+v", in.steps)
		}
	}
}

func TestParallelBranchesWaitIndependently(t *testing.T) {
	in := newInstance(t, graph([]journey.Node{entry(), nd("w1", "wait", `{"duration":"1h"}`), nd("w2", "wait", `{"duration":"2h"}`),
		nd("join", "send_sms", `{"body":"x"}`)},
		ed("entry", "w1"), ed("entry", "w2"), ed("w1", "join"), ed("w2", "join")))
	fx := in.start(nil)
	if len(fx.Timers) != 2 || fx.Timers[0].TokenID != "t1" || fx.Timers[1].TokenID != "t2" {
		t.Fatalf("timers %+v", fx.Timers)
	}
	fx = in.fire("t1")
	in.wantStatus(StatusWaiting)
	if len(fx.Timers) != 1 || fx.Timers[0].TokenID != "t2" {
		t.Fatalf("timers after the first fired %+v", fx.Timers)
	}
	in.fire("t2")
	in.wantStatus(StatusCompleted)
	// Tokens that reach a join at different times each run it: the join
	// cannot know whether the other branch will ever come.
	if len(in.delivs) != 2 || in.delivs[1].Key != "i1:join:2" {
		t.Fatalf("deliveries %+v", in.delivs)
	}
}

func TestABSplitThroughStep(t *testing.T) {
	g := graph([]journey.Node{entry(), nd("ab", "ab_split", `{"variants":[{"key":"a","weight":1},{"key":"b","weight":1}],"holdout_percent":20}`),
		nd("a", "add_tag", `{"tag":"a"}`), nd("b", "add_tag", `{"tag":"b"}`)},
		ed("entry", "ab"), ed("ab", "a", "a"), ed("ab", "b", "b"))
	seen := map[string]bool{}
	for i := range 40 {
		c := fmt.Sprintf("customer-%d", i)
		first := runAB(t, g, c)
		if again := runAB(t, g, c); again != first {
			t.Fatalf("customer %s got %s then %s", c, first, again)
		}
		seen[first] = true
	}
	if !seen["a"] || !seen["b"] || !seen["holdout"] {
		t.Fatalf("forty customers saw only %v", seen)
	}
}

// runAB returns the variant the customer got, or "holdout".
func runAB(t *testing.T, g journey.Graph, customerID string) string {
	in := newInstance(t, g)
	in.s.CustomerID, in.customer.ID = customerID, customerID
	fx := in.start(nil)
	in.wantStatus(StatusCompleted)
	rec := fx.Steps[1]
	if rec.Outcome == OutcomeEnded {
		if output(t, rec)["holdout"] != true {
			t.Fatalf("holdout output %s", rec.Output)
		}
		return "holdout"
	}
	if output(t, rec)["variant"] != rec.Branch {
		t.Fatalf("variant output %s", rec.Output)
	}
	return rec.Branch
}

func TestFrequencyCapNode(t *testing.T) {
	g := graph([]journey.Node{entry(), nd("email", "send_email", `{"template_id":"x"}`),
		nd("cap", "frequency_cap", `{"max_messages":2,"time_window":"1d","channel":"email"}`),
		nd("capAll", "frequency_cap", `{"max_messages":3,"time_window":"1d"}`),
		nd("ok", "journey_exit", `{}`), nd("capped", "journey_exit", `{}`)},
		ed("entry", "email"), ed("email", "cap"), ed("cap", "capAll", "allowed"), ed("cap", "capped", "capped"),
		ed("capAll", "ok", "allowed"), ed("capAll", "capped", "capped"))
	in := newInstance(t, g)
	in.ledger.sent = []sent{{"sms", t0.Add(-time.Hour)}, {"email", t0.Add(-25 * time.Hour)}}
	in.start(nil)
	in.wantPath("entry:completed", "email:completed", "cap:branched:allowed", "capAll:branched:allowed", "ok:ended")

	in = newInstance(t, g)
	in.ledger.sent = []sent{{"email", t0.Add(-time.Hour)}}
	fx := in.start(nil)
	in.wantPath("entry:completed", "email:completed", "cap:branched:capped", "capped:ended")
	if out := output(t, fx.Steps[2]); out["sent"] != 2.0 || out["channel"] != "email" {
		t.Fatalf("output %v", out)
	}

	in = newInstance(t, g)
	in.ledger.sent = []sent{{"sms", t0.Add(-time.Hour)}, {"push", t0.Add(-time.Hour)}}
	in.start(nil)
	in.wantPath("entry:completed", "email:completed", "cap:branched:allowed", "capAll:branched:capped", "capped:ended")
}

func TestJourneyFrequencyCapSkipsSends(t *testing.T) {
	g := chain(entry(), nd("e1", "send_email", `{"template_id":"x"}`), nd("s1", "send_sms", `{"body":"x"}`),
		nd("e2", "send_email", `{"template_id":"x"}`), nd("e3", "send_email", `{"template_id":"x"}`))
	g.FrequencyCap = map[string]journey.FrequencyCap{"email": {Max: 2, Window: "1d"}}
	in := newInstance(t, g)
	fx := in.start(nil)
	in.wantPath("entry:completed", "e1:completed", "s1:completed", "e2:completed", "e3:skipped")
	if len(fx.Deliveries) != 3 || string(fx.Steps[4].Output) != `{"capped":true}` {
		t.Fatalf("deliveries %+v, output %s", fx.Deliveries, fx.Steps[4].Output)
	}

	in = newInstance(t, g)
	in.ledger.sent = []sent{{"email", t0.Add(-time.Hour)}, {"email", t0.Add(-48 * time.Hour)}}
	in.start(nil)
	in.wantPath("entry:completed", "e1:completed", "s1:completed", "e2:skipped", "e3:skipped")
}

func TestPauseResumeCancel(t *testing.T) {
	in := newInstance(t, waitForEventGraph(`{"event_type":"paid","timeout":"1h"}`, "event_received", "timed_out"))
	in.start(nil)
	fx := in.step(Trigger{Kind: TriggerPause})
	in.wantStatus(StatusPaused)
	if fx.Timers != nil || fx.Waits != nil || in.s.PausedStatus != StatusWaiting {
		t.Fatalf("paused effects %+v, paused status %q", fx, in.s.PausedStatus)
	}
	for _, tr := range []Trigger{{Kind: TriggerPause}, {Kind: TriggerContinue}, {Kind: TriggerEvent, Event: event("e1", "paid", nil)}} {
		if fx := in.step(tr); fx.Changed {
			t.Fatalf("%s changed a paused instance", tr.Kind)
		}
	}
	if fx := in.fire("t1"); fx.Changed {
		t.Fatal("a timer fired on a paused instance")
	}
	fx = in.step(Trigger{Kind: TriggerResume})
	in.wantStatus(StatusWaiting)
	if len(fx.Timers) != 1 || !slices.Equal(fx.Waits, []string{"paid"}) || in.s.PausedStatus != "" {
		t.Fatalf("resumed effects %+v", fx)
	}
	if fx := in.step(Trigger{Kind: TriggerResume}); fx.Changed {
		t.Fatal("resume of a running instance changed it")
	}
	in.fire("t1")
	in.wantStatus(StatusCompleted)

	in = newInstance(t, waitForEventGraph(`{"event_type":"paid"}`, "event_received", ""))
	in.start(nil)
	in.step(Trigger{Kind: TriggerCancel})
	in.wantStatus(StatusExited)
	if in.s.Error != "cancelled" || in.s.Tokens != nil {
		t.Fatalf("cancelled state %+v", in.s)
	}
}

func TestResumeRunsTokensReadyWhenPaused(t *testing.T) {
	in := newInstance(t, chain(entry(), nd("a", "add_tag", `{"tag":"a"}`), nd("b", "add_tag", `{"tag":"b"}`)))
	in.maxSteps = 1
	in.start(nil)
	in.wantStatus(StatusRunning)
	in.step(Trigger{Kind: TriggerPause})
	in.step(Trigger{Kind: TriggerResume})
	in.wantStatus(StatusRunning)
	in.maxSteps = 0
	in.step(Trigger{Kind: TriggerContinue})
	in.wantStatus(StatusCompleted)
	in.wantPath("entry:completed", "a:completed", "b:completed")
}

func TestExitCriteria(t *testing.T) {
	g := waitForEventGraph(`{"event_type":"paid"}`, "event_received", "")
	g.ExitCriteria = &journey.ExitCriteria{EventType: "unsubscribed", Filter: map[string]any{"list": "all"}}
	in := newInstance(t, g)
	fx := in.start(nil)
	if !slices.Equal(fx.Waits, []string{"paid", "unsubscribed"}) {
		t.Fatalf("waits %v", fx.Waits)
	}
	if fx := in.event(event("u1", "unsubscribed", map[string]any{"list": "news"})); fx.Changed {
		t.Fatal("exit criteria matched despite the filter")
	}
	fx = in.event(event("u2", "unsubscribed", map[string]any{"list": "all"}))
	in.wantStatus(StatusExited)
	if in.s.Error != "exit criteria: unsubscribed" || in.s.Tokens != nil || fx.Waits != nil {
		t.Fatalf("state %+v effects %+v", in.s, fx)
	}
	if fx := in.event(event("e1", "paid", nil)); fx.Changed {
		t.Fatal("an exited instance resumed")
	}
}

func TestMaxStepsThenContinue(t *testing.T) {
	ns := []journey.Node{entry()}
	for _, id := range []string{"a", "b", "c", "d", "e"} {
		ns = append(ns, nd(id, "update_profile", `{"fields":{"`+id+`":true}}`))
	}
	in := newInstance(t, chain(ns...))
	in.maxSteps = 2
	in.start(nil)
	in.wantStatus(StatusRunning)
	if len(in.steps) != 2 || in.s.Tokens[0].NodeID != "b" {
		t.Fatalf("steps %v tokens %+v", in.path(), in.s.Tokens)
	}
	for in.s.Status == StatusRunning {
		in.step(Trigger{Kind: TriggerContinue})
	}
	in.wantStatus(StatusCompleted)
	if len(in.steps) != 6 || in.customer.Properties["e"] != true {
		t.Fatalf("steps %v customer %+v", in.path(), in.customer)
	}
	if fx := in.step(Trigger{Kind: TriggerContinue}); fx.Changed {
		t.Fatal("continue on a completed instance")
	}
}

// explode is a node type whose executor panics, standing in for a bug in
// a real one.
type explode struct{ nodes.Type }

func (explode) Name() string                     { return "explode" }
func (explode) Execute(*nodes.Exec) nodes.Result { panic("boom") }

func TestPanicFailsTheInstance(t *testing.T) {
	base, _ := nodes.Default().Get("add_tag")
	types := []nodes.Type{explode{base}}
	for _, info := range nodes.Default().Catalog() {
		typ, _ := nodes.Default().Get(info.Type)
		types = append(types, typ)
	}
	reg, err := nodes.NewRegistry(types...)
	if err != nil {
		t.Fatal(err)
	}
	p, err := Compile(chain(entry(), nd("x", "explode", `{"tag":"t"}`), nd("after", "add_tag", `{"tag":"a"}`)), reg)
	if err != nil {
		t.Fatal(err)
	}
	s, fx := Step(NewState("i1", "tn", "j1", 1, "c1", "k", t0), Trigger{Kind: TriggerStart}, Env{Plan: p, Now: t0})
	if s.Status != StatusFailed || s.Error != "node x: panic: boom" || s.Tokens != nil {
		t.Fatalf("state %+v", s)
	}
	if last := fx.Steps[len(fx.Steps)-1]; last.NodeID != "x" || last.Outcome != OutcomeFailed || last.Error != "panic: boom" {
		t.Fatalf("steps %+v", fx.Steps)
	}
}

func TestTerminalStatesIgnoreTriggers(t *testing.T) {
	p := compile(t, chain(entry()))
	for _, status := range []string{StatusCompleted, StatusFailed, StatusExited} {
		s := NewState("i1", "tn", "j1", 1, "c1", "k", t0)
		s.Status = status
		for _, kind := range []TriggerKind{TriggerStart, TriggerContinue, TriggerTimer, TriggerEvent, TriggerPause, TriggerResume, TriggerCancel} {
			got, fx := Step(s, Trigger{Kind: kind, Event: event("e", "signed_up", nil)}, Env{Plan: p, Now: t0})
			if fx.Changed || !reflect.DeepEqual(got, s) {
				t.Fatalf("%s on %s changed it", kind, status)
			}
		}
	}
}

func TestStateJSONRoundTrip(t *testing.T) {
	in := newInstance(t, waitForEventGraph(`{"event_type":"paid","timeout":"1d","filter":{"n":2},"match":{"order":"context.entry.properties.order"}}`, "event_received", "timed_out"))
	in.start(event("e0", "signed_up", map[string]any{"order": "o1", "amount": 3.5}))
	in.step(Trigger{Kind: TriggerPause})
	data, err := json.Marshal(in.s)
	if err != nil {
		t.Fatal(err)
	}
	var back State
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	again, _ := json.Marshal(back)
	if string(again) != string(data) {
		t.Fatalf("round trip changed the snapshot:\n%s\n%s", data, again)
	}
	in.s = back
	in.step(Trigger{Kind: TriggerResume})
	in.now = t0.Add(time.Minute)
	in.event(event("e1", "paid", map[string]any{"n": 2, "order": "o1"}))
	in.wantStatus(StatusCompleted)
	in.wantPath("entry:completed", "wfe:waiting", "wfe:resumed:event_received", "got:completed")
}

func TestCompileRejectsInvalidGraphs(t *testing.T) {
	_, err := Compile(chain(entry(), nd("w", "wait", `{"duration":"soon"}`)), nodes.Default())
	if err == nil || !strings.Contains(err.Error(), "w: duration") {
		t.Fatalf("error %v", err)
	}
	if _, err := Compile(journey.Graph{}, nodes.Default()); err == nil {
		t.Fatal("an empty graph compiled")
	}
}

func customCodeGraph(config string) journey.Graph {
	return graph([]journey.Node{entry(), nd("code", "custom_code", config),
		nd("hot", "update_profile", `{"fields":{"lead":"hot"}}`), nd("cold", "journey_exit", `{}`),
		nd("check", "condition", `{"expression":"context.score == 84"}`), nd("yes", "add_tag", `{"tag":"scored"}`)},
		ed("entry", "code"), ed("code", "hot", "hot"), ed("code", "cold", "cold"), ed("hot", "check"), ed("check", "yes", "true"), ed("check", "cold", "false"))
}

func TestCustomCode(t *testing.T) {
	in := newInstance(t, customCodeGraph(`{"code":"return {context: {score: profile.age * 2}, branch: event.amount > 10 ? 'hot' : 'cold', value: 'v'}","branches":["hot","cold"]}`))
	in.customer.Properties["age"] = 42.0
	fx := in.start(event("e1", "signed_up", map[string]any{"amount": 20.0}))
	in.wantStatus(StatusCompleted)
	in.wantPath("entry:completed", "code:branched:hot", "hot:completed", "check:branched:true", "yes:completed")
	if in.s.Context["score"] != 84.0 {
		t.Fatalf("context %v", in.s.Context)
	}
	if out := output(t, fx.Steps[1]); out["value"] != "v" || out["branch"] != "hot" {
		t.Fatalf("output %v", out)
	}

	g := chain(entry(), nd("code", "custom_code", `{"code":"return {context: {n: context.trigger.n + 1}}"}`),
		nd("check", "condition", `{"expression":"context.n == 3"}`), nd("yes", "add_tag", `{"tag":"three"}`))
	g.Edges[2].Branch = "true"
	g.Nodes = append(g.Nodes, nd("no", "journey_exit", `{}`))
	g.Edges = append(g.Edges, ed("check", "no", "false"))
	in = newInstance(t, g)
	in.step(Trigger{Kind: TriggerStart, Data: map[string]any{"n": 2}})
	in.wantPath("entry:completed", "code:completed", "check:branched:true", "yes:completed")
}

func TestCustomCodeFailures(t *testing.T) {
	tests := []struct{ config, errPrefix string }{
		{`{"code":"return {branch: 'warm'}","branches":["hot","cold"]}`, `node code: script returned branch "warm"`},
		{`{"code":"throw new Error('nope')","branches":["hot","cold"]}`, "node code: sandbox: runtime"},
		{`{"code":"for(;;){}","timeout_ms":50,"branches":["hot","cold"]}`, "node code: sandbox: timeout"},
	}
	for _, tt := range tests {
		in := newInstance(t, customCodeGraph(tt.config))
		in.start(nil)
		in.wantStatus(StatusFailed)
		if !strings.HasPrefix(in.s.Error, tt.errPrefix) {
			t.Errorf("%s: error %q, want prefix %q", tt.config, in.s.Error, tt.errPrefix)
		}
	}
}
