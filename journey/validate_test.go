package journey_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"pgregory.net/rapid"

	"github.com/kalcifer/kalcifer/journey"
	"github.com/kalcifer/kalcifer/nodes"
)

var catalog = nodes.Default()

func node(id, typ, config string) journey.Node {
	return journey.Node{ID: id, Type: typ, Config: json.RawMessage(config)}
}

func edge(id, source, target, branch string) journey.Edge {
	return journey.Edge{ID: id, Source: source, Target: target, Branch: branch}
}

// codes renders problems as "code@node/edge" so a failing assertion shows them all.
func codes(problems []journey.Problem) []string {
	out := make([]string, 0, len(problems))
	for _, p := range problems {
		out = append(out, p.Code+"@"+p.NodeID+p.EdgeID)
	}
	return out
}

func hasProblem(problems []journey.Problem, code, nodeID string) bool {
	return slices.ContainsFunc(problems, func(p journey.Problem) bool { return p.Code == code && p.NodeID == nodeID })
}

func specExample() journey.Graph {
	return journey.Graph{
		Nodes: []journey.Node{
			node("entry_1", "event_entry", `{"event_type":"signed_up","filter":{"plan":"premium"}}`),
			node("email_1", "send_email", `{"template_id":"welcome"}`),
			node("wait_1", "wait_for_event", `{"event_type":"email_opened","timeout":"3d"}`),
			node("goal_1", "goal_reached", `{"goal_name":"activated"}`),
			node("exit_1", "journey_exit", `{}`),
		},
		Edges: []journey.Edge{
			edge("e1", "entry_1", "email_1", ""),
			edge("e2", "email_1", "wait_1", ""),
			edge("e3", "wait_1", "goal_1", "event_received"),
			edge("e4", "wait_1", "exit_1", "timed_out"),
		},
		ExitCriteria: &journey.ExitCriteria{EventType: "unsubscribed"},
		FrequencyCap: map[string]journey.FrequencyCap{"email": {Max: 2, Window: "1d"}},
	}
}

