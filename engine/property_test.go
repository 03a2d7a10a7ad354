package engine

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/kalcifer/kalcifer/journey"
	"github.com/kalcifer/kalcifer/nodes"
)

// randomKinds are the node types random graphs draw from, with the branch
// keys each emits (nil: completes along unlabelled edges).
var randomKinds = []struct {
	typ, config string
	branches    []string
}{
	{"wait", `{"duration":"1h"}`, nil},
	{"wait", `{"duration":"0s"}`, nil},
	{"wait_until", `{"time_of_day":"09:00","days_of_week":["mon","thu"]}`, nil},
	{"send_email", `{"template_id":"welcome"}`, nil},
	{"send_sms", `{"body":"hi"}`, nil},
	{"condition", `{"expression":"profile.plan == \"pro\""}`, []string{"true", "false"}},
	{"condition", `{"expression":"context.trigger.n > 1"}`, []string{"true", "false"}},
	{"update_profile", `{"fields":{"plan":"pro"}}`, nil},
	{"add_tag", `{"tag":"seen"}`, nil},
	{"wait_for_event", `{"event_type":"ping","timeout":"2h"}`, []string{"event_received", "timed_out"}},
	{"wait_for_event", `{"event_type":"pong"}`, []string{"event_received"}},
	{"ab_split", `{"variants":[{"key":"a","weight":1},{"key":"b","weight":2}],"holdout_percent":10}`, []string{"a", "b"}},
	{"frequency_cap", `{"max_messages":1,"time_window":"1d"}`, []string{"allowed", "capped"}},
	{"goal_reached", `{"goal_name":"g"}`, nil},
	{"goal_reached", `{"goal_name":"g","exit_after_goal":true}`, nil},
	{"journey_exit", `{}`, nil},
	{"custom_code", `{"code":"return {context: {n: 1}}"}`, nil},
}

// randomGraph draws a valid journey the way journey's validation tests do:
// edges point forward in node order, every node hangs off an earlier open
// node, and every branch a node emits gets an edge.
func randomGraph(t *rapid.T) journey.Graph {
	n := rapid.IntRange(1, 25).Draw(t, "nodes")
	g := journey.Graph{Nodes: []journey.Node{entry()}}
	branches := map[string][]string{}
	terminal := map[string]bool{}
	for len(g.Nodes) <= n {
		k := randomKinds[rapid.IntRange(0, len(randomKinds)-1).Draw(t, "kind")]
		id := fmt.Sprintf("n%d", len(g.Nodes))
		g.Nodes = append(g.Nodes, nd(id, k.typ, k.config))
		branches[id] = k.branches
		typ, _ := nodes.Default().Get(k.typ)
		terminal[id] = typ.Terminal([]byte(k.config))
	}
	links := map[journey.Edge]bool{}
	addEdge := func(source, target string) {
		branch := ""
		if b := branches[source]; b != nil {
			branch = rapid.SampledFrom(b).Draw(t, "branch")
		}
		e := ed(source, target, branch)
		if !links[e] {
			links[e] = true
			g.Edges = append(g.Edges, e)
		}
	}
	for i := 1; i < len(g.Nodes); i++ {
		var parents []string
		for _, p := range g.Nodes[:i] {
			if !terminal[p.ID] {
				parents = append(parents, p.ID)
			}
		}
		addEdge(rapid.SampledFrom(parents).Draw(t, "parent"), g.Nodes[i].ID)
		for _, p := range parents {
			if rapid.IntRange(0, 6).Draw(t, "extra_edge") == 0 {
				addEdge(p, g.Nodes[i].ID)
			}
		}
	}
	for _, nd0 := range slices.Clone(g.Nodes) {
		for _, b := range branches[nd0.ID] {
			if !slices.ContainsFunc(g.Edges, func(e journey.Edge) bool { return e.Source == nd0.ID && e.Branch == b }) {
				exit := nd(fmt.Sprintf("n%d", len(g.Nodes)), "journey_exit", `{}`)
				g.Nodes = append(g.Nodes, exit)
				g.Edges = append(g.Edges, ed(nd0.ID, exit.ID, b))
			}
		}
	}
	if rapid.Bool().Draw(t, "exit_criteria") {
		g.ExitCriteria = &journey.ExitCriteria{EventType: "unsubscribed"}
	}
	if rapid.Bool().Draw(t, "journey_cap") {
		g.FrequencyCap = map[string]journey.FrequencyCap{"email": {Max: 2, Window: "1d"}}
	}
	return g
}

