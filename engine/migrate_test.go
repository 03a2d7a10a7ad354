package engine

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/kalcifer/kalcifer/journey"
	"github.com/kalcifer/kalcifer/nodes"
)

// migrateTo swaps the instance onto version 4 (plan b) along PlanMigration
// from a to b, as the grain does: the Migrate trigger runs with the new
// version's plan.
func (in *instance) migrateTo(a, b journey.Graph, opts journey.MigrationOptions) Effects {
	in.t.Helper()
	plan, problems := journey.PlanMigration(a, b, opts, nil)
	if len(problems) != 0 {
		in.t.Fatalf("plan problems %+v", problems)
	}
	in.plan = compile(in.t, b)
	return in.step(Trigger{Kind: TriggerMigrate, Migration: &Migration{ID: "m1", FromVersion: 3, ToVersion: 4, Plan: plan}})
}

// token returns the instance's token with this id.
func (in *instance) token(id string) Token {
	in.t.Helper()
	i := slices.IndexFunc(in.s.Tokens, func(tk Token) bool { return tk.ID == id })
	if i < 0 {
		in.t.Fatalf("no token %s in %+v", id, in.s.Tokens)
	}
	return in.s.Tokens[i]
}

// migrated returns the "migrated" records of a step as from/action/to.
func migrated(t tb, fx Effects) []string {
	t.Helper()
	var out []string
	for _, st := range fx.Steps {
		if st.Outcome == OutcomeMigrated {
			o := recOutput(t, st)
			out = append(out, fmt.Sprintf("%s:%s:%s", o["from_node"], o["action"], o["to_node"]))
		}
	}
	return out
}

// recOutput decodes a record's output, under testing.T or rapid.T.
func recOutput(t tb, rec StepRecord) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(rec.Output, &m); err != nil {
		t.Fatalf("output %s: %v", rec.Output, err)
	}
	return m
}

// delivered lists channel@node of the deliveries.
func delivered(ds []Delivery) []string {
	var out []string
	for _, d := range ds {
		out = append(out, d.Channel+"@"+d.NodeID)
	}
	return out
}

var unsubscribed = &journey.ExitCriteria{EventType: "unsubscribed"}

// withExit gives a graph the exit criteria every table test uses.
func withExit(g journey.Graph) journey.Graph {
	g.ExitCriteria = unsubscribed
	return g
}

// wfeGraph is entry → wfe (config) → sms on the event → done, or
// straight to done on a timeout.
func wfeGraph(config string) journey.Graph {
	branches := []journey.Edge{ed("entry", "wfe"), ed("wfe", "sms", "event_received"), ed("sms", "done")}
	if strings.Contains(config, "timeout") {
		branches = append(branches, ed("wfe", "done", "timed_out"))
	}
	return withExit(graph([]journey.Node{entry(), nd("wfe", "wait_for_event", config), nd("sms", "send_sms", `{"body":"hi"}`),
		nd("done", "journey_exit", `{}`)}, branches...))
}

func waitGraph(typ, config string) journey.Graph {
	return withExit(chain(entry(), nd("email", "send_email", `{"template_id":"welcome"}`), nd("w", typ, config),
		nd("sms", "send_sms", `{"body":"hi"}`), nd("done", "journey_exit", `{}`)))
}

// TestMigrateWaitChanges: a customer staying in a changed wait waits as the
// new node would have had them wait since the wait began.
func TestMigrateWaitChanges(t *testing.T) {
	for name, tc := range map[string]struct {
		a, b      journey.Graph
		after     time.Duration // since t0, when the wait began
		until     time.Time     // zero: no timer
		eventType string
		waits     []string
	}{
		"a shorter wait counts from its start": {a: waitGraph("wait", `{"duration":"2h"}`), b: waitGraph("wait", `{"duration":"1h"}`),
			after: 30 * time.Minute, until: t0.Add(time.Hour), waits: []string{"unsubscribed"}},
		"a longer wait counts from its start": {a: waitGraph("wait", `{"duration":"2h"}`), b: waitGraph("wait", `{"duration":"1d"}`),
			after: 5 * time.Hour, until: t0.Add(24 * time.Hour), waits: []string{"unsubscribed"}},
		"a wait the new version has ended is due now": {a: waitGraph("wait", `{"duration":"2h"}`), b: waitGraph("wait", `{"duration":"30m"}`),
			after: 45 * time.Minute, until: t0.Add(45 * time.Minute), waits: []string{"unsubscribed"}},
		"a zero wait is due now": {a: waitGraph("wait", `{"duration":"2h"}`), b: waitGraph("wait", `{"duration":"0s"}`),
			after: 10 * time.Minute, until: t0.Add(10 * time.Minute), waits: []string{"unsubscribed"}},
		"an unchanged wait is kept": {a: waitGraph("wait", `{"duration":"2h"}`),
			b: withExit(chain(entry(), nd("email", "send_email", `{"template_id":"welcome"}`), nd("w", "wait", `{"duration":"2h"}`),
				nd("new", "add_tag", `{"tag":"x"}`), nd("sms", "send_sms", `{"body":"hi"}`), nd("done", "journey_exit", `{}`))),
			after: time.Hour, until: t0.Add(2 * time.Hour), waits: []string{"unsubscribed"}},
		"a wait_until with a new date": {a: waitGraph("wait_until", `{"datetime":"2030-01-09T12:00:00Z"}`),
			b:     waitGraph("wait_until", `{"datetime":"2030-01-08T09:30:00Z"}`),
			after: time.Hour, until: time.Date(2030, 1, 8, 9, 30, 0, 0, time.UTC), waits: []string{"unsubscribed"}},
		"a wait_until with a new time of day is computed from its start": {
			a:     waitGraph("wait_until", `{"time_of_day":"09:00","days_of_week":["thu"]}`),
			b:     waitGraph("wait_until", `{"time_of_day":"08:30"}`),
			after: 2 * time.Hour, until: t0.Add(2 * time.Hour), waits: []string{"unsubscribed"}}, // 08:30 on the 7th, over
		"a new event type and timeout": {a: wfeGraph(`{"event_type":"ping","timeout":"2h"}`), b: wfeGraph(`{"event_type":"pang","timeout":"3h"}`),
			after: time.Hour, until: t0.Add(3 * time.Hour), eventType: "pang", waits: []string{"pang", "unsubscribed"}},
		"a timeout dropped": {a: wfeGraph(`{"event_type":"ping","timeout":"2h"}`), b: wfeGraph(`{"event_type":"ping"}`),
			after: time.Hour, eventType: "ping", waits: []string{"ping", "unsubscribed"}},
		"a timeout added, already over": {a: wfeGraph(`{"event_type":"ping"}`), b: wfeGraph(`{"event_type":"ping","timeout":"1h"}`),
			after: 3 * time.Hour, until: t0.Add(3 * time.Hour), eventType: "ping", waits: []string{"ping", "unsubscribed"}},
	} {
		t.Run(name, func(t *testing.T) {
			in := newInstance(t, tc.a)
			in.start(event("ev0", "signed_up", nil))
			in.wantStatus(StatusWaiting)
			before := in.token("t1")
			in.now = t0.Add(tc.after)
			fx := in.migrateTo(tc.a, tc.b, journey.MigrationOptions{})
			in.wantStatus(StatusWaiting)
			tok := in.token("t1")
			if tok.NodeID != before.NodeID || tok.Held || tok.Wait == nil {
				t.Fatalf("token %+v, was %+v", tok, before)
			}
			if !tok.Wait.Until.Equal(tc.until) || tok.Wait.EventType != tc.eventType || !tok.Wait.StartedAt.Equal(t0) {
				t.Fatalf("wait %+v, want until %v for %q, started %v", tok.Wait, tc.until, tc.eventType, t0)
			}
			var timers []Timer
			if !tc.until.IsZero() {
				timers = []Timer{{TokenID: "t1", DueAt: tc.until}}
			}
			if !reflect.DeepEqual(fx.Timers, timers) || !slices.Equal(fx.Waits, tc.waits) {
				t.Fatalf("timers %+v waits %v, want %+v %v", fx.Timers, fx.Waits, timers, tc.waits)
			}
			if got := migrated(t, fx); !slices.Equal(got, []string{before.NodeID + ":stay:" + before.NodeID}) {
				t.Fatalf("migrated %v", got)
			}
			if in.s.Version != 4 || in.s.Migration != "m1" || fx.Steps[0].Version != 4 {
				t.Fatalf("version %d migration %q record %+v", in.s.Version, in.s.Migration, fx.Steps[0])
			}
		})
	}
}

