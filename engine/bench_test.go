package engine

import (
	"fmt"
	"testing"

	"github.com/kalcifer/kalcifer/journey"
	"github.com/kalcifer/kalcifer/nodes"
)

// BenchmarkStepLogicChain runs a chain of 10 logic and data nodes in one
// Step, the in-memory path between two commits; ns/node is the figure to
// hold against the 10 ms p99 target for a logic node.
func BenchmarkStepLogicChain(b *testing.B) {
	const length = 10
	g := journey.Graph{Nodes: []journey.Node{entry()}}
	prev := "entry"
	for i := range length {
		id := fmt.Sprintf("n%d", i)
		if i%2 == 0 {
			g.Nodes = append(g.Nodes, nd(id, "condition", `{"expression":"profile.plan == \"pro\" || context.entry.properties.amount > 10"}`))
		} else {
			g.Nodes = append(g.Nodes, nd(id, "update_profile", fmt.Sprintf(`{"fields":{"step_%d":true}}`, i)))
		}
		if prevNode, _ := g.Node(prev); prevNode.Type == "condition" {
			g.Edges = append(g.Edges, ed(prev, id, "true"), ed(prev, id, "false"))
		} else {
			g.Edges = append(g.Edges, ed(prev, id))
		}
		prev = id
	}
	p := compile(b, g)
	env := Env{Plan: p, Now: t0, Customer: nodes.Customer{ID: "c1", Properties: map[string]any{"plan": "pro", "age": 30.0}, Tags: []string{"a"}}}
	start := Trigger{Kind: TriggerStart, Event: event("e1", "signed_up", map[string]any{"amount": 20.0})}
	s := NewState("i1", "tn", "j1", 1, "c1", "k", t0)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if next, _ := Step(s, start, env); next.Status != StatusCompleted {
			b.Fatalf("status %s: %s", next.Status, next.Error)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/(length+1), "ns/node")
}