// randomTrigger draws any trigger, with ids and event types from small sets
// so that timers hit live tokens and events hit waits and repeat.
func randomTrigger(t *rapid.T, s State) Trigger {
	tokenIDs := []string{"t1", "t2", "t3"}
	for _, tk := range s.Tokens {
		tokenIDs = append(tokenIDs, tk.ID)
	}
	switch rapid.IntRange(0, 9).Draw(t, "trigger") {
	case 0, 1, 2:
		return Trigger{Kind: TriggerTimer, TokenID: rapid.SampledFrom(tokenIDs).Draw(t, "token")}
	case 3, 4, 5:
		typ := rapid.SampledFrom([]string{"ping", "pong", "unsubscribed", "other"}).Draw(t, "event_type")
		return Trigger{Kind: TriggerEvent, Event: event(fmt.Sprintf("e%d", rapid.IntRange(0, 9).Draw(t, "event_id")), typ, nil)}
	case 6:
		return Trigger{Kind: TriggerContinue}
	case 7:
		return Trigger{Kind: TriggerPause}
	case 8:
		return Trigger{Kind: TriggerResume}
	}
	if rapid.IntRange(0, 4).Draw(t, "cancel") == 0 {
		return Trigger{Kind: TriggerCancel}
	}
	return Trigger{Kind: TriggerStart}
}

// checkInvariants holds after every step of every instance.
func checkInvariants(t *rapid.T, p *Plan, s State, fx Effects) {
	ready := slices.ContainsFunc(s.Tokens, func(tk Token) bool { return tk.Wait == nil })
	switch s.Status {
	case StatusCompleted, StatusFailed, StatusExited:
		if len(s.Tokens) != 0 || fx.Timers != nil || fx.Waits != nil {
			t.Fatalf("terminal %s keeps tokens %+v or effects %+v", s.Status, s.Tokens, fx)
		}
	case StatusWaiting:
		if len(s.Tokens) == 0 || ready {
			t.Fatalf("waiting with tokens %+v", s.Tokens)
		}
	case StatusRunning:
		if fx.Changed && !ready {
			t.Fatalf("running without a ready token: %+v", s.Tokens)
		}
	case StatusPaused:
		// Paused: no timers and no waits, except the journey's exit
		// criteria, which still end a paused instance.
		var exitOnly []string
		if ec := p.graph.ExitCriteria; ec != nil {
			exitOnly = []string{ec.EventType}
		}
		if fx.Changed && (fx.Timers != nil || !slices.Equal(fx.Waits, exitOnly)) {
			t.Fatalf("paused with effects %+v", fx)
		}
	default:
		t.Fatalf("unknown status %q", s.Status)
	}
	if s.Status == StatusFailed && s.Error == "" {
		t.Fatal("failed without an error")
	}
	ids := map[string]bool{}
	for _, tk := range s.Tokens {
		if ids[tk.ID] || p.nodes[tk.NodeID] == nil {
			t.Fatalf("bad token %+v in %+v", tk, s.Tokens)
		}
		ids[tk.ID] = true
		if tk.Wait != nil && tk.Wait.Until.IsZero() && tk.Wait.EventType == "" {
			t.Fatalf("token %s waits for nothing", tk.ID)
		}
	}
	for i, st := range fx.Steps {
		if st.Seq != s.Seq-int64(len(fx.Steps)-1-i) {
			t.Fatalf("step seqs %+v end at %d", fx.Steps, s.Seq)
		}
	}
}