// TestMigrateNewEventType: customers waiting for an event whose type the
// new version changed respond to the new type and not to the old one.
func TestMigrateNewEventType(t *testing.T) {
	in := newInstance(t, wfeGraph(`{"event_type":"ping","timeout":"2h"}`))
	in.start(event("ev0", "signed_up", nil))
	in.migrateTo(wfeGraph(`{"event_type":"ping","timeout":"2h"}`), wfeGraph(`{"event_type":"pang","timeout":"2h"}`), journey.MigrationOptions{})
	if fx := in.event(event("ev1", "ping", nil)); fx.Changed {
		t.Fatalf("the old event type resumed the wait: %+v", fx)
	}
	fx := in.event(event("ev2", "pang", nil))
	in.wantStatus(StatusCompleted)
	in.wantPath("entry:completed", "wfe:waiting", "wfe:migrated", "wfe:resumed:event_received", "sms:completed", "done:ended")
	if got := delivered(fx.Deliveries); !slices.Equal(got, []string{"sms@sms"}) {
		t.Fatalf("deliveries %v", got)
	}
}

// TestMigrateRemovedNode: the removed-node policies and mappings, for a
// customer waiting at w, which the new version drops.
func TestMigrateRemovedNode(t *testing.T) {
	a := waitGraph("wait", `{"duration":"2h"}`)
	// w is gone; a new wait follows the sms.
	b := withExit(chain(entry(), nd("email", "send_email", `{"template_id":"welcome"}`), nd("sms", "send_sms", `{"body":"hi"}`),
		nd("later", "wait", `{"duration":"1d"}`), nd("done", "journey_exit", `{}`)))
	now := t0.Add(time.Hour)
	for name, tc := range map[string]struct {
		b          journey.Graph
		opts       journey.MigrationOptions
		paused     bool
		moved      string
		status     string
		tokens     []Token // without waits
		deliveries []string
		waits      []string
	}{
		"exit by default": {b: b, moved: "w:exit:", status: StatusExited},
		"exit":            {b: b, opts: journey.MigrationOptions{Removed: journey.RemovedExit}, moved: "w:exit:", status: StatusExited},
		"skip to the next node, which runs": {b: b, opts: journey.MigrationOptions{Removed: journey.RemovedSkipToNext}, moved: "w:skip:sms",
			status: StatusWaiting, tokens: []Token{{ID: "t1", NodeID: "later"}}, deliveries: []string{"sms@sms"}, waits: []string{"unsubscribed"}},
		"hold": {b: b, opts: journey.MigrationOptions{Removed: journey.RemovedHold}, moved: "w:hold:", status: StatusHeld,
			tokens: []Token{{ID: "t1", NodeID: "w", Held: true}}, waits: []string{"unsubscribed"}},
		"a mapping wins over the policy": {b: b, opts: journey.MigrationOptions{Removed: journey.RemovedHold, NodeMapping: map[string]string{"w": "later"}},
			moved: "w:move:later", status: StatusWaiting, tokens: []Token{{ID: "t1", NodeID: "later"}}, waits: []string{"unsubscribed"}},
		"a retyped node runs": {b: withExit(chain(entry(), nd("email", "send_email", `{"template_id":"welcome"}`), nd("w", "send_push", `{"title":"t","body":"b"}`),
			nd("sms", "send_sms", `{"body":"hi"}`), nd("done", "journey_exit", `{}`))),
			moved: "w:move:w", status: StatusCompleted, deliveries: []string{"push@w", "sms@sms"}},
		"paused and skipped: stays paused, ready": {b: b, opts: journey.MigrationOptions{Removed: journey.RemovedSkipToNext}, paused: true,
			moved: "w:skip:sms", status: StatusPaused, tokens: []Token{{ID: "t1", NodeID: "sms"}}, waits: []string{"unsubscribed"}},
		"paused and held: stays paused": {b: b, opts: journey.MigrationOptions{Removed: journey.RemovedHold}, paused: true,
			moved: "w:hold:", status: StatusPaused, tokens: []Token{{ID: "t1", NodeID: "w", Held: true}}, waits: []string{"unsubscribed"}},
		"paused and exited": {b: b, paused: true, moved: "w:exit:", status: StatusExited},
	} {
		t.Run(name, func(t *testing.T) {
			in := newInstance(t, a)
			in.start(event("ev0", "signed_up", nil))
			if tc.paused {
				in.step(Trigger{Kind: TriggerPause})
			}
			in.now = now
			fx := in.migrateTo(a, tc.b, tc.opts)
			in.wantStatus(tc.status)
			if got := migrated(t, fx); !slices.Equal(got, []string{tc.moved}) {
				t.Fatalf("migrated %v, want %s", got, tc.moved)
			}
			var tokens []Token
			for _, tk := range in.s.Tokens {
				tk.Wait = nil
				tokens = append(tokens, tk)
			}
			if !reflect.DeepEqual(tokens, tc.tokens) {
				t.Fatalf("tokens %+v, want %+v", tokens, tc.tokens)
			}
			if got := delivered(fx.Deliveries); !slices.Equal(got, tc.deliveries) || !slices.Equal(fx.Waits, tc.waits) {
				t.Fatalf("deliveries %v waits %v", got, fx.Waits)
			}
			if tc.status == StatusExited && !strings.Contains(in.s.Error, "migration m1: version 4 does not have w") {
				t.Fatalf("error %q", in.s.Error)
			}
			if tc.status == StatusHeld || tc.status == StatusPaused {
				if fx.Timers != nil {
					t.Fatalf("a halted instance sets timers %+v", fx.Timers)
				}
			}
			if !tc.paused || Terminal(in.s.Status) {
				return
			}
			// On resume a held token holds the instance; a skipped one runs.
			fx = in.step(Trigger{Kind: TriggerResume})
			if tc.tokens[0].Held {
				in.wantStatus(StatusHeld)
				if fx.Deliveries != nil || fx.Timers != nil {
					t.Fatalf("a held instance ran: %+v", fx)
				}
			} else {
				in.wantStatus(StatusWaiting)
				if got := delivered(fx.Deliveries); !slices.Equal(got, []string{"sms@sms"}) {
					t.Fatalf("deliveries on resume %v", got)
				}
			}
		})
	}
}

