package journey

import (
	"fmt"
	"slices"
	"strings"
)

// Problem codes returned by Validate. They are part of the API: never change one.
const (
	CodeNoEntry             = "no_entry_node"
	CodeMissingNodeID       = "missing_node_id"
	CodeDuplicateNodeID     = "duplicate_node_id"
	CodeMissingNodeType     = "missing_node_type"
	CodeUnknownNodeType     = "unknown_node_type"
	CodeMissingEdgeID       = "missing_edge_id"
	CodeDuplicateEdgeID     = "duplicate_edge_id"
	CodeDuplicateEdge       = "duplicate_edge"
	CodeUnknownSource       = "unknown_source"
	CodeUnknownTarget       = "unknown_target"
	CodeEntryHasIncoming    = "entry_has_incoming"
	CodeTerminalHasOutgoing = "terminal_has_outgoing"
	CodeUnexpectedBranch    = "unexpected_branch"
	CodeMissingBranchLabel  = "missing_branch_label"
	CodeUnknownBranch       = "unknown_branch"
	CodeMissingBranch       = "missing_branch"
	CodeCycle               = "cycle"
	CodeUnreachable         = "unreachable_node"
	CodeInvalidExitCriteria = "invalid_exit_criteria"
	CodeInvalidFrequencyCap = "invalid_frequency_cap"
	CodeInvalidReEntry      = "invalid_re_entry"
)

// Channels a journey-level frequency cap can name.
var capChannels = []string{"email", "sms", "push", "whatsapp", "webhook"}

// checkedNode is a node whose type is known and whose config is valid, so its
// branches and terminality can be trusted.
type checkedNode struct {
	entry    bool
	terminal bool
	branches []string
}

// Validate returns every problem with the graph, in a stable order: node
// problems in node order, then edge problems in edge order, then structural
// ones (branches, cycles, reachability), then journey-level settings. An
// empty result means the graph can be published.
func Validate(g Graph, c Catalog) []Problem {
	var problems []Problem
	add := func(p Problem) { problems = append(problems, p) }

	// known holds every node id seen, even of unknown type, so edges to it are
	// not reported twice; checked holds the nodes whose semantics are trusted.
	known := make(map[string]bool, len(g.Nodes))
	checked := make(map[string]checkedNode, len(g.Nodes))
	var entries []string
	for i, n := range g.Nodes {
		switch {
		case n.ID == "":
			add(Problem{Code: CodeMissingNodeID, Message: fmt.Sprintf("node #%d has no id", i+1)})
			continue
		case known[n.ID]:
			add(Problem{Code: CodeDuplicateNodeID, NodeID: n.ID, Message: fmt.Sprintf("node id %q is used more than once", n.ID)})
			continue
		}
		known[n.ID] = true
		if n.Type == "" {
			add(Problem{Code: CodeMissingNodeType, NodeID: n.ID, Message: fmt.Sprintf("node %q has no type", n.ID)})
			continue
		}
		t, ok := c.Lookup(n.Type)
		if !ok {
			add(Problem{Code: CodeUnknownNodeType, NodeID: n.ID, Message: fmt.Sprintf("node %q has unknown type %q", n.ID, n.Type)})
			continue
		}
		configProblems := t.ValidateConfig(n.Config)
		for _, p := range configProblems {
			p.NodeID = n.ID
			add(p)
		}
		entry := t.Category() == CategoryEntry
		if entry {
			entries = append(entries, n.ID)
		}
		if len(configProblems) == 0 {
			checked[n.ID] = checkedNode{entry: entry, terminal: t.Terminal(n.Config), branches: t.Branches(n.Config)}
		}
	}
	if len(entries) == 0 {
		add(Problem{Code: CodeNoEntry, Message: "the journey needs at least one entry node (event_entry, segment_entry or webhook_entry)"})
	}

	edges := validEdges(g, known, checked, add)
	problems = append(problems, missingBranches(g, checked, edges)...)
	problems = append(problems, cycles(g, edges)...)
	if len(entries) > 0 {
		problems = append(problems, unreachable(g, entries, edges)...)
	}
	problems = append(problems, settingsProblems(g)...)
	return problems
}