// runRandom plays random triggers on one instance of a random graph, the
// clock moving forward, checking the invariants after each step.
func runRandom(t *rapid.T) (*Plan, State) {
	p, err := Compile(randomGraph(t), nodes.Default())
	if err != nil {
		t.Fatalf("random graph does not compile: %v", err)
	}
	s := NewState("i1", "tn", "j1", 1, "c1", "k", t0)
	now := t0
	l := &ledger{}
	cust := nodes.Customer{ID: "c1", Properties: map[string]any{"plan": rapid.SampledFrom([]string{"free", "pro"}).Draw(t, "plan")}}
	env := func() Env {
		return Env{Plan: p, Now: now, Customer: cust, SentSince: l.sentSince, MaxSteps: rapid.IntRange(1, 30).Draw(t, "max_steps")}
	}
	trigger := Trigger{Kind: TriggerStart, Data: map[string]any{"n": rapid.IntRange(0, 3).Draw(t, "n")}}
	for range rapid.IntRange(1, 40).Draw(t, "triggers") {
		was := s
		next, fx := Step(s, trigger, env())
		if Terminal(was.Status) && fx.Changed {
			t.Fatalf("%s changed a %s instance", trigger.Kind, was.Status)
		}
		if !fx.Changed && fx.Steps != nil {
			t.Fatalf("a no-op recorded steps")
		}
		checkInvariants(t, p, next, fx)
		for _, d := range fx.Deliveries {
			l.sent = append(l.sent, sent{d.Channel, now})
		}
		if fx.Profile != nil {
			cust.Apply(*fx.Profile)
		}
		s = next
		now = now.Add(time.Duration(rapid.IntRange(0, 180).Draw(t, "minutes")) * time.Minute)
		trigger = randomTrigger(t, s)
	}
	return p, s
}

func TestPropertyRandomGraphsNeverPanic(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		p, s := runRandom(t)
		// Drain: resume, fire every timer and continue until only event
		// waits are left; every token must then wait, or the instance be over.
		now := t0.Add(1000 * time.Hour)
		for range 200 {
			var fx Effects
			switch {
			case s.Status == StatusPaused:
				s, fx = Step(s, Trigger{Kind: TriggerResume}, Env{Plan: p, Now: now})
			case s.Status == StatusRunning:
				s, fx = Step(s, Trigger{Kind: TriggerContinue}, Env{Plan: p, Now: now})
			default:
				i := slices.IndexFunc(s.Tokens, func(tk Token) bool { return tk.Wait != nil && !tk.Wait.Until.IsZero() })
				if i < 0 {
					break
				}
				now = now.Add(30 * 24 * time.Hour)
				s, fx = Step(s, Trigger{Kind: TriggerTimer, TokenID: s.Tokens[i].ID}, Env{Plan: p, Now: now})
			}
			if fx.Changed {
				checkInvariants(t, p, s, fx)
			}
		}
		if !Terminal(s.Status) && (s.Status != StatusWaiting || slices.ContainsFunc(s.Tokens, func(tk Token) bool { return !tk.Wait.Until.IsZero() })) {
			t.Fatalf("instance did not settle: %s %+v", s.Status, s.Tokens)
		}
	})
}

func TestPropertyTerminalStaysTerminal(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		p, s := runRandom(t)
		if !Terminal(s.Status) {
			s, _ = Step(s, Trigger{Kind: TriggerCancel}, Env{Plan: p, Now: t0})
		}
		for range 30 {
			next, fx := Step(s, randomTrigger(t, s), Env{Plan: p, Now: t0.Add(time.Duration(rapid.IntRange(0, 1e6).Draw(t, "s")) * time.Second)})
			if fx.Changed || next.Status != s.Status || next.Seq != s.Seq {
				t.Fatalf("terminal %s instance changed", s.Status)
			}
		}
	})
}

// abCase is a random ab_split journey: its graph and the expected share of
// each outcome ("holdout" and the variant keys).
type abCase struct {
	graph journey.Graph
	share map[string]float64
}

var abCases = rapid.Custom(func(t *rapid.T) abCase {
	weights := rapid.SliceOfN(rapid.IntRange(1, 100), 2, 5).Draw(t, "weights")
	holdout := float64(rapid.IntRange(0, 50).Draw(t, "holdout"))
	total := 0
	for _, w := range weights {
		total += w
	}
	c := abCase{graph: journey.Graph{Nodes: []journey.Node{entry()}, Edges: []journey.Edge{ed("entry", "ab")}},
		share: map[string]float64{"holdout": holdout / 100}}
	var variants []string
	for i, w := range weights {
		key := fmt.Sprintf("v%d", i)
		variants = append(variants, fmt.Sprintf(`{"key":%q,"weight":%d}`, key, w))
		c.share[key] = (1 - holdout/100) * float64(w) / float64(total)
		c.graph.Nodes = append(c.graph.Nodes, nd(key, "journey_exit", `{}`))
		c.graph.Edges = append(c.graph.Edges, ed("ab", key, key))
	}
	c.graph.Nodes = append(c.graph.Nodes, nd("ab", "ab_split",
		fmt.Sprintf(`{"variants":[%s],"holdout_percent":%g}`, strings.Join(variants, ","), holdout)))
	return c
})

