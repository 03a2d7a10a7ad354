package actors

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"google.golang.org/protobuf/proto"

	"github.com/kalcifer/kalcifer/actors/actorpb"
	"github.com/kalcifer/kalcifer/cluster"
	"github.com/kalcifer/kalcifer/journey"
	"github.com/kalcifer/kalcifer/nodes"
	"github.com/kalcifer/kalcifer/store"
)

// customerGrain is the serialisation point for one customer: their events
// and enrolments are handled one at a time, so the checks that keep one
// active instance per journey never race each other.
type customerGrain struct {
	rt         *Runtime
	tenantID   string
	customerID string
}

// Errors an enrolment ends with when the customer may not enter; they are
// expected outcomes, not faults.
const (
	codeActiveInstance   = "active_instance"
	codeAlreadyEntered   = "already_entered"
	codeDuplicateEntry   = "duplicate_entry"
	codeJourneyNotActive = "journey_not_active"
	codeNoEntryNode      = "no_entry_node"
)

func (g *customerGrain) Receive(ctx Context, msg proto.Message) (proto.Message, error) {
	switch m := msg.(type) {
	case *actorpb.CustomerEvent:
		return g.onEvent(ctx, m)
	case *actorpb.Enrol:
		return g.enrol(ctx, m)
	}
	return nil, &cluster.GrainError{Code: "unexpected_message", Message: fmt.Sprintf("customer grain got %T", msg)}
}

// onEvent resumes the customer's instances waiting for the event (or exiting
// on it), then enrols the customer into the journeys the event starts. An
// error makes the router try the whole event again later, which is safe:
// instances ignore an event they have applied, and enrolment is keyed by
// the event id.
func (g *customerGrain) onEvent(ctx Context, m *actorpb.CustomerEvent) (proto.Message, error) {
	var e store.Event
	if err := json.Unmarshal(m.GetEventJson(), &e); err != nil {
		return nil, &cluster.GrainError{Code: "invalid_event", Message: err.Error()}
	}
	ne, err := nodeEvent(e)
	if err != nil {
		return nil, &cluster.GrainError{Code: "invalid_event", Message: err.Error()}
	}
	eventJSON, _ := json.Marshal(ne)
	waiting, err := g.rt.store.Instances().WaitingFor(ctx, g.tenantID, g.customerID, e.Type)
	if err != nil {
		return nil, err
	}
	reply := &actorpb.CustomerEventReply{}
	// An instance that fails to take the event does not keep it from the
	// others or from enrolment; the error is returned at the end, so the
	// router routes the event again and the instances that took it ignore it.
	var failed []error
	for _, id := range waiting {
		r, err := g.rt.askInstance(ctx, &actorpb.InstanceTrigger{
			TenantId: g.tenantID, CustomerId: g.customerID, InstanceId: id, Kind: actorpb.InstanceTrigger_KIND_EVENT, EventJson: eventJSON,
		}, idempotent)
		if err != nil {
			failed = append(failed, fmt.Errorf("resume instance %s with event %s: %w", id, e.ID, err))
			continue
		}
		if r.GetChanged() {
			reply.Resumed++
		}
	}
	points, err := g.rt.entries.forEvent(ctx, g.tenantID, e.Type)
	if err != nil {
		return nil, err
	}
	for _, p := range points {
		if !nodes.MatchProperties(ne.Properties, p.filter) {
			continue
		}
		_, err := g.enrol(ctx, &actorpb.Enrol{
			TenantId: g.tenantID, CustomerId: g.customerID, JourneyId: p.journeyID, EntryKey: e.ID,
			EntryNodeId: p.nodeID, EventJson: eventJSON,
		})
		if refusal(err) {
			continue
		}
		if err != nil {
			failed = append(failed, fmt.Errorf("enrol customer %s into journey %s: %w", g.customerID, p.journeyID, err))
			continue
		}
		reply.Enrolled++
	}
	if len(failed) > 0 {
		return nil, errors.Join(failed...)
	}
	return reply, nil
}

// refusal reports whether err is an enrolment the rules turned down.
func refusal(err error) bool {
	var ge *cluster.GrainError
	return errors.As(err, &ge) && slices.Contains([]string{codeActiveInstance, codeAlreadyEntered, codeDuplicateEntry, codeJourneyNotActive, codeNoEntryNode}, ge.Code)
}

