package journey

import (
	"bytes"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"slices"
)

// What becomes of the customers at a node that the new version removes
// and no mapping carries over.
const (
	RemovedExit       = "exit"
	RemovedSkipToNext = "skip_to_next"
	RemovedHold       = "hold"
)

// Actions a migration plan takes for the customers at an old node.
const (
	// ActionStay keeps them at the node of the same id.
	ActionStay = "stay"
	// ActionMove puts them at another node, which then runs for them: the
	// node mapping's target, or a node of the same id whose type changed.
	ActionMove = "move"
	// ActionSkip moves them past a removed node to the next node that the
	// new version still has.
	ActionSkip = "skip"
	ActionExit = "exit"
	ActionHold = "hold"
)

// Migration problem codes.
const (
	CodeUnknownMappingSource = "unknown_mapping_source"
	CodeUnknownMappingTarget = "unknown_mapping_target"
	CodeBackwardMapping      = "backward_mapping"
	CodeAmbiguousSkip        = "ambiguous_skip"
	CodeBackwardSkip         = "backward_skip"
	CodeBackwardStay         = "backward_stay"
	CodeInvalidRemovedPolicy = "invalid_removed_policy"
)

// MigrationOptions say how customers move from one version to the next.
type MigrationOptions struct {
	// NodeMapping sends the customers at an old node to a new node of
	// another id.
	NodeMapping map[string]string `json:"node_mapping,omitempty"`
	// Removed is what happens to customers at a removed node that no
	// mapping carries over: RemovedExit (the default), RemovedSkipToNext
	// or RemovedHold.
	Removed string `json:"removed_node_policy,omitempty"`
}

// Placement is where the customers at one old node go.
type Placement struct {
	From   string `json:"from"`
	Action string `json:"action"`
	// To is the new node they are placed at; empty when they exit or hold.
	To string `json:"to,omitempty"`
	// Wait says how a wait they stay in changed, if it did.
	Wait *WaitChange `json:"wait_change,omitempty"`
}

// WaitChange is what changed in a wait customers stay in.
type WaitChange struct {
	// EventType is the event a wait_for_event now waits for: waiting
	// customers respond to it and no longer to the old one.
	EventType string `json:"event_type,omitempty"`
	// Retimed says a wait's duration (or a wait_for_event's timeout)
	// changed: it is counted again from when the wait began.
	Retimed bool `json:"retimed,omitempty"`
	// Rescheduled says a wait_until's time changed: it is computed again.
	Rescheduled bool `json:"rescheduled,omitempty"`
	// Refiltered says a wait_for_event's filter or match changed: waiting
	// customers respond to the events the new one accepts.
	Refiltered bool `json:"refiltered,omitempty"`
}

// MigrationPlan is a Placement for every node of the old version.
type MigrationPlan struct {
	Placements []Placement `json:"placements"`
}

// Placement returns where the customers at old node id go.
func (p MigrationPlan) Placement(id string) (Placement, bool) {
	for _, pl := range p.Placements {
		if pl.From == id {
			return pl, true
		}
	}
	return Placement{}, false
}

// waitTypes are the node types customers wait at.
var waitTypes = []string{"wait", "wait_until", "wait_for_event"}