// heldInstance is a customer waiting at w when the new version dropped w
// under the hold policy.
func heldInstance(t *testing.T) *instance {
	a := waitGraph("wait", `{"duration":"2h"}`)
	b := withExit(chain(entry(), nd("email", "send_email", `{"template_id":"welcome"}`), nd("sms", "send_sms", `{"body":"hi"}`),
		nd("later", "wait", `{"duration":"1d"}`), nd("done", "journey_exit", `{}`)))
	in := newInstance(t, a)
	in.start(event("ev0", "signed_up", nil))
	in.now = t0.Add(time.Hour)
	in.migrateTo(a, b, journey.MigrationOptions{Removed: journey.RemovedHold})
	in.wantStatus(StatusHeld)
	return in
}

func TestMigrateHeldInstance(t *testing.T) {
	t.Run("runs nothing until released", func(t *testing.T) {
		in := heldInstance(t)
		in.now = t0.Add(100 * time.Hour)
		for _, tr := range []Trigger{
			{Kind: TriggerTimer, TokenID: "t1"},
			{Kind: TriggerContinue},
			{Kind: TriggerResume},
			{Kind: TriggerEvent, Event: event("ev1", "ping", nil)},
			{Kind: TriggerRelease, NodeID: "nope"},
			{Kind: TriggerRelease, NodeID: ""},
			{Kind: TriggerMigrate, Migration: &Migration{ID: "m1", FromVersion: 3, ToVersion: 4}},
		} {
			if fx := in.step(tr); fx.Changed {
				t.Fatalf("%s changed a held instance: %+v", tr.Kind, fx)
			}
		}
	})
	t.Run("a rollback to a version with its node puts it back", func(t *testing.T) {
		in := heldInstance(t)
		before := in.token("t1")
		a := waitGraph("wait", `{"duration":"2h"}`)
		plan, problems := journey.PlanMigration(in.plan.Graph(), a, journey.MigrationOptions{}, nil)
		if len(problems) != 0 {
			t.Fatalf("plan problems %+v", problems)
		}
		in.plan = compile(t, a)
		fx := in.step(Trigger{Kind: TriggerMigrate, Migration: &Migration{ID: "m2", FromVersion: 4, ToVersion: 3, Plan: plan}})
		in.wantStatus(StatusWaiting)
		after := in.token("t1")
		if after.Held || after.NodeID != before.NodeID || after.Wait == nil || !after.Wait.Until.Equal(t0.Add(2*time.Hour)) {
			t.Fatalf("token after the rollback %+v, held before as %+v", after, before)
		}
		if len(fx.Timers) != 1 || !fx.Timers[0].DueAt.Equal(t0.Add(2*time.Hour)) {
			t.Fatalf("timers after the rollback %+v", fx.Timers)
		}
	})
	t.Run("its node back, changed, makes it wait as the node now says", func(t *testing.T) {
		in := heldInstance(t)
		back := waitGraph("wait", `{"duration":"5h"}`)
		plan, _ := journey.PlanMigration(in.plan.Graph(), back, journey.MigrationOptions{}, nil)
		in.plan = compile(t, back)
		in.step(Trigger{Kind: TriggerMigrate, Migration: &Migration{ID: "m2", FromVersion: 4, ToVersion: 5, Plan: plan}})
		in.wantStatus(StatusWaiting)
		if tok := in.token("t1"); tok.Held || !tok.Wait.Until.Equal(t0.Add(5*time.Hour)) {
			t.Fatalf("token %+v, want waiting until 5h after it began", tok)
		}
	})
	t.Run("its node back as one that does not wait makes it run", func(t *testing.T) {
		in := heldInstance(t)
		back := waitGraph("send_sms", `{"body":"back"}`)
		plan, _ := journey.PlanMigration(in.plan.Graph(), back, journey.MigrationOptions{}, nil)
		in.plan = compile(t, back)
		fx := in.step(Trigger{Kind: TriggerMigrate, Migration: &Migration{ID: "m2", FromVersion: 4, ToVersion: 5, Plan: plan}})
		if got := delivered(fx.Deliveries); !slices.Equal(got, []string{"sms@w", "sms@sms"}) {
			t.Fatalf("deliveries %v, want w (now an sms) then sms", got)
		}
		in.wantStatus(StatusCompleted)
	})
	t.Run("exit criteria end it", func(t *testing.T) {
		in := heldInstance(t)
		in.event(event("ev1", "unsubscribed", nil))
		in.wantStatus(StatusExited)
	})
	t.Run("cancel ends it", func(t *testing.T) {
		in := heldInstance(t)
		in.step(Trigger{Kind: TriggerCancel})
		in.wantStatus(StatusExited)
	})
	t.Run("pause and resume keep it held", func(t *testing.T) {
		in := heldInstance(t)
		in.step(Trigger{Kind: TriggerPause})
		in.wantStatus(StatusPaused)
		if fx := in.step(Trigger{Kind: TriggerRelease, NodeID: "sms"}); fx.Changed {
			t.Fatal("released a paused instance")
		}
		in.step(Trigger{Kind: TriggerResume})
		in.wantStatus(StatusHeld)
	})
	t.Run("released to a send node", func(t *testing.T) {
		in := heldInstance(t)
		in.now = t0.Add(5 * time.Hour)
		fx := in.step(Trigger{Kind: TriggerRelease, NodeID: "sms"})
		in.wantStatus(StatusWaiting)
		if got := delivered(fx.Deliveries); !slices.Equal(got, []string{"sms@sms"}) || fx.Deliveries[0].Key != "i1:sms:1" {
			t.Fatalf("deliveries %+v", fx.Deliveries)
		}
		if fx.Steps[0].Outcome != OutcomeReleased || fx.Steps[0].NodeID != "sms" || recOutput(t, fx.Steps[0])["from_node"] != "w" {
			t.Fatalf("release record %+v", fx.Steps[0])
		}
		if tok := in.token("t1"); tok.NodeID != "later" || tok.Held || !tok.Wait.Until.Equal(in.now.Add(24*time.Hour)) {
			t.Fatalf("token %+v", tok)
		}
		if fx := in.step(Trigger{Kind: TriggerRelease, NodeID: "sms"}); fx.Changed {
			t.Fatal("released twice")
		}
	})
	t.Run("released to a wait", func(t *testing.T) {
		in := heldInstance(t)
		in.now = t0.Add(5 * time.Hour)
		fx := in.step(Trigger{Kind: TriggerRelease, NodeID: "later"})
		in.wantStatus(StatusWaiting)
		if tok := in.token("t1"); tok.NodeID != "later" || tok.Held || !tok.Wait.Until.Equal(in.now.Add(24*time.Hour)) {
			t.Fatalf("token %+v", tok)
		}
		if want := []Timer{{TokenID: "t1", DueAt: in.now.Add(24 * time.Hour)}}; !reflect.DeepEqual(fx.Timers, want) {
			t.Fatalf("timers %+v", fx.Timers)
		}
	})
}

