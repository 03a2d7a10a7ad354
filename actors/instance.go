package actors

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/kalcifer/kalcifer/actors/actorpb"
	"github.com/kalcifer/kalcifer/cluster"
	"github.com/kalcifer/kalcifer/engine"
	"github.com/kalcifer/kalcifer/nodes"
	"github.com/kalcifer/kalcifer/store"
)

// instanceGrain is one customer's journey instance. It loads its snapshot
// when activated (claiming the instance's epoch, so that a zombie
// activation elsewhere can no longer commit), runs engine.Step for every
// trigger and commits state and effects in one transaction before it
// replies. Between triggers it keeps the state in memory; an idle grain
// passivates and a waiting customer then costs only its row.
type instanceGrain struct {
	rt         *Runtime
	tenantID   string
	customerID string
	instanceID string
	loaded     bool
	row        store.Instance
	state      engine.State
	plan       *engine.Plan
}

var triggerKinds = map[actorpb.InstanceTrigger_Kind]engine.TriggerKind{
	actorpb.InstanceTrigger_KIND_START:    engine.TriggerStart,
	actorpb.InstanceTrigger_KIND_CONTINUE: engine.TriggerContinue,
	actorpb.InstanceTrigger_KIND_TIMER:    engine.TriggerTimer,
	actorpb.InstanceTrigger_KIND_EVENT:    engine.TriggerEvent,
	actorpb.InstanceTrigger_KIND_PAUSE:    engine.TriggerPause,
	actorpb.InstanceTrigger_KIND_RESUME:   engine.TriggerResume,
	actorpb.InstanceTrigger_KIND_CANCEL:   engine.TriggerCancel,
	actorpb.InstanceTrigger_KIND_MIGRATE:  engine.TriggerMigrate,
	actorpb.InstanceTrigger_KIND_RELEASE:  engine.TriggerRelease,
}

func (g *instanceGrain) Receive(ctx Context, msg proto.Message) (proto.Message, error) {
	m, ok := msg.(*actorpb.InstanceTrigger)
	if !ok {
		return nil, &cluster.GrainError{Code: "unexpected_message", Message: fmt.Sprintf("instance grain got %T", msg)}
	}
	kind, ok := triggerKinds[m.GetKind()]
	if !ok {
		return nil, &cluster.GrainError{Code: "invalid_trigger", Message: m.GetKind().String()}
	}
	t := engine.Trigger{Kind: kind, TokenID: m.GetTokenId(), EntryNodeID: m.GetEntryNodeId(), Reason: m.GetReason(), NodeID: m.GetNodeId()}
	if err := unmarshalOptional(m.GetEventJson(), &t.Event); err != nil {
		return nil, &cluster.GrainError{Code: "invalid_event", Message: err.Error()}
	}
	if len(m.GetDataJson()) > 0 {
		if err := json.Unmarshal(m.GetDataJson(), &t.Data); err != nil {
			return nil, &cluster.GrainError{Code: "invalid_data", Message: err.Error()}
		}
	}
	if kind == engine.TriggerStart {
		return g.start(ctx, m, t)
	}
	if kind == engine.TriggerMigrate {
		return g.migrate(ctx, m, t)
	}
	if err := g.load(ctx); err != nil {
		return nil, err
	}
	if kind == engine.TriggerRelease {
		return g.release(ctx, t)
	}
	if kind == engine.TriggerTimer {
		earlier, err := g.eventBeforeTimeout(ctx, t.TokenID)
		if err != nil {
			return nil, err
		}
		if earlier != nil {
			reply, err := g.step(ctx, engine.Trigger{Kind: engine.TriggerEvent, Event: earlier}, false)
			if err != nil || reply.(*actorpb.InstanceReply).GetChanged() {
				return reply, err
			}
		}
	}
	return g.step(ctx, t, false)
}

