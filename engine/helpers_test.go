package engine

import (
	"encoding/json"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/kalcifer/kalcifer/journey"
	"github.com/kalcifer/kalcifer/nodes"
)

// t0 is a Monday morning, UTC.
var t0 = time.Date(2030, 1, 7, 8, 0, 0, 0, time.UTC)

func nd(id, typ, config string) journey.Node {
	return journey.Node{ID: id, Type: typ, Config: json.RawMessage(config)}
}

// ed builds an edge, labelled when a branch is given.
func ed(source, target string, branch ...string) journey.Edge {
	e := journey.Edge{Source: source, Target: target}
	if len(branch) > 0 {
		e.Branch = branch[0]
	}
	e.ID = fmt.Sprintf("%s>%s:%s", source, target, e.Branch)
	return e
}

func graph(ns []journey.Node, es ...journey.Edge) journey.Graph {
	return journey.Graph{Nodes: ns, Edges: es}
}

// chain links the nodes in order with unlabelled edges.
func chain(ns ...journey.Node) journey.Graph {
	g := journey.Graph{Nodes: ns}
	for i := 1; i < len(ns); i++ {
		g.Edges = append(g.Edges, ed(ns[i-1].ID, ns[i].ID))
	}
	return g
}

// tb is what both *testing.T and *rapid.T offer.
type tb interface {
	Helper()
	Fatalf(format string, args ...any)
}

func compile(t tb, g journey.Graph) *Plan {
	t.Helper()
	p, err := Compile(g, nodes.Default())
	if err != nil {
		t.Fatalf("compile: %v", err)
	}
	return p
}

func entry() journey.Node { return nd("entry", "event_entry", `{"event_type":"signed_up"}`) }

func event(id, typ string, props map[string]any) *nodes.Event {
	return &nodes.Event{ID: id, Type: typ, Properties: props, Timestamp: t0}
}

// sent is a committed delivery.
type sent struct {
	channel string
	at      time.Time
}

// ledger is the customer's committed deliveries across instances, counted
// the way the store's SentSince does.
type ledger struct{ sent []sent }

func (l *ledger) sentSince(channel string, since time.Time) int {
	n := 0
	for _, s := range l.sent {
		if (channel == "all" || s.channel == channel) && !s.at.Before(since) {
			n++
		}
	}
	return n
}

// instance runs one instance the way its grain does: Step, then commit the
// state, the deliveries and the profile change.
type instance struct {
	t        testing.TB
	plan     *Plan
	s        State
	now      time.Time
	customer *nodes.Customer
	ledger   *ledger
	maxSteps int
	steps    []StepRecord
	delivs   []Delivery
}

func newInstance(t testing.TB, g journey.Graph) *instance {
	return &instance{
		t: t, plan: compile(t, g), s: NewState("i1", "tn", "j1", 3, "c1", "k1", t0), now: t0,
		customer: &nodes.Customer{ID: "c1", ExternalID: "ext-1", Email: "a@example.com", Properties: map[string]any{"plan": "free"}},
		ledger:   &ledger{},
	}
}

func (in *instance) step(tr Trigger) Effects {
	in.t.Helper()
	before := in.s
	s, fx := Step(in.s, tr, Env{Plan: in.plan, Now: in.now, Customer: *in.customer, SentSince: in.ledger.sentSince, MaxSteps: in.maxSteps})
	if !fx.Changed {
		if !reflect.DeepEqual(s, before) || fx.Steps != nil || fx.Deliveries != nil {
			in.t.Fatalf("no-op %s changed something: %+v %+v", tr.Kind, s, fx)
		}
		return fx
	}
	in.s = s
	in.steps = append(in.steps, fx.Steps...)
	in.delivs = append(in.delivs, fx.Deliveries...)
	for _, d := range fx.Deliveries {
		in.ledger.sent = append(in.ledger.sent, sent{d.Channel, in.now})
	}
	if fx.Profile != nil {
		in.customer.Apply(*fx.Profile)
	}
	return fx
}

func (in *instance) start(e *nodes.Event) Effects {
	in.t.Helper()
	return in.step(Trigger{Kind: TriggerStart, Event: e})
}

func (in *instance) event(e *nodes.Event) Effects {
	in.t.Helper()
	return in.step(Trigger{Kind: TriggerEvent, Event: e})
}

// fire advances the clock to the token's timer and fires it.
func (in *instance) fire(tokenID string) Effects {
	in.t.Helper()
	for _, tk := range in.s.Tokens {
		if tk.ID == tokenID && tk.Wait != nil && !tk.Wait.Until.IsZero() {
			in.now = tk.Wait.Until
		}
	}
	return in.step(Trigger{Kind: TriggerTimer, TokenID: tokenID})
}

func (in *instance) wantStatus(status string) {
	in.t.Helper()
	if in.s.Status != status {
		in.t.Fatalf("status %s (error %q), want %s; tokens %+v", in.s.Status, in.s.Error, status, in.s.Tokens)
	}
}

// path lists "node:outcome[:branch]" of every recorded step.
func (in *instance) path() []string {
	var out []string
	for _, s := range in.steps {
		p := s.NodeID + ":" + s.Outcome
		if s.Branch != "" {
			p += ":" + s.Branch
		}
		out = append(out, p)
	}
	return out
}

func (in *instance) wantPath(want ...string) {
	in.t.Helper()
	if got := in.path(); !reflect.DeepEqual(got, want) {
		in.t.Fatalf("path\n got %q\nwant %q", got, want)
	}
}

func output(t testing.TB, rec StepRecord) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(rec.Output, &m); err != nil {
		t.Fatalf("output %s: %v", rec.Output, err)
	}
	return m
}