// enrol starts the journey for the customer if the journey is active and its
// re-entry policy allows it.
func (g *customerGrain) enrol(ctx Context, m *actorpb.Enrol) (*actorpb.EnrolReply, error) {
	info, err := g.rt.journeyInfo(ctx, g.tenantID, m.GetJourneyId())
	if err != nil {
		return nil, err
	}
	if info.GetStatus() != store.JourneyActive || info.GetActiveVersion() == 0 {
		return nil, &cluster.GrainError{Code: codeJourneyNotActive, Message: fmt.Sprintf("journey %s is %s", m.GetJourneyId(), info.GetStatus())}
	}
	version := int(info.GetActiveVersion())
	plan, err := g.rt.plans.get(ctx, g.tenantID, m.GetJourneyId(), version)
	if err != nil {
		return nil, err
	}
	entryNode := m.GetEntryNodeId()
	if entryNode == "" {
		entryNode = firstEntry(plan.Graph(), m.GetEntryType(), g.rt.nodes)
		if entryNode == "" {
			return nil, &cluster.GrainError{Code: codeNoEntryNode, Message: fmt.Sprintf("journey %s has no %s node", m.GetJourneyId(), orAny(m.GetEntryType()))}
		}
	}
	if err := g.admit(ctx, m.GetJourneyId(), m.GetEntryKey(), plan.Graph().ReEntry); err != nil {
		return nil, err
	}
	id := store.NewID("ins", g.rt.now())
	r, err := g.rt.askInstance(ctx, &actorpb.InstanceTrigger{
		TenantId: g.tenantID, InstanceId: id, Kind: actorpb.InstanceTrigger_KIND_START,
		JourneyId: m.GetJourneyId(), Version: int32(version), CustomerId: g.customerID,
		EntryKey: m.GetEntryKey(), EntryNodeId: entryNode, EventJson: m.GetEventJson(), DataJson: m.GetDataJson(),
	})
	if err != nil {
		return nil, err
	}
	return &actorpb.EnrolReply{InstanceId: r.GetInstanceId(), Status: r.GetStatus()}, nil
}

// admit applies the journey's re-entry policy. The store's unique index is
// the guarantee; checking first spares a doomed instance start.
func (g *customerGrain) admit(ctx Context, journeyID, entryKey, reEntry string) error {
	if reEntry == "" || reEntry == journey.ReEntryNever {
		last, err := g.rt.store.Instances().LastInstance(ctx, g.tenantID, journeyID, g.customerID)
		if err == nil && entryKey != "" && last.EntryKey == entryKey {
			return &cluster.GrainError{Code: codeDuplicateEntry, Message: "this enrolment was already processed"}
		}
		if err == nil {
			return &cluster.GrainError{Code: codeAlreadyEntered, Message: "the journey's re-entry policy is never and the customer entered before"}
		}
		if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		return nil
	}
	_, err := g.rt.store.Instances().ActiveInstance(ctx, g.tenantID, journeyID, g.customerID)
	if err == nil {
		return &cluster.GrainError{Code: codeActiveInstance, Message: "the customer already has an active instance of this journey"}
	}
	if !errors.Is(err, store.ErrNotFound) {
		return err
	}
	return nil
}

// firstEntry is the first entry node of the wanted type, or of any type.
func firstEntry(g journey.Graph, entryType string, r *nodes.Registry) string {
	for _, n := range g.Nodes {
		t, ok := r.Get(n.Type)
		if ok && t.Category() == journey.CategoryEntry && (entryType == "" || n.Type == entryType) {
			return n.ID
		}
	}
	return ""
}

func orAny(entryType string) string {
	if entryType == "" {
		return "entry"
	}
	return entryType
}

// nodeEvent is a stored event as nodes see it.
func nodeEvent(e store.Event) (nodes.Event, error) {
	ne := nodes.Event{ID: e.ID, Type: e.Type, Timestamp: e.Timestamp, ReceivedAt: e.ReceivedAt, Properties: map[string]any{}}
	if len(e.Properties) > 0 {
		if err := json.Unmarshal(e.Properties, &ne.Properties); err != nil {
			return nodes.Event{}, fmt.Errorf("event %s properties: %w", e.ID, err)
		}
	}
	return ne, nil
}
