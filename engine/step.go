package engine

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/kalcifer/kalcifer/nodes"
)

// Step applies one trigger to an instance and runs it, node after node in
// memory, until every token waits or ends (or MaxSteps nodes ran). It never
// changes s; a trigger that does not apply returns s with Changed false.
func Step(s State, t Trigger, env Env) (State, Effects) {
	if Terminal(s.Status) || env.Plan == nil {
		return s, Effects{}
	}
	r := newRun(s, env)
	if !r.apply(t) {
		return s, Effects{}
	}
	r.finish()
	return r.s, r.fx
}

// run is one Step in progress.
type run struct {
	s        State
	env      Env
	plan     *Plan
	customer nodes.Customer
	// event is what Exec.Event shows: the event of this trigger, if any.
	event    *nodes.Event
	fx       Effects
	executed int
	maxSteps int
}

func newRun(s State, env Env) *run {
	r := &run{s: s.clone(), env: env, plan: env.Plan, customer: env.Customer.Clone(), maxSteps: env.MaxSteps}
	if r.customer.ID == "" {
		r.customer.ID = s.CustomerID
	}
	if r.maxSteps <= 0 {
		r.maxSteps = defaultMaxSteps
	}
	return r
}

// apply handles the trigger and reports whether it changed anything.
func (r *run) apply(t Trigger) bool {
	switch t.Kind {
	case TriggerStart:
		return r.start(t)
	case TriggerContinue:
		if r.s.Status != StatusRunning || r.nextReady() < 0 {
			return false
		}
	case TriggerTimer:
		return r.timer(t.TokenID)
	case TriggerEvent:
		return r.onEvent(t.Event)
	case TriggerPause:
		if r.s.Status == StatusPaused {
			return false
		}
		r.s.PausedStatus, r.s.Status = r.s.Status, StatusPaused
		return true
	case TriggerResume:
		if r.s.Status != StatusPaused {
			return false
		}
		r.s.Status, r.s.PausedStatus = r.s.PausedStatus, ""
	case TriggerMigrate:
		return r.migrate(t.Migration)
	case TriggerRelease:
		return r.release(t.NodeID)
	case TriggerCancel:
		reason := "cancelled"
		if t.Reason != "" {
			reason += ": " + t.Reason
		}
		r.end(StatusExited, reason)
		return true
	default:
		return false
	}
	r.drive()
	return true
}

func (r *run) start(t Trigger) bool {
	if r.s.NextToken > 0 {
		return false
	}
	entry := t.EntryNodeID
	if entry == "" && len(r.plan.entries) > 0 {
		entry = r.plan.entries[0]
	}
	if !slices.Contains(r.plan.entries, entry) {
		r.fail(entry, "not an entry node of this journey version")
		return true
	}
	if t.Event != nil {
		r.event = t.Event
		r.s.Context["entry"] = eventContext(t.Event)
		// The entry event must not also resume a wait further on.
		r.markSeen(t.Event.ID)
	}
	if t.Data != nil {
		r.s.Context["trigger"] = t.Data
	}
	r.s.Tokens = append(r.s.Tokens, Token{ID: r.newTokenID(), NodeID: entry})
	r.drive()
	return true
}

// eventContext is the entry event as plain JSON values, so that expressions
// read it the same before and after the snapshot's JSON round trip.
func eventContext(e *nodes.Event) map[string]any {
	return map[string]any{
		"id": e.ID, "type": e.Type, "properties": e.Properties,
		"timestamp": e.Timestamp.UTC().Format(time.RFC3339Nano),
	}
}

// timer fires a token's timer if it is still waiting on one that is due: a
// timer whose wait was already resolved by an event finds nothing to do.
func (r *run) timer(tokenID string) bool {
	if r.halted() {
		return false
	}
	i := slices.IndexFunc(r.s.Tokens, func(t Token) bool { return t.ID == tokenID })
	if i < 0 {
		return false
	}
	w := r.s.Tokens[i].Wait
	if w == nil || w.Until.IsZero() || w.Until.After(r.env.Now) {
		return false
	}
	r.resume(i, nodes.Resume{}, map[string]any{"timer": w.Until})
	r.drive()
	return true
}