func TestValidateSpecExample(t *testing.T) {
	if problems := journey.Validate(specExample(), catalog); len(problems) != 0 {
		t.Fatalf("the SPEC §1 example should be valid, got %v", codes(problems))
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	g := journey.Graph{
		Nodes: []journey.Node{
			node("entry", "event_entry", `{"event_type":"signed_up"}`),
			node("cond", "condition", `{"expression":"profile.plan == \"pro\""}`),
			node("a", "wait", `{"duration":"1d"}`),
			node("b", "wait", `{"duration":"1d"}`),
			node("orphan", "send_sms", `{"body":"hi"}`),
			node("mystery", "teleport", `{}`),
			node("bad", "wait", `{"duration":"soon"}`),
			node("a", "wait", `{"duration":"1d"}`),
			node("end", "journey_exit", `{}`),
		},
		Edges: []journey.Edge{
			edge("e1", "entry", "cond", ""),
			edge("e2", "cond", "a", "true"),
			edge("e3", "a", "b", ""),
			edge("e4", "b", "a", ""),
			edge("e5", "cond", "bad", "maybe"),
			edge("e6", "entry", "nowhere", ""),
			edge("e7", "entry", "mystery", ""),
			edge("e8", "end", "b", ""),
			edge("e1", "entry", "end", ""),
			edge("e9", "a", "entry", ""),
		},
		ReEntry:      "sometimes",
		ExitCriteria: &journey.ExitCriteria{},
		FrequencyCap: map[string]journey.FrequencyCap{"fax": {Max: 1, Window: "1d"}, "sms": {Max: 0, Window: "x"}},
	}
	problems := journey.Validate(g, catalog)
	want := []struct{ code, node, edge string }{
		{journey.CodeUnknownNodeType, "mystery", ""},
		{"invalid_config", "bad", ""},
		{journey.CodeDuplicateNodeID, "a", ""},
		{journey.CodeUnknownBranch, "cond", "e5"},
		{journey.CodeUnknownTarget, "", "e6"},
		{journey.CodeTerminalHasOutgoing, "end", "e8"},
		{journey.CodeDuplicateEdgeID, "", "e1"},
		{journey.CodeEntryHasIncoming, "entry", "e9"},
		{journey.CodeMissingBranch, "cond", ""},
		{journey.CodeCycle, "entry", ""},
		{journey.CodeUnreachable, "orphan", ""},
		{journey.CodeInvalidExitCriteria, "", ""},
		{journey.CodeInvalidFrequencyCap, "", ""},
		{journey.CodeInvalidReEntry, "", ""},
	}
	for _, w := range want {
		found := slices.ContainsFunc(problems, func(p journey.Problem) bool {
			return p.Code == w.code && p.NodeID == w.node && p.EdgeID == w.edge
		})
		if !found {
			t.Errorf("missing %s at node %q edge %q in %v", w.code, w.node, w.edge, codes(problems))
		}
	}
	for _, p := range problems {
		if p.Code == "" || p.Message == "" {
			t.Errorf("problem without code or message: %+v", p)
		}
	}
	capProblems := 0
	for _, p := range problems {
		if p.Code == journey.CodeInvalidFrequencyCap {
			capProblems++
		}
	}
	if capProblems != 3 {
		t.Errorf("want 3 frequency cap problems (unknown channel, max, window), got %d", capProblems)
	}
}

func TestValidateEdgeLabels(t *testing.T) {
	base := func(edges ...journey.Edge) journey.Graph {
		return journey.Graph{
			Nodes: []journey.Node{
				node("entry", "event_entry", `{"event_type":"x"}`),
				node("cond", "condition", `{"expression":"true"}`),
				node("w", "wait", `{"duration":"1h"}`),
				node("x", "journey_exit", `{}`),
			},
			Edges: append([]journey.Edge{edge("e0", "entry", "cond", "")}, edges...),
		}
	}
	cases := []struct {
		name  string
		graph journey.Graph
		code  string
	}{
		{"unlabelled edge from a branching node", base(edge("e1", "cond", "w", ""), edge("e2", "cond", "x", "false"), edge("e3", "cond", "w", "true")), journey.CodeMissingBranchLabel},
		{"label on a node that does not branch", base(edge("e1", "cond", "w", "true"), edge("e2", "cond", "x", "false"), edge("e3", "w", "x", "true")), journey.CodeUnexpectedBranch},
		{"the same link twice", base(edge("e1", "cond", "w", "true"), edge("e2", "cond", "x", "false"), edge("e3", "cond", "x", "false")), journey.CodeDuplicateEdge},
		{"self loop", base(edge("e1", "cond", "w", "true"), edge("e2", "cond", "x", "false"), edge("e3", "w", "w", "")), journey.CodeCycle},
		{"no entry", journey.Graph{Nodes: []journey.Node{node("w", "wait", `{"duration":"1h"}`)}}, journey.CodeNoEntry},
		{"empty graph", journey.Graph{}, journey.CodeNoEntry},
		{"node without id", journey.Graph{Nodes: []journey.Node{node("", "wait", `{}`)}}, journey.CodeMissingNodeID},
		{"node without type", journey.Graph{Nodes: []journey.Node{node("n", "", `{}`)}}, journey.CodeMissingNodeType},
		{"edge without id", base(edge("", "cond", "w", "true")), journey.CodeMissingEdgeID},
		{"edge from nowhere", base(edge("e1", "ghost", "w", "")), journey.CodeUnknownSource},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			problems := journey.Validate(tc.graph, catalog)
			if !slices.ContainsFunc(problems, func(p journey.Problem) bool { return p.Code == tc.code }) {
				t.Fatalf("want %s in %v", tc.code, codes(problems))
			}
		})
	}
}

func TestValidateWaitForEventCustomBranches(t *testing.T) {
	g := journey.Graph{
		Nodes: []journey.Node{
			node("entry", "event_entry", `{"event_type":"signed_up"}`),
			node("wait", "wait_for_event", `{"event_type":"paid","timeout":"2d","branches":{"event_received":"paid","timed_out":"gave_up"}}`),
			node("a", "journey_exit", `{}`),
			node("b", "journey_exit", `{}`),
		},
		Edges: []journey.Edge{
			edge("e1", "entry", "wait", ""),
			edge("e2", "wait", "a", "paid"),
			edge("e3", "wait", "b", "gave_up"),
		},
	}
	if problems := journey.Validate(g, catalog); len(problems) != 0 {
		t.Fatalf("custom branch names should be honoured, got %v", codes(problems))
	}
	g.Edges[2].Branch = "timed_out"
	problems := journey.Validate(g, catalog)
	if !hasProblem(problems, journey.CodeMissingBranch, "wait") || !slices.ContainsFunc(problems, func(p journey.Problem) bool { return p.Code == journey.CodeUnknownBranch && p.EdgeID == "e3" }) {
		t.Fatalf("the default name must not stand in for a custom one: %v", codes(problems))
	}
}

