// Package engine is the instance state machine: Step takes an instance's
// state, one trigger and the outside world it may read (clock, customer,
// send counts) and returns the next state with the effects to commit. It is
// pure and deterministic so that the actor layer can persist state and
// effects in one transaction and replay any step in tests.
package engine

import (
	"errors"
	"fmt"
	"time"

	"github.com/kalcifer/kalcifer/journey"
	"github.com/kalcifer/kalcifer/nodes"
)

// Plan is a published graph compiled for execution. It is immutable and
// shared by every instance of the version.
type Plan struct {
	graph   journey.Graph
	nodes   map[string]*planNode
	entries []string
	caps    map[string]channelCap
}

type planNode struct {
	node     journey.Node
	executor nodes.Executor
	resumer  nodes.Resumer
	// next maps a branch key ("" for unlabelled edges) to targets in edge order.
	next map[string][]string
	// rank is the node's place in a topological order: ready tokens run
	// lowest rank first so that parallel paths meet at a join together.
	rank int
}

type channelCap struct {
	max    int
	window time.Duration
}

// Compile checks the graph as publishing does and prepares it for Step.
func Compile(g journey.Graph, r *nodes.Registry) (*Plan, error) {
	if problems := journey.Validate(g, r); len(problems) > 0 {
		errs := make([]error, len(problems))
		for i, p := range problems {
			errs[i] = fmt.Errorf("%s%s: %s", p.NodeID, p.EdgeID, p.Message)
		}
		return nil, fmt.Errorf("compile journey: %w", errors.Join(errs...))
	}
	p := &Plan{graph: g, nodes: make(map[string]*planNode, len(g.Nodes)), caps: map[string]channelCap{}}
	for _, n := range g.Nodes {
		t, _ := r.Get(n.Type)
		ex, ok := t.(nodes.Executor)
		if !ok {
			return nil, fmt.Errorf("compile journey: node type %s cannot be executed", n.Type)
		}
		res, _ := t.(nodes.Resumer)
		p.nodes[n.ID] = &planNode{node: n, executor: ex, resumer: res, next: map[string][]string{}}
		if t.Category() == journey.CategoryEntry {
			p.entries = append(p.entries, n.ID)
		}
	}
	for _, e := range g.Edges {
		src := p.nodes[e.Source]
		src.next[e.Branch] = append(src.next[e.Branch], e.Target)
	}
	p.rankNodes()
	for ch, c := range g.FrequencyCap {
		window, _ := journey.ParseDuration(c.Window)
		p.caps[ch] = channelCap{max: c.Max, window: window}
	}
	return p, nil
}

// rankNodes numbers the nodes in topological order (Kahn's algorithm, ties
// in graph order); validation has ruled out cycles.
func (p *Plan) rankNodes() {
	indegree := map[string]int{}
	for _, e := range p.graph.Edges {
		indegree[e.Target]++
	}
	var queue []string
	for _, n := range p.graph.Nodes {
		if indegree[n.ID] == 0 {
			queue = append(queue, n.ID)
		}
	}
	for rank := 0; len(queue) > 0; rank++ {
		id := queue[0]
		queue = queue[1:]
		pn := p.nodes[id]
		pn.rank = rank
		for _, e := range p.graph.Outgoing(id) {
			if indegree[e.Target]--; indegree[e.Target] == 0 {
				queue = append(queue, e.Target)
			}
		}
	}
}

// Graph is the published graph the plan runs.
func (p *Plan) Graph() journey.Graph { return p.graph }