// abOutcome runs one customer through the split: the variant, or "holdout".
func abOutcome(p *Plan, journeyID, customerID string, now time.Time) string {
	_, fx := Step(NewState("i", "tn", journeyID, 1, customerID, "k", now), Trigger{Kind: TriggerStart}, Env{Plan: p, Now: now})
	if fx.Steps[1].Outcome == OutcomeEnded {
		return "holdout"
	}
	return fx.Steps[1].Branch
}

func TestPropertyABSplitDeterministic(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		p := compile(t, abCases.Draw(t, "case").graph)
		journeyID := rapid.StringN(1, 10, -1).Draw(t, "journey")
		customer := rapid.StringN(1, 20, -1).Draw(t, "customer")
		first := abOutcome(p, journeyID, customer, t0)
		if again := abOutcome(p, journeyID, customer, t0.Add(time.Duration(rapid.IntRange(0, 1e6).Draw(t, "later"))*time.Second)); again != first {
			t.Fatalf("customer %q got %q, then %q", customer, first, again)
		}
	})
}

// TestPropertyABSplitShares runs 10,000 customers through each of a few
// random splits; a full rapid run of 100 splits would take minutes under
// -race for no more confidence.
func TestPropertyABSplitShares(t *testing.T) {
	const customers = 10000
	for i := range 6 {
		c := abCases.Example(i)
		p := compile(t, c.graph)
		counts := map[string]int{}
		for n := range customers {
			counts[abOutcome(p, "journey-"+strconv.Itoa(i), "customer-"+strconv.Itoa(n), t0)]++
		}
		for key, want := range c.share {
			if got := float64(counts[key]) / customers; math.Abs(got-want) > 0.02 {
				t.Fatalf("split %d: %s share %.3f, want %.3f (%v)", i, key, got, want, counts)
			}
		}
	}
}

func TestPropertyFrequencyCapNeverExceeded(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		emailMax := rapid.IntRange(1, 4).Draw(t, "email_max")
		smsMax := rapid.IntRange(1, 3).Draw(t, "sms_max")
		g := graph([]journey.Node{entry(),
			nd("e1", "send_email", `{"template_id":"x"}`), nd("w", "wait", `{"duration":"2h"}`), nd("e2", "send_email", `{"template_id":"x"}`),
			nd("cap", "frequency_cap", fmt.Sprintf(`{"max_messages":%d,"time_window":"6h","channel":"sms"}`, smsMax)),
			nd("sms", "send_sms", `{"body":"x"}`), nd("e3", "send_email", `{"template_id":"x"}`), nd("capped", "journey_exit", `{}`)},
			ed("entry", "e1"), ed("e1", "w"), ed("w", "e2"), ed("e2", "cap"), ed("cap", "sms", "allowed"), ed("cap", "capped", "capped"),
			ed("sms", "e3"), ed("e1", "cap"))
		g.FrequencyCap = map[string]journey.FrequencyCap{"email": {Max: emailMax, Window: "1d"}}
		p := compile(t, g)
		l := &ledger{}
		now := t0
		var live []State
		for range rapid.IntRange(1, 60).Draw(t, "actions") {
			var s State
			var tr Trigger
			i := -1
			if len(live) == 0 || rapid.Bool().Draw(t, "enter") {
				s, tr = NewState(fmt.Sprintf("i%d", len(live)), "tn", "j", 1, "c1", "k", now), Trigger{Kind: TriggerStart}
			} else {
				i = rapid.IntRange(0, len(live)-1).Draw(t, "instance")
				s = live[i]
				if len(s.Tokens) == 0 {
					continue
				}
				tr = Trigger{Kind: TriggerTimer, TokenID: rapid.SampledFrom(s.Tokens).Draw(t, "token").ID}
			}
			next, fx := Step(s, tr, Env{Plan: p, Now: now, Customer: nodes.Customer{ID: "c1"}, SentSince: l.sentSince})
			for _, d := range fx.Deliveries {
				l.sent = append(l.sent, sent{d.Channel, now})
			}
			if i < 0 {
				live = append(live, next)
			} else {
				live[i] = next
			}
			for channel, limit := range map[string]struct {
				max    int
				window time.Duration
			}{"email": {emailMax, 24 * time.Hour}, "sms": {smsMax, 6 * time.Hour}} {
				if n := l.sentSince(channel, now.Add(-limit.window)); n > limit.max {
					t.Fatalf("%d %s sends within %s, cap %d", n, channel, limit.window, limit.max)
				}
			}
			now = now.Add(time.Duration(rapid.IntRange(0, 240).Draw(t, "minutes")) * time.Minute)
		}
	})
}