func (r *run) onEvent(e *nodes.Event) bool {
	if e == nil || (e.ID != "" && slices.Contains(r.s.SeenEvents, e.ID)) {
		return false
	}
	// Exit criteria apply even to a paused instance: a customer who
	// unsubscribed must not be messaged when the journey resumes.
	if ec := r.plan.graph.ExitCriteria; ec != nil && ec.EventType == e.Type && nodes.MatchProperties(e.Properties, ec.Filter) {
		r.markSeen(e.ID)
		r.end(StatusExited, "exit criteria: "+e.Type)
		return true
	}
	if r.halted() {
		return false
	}
	var matched []string
	for _, t := range r.s.Tokens {
		if t.Wait != nil && t.Wait.Accepts(e) {
			matched = append(matched, t.ID)
		}
	}
	if len(matched) == 0 {
		return false
	}
	r.markSeen(e.ID)
	r.event = e
	input := map[string]any{"event_type": e.Type, "event_id": e.ID}
	for _, id := range matched {
		if Terminal(r.s.Status) {
			break
		}
		if i := slices.IndexFunc(r.s.Tokens, func(t Token) bool { return t.ID == id }); i >= 0 {
			r.resume(i, nodes.Resume{Event: e}, input)
		}
	}
	r.drive()
	return true
}

func (r *run) markSeen(id string) {
	if id == "" {
		return
	}
	r.s.SeenEvents = append(r.s.SeenEvents, id)
	if n := len(r.s.SeenEvents); n > seenEventsKept {
		r.s.SeenEvents = slices.Clone(r.s.SeenEvents[n-seenEventsKept:])
	}
}

// halted says the instance runs nothing for now: it is paused or held.
func (r *run) halted() bool { return r.s.Status == StatusPaused || r.s.Status == StatusHeld }

// drive runs ready tokens until none is left, the instance is over or
// paused, or MaxSteps nodes ran (the status then stays running).
func (r *run) drive() {
	for !r.halted() && !Terminal(r.s.Status) && r.executed < r.maxSteps {
		i := r.nextReady()
		if i < 0 {
			return
		}
		r.executed++
		r.execute(i)
	}
}

// nextReady picks the ready token earliest in topological order, so that
// tokens on parallel paths reach a join before it runs and merge there.
func (r *run) nextReady() int {
	best, bestRank := -1, 0
	for i, t := range r.s.Tokens {
		if t.Wait != nil || t.Held {
			continue
		}
		rank := -1
		if pn := r.plan.nodes[t.NodeID]; pn != nil {
			rank = pn.rank
		}
		if best < 0 || rank < bestRank {
			best, bestRank = i, rank
		}
	}
	return best
}

func (r *run) execute(i int) {
	tok := r.s.Tokens[i]
	pn := r.plan.nodes[tok.NodeID]
	if pn == nil {
		r.fail(tok.NodeID, "not in this journey version")
		return
	}
	r.s.Visits[tok.NodeID]++
	visit := r.s.Visits[tok.NodeID]
	x := r.exec(pn, visit)
	res := r.call(func() nodes.Result { return pn.executor.Execute(x) })
	rec := r.record(tok.ID, pn, res, nil)
	if d := res.Delivery; d != nil && res.Outcome != nodes.Failed {
		if c, ok := r.plan.caps[d.Channel]; ok && r.sentSince(d.Channel, r.env.Now.Add(-c.window)) >= c.max {
			rec.Outcome = OutcomeSkipped
			rec.Output = json.RawMessage(`{"capped":true}`)
			r.move(i, pn.next[""])
			return
		}
		key := fmt.Sprintf("%s:%s:%d", r.s.InstanceID, pn.node.ID, visit)
		r.fx.Deliveries = append(r.fx.Deliveries, Delivery{Key: key, NodeID: pn.node.ID, Channel: d.Channel, Payload: d.Payload})
		rec.Output = encode(withKey(res.Output, "delivery_key", key))
	}
	r.advance(i, pn, res)
}

