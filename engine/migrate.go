package engine

import (
	"fmt"
	"slices"
	"strings"

	"github.com/kalcifer/kalcifer/journey"
	"github.com/kalcifer/kalcifer/nodes"
)

// Migration moves instances from one version of their journey to another
// along a plan (journey.PlanMigration).
type Migration struct {
	ID          string
	FromVersion int
	ToVersion   int
	Plan        journey.MigrationPlan
}

// migrate applies m to an instance on m.FromVersion; any other instance
// (one m moved already, one on another version) is left as it is, so a
// migration asked twice of an instance moves it once. Each token goes
// where the plan puts the node it is at: it stays (its wait re-registered
// or re-timed if the wait changed), moves to a node that then runs for it,
// exits, or is held. A held token keeps its wait, so that a later
// migration to a version that has its node again (a rollback) puts it
// back, waiting as that node says from when the wait began; at a node the
// new version lacks too, it stays held.
func (r *run) migrate(m *Migration) bool {
	if m == nil || r.s.Version != m.FromVersion || m.FromVersion == m.ToVersion {
		return false
	}
	r.s.Version, r.s.Migration = m.ToVersion, m.ID
	input := map[string]any{"migration_id": m.ID, "from_version": m.FromVersion, "to_version": m.ToVersion}
	var exited []string
	held := false
	tokens := make([]Token, 0, len(r.s.Tokens))
	for _, tok := range r.s.Tokens {
		pl, ok := m.Plan.Placement(tok.NodeID)
		switch {
		case tok.Held && r.plan.nodes[tok.NodeID] != nil:
			pl = journey.Placement{From: tok.NodeID, Action: journey.ActionStay, To: tok.NodeID}
			tok.Held = false
			switch pn := r.plan.nodes[tok.NodeID]; {
			case tok.Wait == nil:
			case pn.resumer != nil:
				// The node may come back changed: wait as it now says.
				tok.Wait = r.rewait(tok.NodeID, tok.Wait)
			default:
				// It came back as a node that does not wait: it runs.
				tok.Wait = nil
			}
		case !ok || tok.Held:
			pl = journey.Placement{From: tok.NodeID, Action: journey.ActionHold}
		}
		switch pl.Action {
		case journey.ActionStay:
			if pl.Wait != nil && tok.Wait != nil {
				tok.Wait = r.rewait(pl.To, tok.Wait)
			}
		case journey.ActionMove, journey.ActionSkip:
			tok.NodeID, tok.Wait = pl.To, nil
		case journey.ActionExit:
			exited = append(exited, tok.NodeID)
		default:
			tok.Held, held = true, true
		}
		r.recordMove(tok.ID, tok.NodeID, OutcomeMigrated, input, map[string]any{"from_node": pl.From, "action": pl.Action, "to_node": pl.To})
		if pl.Action != journey.ActionExit {
			tokens = append(tokens, tok)
		}
	}
	r.s.Tokens = mergeReady(tokens)
	switch {
	case len(r.s.Tokens) == 0:
		r.end(StatusExited, fmt.Sprintf("migration %s: version %d does not have %s", m.ID, m.ToVersion, strings.Join(exited, ", ")))
	case r.s.Status == StatusPaused && held:
		r.s.PausedStatus = StatusHeld
	case r.s.Status == StatusPaused && r.s.PausedStatus == StatusHeld:
		r.s.PausedStatus = StatusRunning
	case held:
		r.s.Status = StatusHeld
	default:
		if r.s.Status == StatusHeld {
			r.s.Status = StatusRunning
		}
		r.drive()
	}
	return true
}

// rewait is a wait a token stays in, as the new version's node at id
// would have set it when the wait began: a new event type or filter, a
// duration or timeout counted from then, a date computed again. A wait the
// new node would already have ended is due now.
func (r *run) rewait(id string, old *nodes.Wait) *nodes.Wait {
	pn := r.plan.nodes[id]
	if pn == nil {
		return old
	}
	x := r.exec(pn, r.s.Visits[id])
	x.Now = old.StartedAt
	res := r.call(func() nodes.Result { return pn.executor.Execute(x) })
	switch {
	case res.Outcome == nodes.Waiting && res.Wait != nil:
		w := *res.Wait
		w.StartedAt = old.StartedAt
		if !w.Until.IsZero() && w.Until.Before(r.env.Now) {
			w.Until = r.env.Now
		}
		return &w
	case res.Outcome == nodes.Failed:
		return old
	default:
		return &nodes.Wait{Until: r.env.Now, StartedAt: old.StartedAt}
	}
}

// release sends a held instance's held tokens to node id of its version,
// which then runs for them.
func (r *run) release(id string) bool {
	if r.s.Status != StatusHeld || r.plan.nodes[id] == nil {
		return false
	}
	for i, tok := range r.s.Tokens {
		if !tok.Held {
			continue
		}
		r.s.Tokens[i] = Token{ID: tok.ID, NodeID: id}
		r.recordMove(tok.ID, id, OutcomeReleased, nil, map[string]any{"from_node": tok.NodeID, "to_node": id})
	}
	r.s.Tokens = mergeReady(r.s.Tokens)
	r.s.Status = StatusRunning
	r.drive()
	return true
}

// recordMove adds a migration or release of a token to the timeline.
func (r *run) recordMove(tokenID, nodeID, outcome string, input, output map[string]any) {
	r.s.Seq++
	rec := StepRecord{Seq: r.s.Seq, NodeID: nodeID, Version: r.s.Version, TokenID: tokenID, Outcome: outcome,
		Output: encode(output), At: r.env.Now}
	if pn := r.plan.nodes[nodeID]; pn != nil {
		rec.NodeType = pn.node.Type
	}
	if input != nil {
		rec.Input = encode(input)
	}
	r.fx.Steps = append(r.fx.Steps, rec)
}

// mergeReady merges the tokens ready at the same node into the first of
// them, which is how parallel paths join.
func mergeReady(tokens []Token) []Token {
	ready := map[string]bool{}
	return slices.DeleteFunc(tokens, func(t Token) bool {
		if t.Wait != nil || t.Held {
			return false
		}
		merged := ready[t.NodeID]
		ready[t.NodeID] = true
		return merged
	})
}
