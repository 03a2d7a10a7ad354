package journey

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"testing"

	"pgregory.net/rapid"
)

// chainGraph is entry → a → b → c with the given types and configs.
func chainGraph(nodes ...Node) Graph {
	g := Graph{Nodes: nodes}
	for i := 1; i < len(nodes); i++ {
		g.Edges = append(g.Edges, Edge{ID: fmt.Sprintf("e%d", i), Source: nodes[i-1].ID, Target: nodes[i].ID})
	}
	return g
}

func node(id, typ, config string) Node {
	n := Node{ID: id, Type: typ}
	if config != "" {
		n.Config = json.RawMessage(config)
	}
	return n
}

func TestPlanMigration(t *testing.T) {
	from := chainGraph(node("in", "event_entry", ""), node("mail", "send_email", ""),
		node("wait", "wait_for_event", `{"event_type": "opened", "timeout": "3d"}`), node("pause", "wait", `{"duration": "1d"}`),
		node("sms", "send_sms", ""), node("done", "journey_exit", ""))
	to := chainGraph(node("in", "event_entry", ""), node("mail", "send_email", ""), node("new", "send_push", ""),
		node("wait", "wait_for_event", `{"event_type": "clicked", "timeout": "5d", "filter": {"plan": "pro"}}`), node("pause", "wait", `{"duration": "2d"}`),
		node("done", "journey_exit", ""))

	plan, problems := PlanMigration(from, to, MigrationOptions{Removed: RemovedSkipToNext}, nil)
	if len(problems) != 0 {
		t.Fatalf("problems %+v", problems)
	}
	want := map[string]Placement{
		"in":    {From: "in", Action: ActionStay, To: "in"},
		"mail":  {From: "mail", Action: ActionStay, To: "mail"},
		"wait":  {From: "wait", Action: ActionStay, To: "wait", Wait: &WaitChange{EventType: "clicked", Retimed: true, Refiltered: true}},
		"pause": {From: "pause", Action: ActionStay, To: "pause", Wait: &WaitChange{Retimed: true}},
		"sms":   {From: "sms", Action: ActionSkip, To: "done"},
		"done":  {From: "done", Action: ActionStay, To: "done"},
	}
	for id, w := range want {
		if got, _ := plan.Placement(id); !reflect.DeepEqual(got, w) {
			t.Errorf("%s: got %+v (%+v), want %+v (%+v)", id, got, got.Wait, w, w.Wait)
		}
	}

	exit, _ := PlanMigration(from, to, MigrationOptions{}, nil)
	if p, _ := exit.Placement("sms"); p.Action != ActionExit {
		t.Errorf("removed node under the default policy: %+v", p)
	}
	hold, _ := PlanMigration(from, to, MigrationOptions{Removed: RemovedHold}, nil)
	if p, _ := hold.Placement("sms"); p.Action != ActionHold {
		t.Errorf("removed node held: %+v", p)
	}
	mapped, problems := PlanMigration(from, to, MigrationOptions{NodeMapping: map[string]string{"sms": "done"}}, nil)
	if p, _ := mapped.Placement("sms"); len(problems) != 0 || p.Action != ActionMove || p.To != "done" {
		t.Errorf("mapped: %+v %+v", p, problems)
	}
	// Customers at sms have passed pause: mapping them there is refused.
	if _, problems := PlanMigration(from, to, MigrationOptions{NodeMapping: map[string]string{"sms": "pause"}}, nil); len(problems) != 1 ||
		problems[0].Code != CodeBackwardMapping {
		t.Errorf("mapped back: %+v", problems)
	}

	for name, tc := range map[string]struct {
		opts     MigrationOptions
		occupied map[string]bool
		code     string
	}{
		"back to the start":     {MigrationOptions{NodeMapping: map[string]string{"pause": "mail"}}, nil, CodeBackwardMapping},
		"to a node not there":   {MigrationOptions{NodeMapping: map[string]string{"sms": "gone"}}, nil, CodeUnknownMappingTarget},
		"from a node not there": {MigrationOptions{NodeMapping: map[string]string{"nope": "pause"}}, nil, CodeUnknownMappingSource},
		"bad policy":            {MigrationOptions{Removed: "teleport"}, nil, CodeInvalidRemovedPolicy},
	} {
		_, problems := PlanMigration(from, to, tc.opts, tc.occupied)
		if len(problems) != 1 || problems[0].Code != tc.code {
			t.Errorf("%s: problems %+v, want %s", name, problems, tc.code)
		}
	}
	// Problems of nodes nobody is at do not stop a migration.
	if _, problems := PlanMigration(from, to, MigrationOptions{NodeMapping: map[string]string{"pause": "mail"}},
		map[string]bool{"wait": true}); len(problems) != 0 {
		t.Errorf("a problem at an empty node: %+v", problems)
	}

	// A removed fork whose branches lead to different kept nodes needs a mapping.
	fork := Graph{Nodes: []Node{node("in", "event_entry", ""), node("split", "condition", ""), node("a", "send_email", ""), node("b", "send_sms", "")},
		Edges: []Edge{{ID: "1", Source: "in", Target: "split"}, {ID: "2", Source: "split", Target: "a", Branch: "true"},
			{ID: "3", Source: "split", Target: "b", Branch: "false"}}}
	unforked := Graph{Nodes: []Node{node("in", "event_entry", ""), node("a", "send_email", ""), node("b", "send_sms", "")},
		Edges: []Edge{{ID: "1", Source: "in", Target: "a"}, {ID: "2", Source: "a", Target: "b"}}}
	if _, problems := PlanMigration(fork, unforked, MigrationOptions{Removed: RemovedSkipToNext}, nil); len(problems) != 1 ||
		problems[0].Code != CodeAmbiguousSkip {
		t.Errorf("ambiguous skip: %+v", problems)
	}
}

