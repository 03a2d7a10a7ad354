// Package channels sends what journeys commit to send: the outbox dispatcher
// and the providers behind it.
package channels

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/kalcifer/kalcifer/store"
)

// Sender delivers one message through a provider and returns the provider's
// message id. The delivery's Key is its idempotency key.
type Sender interface {
	Provider() string
	Send(ctx context.Context, d store.Delivery) (messageID string, err error)
}

// LogSender is the provider used until real providers are configured: it
// logs the delivery and reports it sent.
type LogSender struct {
	Logger *slog.Logger
}

// Provider names the log provider.
func (LogSender) Provider() string { return "log" }

// Send logs the delivery; the key doubles as the message id, so a replay
// logs the same id.
func (s LogSender) Send(_ context.Context, d store.Delivery) (string, error) {
	s.Logger.Info("delivery sent", "provider", "log", "tenant_id", d.TenantID, "delivery_id", d.ID,
		"key", d.Key, "channel", d.Channel, "instance_id", d.InstanceID, "customer_id", d.CustomerID)
	return d.Key, nil
}

// Dispatcher moves pending deliveries out of the outbox.
type Dispatcher struct {
	deliveries store.Deliveries
	customers  store.Customers
	sender     Sender
	now        func() time.Time
	poll       time.Duration
	batch      int
	wake       chan struct{}
	log        *slog.Logger
	// mu makes passes one at a time, so that two passes in this process
	// (the loop and a Settle) never send the same pending delivery twice.
	// Across processes that needs claims in the store (cluster issue).
	mu sync.Mutex
}

// NewDispatcher returns a dispatcher polling the outbox every poll, and at
// once when Wake is called.
func NewDispatcher(d store.Deliveries, c store.Customers, s Sender, now func() time.Time, poll time.Duration, log *slog.Logger) *Dispatcher {
	return &Dispatcher{deliveries: d, customers: c, sender: s, now: now, poll: poll, batch: 256, wake: make(chan struct{}, 1), log: log}
}

// Name identifies the dispatcher in the supervision tree.
func (d *Dispatcher) Name() string { return "outbox-dispatcher" }

// Wake tells the dispatcher that deliveries were committed.
func (d *Dispatcher) Wake() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// Run dispatches until ctx ends.
func (d *Dispatcher) Run(ctx context.Context) error {
	ticker := time.NewTicker(d.poll)
	defer ticker.Stop()
	for {
		n, err := d.DispatchOnce(ctx)
		if err != nil && ctx.Err() == nil {
			d.log.Warn("dispatch deliveries", "error", err)
		}
		if n == d.batch {
			continue // more are waiting
		}
		select {
		case <-ctx.Done():
			return nil
		case <-d.wake:
		case <-ticker.C:
		}
	}
}

// DispatchOnce sends one batch of pending deliveries and returns how many it handled.
func (d *Dispatcher) DispatchOnce(ctx context.Context) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	pending, err := d.deliveries.PendingDeliveries(ctx, d.batch)
	if err != nil {
		return 0, err
	}
	for _, dl := range pending {
		reason, err := d.skipReason(ctx, dl)
		if err != nil {
			return 0, err
		}
		if reason != "" {
			dl.Status, dl.Error = store.DeliverySkipped, reason
		} else {
			dl.Attempts++
			dl.Provider = d.sender.Provider()
			id, err := d.sender.Send(ctx, dl)
			if err != nil {
				dl.Status, dl.Error = store.DeliveryFailed, err.Error()
			} else {
				dl.Status, dl.ProviderMessageID = store.DeliverySent, id
			}
		}
		dl.UpdatedAt = d.now()
		if err := d.deliveries.UpdateDelivery(ctx, dl); err != nil {
			return 0, fmt.Errorf("record delivery %s: %w", dl.ID, err)
		}
	}
	return len(pending), nil
}

// skipReason says why a delivery must not be sent, or "" when it may: the
// customer opted out of its channel. It is checked at send time, not when the
// journey step ran, so an opt-out that arrives while a message waits in the
// outbox is still honoured. Webhooks are not the customer's channel.
func (d *Dispatcher) skipReason(ctx context.Context, dl store.Delivery) (string, error) {
	if dl.Channel == "webhook" {
		return "", nil
	}
	c, err := d.customers.GetCustomer(ctx, dl.TenantID, dl.CustomerID)
	if err != nil {
		return "", fmt.Errorf("load customer %s of delivery %s: %w", dl.CustomerID, dl.ID, err)
	}
	if accepted, set := c.Preferences[dl.Channel]; set && !accepted {
		return "customer opted out of " + dl.Channel, nil
	}
	return "", nil
}