func TestPropertyDuplicateEventAppliedOnce(t *testing.T) {
	ping := `{"event_type":"ping"}`
	g := graph([]journey.Node{entry(), nd("w1", "wait_for_event", ping), nd("w2", "wait_for_event", ping),
		nd("w3", "wait_for_event", ping), nd("end", "journey_exit", `{}`)},
		ed("entry", "w1"), ed("w1", "w2", "event_received"), ed("w2", "w3", "event_received"), ed("w3", "end", "event_received"))
	p := compile(t, g)
	rapid.Check(t, func(t *rapid.T) {
		s, _ := Step(NewState("i", "tn", "j", 1, "c1", "k", t0), Trigger{Kind: TriggerStart}, Env{Plan: p, Now: t0})
		ids := rapid.SliceOfN(rapid.SampledFrom([]string{"a", "b", "c", "d"}), 1, 12).Draw(t, "event_ids")
		resumedBy := map[string]int{}
		distinct := map[string]bool{}
		for _, id := range ids {
			next, fx := Step(s, Trigger{Kind: TriggerEvent, Event: event(id, "ping", nil)}, Env{Plan: p, Now: t0})
			for _, st := range fx.Steps {
				if st.Outcome == OutcomeResumed {
					resumedBy[id]++
				}
			}
			if !distinct[id] && len(distinct) < 3 && !fx.Changed {
				t.Fatalf("first delivery of %s was ignored", id)
			}
			distinct[id] = true
			s = next
		}
		for id, n := range resumedBy {
			if n != 1 {
				t.Fatalf("event %s applied %d times", id, n)
			}
		}
		if want := min(len(distinct), 3); len(resumedBy) != want {
			t.Fatalf("%d events applied, want %d", len(resumedBy), want)
		}
	})
}

func TestPropertyEventOrTimeoutExactlyOnce(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		hours := rapid.IntRange(1, 72).Draw(t, "timeout_hours")
		p := compile(t, waitForEventGraph(fmt.Sprintf(`{"event_type":"paid","timeout":"%dh"}`, hours), "event_received", "timed_out"))
		s, _ := Step(NewState("i", "tn", "j", 1, "c1", "k", t0), Trigger{Kind: TriggerStart}, Env{Plan: p, Now: t0})
		due := t0.Add(time.Duration(hours) * time.Hour)
		eventAt := t0.Add(time.Duration(rapid.IntRange(0, 2*hours*60).Draw(t, "event_minute")) * time.Minute)
		eventFirst := rapid.Bool().Draw(t, "event_first")
		timer := func() Trigger { return Trigger{Kind: TriggerTimer, TokenID: "t1"} }
		ev := func() Trigger { return Trigger{Kind: TriggerEvent, Event: event("e1", "paid", nil)} }
		type arrival struct {
			tr Trigger
			at time.Time
		}
		// The second arrives no earlier than the first: a timer fires when
		// due or later, an event that beats a lagging timer still wins.
		order := []arrival{{timer(), due}, {ev(), maxTime(eventAt, due)}}
		want := "timed_out"
		if eventFirst {
			order = []arrival{{ev(), eventAt}, {timer(), maxTime(eventAt, due)}}
			want = "event_received"
		}
		order = append(order, order...) // both redelivered
		var branches []string
		for _, a := range order {
			var fx Effects
			s, fx = Step(s, a.tr, Env{Plan: p, Now: a.at})
			for _, st := range fx.Steps {
				if st.NodeID == "wfe" && st.Outcome == OutcomeResumed {
					branches = append(branches, st.Branch)
				}
			}
		}
		if !slices.Equal(branches, []string{want}) {
			t.Fatalf("resolved %v, want once %s", branches, want)
		}
	})
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