// PlanMigration plans the move of customers from graph from to graph to.
// Nobody goes backwards: customers stay where they are, so a node the new
// version inserts before them does not run for them, and a mapping may not
// send them to a node that leads to one they have passed. The problems are
// those of the nodes in occupied (where customers are now; all nodes when
// occupied is nil): a plan with problems would leave customers without a
// place, and must not run.
func PlanMigration(from, to Graph, opts MigrationOptions, occupied map[string]bool) (MigrationPlan, []Problem) {
	var problems []Problem
	matters := func(id string) bool { return occupied == nil || occupied[id] }
	removed := opts.Removed
	switch removed {
	case "":
		removed = RemovedExit
	case RemovedExit, RemovedSkipToNext, RemovedHold:
	default:
		problems = append(problems, Problem{Code: CodeInvalidRemovedPolicy, Field: "removed_node_policy",
			Message: fmt.Sprintf("removed_node_policy %q is not one of exit, skip_to_next, hold", opts.Removed)})
		removed = RemovedExit
	}
	for _, src := range sortedKeys(opts.NodeMapping) {
		if _, ok := from.Node(src); !ok {
			problems = append(problems, Problem{Code: CodeUnknownMappingSource, NodeID: src,
				Message: fmt.Sprintf("node_mapping names %s, which the old version does not have", src)})
		}
	}
	plan := MigrationPlan{Placements: make([]Placement, 0, len(from.Nodes))}
	for _, n := range from.Nodes {
		pl := Placement{From: n.ID}
		target, mapped := opts.NodeMapping[n.ID]
		if !mapped {
			target = n.ID
		}
		next, exists := to.Node(target)
		switch {
		case mapped && !exists:
			if matters(n.ID) {
				problems = append(problems, Problem{Code: CodeUnknownMappingTarget, NodeID: n.ID,
					Message: fmt.Sprintf("node_mapping sends %s to %s, which the new version does not have", n.ID, target)})
			}
			pl.Action = ActionExit
		case exists && mapped && backwards(from, to, n.ID, target):
			if matters(n.ID) {
				problems = append(problems, Problem{Code: CodeBackwardMapping, NodeID: n.ID,
					Message: fmt.Sprintf("node_mapping sends %s back to %s, which leads to nodes its customers have passed", n.ID, target)})
			}
			pl.Action, pl.To = ActionMove, target
		case exists && !mapped:
			pl.Action, pl.To = ActionMove, target
			if next.Type == n.Type {
				pl.Action, pl.Wait = ActionStay, waitChange(n, next)
			}
			if backwards(from, to, n.ID, target) && matters(n.ID) {
				problems = append(problems, Problem{Code: CodeBackwardStay, NodeID: n.ID,
					Message: fmt.Sprintf("%s now leads to nodes its customers have passed, which would run again for them: map them past those nodes", n.ID)})
			}
		case exists:
			pl.Action, pl.To = ActionMove, target
		case removed == RemovedHold:
			pl.Action = ActionHold
		case removed == RemovedSkipToNext:
			nexts := nextPresent(from, to, n.ID)
			switch len(nexts) {
			case 0:
				pl.Action = ActionExit // nothing follows: their journey is over
			case 1:
				pl.Action, pl.To = ActionSkip, nexts[0]
				if backwards(from, to, n.ID, nexts[0]) && matters(n.ID) {
					problems = append(problems, Problem{Code: CodeBackwardSkip, NodeID: n.ID,
						Message: fmt.Sprintf("%s is removed and the node after it, %s, now leads to nodes its customers have passed: map it", n.ID, nexts[0])})
				}
			default:
				pl.Action = ActionHold
				if matters(n.ID) {
					problems = append(problems, Problem{Code: CodeAmbiguousSkip, NodeID: n.ID,
						Message: fmt.Sprintf("%s is removed and its branches lead to %v in the new version: map it to one of them", n.ID, nexts)})
				}
			}
		default:
			pl.Action = ActionExit
		}
		plan.Placements = append(plan.Placements, pl)
	}
	return plan, problems
}

// nextPresent follows the old graph from id, along every branch, to the
// first nodes the new graph still has, and returns them in order.
func nextPresent(from, to Graph, id string) []string {
	var found []string
	seen := map[string]bool{id: true}
	queue := []string{id}
	for len(queue) > 0 {
		cur := queue[0]
		queue = queue[1:]
		for _, e := range from.Outgoing(cur) {
			if seen[e.Target] {
				continue
			}
			seen[e.Target] = true
			if _, ok := to.Node(e.Target); ok {
				found = append(found, e.Target)
				continue
			}
			queue = append(queue, e.Target)
		}
	}
	return found
}

// backwards says whether mapping old node id to target sends its
// customers back: to one of the nodes before id that the new version
// keeps, or to a node that leads to one of them.
func backwards(from, to Graph, id, target string) bool {
	passed := ancestors(from, id)
	if passed[target] {
		return true
	}
	for p := range passed {
		if _, ok := to.Node(p); ok && ancestors(to, p)[target] {
			return true
		}
	}
	return false
}

// ancestors are the nodes of g from which id can be reached.
func ancestors(g Graph, id string) map[string]bool {
	found := map[string]bool{}
	queue := []string{id}
	for len(queue) > 0 {
		cur := queue[0]
		queue = queue[1:]
		for _, e := range g.Edges {
			if e.Target == cur && !found[e.Source] {
				found[e.Source] = true
				queue = append(queue, e.Source)
			}
		}
	}
	return found
}

// waitChange compares a wait node across versions.
func waitChange(old, next Node) *WaitChange {
	if !slices.Contains(waitTypes, old.Type) || sameJSON(old.Config, next.Config) {
		return nil
	}
	var a, b struct {
		Duration  string          `json:"duration"`
		Timeout   string          `json:"timeout"`
		Datetime  string          `json:"datetime"`
		Time      string          `json:"time_of_day"`
		Days      json.RawMessage `json:"days_of_week"`
		Timezone  string          `json:"timezone"`
		EventType string          `json:"event_type"`
		Filter    json.RawMessage `json:"filter"`
		Match     json.RawMessage `json:"match"`
	}
	_ = json.Unmarshal(old.Config, &a)
	_ = json.Unmarshal(next.Config, &b)
	c := &WaitChange{
		Retimed:     a.Duration != b.Duration || a.Timeout != b.Timeout,
		Rescheduled: a.Datetime != b.Datetime || a.Time != b.Time || !bytes.Equal(a.Days, b.Days) || a.Timezone != b.Timezone,
	}
	if a.EventType != b.EventType {
		c.EventType = b.EventType
	}
	c.Refiltered = !sameJSON(a.Filter, b.Filter) || !sameJSON(a.Match, b.Match)
	if *c == (WaitChange{}) {
		return nil
	}
	return c
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// InRollout says whether a gradual migration at percent moves the instance
// with this id. It hashes the id, so the choice is the same on every node
// and every pass, and raising the percentage keeps everyone already moved.
func InRollout(instanceID string, percent int) bool {
	h := fnv.New64a()
	h.Write([]byte(instanceID))
	return int(h.Sum64()%100) < percent
}