func TestMigrateNoOps(t *testing.T) {
	a := waitGraph("wait", `{"duration":"2h"}`)
	b := waitGraph("wait", `{"duration":"1h"}`)
	plan, _ := journey.PlanMigration(a, b, journey.MigrationOptions{}, nil)
	in := newInstance(t, a)
	in.start(event("ev0", "signed_up", nil))
	in.plan = compile(t, b)
	for name, m := range map[string]*Migration{
		"no migration":      nil,
		"another version":   {ID: "m0", FromVersion: 2, ToVersion: 4, Plan: plan},
		"to the same one":   {ID: "m0", FromVersion: 3, ToVersion: 3, Plan: plan},
		"back from the new": {ID: "m0", FromVersion: 4, ToVersion: 3, Plan: plan},
	} {
		if fx := in.step(Trigger{Kind: TriggerMigrate, Migration: m}); fx.Changed {
			t.Fatalf("%s: migrated %+v", name, fx)
		}
	}
	if fx := in.step(Trigger{Kind: TriggerMigrate, Migration: &Migration{ID: "m1", FromVersion: 3, ToVersion: 4, Plan: plan}}); !fx.Changed {
		t.Fatal("did not migrate")
	}
	if fx := in.step(Trigger{Kind: TriggerMigrate, Migration: &Migration{ID: "m1", FromVersion: 3, ToVersion: 4, Plan: plan}}); fx.Changed {
		t.Fatal("migrated twice")
	}
	if fx := in.step(Trigger{Kind: TriggerRelease, NodeID: "sms"}); fx.Changed {
		t.Fatal("released an instance that is not held")
	}
	in.step(Trigger{Kind: TriggerCancel})
	if fx := in.step(Trigger{Kind: TriggerMigrate, Migration: &Migration{ID: "m2", FromVersion: 4, ToVersion: 5, Plan: plan}}); fx.Changed {
		t.Fatal("migrated an instance that is over")
	}
}

// ---- Random version pairs ----

// nodeType is the registry's type of a node.
func nodeType(n journey.Node) nodes.Type {
	typ, _ := nodes.Default().Get(n.Type)
	return typ
}

var waitNodeTypes = []string{"wait", "wait_until", "wait_for_event"}

// waitConfig draws a new config for a wait node of this type.
func waitConfig(t *rapid.T, typ string) string {
	switch typ {
	case "wait":
		return fmt.Sprintf(`{"duration":%q}`, rapid.SampledFrom([]string{"0s", "30m", "1h", "2h", "3h", "1d"}).Draw(t, "duration"))
	case "wait_for_event":
		c := fmt.Sprintf(`"event_type":%q`, rapid.SampledFrom([]string{"ping", "pong", "pang"}).Draw(t, "event_type"))
		if timeout := rapid.SampledFrom([]string{"", "1h", "2h", "5h"}).Draw(t, "timeout"); timeout != "" {
			c += fmt.Sprintf(`,"timeout":%q`, timeout)
		}
		return "{" + c + "}"
	}
	return rapid.SampledFrom([]string{
		`{"time_of_day":"10:30"}`,
		`{"time_of_day":"09:00","days_of_week":["tue"]}`,
		`{"time_of_day":"09:00","days_of_week":["mon","thu"]}`,
		`{"datetime":"2030-01-08T12:00:00Z"}`,
		`{"datetime":"2029-06-01T00:00:00Z"}`,
	}).Draw(t, "wait_until")
}

// editGraph draws the next version of a: nodes removed (their
// predecessors rewired to their successors, or not), inserted on an edge
// or after a node, waits re-configured, nodes retyped. Edits pick the
// nodes customers are at more often than others. The result is repaired
// into a valid graph: branches relabelled, unreachable nodes dropped,
// branches without an edge sent to a new exit.
func editGraph(t *rapid.T, a journey.Graph, occupied []string) journey.Graph {
	b := a
	b.Nodes, b.Edges = slices.Clone(a.Nodes), slices.Clone(a.Edges)
	added := 0
	newID := func(prefix string) string {
		added++
		return fmt.Sprintf("%s%d", prefix, added)
	}
	pick := func(label string, ids []string) (string, bool) {
		if len(ids) == 0 {
			return "", false
		}
		var hot []string
		for _, id := range ids {
			if slices.Contains(occupied, id) {
				hot = append(hot, id)
			}
		}
		if len(hot) > 0 && rapid.IntRange(0, 3).Draw(t, label+"_occupied") > 0 {
			return rapid.SampledFrom(hot).Draw(t, label), true
		}
		return rapid.SampledFrom(ids).Draw(t, label), true
	}
	at := func(id string) int { return slices.IndexFunc(b.Nodes, func(n journey.Node) bool { return n.ID == id }) }
	remove := func(id string) {
		var in, out []journey.Edge
		for _, e := range b.Edges {
			if e.Target == id {
				in = append(in, e)
			}
			if e.Source == id {
				out = append(out, e)
			}
		}
		b.Nodes = slices.Delete(b.Nodes, at(id), at(id)+1)
		b.Edges = slices.DeleteFunc(b.Edges, func(e journey.Edge) bool { return e.Source == id || e.Target == id })
		if rapid.Bool().Draw(t, "rewire") {
			for _, p := range in {
				for _, s := range out {
					b.Edges = append(b.Edges, ed(p.Source, s.Target, p.Branch))
				}
			}
		}
	}
	// The waits customers are in change half of the time, and a node they
	// are at goes a third of the time.
	var hot []string
	for _, id := range occupied {
		if i := at(id); i > 0 && !slices.Contains(hot, id) {
			hot = append(hot, id)
			if typ := b.Nodes[i].Type; slices.Contains(waitNodeTypes, typ) && rapid.Bool().Draw(t, "rewait_occupied") {
				b.Nodes[i].Config = json.RawMessage(waitConfig(t, typ))
			}
		}
	}
	if len(hot) > 0 && rapid.IntRange(0, 2).Draw(t, "remove_one_occupied") == 0 {
		remove(rapid.SampledFrom(hot).Draw(t, "removed_occupied"))
	}
	for range rapid.IntRange(0, 4).Draw(t, "edits") {
		var inner, waits []string
		for _, n := range b.Nodes {
			if n.ID != "entry" {
				inner = append(inner, n.ID)
			}
			if slices.Contains(waitNodeTypes, n.Type) {
				waits = append(waits, n.ID)
			}
		}
		switch rapid.IntRange(0, 5).Draw(t, "edit") {
		case 0, 1: // remove
			if id, ok := pick("remove", inner); ok {
				remove(id)
			}
		case 2: // insert
			k := randomKinds[rapid.IntRange(0, len(randomKinds)-1).Draw(t, "insert_kind")]
			n := nd(newID("x"), k.typ, k.config)
			if len(b.Edges) > 0 && rapid.Bool().Draw(t, "on_edge") {
				i := rapid.IntRange(0, len(b.Edges)-1).Draw(t, "insert_edge")
				e := b.Edges[i]
				b.Edges[i] = ed(e.Source, n.ID, e.Branch)
				b.Edges = append(b.Edges, ed(n.ID, e.Target))
				b.Nodes = slices.Insert(b.Nodes, at(e.Target), n)
			} else {
				after := rapid.SampledFrom(b.Nodes).Draw(t, "insert_after")
				b.Edges = append(b.Edges, ed(after.ID, n.ID))
				b.Nodes = append(b.Nodes, n)
			}
		case 3, 4: // a wait's config
			id, ok := pick("rewait", waits)
			if !ok {
				continue
			}
			b.Nodes[at(id)].Config = json.RawMessage(waitConfig(t, b.Nodes[at(id)].Type))
		case 5: // retype
			id, ok := pick("retype", inner)
			if !ok {
				continue
			}
			k := randomKinds[rapid.IntRange(0, len(randomKinds)-1).Draw(t, "retype_kind")]
			b.Nodes[at(id)] = nd(id, k.typ, k.config)
		}
	}
	return repair(b, newID)
}