func TestValidateLongChainDoesNotRecurse(t *testing.T) {
	const n = 30_000
	g := journey.Graph{Nodes: []journey.Node{node("n0", "event_entry", `{"event_type":"x"}`)}}
	for i := 1; i < n; i++ {
		g.Nodes = append(g.Nodes, node(fmt.Sprintf("n%d", i), "wait", `{"duration":"1s"}`))
		g.Edges = append(g.Edges, edge(fmt.Sprintf("e%d", i), fmt.Sprintf("n%d", i-1), fmt.Sprintf("n%d", i), ""))
	}
	g.Edges = append(g.Edges, edge("back", fmt.Sprintf("n%d", n-1), "n1", ""))
	problems := journey.Validate(g, catalog)
	if len(problems) != 1 || problems[0].Code != journey.CodeCycle || problems[0].NodeID != "n1" {
		t.Fatalf("want exactly one cycle at n1, got %d problems, first %v", len(problems), codes(problems[:min(len(problems), 3)]))
	}
}

// randomGraph draws a valid journey: a DAG whose edges all point forward in
// node order, every node hanging off an earlier non-terminal node, every
// condition given both branches.
func randomGraph(t *rapid.T) journey.Graph {
	kinds := []struct{ typ, config string }{
		{"wait", `{"duration":"1d"}`},
		{"send_email", `{"template_id":"welcome"}`},
		{"condition", `{"expression":"profile.plan == \"pro\""}`},
		{"update_profile", `{"fields":{"seen":true}}`},
		{"journey_exit", `{}`},
	}
	n := rapid.IntRange(1, 30).Draw(t, "nodes")
	g := journey.Graph{Nodes: []journey.Node{node("n0", "event_entry", `{"event_type":"signed_up"}`)}}
	entries := rapid.IntRange(0, 2).Draw(t, "extra_entries")
	for i := 0; i < entries; i++ {
		g.Nodes = append(g.Nodes, node(fmt.Sprintf("n%d", len(g.Nodes)), "webhook_entry", `{}`))
	}
	for len(g.Nodes) < n+entries {
		k := kinds[rapid.IntRange(0, len(kinds)-1).Draw(t, "kind")]
		g.Nodes = append(g.Nodes, node(fmt.Sprintf("n%d", len(g.Nodes)), k.typ, k.config))
	}
	links := map[[3]string]bool{}
	addEdge := func(source, target int, branch string) {
		key := [3]string{g.Nodes[source].ID, g.Nodes[target].ID, branch}
		if links[key] {
			return
		}
		links[key] = true
		g.Edges = append(g.Edges, edge(fmt.Sprintf("e%d", len(g.Edges)), key[0], key[1], branch))
	}
	branchFor := func(source int) string {
		if g.Nodes[source].Type == "condition" {
			return rapid.SampledFrom([]string{"true", "false"}).Draw(t, "branch")
		}
		return ""
	}
	open := func(i int) bool { return g.Nodes[i].Type != "journey_exit" }
	for i := 1 + entries; i < len(g.Nodes); i++ {
		var parents []int
		for p := 0; p < i; p++ {
			if open(p) {
				parents = append(parents, p)
			}
		}
		parent := rapid.SampledFrom(parents).Draw(t, "parent")
		addEdge(parent, i, branchFor(parent))
		for _, p := range parents {
			if rapid.IntRange(0, 9).Draw(t, "extra_edge") == 0 {
				addEdge(p, i, branchFor(p))
			}
		}
	}
	for i := 1; i <= entries && len(g.Nodes) > 1+entries; i++ {
		addEdge(i, rapid.IntRange(1+entries, len(g.Nodes)-1).Draw(t, "entry_target"), "")
	}
	for i, nd := range g.Nodes {
		if nd.Type != "condition" {
			continue
		}
		for _, b := range []string{"true", "false"} {
			if !slices.ContainsFunc(g.Edges, func(e journey.Edge) bool { return e.Source == nd.ID && e.Branch == b }) {
				g.Nodes = append(g.Nodes, node(fmt.Sprintf("n%d", len(g.Nodes)), "journey_exit", `{}`))
				addEdge(i, len(g.Nodes)-1, b)
			}
		}
	}
	return g
}

func TestPropertyRandomDAGsAreValid(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		g := randomGraph(t)
		if problems := journey.Validate(g, catalog); len(problems) != 0 {
			t.Fatalf("valid DAG reported %v", codes(problems))
		}
	})
}

func TestPropertyValidationIgnoresOrder(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		g := randomGraph(t)
		g.ExitCriteria = &journey.ExitCriteria{EventType: "unsubscribed"}
		shuffled := g
		shuffled.Nodes = rapid.Permutation(g.Nodes).Draw(t, "nodes")
		shuffled.Edges = rapid.Permutation(g.Edges).Draw(t, "edges")
		if problems := journey.Validate(shuffled, catalog); len(problems) != 0 {
			t.Fatalf("reordering a valid graph made it invalid: %v", codes(problems))
		}
		if d := journey.Diff(g, shuffled); !d.Empty() {
			t.Fatalf("reordering is not a change: %+v", d)
		}
	})
}

