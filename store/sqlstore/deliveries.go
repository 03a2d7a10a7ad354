package sqlstore

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/kalcifer/kalcifer/store"
)

// deliveryInsertCols are what a commit writes; the columns deliveryCols
// adds are what sending and status callbacks learn later.
const (
	deliveryInsertCols = `tenant_id, id, key, journey_id, instance_id, customer_id, node_id, channel, payload,
	status, provider, provider_message_id, error, attempts, created_at, updated_at`
	deliveryCols = deliveryInsertCols + `, error_code, claim_until, attempt_started, sent_at, delivered_at, opened_at, clicked_at,
	template_version`
)

func scanDelivery(r scanner) (store.Delivery, error) {
	var d store.Delivery
	var payload []byte
	var claim, started, sent, delivered, opened, clicked, created, updated int64
	err := r.Scan(&d.TenantID, &d.ID, &d.Key, &d.JourneyID, &d.InstanceID, &d.CustomerID, &d.NodeID, &d.Channel, &payload,
		&d.Status, &d.Provider, &d.ProviderMessageID, &d.Error, &d.Attempts, &created, &updated,
		&d.ErrorCode, &claim, &started, &sent, &delivered, &opened, &clicked, &d.TemplateVersion)
	d.Payload = payload
	d.ClaimUntil, d.AttemptStarted = optionalMicros(claim), optionalMicros(started)
	d.SentAt, d.DeliveredAt, d.OpenedAt, d.ClickedAt = nonZeroMicros(sent), nonZeroMicros(delivered), nonZeroMicros(opened), nonZeroMicros(clicked)
	d.CreatedAt, d.UpdatedAt = fromMicros(created), fromMicros(updated)
	return d, err
}

// optionalMicros reads a time column where 0 means unset.
func optionalMicros(us int64) time.Time {
	if us == 0 {
		return time.Time{}
	}
	return fromMicros(us)
}

func nonZeroMicros(us int64) *time.Time {
	if us == 0 {
		return nil
	}
	t := fromMicros(us)
	return &t
}

// micros writes a time column where 0 means unset.
func micros(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return stamp(t).UnixMicro()
}

func microsOf(t *time.Time) int64 {
	if t == nil {
		return 0
	}
	return micros(*t)
}

// deliveryRows are the rows (deliveryInsertCols) of the deliveries a commit of in adds: they
// belong to in, are pending unless said otherwise, and are created at the
// commit's time unless given one.
func deliveryRows(in store.Instance, ds []store.Delivery) [][]any {
	rows := make([][]any, len(ds))
	for i, d := range ds {
		created := in.UpdatedAt
		if !d.CreatedAt.IsZero() {
			created = stamp(d.CreatedAt)
		}
		if d.ID == "" {
			d.ID = store.NewID("dlv", created)
		}
		rows[i] = []any{in.TenantID, d.ID, d.Key, in.JourneyID, in.ID, in.CustomerID, d.NodeID, d.Channel, orEmpty(d.Payload),
			orDefault(d.Status, store.DeliveryPending), d.Provider, d.ProviderMessageID, d.Error, d.Attempts,
			created.UnixMicro(), created.UnixMicro()}
	}
	return rows
}

// pendingDeliveries are claimed oldest first. The status is spelled out,
// as in the partial index deliveries_pending, so that the planners use the
// index.
var pendingDeliveries = claimable[store.Delivery]{
	table: `deliveries`, key: `tenant_id, id`, cols: deliveryCols,
	cond: `status = '` + store.DeliveryPending + `'`, order: `created_at, id`, scan: scanDelivery,
	compare: func(a, b store.Delivery) int {
		return cmp.Or(a.CreatedAt.Compare(b.CreatedAt), strings.Compare(a.ID, b.ID))
	},
}

func (s *Store) ClaimDeliveries(ctx context.Context, now time.Time, lease time.Duration, limit int) ([]store.Delivery, error) {
	ds, err := claim(ctx, s, pendingDeliveries, now, lease, limit)
	if err != nil {
		return nil, fmt.Errorf("claim pending deliveries: %w", err)
	}
	return ds, nil
}

