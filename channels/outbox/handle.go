package outbox

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/kalcifer/kalcifer/channels"
	"github.com/kalcifer/kalcifer/channels/accounts"
	"github.com/kalcifer/kalcifer/channels/compose"
	"github.com/kalcifer/kalcifer/store"
)

// pass is one claimed batch being handled; it caches what its deliveries
// share.
type pass struct {
	d      *Dispatcher
	leased time.Time
	record context.Context

	mu        sync.Mutex
	tenants   map[string]store.Tenant
	templates map[string]*store.Template
}

// handle decides a delivery and records the decision. It returns an error
// only when the store failed: the pass then stops.
func (p *pass) handle(ctx context.Context, dl store.Delivery) error {
	d := p.d
	st := d.o.Store
	now := d.o.Now()
	customer, err := st.Customers().GetCustomer(ctx, dl.TenantID, dl.CustomerID)
	if err != nil {
		return p.giveBack(dl, fmt.Errorf("load customer %s of delivery %s: %w", dl.CustomerID, dl.ID, err))
	}
	tenant, err := p.tenant(ctx, dl.TenantID)
	if err != nil {
		return p.giveBack(dl, err)
	}
	// Checked at send time, not when the journey step ran, so an opt-out
	// that arrives while a message waits in the outbox is still honoured.
	// Webhooks are not the customer's channel.
	if accepted, set := customer.Preferences[dl.Channel]; set && !accepted && dl.Channel != channels.Webhook {
		return p.finish(dl, store.DeliverySkipped, CodeOptedOut, "customer opted out of "+dl.Channel)
	}
	_, cfg, err := compose.DecodePayload(dl.Payload)
	if err != nil {
		return p.finish(dl, store.DeliveryFailed, "bad_payload", err.Error())
	}
	account, err := d.o.Accounts.For(ctx, dl.TenantID, dl.Channel, cfg.Provider)
	if errors.Is(err, accounts.ErrNoAccount) {
		return p.finish(dl, store.DeliveryFailed, CodeNoProvider, err.Error())
	}
	if err != nil {
		return p.giveBack(dl, fmt.Errorf("provider account of delivery %s: %w", dl.ID, err))
	}
	// The account's id, not its name: status callbacks find deliveries by
	// it, and a name can change.
	dl.Provider = account.ID
	if !dl.AttemptStarted.IsZero() && dl.Attempts >= d.o.MaxAttempts {
		// Every attempt ended mid-send: a message that brings its sender
		// down is not tried forever.
		return p.finish(dl, store.DeliveryFailed, CodeRetriesExhausted, fmt.Sprintf(
			"%d attempts began and none was recorded: each ended mid-send", dl.Attempts))
	}
	if !dl.AttemptStarted.IsZero() && (dl.DeliveredAt != nil || dl.OpenedAt != nil || dl.ClickedAt != nil) {
		// The provider reported the message since: it took it.
		dl.Status, dl.SentAt, dl.AttemptStarted = store.DeliverySent, &now, time.Time{}
		return p.save(dl)
	}
	if !dl.AttemptStarted.IsZero() && !account.Kind.Idempotent {
		// An earlier attempt began and was never recorded: the process
		// died mid-send. The provider may have the message, and it takes no
		// idempotency key, so sending again could send twice.
		d.m.unsure.WithLabelValues(account.Kind.Name).Inc()
		return p.finish(dl, store.DeliveryFailed, CodeOutcomeUnknown, fmt.Sprintf(
			"attempt %d began at %s and its outcome was never recorded; %s takes no idempotency key, so it is not sent again",
			dl.Attempts, dl.AttemptStarted.Format(time.RFC3339), account.Kind.Name))
	}
	var tpl *store.Template
	if cfg.TemplateID != "" {
		if tpl, err = p.template(ctx, dl.TenantID, cfg.TemplateID); errors.Is(err, store.ErrNotFound) {
			return p.finish(dl, store.DeliveryFailed, CodeTemplateNotFound, fmt.Sprintf("template %s does not exist", cfg.TemplateID))
		} else if err != nil {
			return p.giveBack(dl, err)
		}
		dl.TemplateVersion = tpl.Version
	}
	msg, err := d.o.Renderer.Message(compose.Input{Delivery: dl, Customer: customer, Template: tpl})
	var skip *compose.Skip
	if errors.As(err, &skip) {
		return p.finish(dl, store.DeliverySkipped, skip.Code, skip.Reason)
	}
	if err != nil {
		e := channels.Classify(err)
		return p.finish(dl, store.DeliveryFailed, e.Code, e.Err.Error())
	}
	if until, quiet := QuietUntil(tenant.Settings.QuietHours, dl.Channel, customer.Timezone, now); quiet {
		return p.postpone(dl, until, CodeQuietHours, "quiet hours in the customer's time zone until "+until.Format(time.RFC3339))
	}
	g := d.guard(account, now)
	token, probe, until, code := g.admit(now)
	switch code {
	case CodeThrottled:
		return p.postpone(dl, until, CodeThrottled, fmt.Sprintf("%s allows %g messages a second", account.Name, account.Rate))
	case CodeCircuitOpen:
		return p.postpone(dl, until, CodeCircuitOpen, account.Name+" failed repeatedly; sends pause until "+until.Format(time.RFC3339))
	}
	return p.send(dl, account, g, msg, token, probe)
}