func TestPropertyInjectedCycleIsReported(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		g := randomGraph(t)
		if len(g.Edges) == 0 {
			t.Skip("a single entry has no edge to turn back")
		}
		e := rapid.SampledFrom(g.Edges).Draw(t, "edge")
		back := edge("back", e.Target, e.Source, "")
		if target, _ := g.Node(e.Target); target.Type == "condition" {
			back.Branch = "true"
		}
		g.Edges = append(g.Edges, back)
		problems := journey.Validate(g, catalog)
		if !hasProblem(problems, journey.CodeCycle, e.Source) {
			t.Fatalf("cycle through %s and %s not reported: %v", e.Source, e.Target, codes(problems))
		}
	})
}

func TestPropertyInjectedOrphanIsReported(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		g := randomGraph(t)
		g.Nodes = append(g.Nodes, node("orphan", "wait", `{"duration":"1h"}`))
		var targets []string
		for _, n := range g.Nodes[:len(g.Nodes)-1] {
			if n.Type != "event_entry" && n.Type != "webhook_entry" {
				targets = append(targets, n.ID)
			}
		}
		if len(targets) > 0 {
			picked := rapid.SliceOfNDistinct(rapid.SampledFrom(targets), 0, 3, rapid.ID[string]).Draw(t, "orphan_targets")
			for i, target := range picked {
				g.Edges = append(g.Edges, edge(fmt.Sprintf("o%d", i), "orphan", target, ""))
			}
		}
		problems := journey.Validate(g, catalog)
		if !hasProblem(problems, journey.CodeUnreachable, "orphan") {
			t.Fatalf("orphan not reported: %v", codes(problems))
		}
		for _, p := range problems {
			if p.Code != journey.CodeUnreachable {
				t.Fatalf("only the orphan is wrong, got %v", codes(problems))
			}
		}
	})
}

func TestPropertyMissingBranchIsReported(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		g := randomGraph(t)
		var conditions []string
		for _, n := range g.Nodes {
			if n.Type == "condition" {
				conditions = append(conditions, n.ID)
			}
		}
		if len(conditions) == 0 {
			t.Skip("no branching node drawn")
		}
		id := rapid.SampledFrom(conditions).Draw(t, "condition")
		branch := rapid.SampledFrom([]string{"true", "false"}).Draw(t, "branch")
		g.Edges = slices.DeleteFunc(g.Edges, func(e journey.Edge) bool { return e.Source == id && e.Branch == branch })
		problems := journey.Validate(g, catalog)
		if !slices.ContainsFunc(problems, func(p journey.Problem) bool {
			return p.Code == journey.CodeMissingBranch && p.NodeID == id && strings.Contains(p.Message, branch)
		}) {
			t.Fatalf("missing %s branch of %s not reported: %v", branch, id, codes(problems))
		}
	})
}

func FuzzDecodeValidate(f *testing.F) {
	seed, _ := json.Marshal(specExample())
	f.Add(seed)
	f.Add([]byte(`{"nodes":[{"id":"a","type":"condition","config":{"expression":"(("}}],"edges":[{"id":"e","source":"a","target":"a","branch":"true"}]}`))
	f.Add([]byte(`{"nodes":null,"edges":[{}],"frequency_cap":{"":{"max":-1}}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		g, err := journey.Decode(data)
		if err != nil {
			return
		}
		for _, p := range journey.Validate(g, catalog) {
			if p.Code == "" || p.Message == "" {
				t.Fatalf("problem without code or message: %+v", p)
			}
		}
		journey.Diff(g, specExample())
	})
}

func BenchmarkValidate100Nodes(b *testing.B) {
	g := journey.Graph{Nodes: []journey.Node{node("n0", "event_entry", `{"event_type":"signed_up"}`)}}
	for i := 1; i < 100; i++ {
		g.Nodes = append(g.Nodes, node(fmt.Sprintf("n%d", i), "send_email", `{"template_id":"welcome"}`))
		g.Edges = append(g.Edges, edge(fmt.Sprintf("e%d", i), fmt.Sprintf("n%d", i-1), fmt.Sprintf("n%d", i), ""))
	}
	for b.Loop() {
		if problems := journey.Validate(g, catalog); len(problems) != 0 {
			b.Fatal(codes(problems))
		}
	}
}