// repair makes an edited graph valid again.
func repair(g journey.Graph, newID func(string) string) journey.Graph {
	byID := map[string]journey.Node{}
	for _, n := range g.Nodes {
		byID[n.ID] = n
	}
	var edges []journey.Edge
	for _, e := range g.Edges {
		src, ok := byID[e.Source]
		if _, ok2 := byID[e.Target]; !ok || !ok2 || nodeType(src).Terminal(src.Config) {
			continue
		}
		branch := ""
		if br := nodeType(src).Branches(src.Config); br != nil {
			branch = e.Branch
			if !slices.Contains(br, branch) {
				branch = br[0]
			}
		}
		if e = ed(e.Source, e.Target, branch); !slices.Contains(edges, e) {
			edges = append(edges, e)
		}
	}
	reached := map[string]bool{"entry": true}
	queue := []string{"entry"}
	for len(queue) > 0 {
		id := queue[0]
		queue = queue[1:]
		for _, e := range edges {
			if e.Source == id && !reached[e.Target] {
				reached[e.Target] = true
				queue = append(queue, e.Target)
			}
		}
	}
	g.Nodes = slices.DeleteFunc(g.Nodes, func(n journey.Node) bool { return !reached[n.ID] })
	g.Edges = slices.DeleteFunc(edges, func(e journey.Edge) bool { return !reached[e.Source] })
	for _, n := range slices.Clone(g.Nodes) {
		for _, b := range nodeType(n).Branches(n.Config) {
			if !slices.ContainsFunc(g.Edges, func(e journey.Edge) bool { return e.Source == n.ID && e.Branch == b }) {
				exit := nd(newID("y"), "journey_exit", `{}`)
				g.Nodes = append(g.Nodes, exit)
				g.Edges = append(g.Edges, ed(n.ID, exit.ID, b))
			}
		}
	}
	return g
}

// withWaits retypes some nodes of a random graph into waits, so that
// customers are found waiting more often, for various events and times.
func withWaits(t *rapid.T, g journey.Graph) journey.Graph {
	g.Nodes = slices.Clone(g.Nodes)
	for i, n := range g.Nodes {
		if n.ID == "entry" || rapid.IntRange(0, 3).Draw(t, "make_wait") > 0 {
			continue
		}
		typ := rapid.SampledFrom(waitNodeTypes).Draw(t, "wait_type")
		g.Nodes[i] = nd(n.ID, typ, waitConfig(t, typ))
	}
	n := 0
	return repair(g, func(prefix string) string { n++; return fmt.Sprintf("%sa%d", prefix, n) })
}

// migCase is an instance of version 1 (graph a) that really ran there,
// and a plan without problems to version 2 (graph b).
type migCase struct {
	a, b   journey.Graph
	pa, pb *Plan
	opts   journey.MigrationOptions
	plan   journey.MigrationPlan
	s      State
	now    time.Time // when the migration runs
	cust   nodes.Customer
}

// env is version 2's.
func (c migCase) env(now time.Time) Env { return Env{Plan: c.pb, Now: now, Customer: c.cust} }

func (c migCase) migrate(s State, id string, from, to int, plan journey.MigrationPlan, p *Plan) (State, Effects) {
	return Step(s, Trigger{Kind: TriggerMigrate, Migration: &Migration{ID: id, FromVersion: from, ToVersion: to, Plan: plan}},
		Env{Plan: p, Now: c.now, Customer: c.cust})
}