func (r *run) resume(i int, why nodes.Resume, input map[string]any) {
	tok := r.s.Tokens[i]
	pn := r.plan.nodes[tok.NodeID]
	if pn == nil || pn.resumer == nil {
		r.fail(tok.NodeID, "cannot resume here in this journey version")
		return
	}
	x := r.exec(pn, r.s.Visits[tok.NodeID])
	res := r.call(func() nodes.Result { return pn.resumer.Resume(x, *tok.Wait, why) })
	r.s.Tokens[i].Wait = nil
	rec := r.record(tok.ID, pn, res, input)
	if res.Outcome == nodes.Completed || res.Outcome == nodes.Branched {
		rec.Outcome = OutcomeResumed
	}
	r.advance(i, pn, res)
}

func (r *run) exec(pn *planNode, visit int) *nodes.Exec {
	return &nodes.Exec{
		Node: pn.node, JourneyID: r.s.JourneyID, InstanceID: r.s.InstanceID, Version: r.s.Version,
		Visit: visit, Now: r.env.Now, Customer: &r.customer, Event: r.event, Context: r.s.Context,
		SentSince: r.sentSince,
	}
}

// call runs a node, turning a panic into a failure of the instance: a bug
// in one node type must not take the grain, or the other instances on it, down.
func (r *run) call(f func() nodes.Result) (res nodes.Result) {
	defer func() {
		if v := recover(); v != nil {
			res = nodes.Result{Outcome: nodes.Failed, Reason: fmt.Sprintf("panic: %v", v)}
		}
	}()
	return f()
}

// sentSince adds this step's deliveries, not yet committed, to the
// committed count; they are all made at Now.
func (r *run) sentSince(channel string, since time.Time) int {
	n := 0
	if r.env.SentSince != nil {
		n = r.env.SentSince(channel, since)
	}
	if r.env.Now.Before(since) {
		return n
	}
	for _, d := range r.fx.Deliveries {
		if channel == "all" || d.Channel == channel {
			n++
		}
	}
	return n
}

// advance applies a node's result to the instance and moves its token.
func (r *run) advance(i int, pn *planNode, res nodes.Result) {
	if res.Outcome == nodes.Failed {
		r.fail(pn.node.ID, res.Reason)
		return
	}
	maps.Copy(r.s.Context, res.ContextSet)
	if res.Profile != nil {
		r.customer.Apply(*res.Profile)
		if r.fx.Profile == nil {
			r.fx.Profile = &nodes.ProfileChange{}
		}
		r.fx.Profile.Merge(*res.Profile)
	}
	if res.Goal != "" {
		r.s.Goals = append(r.s.Goals, res.Goal)
		r.fx.Goals = append(r.fx.Goals, res.Goal)
	}
	switch res.Outcome {
	case nodes.Completed:
		r.move(i, pn.next[""])
	case nodes.Branched:
		r.move(i, pn.next[res.Branch])
	case nodes.Waiting:
		if res.Wait == nil {
			r.fail(pn.node.ID, "waiting without saying for what")
			return
		}
		w := *res.Wait
		if w.StartedAt.IsZero() {
			w.StartedAt = r.env.Now
		}
		r.s.Tokens[i].Wait = &w
	case nodes.Ended:
		r.s.Tokens = slices.Delete(r.s.Tokens, i, i+1)
	case nodes.ExitInstance:
		r.end(StatusCompleted, "")
	default:
		r.fail(pn.node.ID, fmt.Sprintf("unknown outcome %d", res.Outcome))
	}
}

