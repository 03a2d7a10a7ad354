// Package channels sends what journeys commit to send: the outbox dispatcher
// and the providers behind it.
package channels

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/kalcifer/kalcifer/store"
	"github.com/kalcifer/kalcifer/supervisor"
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
	// lease is how long the deliveries a pass claims are its own to send.
	lease time.Duration
	batch int
	wake  supervisor.Waker
	log   *slog.Logger
	// Claims make passes disjoint, those of different processes as those
	// of this one. mu makes this process's passes one at a time besides,
	// so that a pass that claims nothing (a Settle's, after the loop's)
	// returns only once the passes before it have sent what they claimed.
	mu sync.Mutex
}

// NewDispatcher returns a dispatcher polling the outbox every poll, and at
// once when Wake is called. It leases the deliveries it claims for 60 s.
func NewDispatcher(d store.Deliveries, c store.Customers, s Sender, now func() time.Time, poll time.Duration, log *slog.Logger) *Dispatcher {
	// A pass claims few deliveries for a short lease: what a node that died
	// had claimed waits for the lease to lapse before another node sends it,
	// and a pass must send its batch within the lease.
	return &Dispatcher{deliveries: d, customers: c, sender: s, now: now, poll: poll, lease: 20 * time.Second, batch: 32,
		wake: supervisor.NewWaker(), log: log}
}

// Name identifies the dispatcher in the supervision tree.
func (d *Dispatcher) Name() string { return "outbox-dispatcher" }

// Wake tells the dispatcher that deliveries were committed.
func (d *Dispatcher) Wake() { d.wake.Wake() }

// Run dispatches until ctx ends.
func (d *Dispatcher) Run(ctx context.Context) error {
	supervisor.Poll(ctx, d.poll, d.wake, func(ctx context.Context) bool {
		n, err := d.DispatchOnce(ctx)
		if err != nil && ctx.Err() == nil {
			d.log.Warn("dispatch deliveries", "error", err)
		}
		return n == d.batch // more are waiting
	})
	return nil
}

// DispatchOnce claims one batch of pending deliveries, sends them and
// returns how many it handled. No send outlives the claim, so no other
// process sends the same delivery meanwhile: a send gets the lease that is
// left as its deadline, and a pass with less than a quarter of its lease
// left stops and releases the rest for the next claim. When ctx ends (the
// process drains) it also stops before the next send and releases the
// rest, so another node sends them at once. An outcome is recorded even
// after ctx ended: a send left unrecorded would be sent again.
func (d *Dispatcher) DispatchOnce(ctx context.Context) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := d.now()
	pending, err := d.deliveries.ClaimDeliveries(ctx, now, d.lease, d.batch)
	if err != nil {
		return 0, err
	}
	leased := now.Add(d.lease)
	record := context.WithoutCancel(ctx)
	for i, dl := range pending {
		left := leased.Sub(d.now())
		if ctx.Err() != nil || left < d.lease/4 {
			return i, d.release(record, pending[i:], ctx.Err())
		}
		reason, err := d.skipReason(ctx, dl)
		if err != nil {
			return i, errors.Join(err, d.release(record, pending[i:], nil))
		}
		if reason != "" {
			dl.Status, dl.Error = store.DeliverySkipped, reason
		} else {
			dl.Attempts++
			dl.Provider = d.sender.Provider()
			sendCtx, cancel := context.WithTimeout(record, left)
			id, err := d.sender.Send(sendCtx, dl)
			expired := sendCtx.Err() != nil
			cancel()
			switch {
			case err != nil && expired:
				// Whether the provider took it is unknown; another claim
				// sends it again (issue 5's idempotency keys make that safe).
				return i, errors.Join(fmt.Errorf("send of delivery %s outlived its claim: %w", dl.ID, err),
					d.release(record, pending[i:], nil))
			case err != nil:
				dl.Status, dl.Error = store.DeliveryFailed, err.Error()
			default:
				dl.Status, dl.ProviderMessageID = store.DeliverySent, id
			}
		}
		dl.UpdatedAt = d.now()
		if err := d.deliveries.UpdateDelivery(record, dl); err != nil {
			return i, fmt.Errorf("record delivery %s: %w", dl.ID, err)
		}
	}
	return len(pending), nil
}

// release gives up the claims on unsent deliveries and returns why the
// pass stopped, if it stopped for a reason.
func (d *Dispatcher) release(ctx context.Context, unsent []store.Delivery, why error) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := d.deliveries.ReleaseDeliveries(ctx, unsent); err != nil {
		return errors.Join(why, fmt.Errorf("release %d unsent deliveries: %w", len(unsent), err))
	}
	return why
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
