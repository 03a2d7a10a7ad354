// Package status records what providers report about the messages they
// took (delivered, bounced, failed, opened, clicked): it checks each
// callback's signature through the account's provider, updates the
// delivery, and turns each new status into an event of the customer's
// (email_opened, sms_delivered, …) that journeys can wait for.
package status

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/kalcifer/kalcifer/channels"
	"github.com/kalcifer/kalcifer/channels/accounts"
	"github.com/kalcifer/kalcifer/store"
)

// ErrNoCallbacks is a callback for an account whose provider posts none.
var ErrNoCallbacks = errors.New("this provider sends no status callbacks")

// Event is a customer event a status becomes.
type Event struct {
	ID         string
	Type       string
	Properties map[string]any
	At         time.Time
}

// Intake receives status callbacks.
type Intake struct {
	Store    store.Store
	Accounts *accounts.Manager
	// Emit stores a customer's event and routes it to their journeys.
	Emit func(ctx context.Context, tenant store.Tenant, customerExternalID string, e Event) error
	Now  func() time.Time
}

// Result is what a callback changed.
type Result struct {
	// Recorded statuses were new; Repeated ones were recorded before;
	// Unmatched ones name no delivery of the tenant.
	Recorded, Repeated, Unmatched int
}

// account loads a tenant's account and its provider kind.
func (in *Intake) account(ctx context.Context, tenantID, providerID string) (store.ProviderConfig, channels.Kind, error) {
	p, err := in.Store.Providers().GetProvider(ctx, tenantID, providerID)
	if err != nil {
		return p, channels.Kind{}, err
	}
	k, ok := in.Accounts.Kind(p.Kind)
	if !ok {
		return p, k, fmt.Errorf("account %s: %w", p.Name, accounts.ErrUnknownKind)
	}
	return p, k, nil
}

// Challenge answers a provider's check of the callback URL.
func (in *Intake) Challenge(ctx context.Context, tenantID, providerID string, r *http.Request) (string, error) {
	p, k, err := in.account(ctx, tenantID, providerID)
	if err != nil {
		return "", err
	}
	if k.Challenge == nil {
		return "", ErrNoCallbacks
	}
	config, err := in.Accounts.Config(p)
	if err != nil {
		return "", err
	}
	answer, ok := k.Challenge(r.URL.Query(), config)
	if !ok {
		return "", fmt.Errorf("verification of the callback URL refused: %w", channels.ErrBadSignature)
	}
	return answer, nil
}

// Receive handles one callback: r with its body already read. An error
// wrapping channels.ErrBadSignature means the callback is not the
// provider's.
func (in *Intake) Receive(ctx context.Context, tenantID, providerID string, r *http.Request, body []byte) (Result, error) {
	var res Result
	p, k, err := in.account(ctx, tenantID, providerID)
	if err != nil {
		return res, err
	}
	if k.Statuses == nil {
		return res, ErrNoCallbacks
	}
	config, err := in.Accounts.Config(p)
	if err != nil {
		return res, err
	}
	statuses, err := k.Statuses(r, body, config, in.Accounts.Deps())
	if err != nil {
		return res, err
	}
	if len(statuses) == 0 {
		return res, nil
	}
	// One tenant per callback: its statuses' events share it.
	tenant, err := in.Store.Tenants().GetTenant(ctx, tenantID)
	if err != nil {
		return res, err
	}
	now := in.Now()
	for _, s := range statuses {
		ev := store.DeliveryEvent{TenantID: tenantID, DeliveryID: s.DeliveryID, Provider: p.ID, MessageID: s.MessageID,
			Type: s.Type, EventID: s.EventID, Reason: s.Reason, At: s.At, ReceivedAt: now}
		if ev.At.IsZero() {
			ev.At = now
		}
		if ev.EventID == "" {
			ev.EventID = s.Type + "@" + ev.At.UTC().Format(time.RFC3339Nano)
		}
		d, recorded, err := in.Store.Deliveries().RecordDeliveryEvent(ctx, ev, func(d store.Delivery) store.Delivery { return Apply(d, ev) })
		switch {
		case errors.Is(err, store.ErrNotFound):
			res.Unmatched++
			continue
		case err != nil:
			return res, err
		case recorded:
			res.Recorded++
		default:
			res.Repeated++
		}
		// A repeated status is emitted again too: the provider repeats a
		// callback that failed, perhaps after it was recorded but before
		// its event was, and the event's id keeps it from counting twice.
		if err := in.emit(ctx, tenant, d, ev); err != nil {
			return res, err
		}
	}
	return res, nil
}

// emit makes a status the customer's event. Its id is the delivery and
// the status type, so one delivery opened five times is one email_opened
// and a callback repeated after a crash emits nothing new.
func (in *Intake) emit(ctx context.Context, tenant store.Tenant, d store.Delivery, ev store.DeliveryEvent) error {
	c, err := in.Store.Customers().GetCustomer(ctx, d.TenantID, d.CustomerID)
	if err != nil {
		return err
	}
	props := map[string]any{"delivery_id": d.ID, "journey_id": d.JourneyID, "instance_id": d.InstanceID, "node_id": d.NodeID,
		"channel": d.Channel, "provider": d.Provider, "provider_message_id": d.ProviderMessageID}
	if ev.Reason != "" {
		props["reason"] = ev.Reason
	}
	e := Event{ID: "delivery:" + d.ID + ":" + ev.Type, Type: d.Channel + "_" + ev.Type, Properties: props, At: ev.At}
	if err := in.Emit(ctx, tenant, c.ExternalID, e); err != nil {
		return fmt.Errorf("emit %s of delivery %s: %w", e.Type, d.ID, err)
	}
	return nil
}

const codeProviderFailed = "provider_failed"

// Apply is what a status makes of a delivery. Statuses arrive in any
// order and more than once, so each only moves a delivery forward, and
// the outcome does not depend on their order: delivered, opened and
// clicked mark a sent delivery delivered (an open proves delivery; a click
// proves an open) and keep the earliest time of each; bounced and failed
// end a sent or delivered one.
func Apply(d store.Delivery, ev store.DeliveryEvent) store.Delivery {
	at := ev.At
	first := func(t *time.Time) *time.Time {
		if t != nil && !t.After(at) {
			return t
		}
		return &at
	}
	delivered := func() {
		d.DeliveredAt = first(d.DeliveredAt)
		if d.Status == store.DeliverySent {
			d.Status = store.DeliveryDelivered
		}
	}
	switch ev.Type {
	case channels.StatusDelivered:
		delivered()
	case channels.StatusOpened:
		delivered()
		d.OpenedAt = first(d.OpenedAt)
	case channels.StatusClicked:
		delivered()
		d.OpenedAt, d.ClickedAt = first(d.OpenedAt), first(d.ClickedAt)
	case channels.StatusFailed:
		if d.Status == store.DeliverySent || d.Status == store.DeliveryDelivered {
			d.Status, d.ErrorCode, d.Error = store.DeliveryFailed, codeProviderFailed, ev.Reason
		}
	case channels.StatusBounced:
		// A bounce is the more precise report: it wins over a failure the
		// provider reported, whichever came first.
		if d.Status == store.DeliverySent || d.Status == store.DeliveryDelivered ||
			(d.Status == store.DeliveryFailed && d.ErrorCode == codeProviderFailed) {
			d.Status, d.ErrorCode, d.Error = store.DeliveryBounced, "provider_bounced", ev.Reason
		}
	}
	return d
}
