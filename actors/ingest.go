package actors

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/kalcifer/kalcifer/actors/actorpb"
	"github.com/kalcifer/kalcifer/channels/status"
	"github.com/kalcifer/kalcifer/cluster"
	"github.com/kalcifer/kalcifer/store"
)

// Incoming is an event (or, with Traits and no Type, a profile update) as a
// client sends it, naming the customer by external id.
type Incoming struct {
	ExternalID string
	MessageID  string
	Type       string
	Properties map[string]any
	Timestamp  time.Time
	// Traits, if set, update the customer's profile before the event is stored.
	Traits *store.CustomerPatch
}

// Result is the outcome for one input of a batch: the stored event, or why
// there is none.
type Result struct {
	EventID    string `json:"event_id,omitempty"`
	CustomerID string `json:"customer_id,omitempty"`
	Duplicate  bool   `json:"duplicate,omitempty"`
	InstanceID string `json:"instance_id,omitempty"`
	Status     string `json:"status,omitempty"`
	Error      *Error `json:"error,omitempty"`
}

// Error is a refusal with a stable code.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// ErrUnknownCustomer is the refusal for events about customers that do not
// exist, when the tenant chose to reject them.
const codeUnknownCustomer = "unknown_customer"

// Ingest stores a batch of events in one transaction (deduplicated by
// message id) and queues the new ones for routing; it returns once they are
// committed. Inputs refused on their own (an unknown customer) are reported
// per input and do not fail the batch.
func (r *Runtime) Ingest(ctx context.Context, tenant store.Tenant, in []Incoming) ([]Result, error) {
	results := make([]Result, len(in))
	var events []store.Event
	var slots []int
	now := r.now()
	for i, e := range in {
		customer, ok, err := r.resolveInto(ctx, tenant, e.ExternalID, e.Traits, now, &results[i])
		if err != nil {
			return nil, err
		}
		if !ok || e.Type == "" {
			continue
		}
		props, err := json.Marshal(orEmpty(e.Properties))
		if err != nil {
			results[i].Error = &Error{Code: "invalid_properties", Message: err.Error()}
			continue
		}
		events = append(events, store.Event{
			TenantID: tenant.ID, CustomerID: customer.ID, MessageID: e.MessageID, Type: e.Type,
			Properties: props, Timestamp: e.Timestamp, ReceivedAt: now,
		})
		slots = append(slots, i)
	}
	if len(events) == 0 {
		return results, nil
	}
	stored, dup, err := r.store.Events().AppendEvents(ctx, tenant.ID, events)
	if err != nil {
		return nil, fmt.Errorf("store events: %w", err)
	}
	var fresh []store.Event
	for j, i := range slots {
		results[i].EventID, results[i].Duplicate = stored[j].ID, dup[j]
		if !dup[j] {
			fresh = append(fresh, stored[j])
		}
	}
	r.router.Enqueue(ctx, fresh)
	return results, nil
}

func orEmpty(m map[string]any) map[string]any {
	if m == nil {
		return map[string]any{}
	}
	return m
}

// resolveInto resolves one input's customer into its result: ok is false
// when the input was refused (the refusal is in res), err is set only for
// failures that fail the whole request.
func (r *Runtime) resolveInto(ctx context.Context, tenant store.Tenant, externalID string, traits *store.CustomerPatch, now time.Time, res *Result) (store.Customer, bool, error) {
	customer, err := r.resolveCustomer(ctx, tenant, externalID, traits, now)
	var refused *Error
	if errors.As(err, &refused) {
		res.Error = refused
		return store.Customer{}, false, nil
	}
	if err != nil {
		return store.Customer{}, false, err
	}
	res.CustomerID = customer.ID
	return customer, true, nil
}

// resolveCustomer finds the customer an input names, creating it unless the
// tenant rejects unknown customers; traits always create or update it.
func (r *Runtime) resolveCustomer(ctx context.Context, tenant store.Tenant, externalID string, traits *store.CustomerPatch, now time.Time) (store.Customer, error) {
	if traits != nil {
		c, _, err := r.store.Customers().UpsertCustomer(ctx, tenant.ID, externalID, *traits, now)
		return c, err
	}
	c, err := r.store.Customers().GetCustomerByExternalID(ctx, tenant.ID, externalID)
	if err == nil {
		return c, nil
	}
	if !errors.Is(err, store.ErrNotFound) {
		return store.Customer{}, err
	}
	if tenant.Settings.RejectUnknownCustomers {
		return store.Customer{}, &Error{Code: codeUnknownCustomer, Message: fmt.Sprintf("no customer with external id %q", externalID)}
	}
	c, _, err = r.store.Customers().UpsertCustomer(ctx, tenant.ID, externalID, store.CustomerPatch{}, now)
	return c, err
}