// genGraphs draws a random version and a random next version: nodes
// removed, added and retyped, waits changed, edges rewired, all acyclic
// (edges go from earlier to later nodes in a random order), and a random
// node mapping.
func genGraphs(t *rapid.T) (Graph, Graph, MigrationOptions) {
	types := []string{"send_email", "wait", "wait_for_event", "condition", "send_sms"}
	config := func(t *rapid.T, typ, label string) json.RawMessage {
		switch typ {
		case "wait":
			return json.RawMessage(fmt.Sprintf(`{"duration": "%dh"}`, rapid.IntRange(1, 3).Draw(t, label)))
		case "wait_for_event":
			return json.RawMessage(fmt.Sprintf(`{"event_type": "e%d"}`, rapid.IntRange(1, 3).Draw(t, label)))
		}
		return nil
	}
	graph := func(t *rapid.T, ids []string, typeOf map[string]string, label string) Graph {
		g := Graph{}
		for _, id := range ids {
			g.Nodes = append(g.Nodes, Node{ID: id, Type: typeOf[id], Config: config(t, typeOf[id], label+" config "+id)})
		}
		for i := 1; i < len(ids); i++ {
			for j := range i {
				if j == i-1 || rapid.IntRange(0, 3).Draw(t, label+" edge") == 0 {
					g.Edges = append(g.Edges, Edge{ID: fmt.Sprintf("%s-%s", ids[j], ids[i]), Source: ids[j], Target: ids[i]})
				}
			}
		}
		return g
	}
	n := rapid.IntRange(2, 9).Draw(t, "old nodes")
	typeOf := map[string]string{"n0": "event_entry"}
	oldIDs := []string{"n0"}
	for i := 1; i < n; i++ {
		id := fmt.Sprintf("n%d", i)
		oldIDs = append(oldIDs, id)
		typeOf[id] = rapid.SampledFrom(types).Draw(t, "type")
	}
	from := graph(t, oldIDs, typeOf, "old")
	newIDs := []string{"n0"}
	newType := map[string]string{"n0": "event_entry"}
	for _, id := range oldIDs[1:] {
		if rapid.IntRange(0, 3).Draw(t, "remove") > 0 {
			newIDs = append(newIDs, id)
			newType[id] = typeOf[id]
			if rapid.IntRange(0, 5).Draw(t, "retype") == 0 {
				newType[id] = rapid.SampledFrom(types).Draw(t, "new type")
			}
		}
	}
	for i := range rapid.IntRange(0, 3).Draw(t, "added") {
		id := fmt.Sprintf("x%d", i)
		newIDs = append(newIDs, id)
		newType[id] = rapid.SampledFrom(types).Draw(t, "added type")
	}
	// A random order of the new nodes after the entry: rewiring.
	rest := rapid.Permutation(newIDs[1:]).Draw(t, "order")
	to := graph(t, append([]string{"n0"}, rest...), newType, "new")
	opts := MigrationOptions{Removed: rapid.SampledFrom([]string{"", RemovedExit, RemovedSkipToNext, RemovedHold}).Draw(t, "policy"),
		NodeMapping: map[string]string{}}
	for _, id := range oldIDs[1:] {
		if rapid.IntRange(0, 4).Draw(t, "map") == 0 {
			opts.NodeMapping[id] = rapid.SampledFrom(newIDs).Draw(t, "target")
		}
	}
	return from, to, opts
}