// eventBeforeTimeout finds, when a wait_for_event's timeout fires, an event
// that arrived before the timeout but has not reached the instance yet: it
// was committed and then delayed in routing (a restart, a retry). Whichever
// came first wins, so that event is applied instead of the timeout.
func (g *instanceGrain) eventBeforeTimeout(ctx Context, tokenID string) (*nodes.Event, error) {
	var w *nodes.Wait
	for _, tok := range g.state.Tokens {
		if tok.ID == tokenID && tok.Wait != nil && tok.Wait.EventType != "" && !tok.Wait.Until.IsZero() {
			w = tok.Wait
		}
	}
	if w == nil {
		return nil, nil
	}
	// Routing delays are short, so the customer's latest events hold any
	// such event; newest first, so the last match is the earliest.
	recent, err := g.rt.store.Events().ListCustomerEvents(ctx, g.tenantID, g.state.CustomerID, 200)
	if err != nil {
		return nil, fmt.Errorf("look for events before the timeout of instance %s: %w", g.instanceID, err)
	}
	var earliest *nodes.Event
	for _, e := range recent {
		if e.Type != w.EventType || e.ReceivedAt.Before(w.StartedAt) || e.ReceivedAt.After(w.Until) || slices.Contains(g.state.SeenEvents, e.ID) {
			continue
		}
		ne, err := nodeEvent(e)
		if err != nil || !w.Accepts(&ne) {
			continue
		}
		earliest = &ne
	}
	return earliest, nil
}

// migrate moves the instance to the migration's version, state, timers
// and waits in one commit. A grain activated only for this passivates
// after it, so that migrating a journey's waiting customers does not keep
// them all in memory.
func (g *instanceGrain) migrate(ctx Context, m *actorpb.InstanceTrigger, t engine.Trigger) (proto.Message, error) {
	active := g.loaded
	if err := g.load(ctx); err != nil {
		return nil, err
	}
	if !active {
		defer ctx.Stop()
	}
	if g.state.Version != int(m.GetFromVersion()) {
		return g.reply(false), nil
	}
	to, err := g.rt.plans.get(ctx, g.tenantID, g.state.JourneyID, int(m.GetToVersion()))
	if err != nil {
		return nil, err
	}
	mig := &engine.Migration{ID: m.GetMigrationId(), FromVersion: int(m.GetFromVersion()), ToVersion: int(m.GetToVersion())}
	if err := json.Unmarshal(m.GetPlanJson(), &mig.Plan); err != nil {
		return nil, &cluster.GrainError{Code: "invalid_plan", Message: err.Error()}
	}
	t.Migration = mig
	from := g.plan
	g.plan = to
	reply, err := g.step(ctx, t, false)
	if err != nil || !reply.(*actorpb.InstanceReply).GetChanged() {
		// The state is still on the old version (a failed commit has
		// dropped it already; a failure before the commit has not).
		g.plan = from
	}
	return reply, err
}

// release sends a held instance's held tokens to a node of its version.
func (g *instanceGrain) release(ctx Context, t engine.Trigger) (proto.Message, error) {
	if g.state.Status != engine.StatusHeld {
		return nil, &cluster.GrainError{Code: CodeNotHeld, Message: fmt.Sprintf("instance %s is %s, not held", g.instanceID, g.state.Status)}
	}
	if _, ok := g.plan.Graph().Node(t.NodeID); !ok {
		return nil, &cluster.GrainError{Code: CodeUnknownNode, Message: fmt.Sprintf("version %d of the journey has no node %q", g.state.Version, t.NodeID)}
	}
	return g.step(ctx, t, false)
}

// unmarshalOptional decodes data into a new *T, leaving it nil when data is empty.
func unmarshalOptional[T any](data []byte, into **T) error {
	if len(data) == 0 {
		return nil
	}
	*into = new(T)
	return json.Unmarshal(data, *into)
}

