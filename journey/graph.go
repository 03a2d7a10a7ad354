// Package journey holds the journey graph model and everything that can be
// decided from graphs alone: validation, diffs, the lifecycle state machine.
// It performs no I/O; node-type knowledge comes in through the Catalog
// interface so that this package never imports the node implementations.
package journey

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// Graph is a journey definition as drawn in the editor (SPEC §1).
type Graph struct {
	Nodes        []Node                  `json:"nodes"`
	Edges        []Edge                  `json:"edges"`
	ExitCriteria *ExitCriteria           `json:"exit_criteria,omitempty"`
	FrequencyCap map[string]FrequencyCap `json:"frequency_cap,omitempty"`
	// ReEntry is one of ReEntryNever, ReEntryAfterExit, ReEntryAlways; empty means never.
	ReEntry string `json:"re_entry,omitempty"`
}

// Node is one step of a journey.
type Node struct {
	ID       string          `json:"id"`
	Type     string          `json:"type"`
	Name     string          `json:"name,omitempty"`
	Position *Position       `json:"position,omitempty"`
	Config   json.RawMessage `json:"config,omitempty"`
}

// Position is where the editor draws a node; it has no effect on execution.
type Position struct {
	X float64 `json:"x"`
	Y float64 `json:"y"`
}

// Edge connects two nodes. Branch is empty for an unlabelled edge, which is
// followed whenever its source completes.
type Edge struct {
	ID     string `json:"id"`
	Source string `json:"source"`
	Target string `json:"target"`
	Branch string `json:"branch,omitempty"`
}

// ExitCriteria ends a customer's instance as soon as a matching event arrives.
type ExitCriteria struct {
	EventType string         `json:"event_type"`
	Filter    map[string]any `json:"filter,omitempty"`
}

// FrequencyCap limits sends on one channel across all journeys of a tenant.
type FrequencyCap struct {
	Max    int    `json:"max"`
	Window string `json:"window"`
}

// Re-entry policies.
const (
	ReEntryNever     = "never"
	ReEntryAfterExit = "after_exit"
	ReEntryAlways    = "always"
)

// Decode parses a graph strictly: unknown fields and trailing data are errors,
// so a typo in the editor or an API client never silently drops a setting.
func Decode(data []byte) (Graph, error) {
	var g Graph
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&g); err != nil {
		return Graph{}, fmt.Errorf("decode graph: %w", err)
	}
	if dec.More() {
		return Graph{}, fmt.Errorf("decode graph: unexpected data after the graph object")
	}
	return g, nil
}

// Node returns the node with the given id.
func (g Graph) Node(id string) (Node, bool) {
	for _, n := range g.Nodes {
		if n.ID == id {
			return n, true
		}
	}
	return Node{}, false
}

// Outgoing returns the edges leaving the node with the given id, in graph order.
func (g Graph) Outgoing(id string) []Edge {
	var out []Edge
	for _, e := range g.Edges {
		if e.Source == id {
			out = append(out, e)
		}
	}
	return out
}