// send makes the attempt: recorded as begun, sent within what is left of
// the claim, and its outcome recorded.
func (p *pass) send(dl store.Delivery, account *accounts.Account, g *guard, msg channels.Message, token *rate.Reservation, probe bool) error {
	d := p.d
	dl.Attempts++
	dl.AttemptStarted = d.o.Now()
	if err := d.o.Store.Deliveries().BeginAttempt(p.record, dl); err != nil {
		g.breaker.cancel(probe)
		token.CancelAt(dl.AttemptStarted)
		if errors.Is(err, store.ErrConflict) {
			// Another claim has it; that claim decides.
			return nil
		}
		return p.giveBack(dl, err)
	}
	started := d.o.Now()
	sendCtx, cancel := context.WithTimeout(p.record, p.leased.Sub(started))
	answered := false
	defer func() {
		if !answered { // the provider panicked: its allowance is given back
			g.breaker.cancel(probe)
		}
	}()
	id, err := account.Send(sendCtx, msg)
	answered = true
	expired := sendCtx.Err() != nil
	cancel()
	d.m.sendSeconds.WithLabelValues(account.Kind.Name).Observe(d.o.Now().Sub(started).Seconds())
	now := d.o.Now()
	dl.AttemptStarted = time.Time{}
	if err == nil {
		g.breaker.done(now, probe, false)
		dl.Status, dl.ProviderMessageID, dl.SentAt, dl.Error, dl.ErrorCode = store.DeliverySent, id, &now, "", ""
		d.m.latency.WithLabelValues(dl.Channel).Observe(now.Sub(dl.CreatedAt).Seconds())
		return p.save(dl)
	}
	e := channels.Classify(err)
	if expired {
		// Cut off at the end of the claim: whether the provider took it
		// is unknown, as for a connection lost mid-request.
		e = &channels.Error{Retryable: true, Unsure: true, Code: "claim_expired", Err: err}
	}
	g.breaker.done(now, probe, e.Retryable)
	switch {
	case e.Unsure && !account.Kind.Idempotent:
		d.m.unsure.WithLabelValues(account.Kind.Name).Inc()
		return p.finish(dl, store.DeliveryFailed, CodeOutcomeUnknown, fmt.Sprintf(
			"%v; the provider may have taken the message and takes no idempotency key, so it is not sent again", e))
	case e.Retryable && dl.Attempts < d.o.MaxAttempts:
		return p.postpone(dl, now.Add(max(d.backoff(dl.Attempts), e.RetryAfter)), e.Code, e.Error())
	case e.Retryable:
		return p.finish(dl, store.DeliveryFailed, CodeRetriesExhausted, fmt.Sprintf("%d attempts failed; the last: %v", dl.Attempts, e))
	}
	return p.finish(dl, store.DeliveryFailed, e.Code, e.Err.Error())
}

// finish records a final decision.
func (p *pass) finish(dl store.Delivery, status, code, reason string) error {
	dl.Status, dl.ErrorCode, dl.Error, dl.AttemptStarted = status, code, reason, time.Time{}
	return p.save(dl)
}

// postpone keeps the delivery pending and unclaimed until at.
func (p *pass) postpone(dl store.Delivery, at time.Time, code, reason string) error {
	dl.ClaimUntil, dl.ErrorCode, dl.Error = at, code, reason
	p.d.m.deferred.WithLabelValues(code).Inc()
	return p.save(dl)
}

func (p *pass) save(dl store.Delivery) error {
	dl.UpdatedAt = p.d.o.Now()
	err := p.d.o.Store.Deliveries().UpdateDelivery(p.record, dl)
	if errors.Is(err, store.ErrNotFound) {
		// Decided meanwhile by a claim that took over after this one's
		// lease lapsed; that decision stands.
		p.d.log.Warn("delivery decided by another claim", "delivery_id", dl.ID, "outcome", dl.Status, "code", dl.ErrorCode)
		return nil
	}
	if err != nil {
		return fmt.Errorf("record delivery %s: %w", dl.ID, err)
	}
	if dl.Status != store.DeliveryPending {
		p.d.m.deliveries.WithLabelValues(dl.Channel, dl.Provider, dl.Status).Inc()
	}
	return nil
}

// giveBack releases a delivery the pass could not decide, so the next
// claim takes it, and returns why.
func (p *pass) giveBack(dl store.Delivery, why error) error {
	return errors.Join(why, p.d.release(p.record, []store.Delivery{dl}))
}

func (p *pass) tenant(ctx context.Context, id string) (store.Tenant, error) {
	p.mu.Lock()
	t, ok := p.tenants[id]
	p.mu.Unlock()
	if ok {
		return t, nil
	}
	t, err := p.d.o.Store.Tenants().GetTenant(ctx, id)
	if err != nil {
		return t, fmt.Errorf("load tenant %s: %w", id, err)
	}
	p.mu.Lock()
	p.tenants[id] = t
	p.mu.Unlock()
	return t, nil
}

func (p *pass) template(ctx context.Context, tenantID, id string) (*store.Template, error) {
	key := tenantID + "/" + id
	p.mu.Lock()
	t, ok := p.templates[key]
	p.mu.Unlock()
	if ok {
		return t, nil
	}
	got, err := p.d.o.Store.Templates().GetTemplate(ctx, tenantID, id, 0)
	if err != nil {
		return nil, fmt.Errorf("load template %s: %w", id, err)
	}
	p.mu.Lock()
	p.templates[key] = &got
	p.mu.Unlock()
	return &got, nil
}