// move sends token i along the given targets: the first keeps the token,
// each further one forks a new token, none ends it. A token arriving where
// another is already ready merges into it, which is how parallel paths join.
func (r *run) move(i int, targets []string) {
	if len(targets) == 0 {
		r.s.Tokens = slices.Delete(r.s.Tokens, i, i+1)
		return
	}
	r.s.Tokens[i].NodeID, r.s.Tokens[i].Wait = targets[0], nil
	for _, t := range targets[1:] {
		r.s.Tokens = append(r.s.Tokens, Token{ID: r.newTokenID(), NodeID: t})
	}
	r.s.Tokens = mergeReady(r.s.Tokens)
}

func (r *run) newTokenID() string {
	r.s.NextToken++
	return fmt.Sprintf("t%d", r.s.NextToken)
}

func (r *run) fail(nodeID, reason string) {
	r.end(StatusFailed, fmt.Sprintf("node %s: %s", nodeID, reason))
}

func (r *run) end(status, reason string) {
	r.s.Status, r.s.Error, r.s.Tokens = status, reason, nil
}

// record appends the step to the timeline and returns it for amendment.
func (r *run) record(tokenID string, pn *planNode, res nodes.Result, input map[string]any) *StepRecord {
	r.s.Seq++
	out := res.Output
	if res.Wait != nil {
		out = withKey(out, "until", res.Wait.Until)
		if res.Wait.EventType != "" {
			out = withKey(out, "event_type", res.Wait.EventType)
		}
	}
	rec := StepRecord{
		Seq: r.s.Seq, NodeID: pn.node.ID, NodeType: pn.node.Type, Version: r.s.Version, TokenID: tokenID,
		Outcome: outcomeName(res.Outcome), Branch: res.Branch, Error: res.Reason, At: r.env.Now,
	}
	if input != nil {
		rec.Input = encode(input)
	}
	if out != nil {
		rec.Output = encode(out)
	}
	r.fx.Steps = append(r.fx.Steps, rec)
	return &r.fx.Steps[len(r.fx.Steps)-1]
}

func outcomeName(o nodes.Outcome) string {
	switch o {
	case nodes.Completed:
		return OutcomeCompleted
	case nodes.Branched:
		return OutcomeBranched
	case nodes.Waiting:
		return OutcomeWaiting
	case nodes.Ended:
		return OutcomeEnded
	case nodes.ExitInstance:
		return OutcomeExited
	}
	return OutcomeFailed
}

func withKey(m map[string]any, k string, v any) map[string]any {
	out := maps.Clone(m)
	if out == nil {
		out = map[string]any{}
	}
	out[k] = v
	return out
}

// encode never fails the step: an output JSON cannot hold (a NaN from a
// script) is recorded as the reason instead.
func encode(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		b, _ = json.Marshal(map[string]string{"unencodable": err.Error()})
	}
	return b
}

// finish settles the status and lists the timers and waits the instance
// needs from now on.
func (r *run) finish() {
	r.s.UpdatedAt = r.env.Now
	r.fx.Changed = true
	if Terminal(r.s.Status) {
		return
	}
	if r.halted() {
		// A paused or held instance sets no timers and resumes no waits,
		// but its journey's exit criteria still end it, so it keeps listening.
		if ec := r.plan.graph.ExitCriteria; ec != nil {
			r.fx.Waits = []string{ec.EventType}
		}
		return
	}
	switch {
	case len(r.s.Tokens) == 0:
		r.s.Status = StatusCompleted
		return
	case r.nextReady() >= 0:
		r.s.Status = StatusRunning
	default:
		r.s.Status = StatusWaiting
	}
	waits := map[string]bool{}
	if ec := r.plan.graph.ExitCriteria; ec != nil {
		waits[ec.EventType] = true
	}
	for _, t := range r.s.Tokens {
		if t.Wait == nil {
			continue
		}
		if !t.Wait.Until.IsZero() {
			r.fx.Timers = append(r.fx.Timers, Timer{TokenID: t.ID, DueAt: t.Wait.Until})
		}
		if t.Wait.EventType != "" {
			waits[t.Wait.EventType] = true
		}
	}
	r.fx.Waits = slices.Sorted(maps.Keys(waits))
}