// validEdges reports problems with individual edges and returns the edges
// whose two ends exist, for the structural checks.
func validEdges(g Graph, known map[string]bool, checked map[string]checkedNode, add func(Problem)) []Edge {
	seenID := make(map[string]bool, len(g.Edges))
	seenLink := make(map[Edge]bool, len(g.Edges))
	var good []Edge
	for i, e := range g.Edges {
		switch {
		case e.ID == "":
			add(Problem{Code: CodeMissingEdgeID, Message: fmt.Sprintf("edge #%d (%s → %s) has no id", i+1, e.Source, e.Target)})
		case seenID[e.ID]:
			add(Problem{Code: CodeDuplicateEdgeID, EdgeID: e.ID, Message: fmt.Sprintf("edge id %q is used more than once", e.ID)})
		}
		seenID[e.ID] = true
		if !known[e.Source] {
			add(Problem{Code: CodeUnknownSource, EdgeID: e.ID, Message: fmt.Sprintf("edge %q starts at unknown node %q", e.ID, e.Source)})
		}
		if !known[e.Target] {
			add(Problem{Code: CodeUnknownTarget, EdgeID: e.ID, Message: fmt.Sprintf("edge %q ends at unknown node %q", e.ID, e.Target)})
		}
		if !known[e.Source] || !known[e.Target] {
			continue
		}
		link := Edge{Source: e.Source, Target: e.Target, Branch: e.Branch}
		if seenLink[link] {
			add(Problem{Code: CodeDuplicateEdge, EdgeID: e.ID, Message: fmt.Sprintf("edge %q repeats another edge from %q to %q", e.ID, e.Source, e.Target)})
			continue
		}
		seenLink[link] = true
		good = append(good, e)
		if target, ok := checked[e.Target]; ok && target.entry {
			add(Problem{Code: CodeEntryHasIncoming, EdgeID: e.ID, NodeID: e.Target, Message: fmt.Sprintf("edge %q leads into entry node %q; customers only enter there", e.ID, e.Target)})
		}
		source, ok := checked[e.Source]
		if !ok {
			continue
		}
		switch {
		case source.terminal:
			add(Problem{Code: CodeTerminalHasOutgoing, EdgeID: e.ID, NodeID: e.Source, Message: fmt.Sprintf("edge %q leaves %q, which ends the path, so it would never be followed", e.ID, e.Source)})
		case source.branches == nil && e.Branch != "":
			add(Problem{Code: CodeUnexpectedBranch, EdgeID: e.ID, NodeID: e.Source, Message: fmt.Sprintf("edge %q has branch %q but node %q does not branch", e.ID, e.Branch, e.Source)})
		case source.branches != nil && e.Branch == "":
			add(Problem{Code: CodeMissingBranchLabel, EdgeID: e.ID, NodeID: e.Source, Message: fmt.Sprintf("edge %q leaves branching node %q without a branch; use one of %s", e.ID, e.Source, strings.Join(source.branches, ", "))})
		case source.branches != nil && !slices.Contains(source.branches, e.Branch):
			add(Problem{Code: CodeUnknownBranch, EdgeID: e.ID, NodeID: e.Source, Message: fmt.Sprintf("edge %q has branch %q, which node %q never emits; use one of %s", e.ID, e.Branch, e.Source, strings.Join(source.branches, ", "))})
		}
	}
	return good
}

// missingBranches reports each branch key of a branching node that has no
// out-edge: a customer sent down it would have nowhere to go.
func missingBranches(g Graph, checked map[string]checkedNode, edges []Edge) []Problem {
	labelled := make(map[[2]string]bool)
	for _, e := range edges {
		labelled[[2]string{e.Source, e.Branch}] = true
	}
	var problems []Problem
	for _, n := range g.Nodes {
		cn, ok := checked[n.ID]
		if !ok || cn.terminal {
			continue
		}
		for _, b := range cn.branches {
			if !labelled[[2]string{n.ID, b}] {
				problems = append(problems, Problem{Code: CodeMissingBranch, NodeID: n.ID, Message: fmt.Sprintf("node %q has no edge for its %q branch", n.ID, b)})
			}
		}
	}
	return problems
}

// cycles reports each strongly connected component that contains a cycle,
// once, naming its nodes in graph order (Tarjan's algorithm, iterative so a
// long chain cannot exhaust the stack).
func cycles(g Graph, edges []Edge) []Problem {
	order := nodeOrder(g)
	adj := make(map[string][]string)
	selfLoop := make(map[string]bool)
	for _, e := range edges {
		adj[e.Source] = append(adj[e.Source], e.Target)
		if e.Source == e.Target {
			selfLoop[e.Source] = true
		}
	}
	index := make(map[string]int)
	low := make(map[string]int)
	onStack := make(map[string]bool)
	var stack []string
	var problems []Problem
	next := 0
	type frame struct {
		node string
		edge int
	}
	for _, n := range g.Nodes {
		root := n.ID
		if _, seen := index[root]; seen {
			continue
		}
		call := []frame{{node: root}}
		index[root], low[root] = next, next
		next++
		stack = append(stack, root)
		onStack[root] = true
		for len(call) > 0 {
			f := &call[len(call)-1]
			if f.edge < len(adj[f.node]) {
				w := adj[f.node][f.edge]
				f.edge++
				if _, seen := index[w]; !seen {
					index[w], low[w] = next, next
					next++
					stack = append(stack, w)
					onStack[w] = true
					call = append(call, frame{node: w})
				} else if onStack[w] {
					low[f.node] = min(low[f.node], index[w])
				}
				continue
			}
			v := f.node
			call = call[:len(call)-1]
			if len(call) > 0 {
				parent := call[len(call)-1].node
				low[parent] = min(low[parent], low[v])
			}
			if low[v] != index[v] {
				continue
			}
			var component []string
			for {
				w := stack[len(stack)-1]
				stack = stack[:len(stack)-1]
				onStack[w] = false
				component = append(component, w)
				if w == v {
					break
				}
			}
			if len(component) > 1 || selfLoop[v] {
				problems = append(problems, cycleProblem(component, order))
			}
		}
	}
	slices.SortFunc(problems, func(a, b Problem) int { return order[a.NodeID] - order[b.NodeID] })
	return problems
}