// drawMigCase runs an instance on a random graph (entry event, then timers
// fired and events sent so that tokens sit at waits; sometimes few steps
// allowed, so that tokens are left ready; sometimes paused), then draws
// the next version by editing the graph, and a node mapping and policy.
func drawMigCase(t *rapid.T) migCase {
	var c migCase
	c.a = withWaits(t, randomGraph(t))
	c.pa = compile(t, c.a)
	c.cust = nodes.Customer{ID: "c1", Properties: map[string]any{"plan": rapid.SampledFrom([]string{"free", "pro"}).Draw(t, "plan")}}
	c.s = NewState("ins_1", "tn", "j1", 1, "c1", "k", t0)
	now := t0
	maxSteps := 0
	if rapid.IntRange(0, 5).Draw(t, "few_steps") == 0 {
		maxSteps = rapid.IntRange(1, 4).Draw(t, "max_steps")
	}
	step := func(tr Trigger) {
		s, fx := Step(c.s, tr, Env{Plan: c.pa, Now: now, Customer: c.cust, MaxSteps: maxSteps})
		if fx.Profile != nil {
			c.cust.Apply(*fx.Profile)
		}
		c.s = s
	}
	step(Trigger{Kind: TriggerStart, Event: event("ev0", "signed_up", nil), Data: map[string]any{"n": rapid.IntRange(0, 3).Draw(t, "n")}})
	for i := range rapid.IntRange(0, 4).Draw(t, "actions") {
		if Terminal(c.s.Status) {
			break
		}
		switch rapid.IntRange(0, 2).Draw(t, "action") {
		case 0:
			var timed []Token
			for _, tk := range c.s.Tokens {
				if tk.Wait != nil && !tk.Wait.Until.IsZero() {
					timed = append(timed, tk)
				}
			}
			if len(timed) > 0 {
				tk := rapid.SampledFrom(timed).Draw(t, "fire")
				now = maxTime(now, tk.Wait.Until)
				step(Trigger{Kind: TriggerTimer, TokenID: tk.ID})
			}
		case 1:
			typ := rapid.SampledFrom([]string{"ping", "pong", "pang"}).Draw(t, "event_type")
			step(Trigger{Kind: TriggerEvent, Event: event(fmt.Sprintf("ev%d", i+1), typ, nil)})
		default:
			now = now.Add(time.Duration(rapid.IntRange(0, 300).Draw(t, "minutes")) * time.Minute)
			step(Trigger{Kind: TriggerContinue})
		}
	}
	if !Terminal(c.s.Status) && rapid.IntRange(0, 3).Draw(t, "pause") == 0 {
		step(Trigger{Kind: TriggerPause})
	}
	c.now = now.Add(time.Duration(rapid.IntRange(0, 600).Draw(t, "migrate_after")) * time.Minute)

	var occupied []string
	for _, tk := range c.s.Tokens {
		occupied = append(occupied, tk.NodeID)
	}
	c.b = editGraph(t, c.a, occupied)
	pb, err := Compile(c.b, nodes.Default())
	if err != nil {
		t.Fatalf("edited graph does not compile: %v\n%+v", err, c.b)
	}
	c.pb = pb
	c.opts = journey.MigrationOptions{
		Removed: rapid.SampledFrom([]string{"", journey.RemovedExit, journey.RemovedSkipToNext, journey.RemovedSkipToNext,
			journey.RemovedHold, journey.RemovedHold}).Draw(t, "policy"),
		NodeMapping: map[string]string{},
	}
	var bIDs []string
	for _, n := range c.b.Nodes {
		bIDs = append(bIDs, n.ID)
	}
	// Random mappings, mostly of removed nodes customers are at; one the
	// planner refuses (it sends customers back) is dropped, so that fewer
	// cases are skipped. An unknown target is kept now and then.
	for _, n := range c.a.Nodes[1:] {
		_, kept := c.b.Node(n.ID)
		if rapid.IntRange(0, 9).Draw(t, "map") > 0 && (kept || !slices.Contains(occupied, n.ID) || rapid.IntRange(0, 2).Draw(t, "map_removed") > 0) {
			continue
		}
		to := rapid.SampledFrom(append(bIDs, "gone")).Draw(t, "map_to")
		one := journey.MigrationOptions{NodeMapping: map[string]string{n.ID: to}}
		if _, problems := journey.PlanMigration(c.a, c.b, one, map[string]bool{n.ID: true}); len(problems) == 0 || rapid.IntRange(0, 9).Draw(t, "keep_refused") == 0 {
			c.opts.NodeMapping[n.ID] = to
		}
	}
	var problems []journey.Problem
	c.plan, problems = journey.PlanMigration(c.a, c.b, c.opts, nil)
	if len(problems) > 0 {
		t.Skip("the plan has problems")
	}
	if Terminal(c.s.Status) {
		if _, fx := c.migrate(c.s, "m1", 1, 2, c.plan, c.pb); fx.Changed {
			t.Fatalf("migrated a %s instance", c.s.Status)
		}
		t.Skip("the instance is over")
	}
	return c
}

// halted says an instance runs nothing for now.
func halted(s State) bool { return s.Status == StatusPaused || s.Status == StatusHeld }

// parksAt says whether a node started at now leaves its customer waiting.
func parksAt(n journey.Node, now time.Time) bool {
	ex, ok := nodeType(n).(nodes.Executor)
	if !ok || !slices.Contains(waitNodeTypes, n.Type) {
		return false
	}
	return ex.Execute(&nodes.Exec{Node: n, Now: now, Customer: &nodes.Customer{}, Context: map[string]any{}}).Outcome == nodes.Waiting
}

func tokenByID(s State, id string) (Token, bool) {
	i := slices.IndexFunc(s.Tokens, func(tk Token) bool { return tk.ID == id })
	if i < 0 {
		return Token{}, false
	}
	return s.Tokens[i], true
}