// Target is one customer a manual or webhook enrolment names.
type Target struct {
	ExternalID string
	Data       map[string]any
	// Key identifies the enrolment so that a retried request does not enrol twice.
	Key string
}

// Enrol starts the journey for each target, at its first entry node of
// entryType ("" for any: a manual trigger). Refusals (not active, already
// entered) are reported per target.
func (r *Runtime) Enrol(ctx context.Context, tenant store.Tenant, journeyID, entryType string, targets []Target) ([]Result, error) {
	results := make([]Result, len(targets))
	now := r.now()
	for i, t := range targets {
		customer, ok, err := r.resolveInto(ctx, tenant, t.ExternalID, nil, now, &results[i])
		if err != nil {
			return nil, err
		}
		if !ok {
			continue
		}
		data, err := json.Marshal(orEmpty(t.Data))
		if err != nil {
			results[i].Error = &Error{Code: "invalid_data", Message: err.Error()}
			continue
		}
		// Only a keyed enrolment is safe to send again: the key is what
		// keeps a retry from enrolling the customer a second time.
		var opts []cluster.CallOption
		if t.Key != "" {
			opts = append(opts, idempotent)
		}
		reply, err := ask[*actorpb.EnrolReply](ctx, r.node, identity(tenant.ID, customer.ID), KindCustomer, &actorpb.Enrol{
			TenantId: tenant.ID, CustomerId: customer.ID, JourneyId: journeyID, EntryKey: t.Key,
			EntryType: entryType, DataJson: data,
		}, opts...)
		var ge *cluster.GrainError
		if errors.As(err, &ge) {
			results[i].Error = &Error{Code: ge.Code, Message: ge.Message}
			continue
		}
		if err != nil {
			return nil, err
		}
		results[i].InstanceID, results[i].Status = reply.GetInstanceId(), reply.GetStatus()
	}
	return results, nil
}

// Instance actions.
const (
	ActionPause  = "pause"
	ActionResume = "resume"
	ActionCancel = "cancel"
)

var actionKinds = map[string]actorpb.InstanceTrigger_Kind{
	ActionPause:  actorpb.InstanceTrigger_KIND_PAUSE,
	ActionResume: actorpb.InstanceTrigger_KIND_RESUME,
	ActionCancel: actorpb.InstanceTrigger_KIND_CANCEL,
}

// ErrNoChange reports an instance action that did not apply in the
// instance's status (pausing a completed instance, resuming a running one).
var ErrNoChange = errors.New("the instance's status does not allow this action")

// InstanceAction pauses, resumes or cancels an instance through its grain
// and returns the instance as committed.
func (r *Runtime) InstanceAction(ctx context.Context, tenantID, instanceID, action, reason string) (store.Instance, error) {
	kind, ok := actionKinds[action]
	if !ok {
		return store.Instance{}, fmt.Errorf("unknown instance action %q", action)
	}
	in, reply, err := r.triggerInstance(ctx, tenantID, instanceID, &actorpb.InstanceTrigger{Kind: kind, Reason: reason})
	if err == nil && !reply.GetChanged() {
		err = ErrNoChange
	}
	return in, err
}

// triggerInstance asks the instance's grain, found through its customer,
// to handle t, and returns the instance as committed then.
func (r *Runtime) triggerInstance(ctx context.Context, tenantID, instanceID string, t *actorpb.InstanceTrigger) (store.Instance, *actorpb.InstanceReply, error) {
	in, err := r.store.Instances().GetInstance(ctx, tenantID, instanceID)
	if err != nil {
		return store.Instance{}, nil, err
	}
	t.TenantId, t.CustomerId, t.InstanceId = tenantID, in.CustomerID, instanceID
	reply, err := r.askInstance(ctx, t)
	if err != nil {
		return store.Instance{}, nil, err
	}
	in, err = r.store.Instances().GetInstance(ctx, tenantID, instanceID)
	return in, reply, err
}

// IngestStatus stores what a provider reported about a delivery as the
// customer's event (email_opened, …), deduplicated by its id, and routes
// it like any other: journeys waiting for it resume.
func (r *Runtime) IngestStatus(ctx context.Context, tenant store.Tenant, externalID string, e status.Event) error {
	res, err := r.Ingest(ctx, tenant, []Incoming{{ExternalID: externalID, MessageID: e.ID, Type: e.Type, Properties: e.Properties,
		Timestamp: e.At}})
	if err != nil {
		return err
	}
	if len(res) == 1 && res[0].Error != nil {
		return fmt.Errorf("ingest %s: %w", e.Type, res[0].Error)
	}
	return nil
}