// load activates the grain from its snapshot, once.
func (g *instanceGrain) load(ctx Context) error {
	if g.loaded {
		return nil
	}
	row, err := g.rt.store.Instances().ClaimInstance(ctx, g.tenantID, g.instanceID)
	if errors.Is(err, store.ErrNotFound) {
		return &cluster.GrainError{Code: "instance_not_found", Message: g.instanceID}
	}
	if err != nil {
		return err
	}
	var state engine.State
	if err := json.Unmarshal(row.Snapshot, &state); err != nil {
		return fmt.Errorf("decode snapshot of instance %s: %w", g.instanceID, err)
	}
	plan, err := g.rt.plans.get(ctx, g.tenantID, row.JourneyID, row.Version)
	if err != nil {
		return err
	}
	// The decoded state is what the grain works on; keeping the snapshot
	// bytes too would double each active instance's memory.
	row.Snapshot = nil
	g.row, g.state, g.plan, g.loaded = row, state, plan, true
	return nil
}

// start creates the instance. A start that reaches an instance that exists
// already (the enrolment was retried after a timeout) answers with where the
// instance is instead of starting it again; that is looked up only when the
// create fails, so a normal start does not read first.
func (g *instanceGrain) start(ctx Context, m *actorpb.InstanceTrigger, t engine.Trigger) (proto.Message, error) {
	if g.loaded {
		return g.reply(false), nil
	}
	plan, err := g.rt.plans.get(ctx, g.tenantID, m.GetJourneyId(), int(m.GetVersion()))
	if err != nil {
		return nil, err
	}
	g.plan = plan
	g.state = engine.NewState(g.instanceID, g.tenantID, m.GetJourneyId(), int(m.GetVersion()), m.GetCustomerId(), m.GetEntryKey(), g.rt.now())
	reply, err := g.step(ctx, t, true)
	if err == nil {
		return reply, nil
	}
	if _, getErr := g.rt.store.Instances().GetInstance(ctx, g.tenantID, g.instanceID); getErr != nil {
		return nil, err
	}
	if err := g.load(ctx); err != nil {
		return nil, err
	}
	return g.reply(false), nil
}

// step runs the engine and commits what it decided. On any commit failure
// the in-memory state is dropped, so the next trigger reloads what the store
// really holds.
func (g *instanceGrain) step(ctx Context, t engine.Trigger, create bool) (proto.Message, error) {
	// Frequency caps count a customer's sends across all journeys: the
	// count, the step and its commit must not interleave with another
	// instance of the same customer, or both could pass a cap at max-1.
	unlock := g.rt.customerLocks.lock(g.tenantID, g.state.CustomerID)
	defer unlock()
	customer, err := g.rt.loadCustomer(ctx, g.tenantID, g.state.CustomerID)
	if err != nil {
		return nil, err
	}
	now := g.rt.now()
	env := engine.Env{Plan: g.plan, Now: now, Customer: customer, SentSince: g.rt.sentSince(ctx, g.tenantID, g.state.CustomerID)}
	next, eff := engine.Step(g.state, t, env)
	if !eff.Changed && !create {
		return g.reply(false), nil
	}
	c, err := g.commit(next, eff, create, now)
	if err != nil {
		return nil, err
	}
	if err := g.rt.committer.Commit(ctx, c); err != nil {
		g.loaded = false
		switch {
		case errors.Is(err, store.ErrActiveInstance):
			return nil, &cluster.GrainError{Code: "active_instance", Message: "the customer already has an active instance of this journey"}
		case errors.Is(err, store.ErrDuplicateEntry):
			return nil, &cluster.GrainError{Code: "duplicate_entry", Message: "this enrolment was already processed"}
		case errors.Is(err, store.ErrStaleEpoch):
			ctx.Stop()
			return nil, &cluster.GrainError{Code: "stale_activation", Message: "another activation owns this instance"}
		}
		return nil, err
	}
	c.Instance.Epoch = max(c.Instance.Epoch, 1)
	c.Instance.Snapshot = nil
	g.row, g.state, g.loaded = c.Instance, next, true
	g.rt.committed(c)
	switch {
	case engine.Terminal(next.Status):
		ctx.Stop()
	case next.Status == engine.StatusRunning:
		// The step stopped at the engine's MaxSteps with tokens still
		// ready: carry on in a new message, so other messages get a turn.
		g.rt.continueLater(g.tenantID, g.customerID, g.instanceID)
	}
	return g.reply(true), nil
}