// TestPropertyMigratePlacesEveryToken: every token goes where the plan puts
// its node, and nobody is left without a place.
func TestPropertyMigratePlacesEveryToken(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		c := drawMigCase(t)
		before := c.s
		after, fx := c.migrate(before, "m1", 1, 2, c.plan, c.pb)
		if !fx.Changed || after.Version != 2 || after.Migration != "m1" {
			t.Fatalf("not migrated: %+v %+v", after, fx)
		}

		// 1. One "migrated" record per token, saying what the plan says;
		// stay keeps the token where it is, move and skip put it at To.
		var recs []StepRecord
		for _, st := range fx.Steps {
			if st.Outcome == OutcomeMigrated {
				recs = append(recs, st)
			}
		}
		if len(recs) != len(before.Tokens) {
			t.Fatalf("%d migrated records for %d tokens", len(recs), len(before.Tokens))
		}
		for i, st := range fx.Steps {
			if st.Seq != after.Seq-int64(len(fx.Steps)-1-i) {
				t.Fatalf("step seqs %+v end at %d", fx.Steps, after.Seq)
			}
		}
		for i, tok := range before.Tokens {
			pl, _ := c.plan.Placement(tok.NodeID)
			o := recOutput(t, recs[i])
			if recs[i].TokenID != tok.ID || recs[i].Version != 2 || o["from_node"] != tok.NodeID || o["action"] != pl.Action || o["to_node"] != pl.To {
				t.Fatalf("token %+v placed %+v, record %+v %v", tok, pl, recs[i], o)
			}
			if Terminal(after.Status) {
				continue
			}
			now, found := tokenByID(after, tok.ID)
			switch pl.Action {
			case journey.ActionStay:
				if tok.Wait == nil {
					break // ready: it ran on in the new version
				}
				if !found || now.NodeID != tok.NodeID || now.Wait == nil || now.Held {
					t.Fatalf("token %+v stayed as %+v (%v)", tok, now, found)
				}
				if pl.Wait == nil && !reflect.DeepEqual(now.Wait, tok.Wait) {
					t.Fatalf("unchanged wait %+v became %+v", tok.Wait, now.Wait)
				}
			case journey.ActionMove, journey.ActionSkip:
				to, _ := c.b.Node(pl.To)
				switch {
				case halted(after):
					if !slices.ContainsFunc(after.Tokens, func(tk Token) bool { return tk.NodeID == pl.To && tk.Wait == nil && !tk.Held }) {
						t.Fatalf("token %+v moved to %s, tokens %+v", tok, pl.To, after.Tokens)
					}
				case parksAt(to, c.now):
					if !slices.ContainsFunc(after.Tokens, func(tk Token) bool { return tk.NodeID == pl.To && tk.Wait != nil && !tk.Held }) {
						t.Fatalf("token %+v moved to wait %s, tokens %+v", tok, pl.To, after.Tokens)
					}
				}
			case journey.ActionExit:
				if found {
					t.Fatalf("token %+v exited, still there: %+v", tok, now)
				}
			case journey.ActionHold:
				if !found || !now.Held || now.Wait != tok.Wait || now.NodeID != tok.NodeID {
					t.Fatalf("token %+v held as %+v", tok, now)
				}
			}
		}

		// 2. Nobody without a place.
		held := slices.ContainsFunc(after.Tokens, func(tk Token) bool { return tk.Held })
		switch after.Status {
		case StatusWaiting, StatusRunning, StatusCompleted, StatusExited:
			if held {
				t.Fatalf("%s with held tokens %+v", after.Status, after.Tokens)
			}
		case StatusPaused:
			if before.Status != StatusPaused || held != (after.PausedStatus == StatusHeld) {
				t.Fatalf("paused (resuming to %s) with tokens %+v, was %s", after.PausedStatus, after.Tokens, before.Status)
			}
		case StatusHeld:
			if !held {
				t.Fatalf("held without a held token: %+v", after.Tokens)
			}
		default:
			t.Fatalf("status %s (%s) after migrating", after.Status, after.Error)
		}
		if before.Status == StatusPaused && !Terminal(after.Status) && after.Status != StatusPaused {
			t.Fatalf("a paused instance became %s", after.Status)
		}
		if after.Status == StatusExited && slices.ContainsFunc(recs, func(r StepRecord) bool { return recOutput(t, r)["action"] != journey.ActionExit }) {
			t.Fatalf("exited (%s) though not every token did", after.Error)
		}
		if !Terminal(after.Status) && len(after.Tokens) == 0 {
			t.Fatalf("%s without tokens", after.Status)
		}
		ids := map[string]bool{}
		for _, tk := range after.Tokens {
			if _, ok := c.b.Node(tk.NodeID); (!ok && !tk.Held) || ids[tk.ID] {
				t.Fatalf("token %+v in %+v", tk, after.Tokens)
			}
			ids[tk.ID] = true
		}
		var exitOnly []string
		if c.b.ExitCriteria != nil {
			exitOnly = []string{c.b.ExitCriteria.EventType}
		}
		if halted(after) && (fx.Timers != nil || !slices.Equal(fx.Waits, exitOnly)) {
			t.Fatalf("%s with timers %+v and waits %v", after.Status, fx.Timers, fx.Waits)
		}

		// Asked again, or of an instance on another version: nothing.
		if again, fx := c.migrate(after, "m1", 1, 2, c.plan, c.pb); fx.Changed || !reflect.DeepEqual(again, after) {
			t.Fatal("migrated twice")
		}
		if _, fx := c.migrate(before, "m1", 7, 8, c.plan, c.pb); fx.Changed {
			t.Fatal("migrated an instance of another version")
		}

		late := c.now.Add(1000 * time.Hour)
		if after.Status == StatusPaused {
			resumed, _ := Step(after, Trigger{Kind: TriggerResume}, c.env(late))
			if held != (resumed.Status == StatusHeld) {
				t.Fatalf("resumed to %s with tokens %+v", resumed.Status, resumed.Tokens)
			}
			if held {
				after = resumed
			}
		}
		if after.Status != StatusHeld {
			if !Terminal(after.Status) {
				if _, fx := Step(after, Trigger{Kind: TriggerRelease, NodeID: "entry"}, c.env(late)); fx.Changed {
					t.Fatalf("released a %s instance", after.Status)
				}
			}
			return
		}

		// A held instance: no timer fires, no event resumes anything, its
		// exit criteria end it, release to a node the version lacks is
		// nothing, release to one of its nodes runs from there.
		for _, tk := range after.Tokens {
			if _, fx := Step(after, Trigger{Kind: TriggerTimer, TokenID: tk.ID}, c.env(late)); fx.Changed {
				t.Fatalf("timer of %+v fired on a held instance", tk)
			}
		}
		for _, typ := range []string{"ping", "pong", "pang"} {
			if _, fx := Step(after, Trigger{Kind: TriggerEvent, Event: event("ev-held", typ, nil)}, c.env(late)); fx.Changed {
				t.Fatalf("%s changed a held instance", typ)
			}
		}
		if c.b.ExitCriteria != nil {
			if s, _ := Step(after, Trigger{Kind: TriggerEvent, Event: event("ev-exit", c.b.ExitCriteria.EventType, nil)}, c.env(late)); s.Status != StatusExited {
				t.Fatalf("exit criteria left a held instance %s", s.Status)
			}
		}
		if _, fx := Step(after, Trigger{Kind: TriggerRelease, NodeID: "nope"}, c.env(late)); fx.Changed {
			t.Fatal("released to a node the version does not have")
		}
		target := rapid.SampledFrom(c.b.Nodes).Draw(t, "release_to")
		othersReady := slices.ContainsFunc(after.Tokens, func(tk Token) bool { return !tk.Held && tk.Wait == nil })
		released, fx := Step(after, Trigger{Kind: TriggerRelease, NodeID: target.ID}, c.env(c.now))
		if !fx.Changed || released.Status == StatusHeld || slices.ContainsFunc(released.Tokens, func(tk Token) bool { return tk.Held }) {
			t.Fatalf("released to %s: %s %+v", target.ID, released.Status, released.Tokens)
		}
		for _, tk := range after.Tokens {
			if tk.Held && !slices.ContainsFunc(fx.Steps, func(r StepRecord) bool {
				return r.Outcome == OutcomeReleased && r.TokenID == tk.ID && r.NodeID == target.ID && recOutput(t, r)["from_node"] == tk.NodeID
			}) {
				t.Fatalf("no release record for %+v: %+v", tk, fx.Steps)
			}
		}
		if othersReady {
			return // other tokens run first and may end the instance
		}
		// The released tokens are the only ready ones: target runs first.
		if parksAt(target, c.now) && !slices.ContainsFunc(released.Tokens, func(tk Token) bool { return tk.NodeID == target.ID && tk.Wait != nil }) {
			t.Fatalf("released to wait %s: %s %+v", target.ID, released.Status, released.Tokens)
		}
		if nodeType(target).Category() == journey.CategoryChannel && !slices.ContainsFunc(fx.Deliveries, func(d Delivery) bool { return d.NodeID == target.ID }) {
			t.Fatalf("released to %s (%s): deliveries %+v", target.ID, target.Type, fx.Deliveries)
		}
	})
}

// configOf decodes what the tests read from a wait node's config.
func configOf(n journey.Node) (c struct {
	Duration  string   `json:"duration"`
	Timeout   string   `json:"timeout"`
	EventType string   `json:"event_type"`
	Datetime  string   `json:"datetime"`
	TimeOfDay string   `json:"time_of_day"`
	Days      []string `json:"days_of_week"`
}) {
	_ = json.Unmarshal(n.Config, &c)
	return c
}