func cycleProblem(component []string, order map[string]int) Problem {
	slices.SortFunc(component, func(a, b string) int { return order[a] - order[b] })
	msg := fmt.Sprintf("node %q leads back to itself", component[0])
	if len(component) > 1 {
		msg = fmt.Sprintf("nodes %s form a cycle; journeys must not loop", strings.Join(quoteAll(component), ", "))
	}
	return Problem{Code: CodeCycle, NodeID: component[0], Message: msg}
}

// unreachable reports nodes that no path from an entry reaches.
func unreachable(g Graph, entries []string, edges []Edge) []Problem {
	adj := make(map[string][]string)
	for _, e := range edges {
		adj[e.Source] = append(adj[e.Source], e.Target)
	}
	reached := make(map[string]bool)
	queue := slices.Clone(entries)
	for _, id := range entries {
		reached[id] = true
	}
	for len(queue) > 0 {
		id := queue[0]
		queue = queue[1:]
		for _, next := range adj[id] {
			if !reached[next] {
				reached[next] = true
				queue = append(queue, next)
			}
		}
	}
	var problems []Problem
	seen := make(map[string]bool)
	for _, n := range g.Nodes {
		if n.ID == "" || seen[n.ID] || reached[n.ID] {
			continue
		}
		seen[n.ID] = true
		problems = append(problems, Problem{Code: CodeUnreachable, NodeID: n.ID, Message: fmt.Sprintf("node %q cannot be reached from any entry node", n.ID)})
	}
	return problems
}

func settingsProblems(g Graph) []Problem {
	var problems []Problem
	if g.ExitCriteria != nil && g.ExitCriteria.EventType == "" {
		problems = append(problems, Problem{Code: CodeInvalidExitCriteria, Field: "/exit_criteria/event_type", Message: "exit_criteria needs an event_type"})
	}
	channels := make([]string, 0, len(g.FrequencyCap))
	for ch := range g.FrequencyCap {
		channels = append(channels, ch)
	}
	slices.Sort(channels)
	for _, ch := range channels {
		field := "/frequency_cap/" + ch
		capRule := g.FrequencyCap[ch]
		if !slices.Contains(capChannels, ch) {
			problems = append(problems, Problem{Code: CodeInvalidFrequencyCap, Field: field, Message: fmt.Sprintf("frequency_cap names unknown channel %q; use one of %s", ch, strings.Join(capChannels, ", "))})
			continue
		}
		if capRule.Max < 1 {
			problems = append(problems, Problem{Code: CodeInvalidFrequencyCap, Field: field + "/max", Message: fmt.Sprintf("frequency_cap for %s needs max of at least 1", ch)})
		}
		if d, err := ParseDuration(capRule.Window); err != nil || d == 0 {
			problems = append(problems, Problem{Code: CodeInvalidFrequencyCap, Field: field + "/window", Message: fmt.Sprintf("frequency_cap for %s needs a window such as 1d: %q is not a positive duration", ch, capRule.Window)})
		}
	}
	switch g.ReEntry {
	case "", ReEntryNever, ReEntryAfterExit, ReEntryAlways:
	default:
		problems = append(problems, Problem{Code: CodeInvalidReEntry, Field: "/re_entry", Message: fmt.Sprintf("re_entry %q is not one of never, after_exit, always", g.ReEntry)})
	}
	return problems
}

// nodeOrder maps each node id to its first position in the graph.
func nodeOrder(g Graph) map[string]int {
	order := make(map[string]int, len(g.Nodes))
	for i, n := range g.Nodes {
		if _, dup := order[n.ID]; !dup {
			order[n.ID] = i
		}
	}
	return order
}

func quoteAll(ids []string) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = fmt.Sprintf("%q", id)
	}
	return out
}