func (g *instanceGrain) reply(changed bool) *actorpb.InstanceReply {
	return &actorpb.InstanceReply{InstanceId: g.instanceID, Status: g.state.Status, Changed: changed, Error: g.state.Error,
		Version: int32(g.state.Version), MigrationId: g.state.Migration}
}

// commit turns one step into the store's unit of work.
func (g *instanceGrain) commit(s engine.State, eff engine.Effects, create bool, now time.Time) (store.Commit, error) {
	snapshot, err := json.Marshal(s)
	if err != nil {
		return store.Commit{}, fmt.Errorf("encode snapshot of instance %s: %w", s.InstanceID, err)
	}
	positions := make([]string, 0, len(s.Tokens))
	for _, tok := range s.Tokens {
		positions = append(positions, tok.NodeID)
	}
	c := store.Commit{
		Create: create,
		Instance: store.Instance{
			ID: s.InstanceID, TenantID: s.TenantID, JourneyID: s.JourneyID, Version: s.Version,
			CustomerID: s.CustomerID, Status: s.Status, Nodes: positions, EntryKey: s.EntryKey,
			Snapshot: snapshot, Epoch: g.row.Epoch, Error: s.Error, CreatedAt: s.CreatedAt, UpdatedAt: now,
		},
	}
	for _, st := range eff.Steps {
		c.Steps = append(c.Steps, store.Step{
			InstanceID: s.InstanceID, Seq: st.Seq, NodeID: st.NodeID, NodeType: st.NodeType, Version: st.Version,
			TokenID: st.TokenID, Outcome: st.Outcome, Branch: st.Branch, Input: st.Input, Output: st.Output,
			Error: st.Error, StartedAt: st.At, FinishedAt: st.At,
		})
	}
	for _, d := range eff.Deliveries {
		c.Deliveries = append(c.Deliveries, store.Delivery{Key: d.Key, NodeID: d.NodeID, Channel: d.Channel, Payload: d.Payload})
	}
	for _, tm := range eff.Timers {
		c.Timers = append(c.Timers, store.Timer{TenantID: s.TenantID, InstanceID: s.InstanceID, TokenID: tm.TokenID, DueAt: tm.DueAt})
	}
	for _, w := range eff.Waits {
		c.Waits = append(c.Waits, store.Wait{TenantID: s.TenantID, CustomerID: s.CustomerID, EventType: w, InstanceID: s.InstanceID})
	}
	if eff.Profile != nil {
		c.Customer = customerPatch(*eff.Profile)
	}
	return c, nil
}

// customerPatch turns an engine profile change into the store's patch.
func customerPatch(ch nodes.ProfileChange) *store.CustomerPatch {
	fields, properties := ch.Split()
	p := &store.CustomerPatch{AddTags: ch.AddTags, RemoveTags: ch.RemoveTags}
	if len(properties) > 0 {
		p.Properties = properties
	}
	for k, v := range fields {
		switch k {
		case "email":
			p.Email = &v
		case "phone":
			p.Phone = &v
		case "name":
			p.Name = &v
		case "timezone":
			p.Timezone = &v
		}
	}
	return p
}

// toNodeCustomer is the profile as nodes read it.
func toNodeCustomer(c store.Customer) nodes.Customer {
	optOut := map[string]bool{}
	for ch, ok := range c.Preferences {
		if !ok {
			optOut[ch] = true
		}
	}
	return nodes.Customer{
		ID: c.ID, ExternalID: c.ExternalID, Email: c.Email, Phone: c.Phone, Name: c.Name, Timezone: c.Timezone,
		Properties: c.Properties, Tags: c.Tags, OptOut: optOut,
	}
}