// TestPropertyPlanMigration: every old node gets one place; a plan without
// problems leaves nobody without a place and sends nobody backwards;
// mapped nodes go where they are mapped and kept nodes keep their
// customers; a wait's new event type is what its customers now wait for;
// planning is deterministic.
func TestPropertyPlanMigration(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		from, to, opts := genGraphs(t)
		plan, problems := PlanMigration(from, to, opts, nil)
		again, _ := PlanMigration(from, to, opts, nil)
		if !reflect.DeepEqual(plan, again) {
			t.Fatal("two plans of the same migration differ")
		}
		if len(plan.Placements) != len(from.Nodes) {
			t.Fatalf("%d placements for %d nodes", len(plan.Placements), len(from.Nodes))
		}
		refused := map[string]bool{}
		for _, p := range problems {
			refused[p.NodeID] = true
		}
		for _, pl := range plan.Placements {
			old, _ := from.Node(pl.From)
			if refused[pl.From] {
				continue
			}
			switch pl.Action {
			case ActionStay, ActionMove, ActionSkip:
				next, ok := to.Node(pl.To)
				if !ok {
					t.Fatalf("%s placed at %q, which the new version does not have", pl.From, pl.To)
				}
				// A node kept under its id (even retyped) is where its
				// customers are; mappings and skips move them.
				_, mapped := opts.NodeMapping[pl.From]
				if (mapped || pl.Action == ActionSkip) && backwards(from, to, pl.From, pl.To) {
					t.Fatalf("%s sent backwards to %s", pl.From, pl.To)
				}
				if pl.Action == ActionStay && (pl.To != pl.From || next.Type != old.Type) {
					t.Fatalf("stay %+v", pl)
				}
				if pl.Wait != nil && pl.Wait.EventType != "" {
					var c struct {
						EventType string `json:"event_type"`
					}
					_ = json.Unmarshal(next.Config, &c)
					if c.EventType != pl.Wait.EventType {
						t.Fatalf("waits for %s, the new node for %s", pl.Wait.EventType, c.EventType)
					}
				}
			case ActionExit, ActionHold:
				if pl.To != "" {
					t.Fatalf("%+v has a place and no place", pl)
				}
			default:
				t.Fatalf("unknown action %+v", pl)
			}
			if target, ok := opts.NodeMapping[pl.From]; ok {
				if pl.To != target {
					t.Fatalf("%s mapped to %s, placed at %q", pl.From, target, pl.To)
				}
			} else if _, kept := to.Node(pl.From); kept && pl.To != pl.From {
				t.Fatalf("kept node %s placed at %q", pl.From, pl.To)
			}
		}
		// A node nobody is at never stops the plan.
		occupied := map[string]bool{}
		for _, n := range from.Nodes {
			if !refused[n.ID] {
				occupied[n.ID] = true
			}
		}
		if _, rest := PlanMigration(from, to, opts, occupied); slices.ContainsFunc(rest, func(p Problem) bool { return p.NodeID != "" }) {
			t.Fatalf("problems at unoccupied nodes: %+v", rest)
		}
	})
}

// TestPlanMigrationReorder: a node moved after a wait would run again for
// the customers waiting there, who passed it; the plan says so for them,
// and only for them.
func TestPlanMigrationReorder(t *testing.T) {
	from := chainGraph(node("in", "event_entry", ""), node("mail", "send_email", ""),
		node("w", "wait", `{"duration": "1d"}`), node("done", "journey_exit", ""))
	to := chainGraph(node("in", "event_entry", ""), node("w", "wait", `{"duration": "1d"}`),
		node("mail", "send_email", ""), node("done", "journey_exit", ""))
	_, problems := PlanMigration(from, to, MigrationOptions{}, map[string]bool{"w": true})
	if len(problems) != 1 || problems[0].Code != CodeBackwardStay || problems[0].NodeID != "w" {
		t.Fatalf("problems %+v, want backward_stay at w", problems)
	}
	if _, problems := PlanMigration(from, to, MigrationOptions{}, map[string]bool{"mail": true, "done": true}); len(problems) != 0 {
		t.Fatalf("customers before the reordered wait, or past it, are fine: %+v", problems)
	}
	if _, problems := PlanMigration(from, to, MigrationOptions{NodeMapping: map[string]string{"w": "done"}}, map[string]bool{"w": true}); len(problems) != 0 {
		t.Fatalf("mapped past the email: %+v", problems)
	}
}