// wantUntil is when a wait at node n that began at started ends, as the
// node says it (UTC customers): zero for no timer. A time before now is
// due now.
func wantUntil(n journey.Node, started, now time.Time) time.Time {
	c := configOf(n)
	var until time.Time
	switch n.Type {
	case "wait":
		d, _ := journey.ParseDuration(c.Duration)
		until = started.Add(d)
	case "wait_for_event":
		if c.Timeout == "" {
			return time.Time{}
		}
		d, _ := journey.ParseDuration(c.Timeout)
		until = started.Add(d)
	case "wait_until":
		if c.Datetime != "" {
			until, _ = time.Parse(time.RFC3339, c.Datetime)
			break
		}
		tod, _ := time.Parse("15:04", c.TimeOfDay)
		for day := 0; ; day++ {
			at := time.Date(started.Year(), started.Month(), started.Day()+day, tod.Hour(), tod.Minute(), 0, 0, time.UTC)
			if !at.Before(started) && (c.Days == nil || slices.Contains(c.Days, strings.ToLower(at.Weekday().String()[:3]))) {
				until = at
				break
			}
		}
	}
	return maxTime(until, now)
}

// TestPropertyMigrateChangedWaits: customers staying in a changed wait
// respond to its new event type and not the old one, and wait as long as
// the new node says, counted from when the wait began.
func TestPropertyMigrateChangedWaits(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		c := drawMigCase(t)
		after, fx := c.migrate(c.s, "m1", 1, 2, c.plan, c.pb)
		if Terminal(after.Status) {
			return
		}
		for _, tok := range c.s.Tokens {
			pl, _ := c.plan.Placement(tok.NodeID)
			if pl.Action != journey.ActionStay || tok.Wait == nil {
				continue
			}
			now, ok := tokenByID(after, tok.ID)
			if !ok || now.Wait == nil {
				t.Fatalf("token %+v staying in a wait became %+v", tok, now)
			}
			n, _ := c.b.Node(tok.NodeID)
			if !now.Wait.StartedAt.Equal(tok.Wait.StartedAt) {
				t.Fatalf("wait of %s began %v, now %v", tok.ID, tok.Wait.StartedAt, now.Wait.StartedAt)
			}
			if pl.Wait != nil && (pl.Wait.Retimed || pl.Wait.Rescheduled || pl.Wait.EventType != "") {
				if want := wantUntil(n, tok.Wait.StartedAt, c.now); !now.Wait.Until.Equal(want) {
					t.Fatalf("%s %s began %v, until %v, want %v", n.ID, n.Config, tok.Wait.StartedAt, now.Wait.Until, want)
				}
			}
			if !now.Wait.Until.IsZero() && !halted(after) && !slices.Contains(fx.Timers, Timer{TokenID: tok.ID, DueAt: now.Wait.Until}) {
				t.Fatalf("no timer for %+v in %+v", now.Wait, fx.Timers)
			}
			if n.Type != "wait_for_event" {
				continue
			}
			newType := configOf(n).EventType
			if now.Wait.EventType != newType {
				t.Fatalf("%s waits for %s, the node for %s", tok.ID, now.Wait.EventType, newType)
			}
			oldType := tok.Wait.EventType
			if oldType == newType || halted(after) {
				continue
			}
			if pl.Wait == nil || pl.Wait.EventType != newType {
				t.Fatalf("event type %s → %s, plan %+v", oldType, newType, pl.Wait)
			}
			// Does anything else still listen for the old type?
			listened := c.b.ExitCriteria != nil && c.b.ExitCriteria.EventType == oldType
			for _, tk := range after.Tokens {
				listened = listened || (tk.Wait != nil && tk.Wait.EventType == oldType)
			}
			if !slices.Contains(fx.Waits, newType) || slices.Contains(fx.Waits, oldType) != listened {
				t.Fatalf("waits %v: %s → %s (still listened for: %v)", fx.Waits, oldType, newType, listened)
			}
			old, ofx := Step(after, Trigger{Kind: TriggerEvent, Event: event("ev-old", oldType, nil)}, c.env(c.now))
			if !listened && ofx.Changed {
				t.Fatalf("the old type %s changed the instance: %+v", oldType, ofx.Steps)
			}
			if tk, ok := tokenByID(old, tok.ID); !Terminal(old.Status) && (!ok || !reflect.DeepEqual(tk.Wait, now.Wait)) {
				t.Fatalf("the old type %s moved %+v to %+v", oldType, now, tk)
			}
			resumed, nfx := Step(after, Trigger{Kind: TriggerEvent, Event: event("ev-new", newType, nil)}, c.env(c.now))
			if !nfx.Changed {
				t.Fatalf("the new type %s changed nothing", newType)
			}
			if !Terminal(resumed.Status) && !slices.ContainsFunc(nfx.Steps, func(r StepRecord) bool {
				return r.TokenID == tok.ID && r.NodeID == n.ID && r.Outcome == OutcomeResumed
			}) {
				t.Fatalf("the new type %s did not resume %s: %+v", newType, tok.ID, nfx.Steps)
			}
		}
	})
}

// TestPropertyMigrateRollback: migrating to B, back to A and to B again
// ends where migrating to B once does. That holds only when nothing runs
// or exits along the way, so the property is restricted to instances that
// run nothing on migrating (no ready token, or paused) and plans whose
// placements for the nodes the tokens are at are all stay: waits may
// change (event types, durations, dates), positions may not.
func TestPropertyMigrateRollback(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		c := drawMigCase(t)
		occupied := map[string]bool{}
		for _, tk := range c.s.Tokens {
			occupied[tk.NodeID] = true
			if pl, _ := c.plan.Placement(tk.NodeID); pl.Action != journey.ActionStay || (tk.Wait == nil && c.s.Status != StatusPaused) {
				return
			}
		}
		direct, _ := c.migrate(c.s, "m1", 1, 2, c.plan, c.pb)
		back, problems := journey.PlanMigration(c.b, c.a, journey.MigrationOptions{}, occupied)
		if len(problems) != 0 {
			t.Fatalf("rolling back: %+v", problems)
		}
		rolled, fx := c.migrate(direct, "m2", 2, 1, back, c.pa)
		if !fx.Changed || rolled.Status != c.s.Status {
			t.Fatalf("rolled back to %s, was %s", rolled.Status, c.s.Status)
		}
		for i, tk := range rolled.Tokens {
			if tk.ID != c.s.Tokens[i].ID || tk.NodeID != c.s.Tokens[i].NodeID {
				t.Fatalf("rolled back to %+v, was %+v", rolled.Tokens, c.s.Tokens)
			}
		}
		again, fx := c.migrate(rolled, "m3", 1, 2, c.plan, c.pb)
		if !fx.Changed || again.Migration != "m3" {
			t.Fatal("did not migrate again")
		}
		type place struct {
			ID, NodeID string
			Wait       *nodes.Wait
			Held       bool
		}
		places := func(s State) []place {
			var out []place
			for _, tk := range s.Tokens {
				out = append(out, place(tk))
			}
			return out
		}
		if again.Status != direct.Status || !reflect.DeepEqual(places(again), places(direct)) {
			t.Fatalf("via a rollback: %s %+v\ndirect: %s %+v", again.Status, places(again), direct.Status, places(direct))
		}
	})
}