// ReleaseDeliveries ends the leases of claimed deliveries still pending, in
// one transaction, so another claim takes them at once.
func (s *Store) ReleaseDeliveries(ctx context.Context, ds []store.Delivery) error {
	err := s.inTx(ctx, func(tx txn) error {
		for _, d := range ds {
			if _, err := s.exec(ctx, tx, `UPDATE deliveries SET claim_until = 0 WHERE tenant_id = ? AND id = ? AND status = '`+
				store.DeliveryPending+`'`, d.TenantID, d.ID); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("release %d deliveries: %w", len(ds), s.classify(err))
	}
	return nil
}

func (s *Store) BeginAttempt(ctx context.Context, d store.Delivery) error {
	err := s.execOne(ctx, s.db, `UPDATE deliveries SET attempts = ?, attempt_started = ?, provider = ?
		WHERE tenant_id = ? AND id = ? AND status = '`+store.DeliveryPending+`' AND claim_until = ?`,
		d.Attempts, micros(d.AttemptStarted), d.Provider, d.TenantID, d.ID, micros(d.ClaimUntil))
	if errors.Is(err, store.ErrNotFound) {
		err = fmt.Errorf("delivery is no longer pending under this claim: %w", store.ErrConflict)
	}
	if err != nil {
		return fmt.Errorf("begin attempt %d of delivery %s: %w", d.Attempts, d.ID, s.classify(err))
	}
	return nil
}

// UpdateDelivery changes what a send attempt learns; what was committed to
// be sent (key, payload, recipient) never changes. Only a pending delivery
// takes an outcome, except that a send's success always lands: it is what
// the provider did. A provider can report a message before its send is
// recorded (a fast webhook): a delivery recorded sent takes the bounce,
// failure or delivery already reported.
func (s *Store) UpdateDelivery(ctx context.Context, d store.Delivery) error {
	reported := func(typ string) string {
		return `EXISTS (SELECT 1 FROM delivery_events e WHERE e.tenant_id = deliveries.tenant_id AND e.delivery_id = deliveries.id
			AND e.type = '` + typ + `')`
	}
	err := s.execOne(ctx, s.db, `UPDATE deliveries SET status = CASE WHEN ? <> '`+store.DeliverySent+`' THEN ?
			WHEN `+reported(store.DeliveryBounced)+` THEN '`+store.DeliveryBounced+`'
			WHEN `+reported(store.DeliveryFailed)+` THEN '`+store.DeliveryFailed+`'
			WHEN delivered_at > 0 THEN '`+store.DeliveryDelivered+`' ELSE '`+store.DeliverySent+`' END,
		provider = ?, provider_message_id = ?, error = ?, error_code = ?, attempts = ?, claim_until = ?, attempt_started = ?,
		sent_at = ?, template_version = ?, updated_at = ?
		WHERE tenant_id = ? AND id = ? AND (status = '`+store.DeliveryPending+`' OR ? = '`+store.DeliverySent+`')`,
		d.Status, d.Status, d.Provider, d.ProviderMessageID, d.Error, d.ErrorCode, d.Attempts, micros(d.ClaimUntil),
		micros(d.AttemptStarted), microsOf(d.SentAt), d.TemplateVersion, stamp(d.UpdatedAt).UnixMicro(), d.TenantID, d.ID, d.Status)
	if err != nil {
		return fmt.Errorf("update delivery %s: %w", d.ID, s.classify(err))
	}
	return nil
}

func (s *Store) GetDelivery(ctx context.Context, tenantID, id string) (store.Delivery, error) {
	d, err := scanDelivery(s.queryRow(ctx, s.reads, `SELECT `+deliveryCols+` FROM deliveries WHERE tenant_id = ? AND id = ?`, tenantID, id))
	if err != nil {
		return store.Delivery{}, fmt.Errorf("get delivery %s: %w", id, s.classify(err))
	}
	return d, nil
}

func deliveryList(cols, tenantID string, f store.DeliveryFilter) *list {
	l := newList(cols, `deliveries`).where(`tenant_id = ?`, tenantID)
	return eq(eq(eq(eq(eq(l, `journey_id`, f.JourneyID), `instance_id`, f.InstanceID), `customer_id`, f.CustomerID),
		`channel`, f.Channel), `status`, f.Status)
}

func (s *Store) CountDeliveries(ctx context.Context, tenantID string, f store.DeliveryFilter) ([]store.DeliveryCount, error) {
	query, args := deliveryList(`channel, status, COUNT(*), SUM(CASE WHEN opened_at > 0 THEN 1 ELSE 0 END),
		SUM(CASE WHEN clicked_at > 0 THEN 1 ELSE 0 END)`, tenantID, f).page(`channel, status`, 0)
	query = strings.Replace(query, ` ORDER BY `, ` GROUP BY channel, status ORDER BY `, 1)
	type row struct {
		store.DeliveryCount
		opened, clicked int
	}
	rows, err := selectAll(ctx, s, func(r scanner) (row, error) {
		var x row
		return x, r.Scan(&x.Channel, &x.Status, &x.Count, &x.opened, &x.clicked)
	}, query, args...)
	if err != nil {
		return nil, fmt.Errorf("count deliveries of tenant %s: %w", tenantID, err)
	}
	var counts []store.DeliveryCount
	engaged := map[string][2]int{}
	var channels []string
	for _, r := range rows {
		counts = append(counts, r.DeliveryCount)
		e, seen := engaged[r.Channel]
		if !seen {
			channels = append(channels, r.Channel)
		}
		engaged[r.Channel] = [2]int{e[0] + r.opened, e[1] + r.clicked}
	}
	for _, ch := range channels {
		for i, status := range []string{"opened", "clicked"} {
			if n := engaged[ch][i]; n > 0 {
				counts = append(counts, store.DeliveryCount{Channel: ch, Status: status, Count: n})
			}
		}
	}
	return counts, nil
}

func (s *Store) RecordDeliveryEvent(ctx context.Context, ev store.DeliveryEvent, apply func(store.Delivery) store.Delivery) (store.Delivery, bool, error) {
	var d store.Delivery
	var recorded bool
	err := s.inTx(ctx, func(tx txn) error {
		var err error
		if ev.DeliveryID != "" {
			d, err = scanDelivery(s.queryRow(ctx, tx, `SELECT `+deliveryCols+` FROM deliveries WHERE tenant_id = ? AND id = ?`+s.d.ForUpdate,
				ev.TenantID, ev.DeliveryID))
		} else {
			d, err = scanDelivery(s.queryRow(ctx, tx, `SELECT `+deliveryCols+` FROM deliveries
				WHERE tenant_id = ? AND provider = ? AND provider_message_id = ? AND provider_message_id <> ''`+s.d.ForUpdate,
				ev.TenantID, ev.Provider, ev.MessageID))
		}
		if err != nil {
			return err
		}
		res, err := s.exec(ctx, tx, `INSERT INTO delivery_events (tenant_id, delivery_id, type, event_id, reason, at, received_at)
			VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`,
			ev.TenantID, d.ID, ev.Type, ev.EventID, ev.Reason, stamp(ev.At).UnixMicro(), stamp(ev.ReceivedAt).UnixMicro())
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 {
			return err
		}
		recorded = true
		d = apply(d)
		d, err = scanDelivery(s.queryRow(ctx, tx, `UPDATE deliveries SET status = ?, error = ?, error_code = ?, delivered_at = ?,
			opened_at = ?, clicked_at = ?, updated_at = ? WHERE tenant_id = ? AND id = ? RETURNING `+deliveryCols,
			d.Status, d.Error, d.ErrorCode, microsOf(d.DeliveredAt), microsOf(d.OpenedAt), microsOf(d.ClickedAt),
			stamp(ev.ReceivedAt).UnixMicro(), d.TenantID, d.ID))
		return err
	})
	if err != nil {
		return store.Delivery{}, false, fmt.Errorf("record %s event of delivery %s%s: %w", ev.Type, ev.DeliveryID, ev.MessageID, s.classify(err))
	}
	return d, recorded, nil
}

func (s *Store) ListDeliveries(ctx context.Context, tenantID string, f store.DeliveryFilter) ([]store.Delivery, error) {
	query, args := deliveryList(deliveryCols, tenantID, f).byID(f.After, f.Limit)
	ds, err := selectAll(ctx, s, scanDelivery, query, args...)
	if err != nil {
		return nil, fmt.Errorf("list deliveries of tenant %s: %w", tenantID, err)
	}
	return ds, nil
}
