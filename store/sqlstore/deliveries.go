package sqlstore

import (
	"cmp"
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/kalcifer/kalcifer/store"
)

const deliveryCols = `tenant_id, id, key, journey_id, instance_id, customer_id, node_id, channel, payload,
	status, provider, provider_message_id, error, attempts, created_at, updated_at`

func scanDelivery(r scanner) (store.Delivery, error) {
	var d store.Delivery
	var payload []byte
	var created, updated int64
	err := r.Scan(&d.TenantID, &d.ID, &d.Key, &d.JourneyID, &d.InstanceID, &d.CustomerID, &d.NodeID, &d.Channel, &payload,
		&d.Status, &d.Provider, &d.ProviderMessageID, &d.Error, &d.Attempts, &created, &updated)
	d.Payload = payload
	d.CreatedAt, d.UpdatedAt = fromMicros(created), fromMicros(updated)
	return d, err
}

// deliveryRows are the rows of the deliveries a commit of in adds: they
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

// UpdateDelivery changes what a send attempt learns; what was committed to
// be sent (key, payload, recipient) never changes.
func (s *Store) UpdateDelivery(ctx context.Context, d store.Delivery) error {
	err := s.execOne(ctx, s.db, `UPDATE deliveries SET status = ?, provider = ?, provider_message_id = ?, error = ?,
		attempts = ?, updated_at = ? WHERE tenant_id = ? AND id = ?`,
		d.Status, d.Provider, d.ProviderMessageID, d.Error, d.Attempts, stamp(d.UpdatedAt).UnixMicro(), d.TenantID, d.ID)
	if err != nil {
		return fmt.Errorf("update delivery %s: %w", d.ID, s.classify(err))
	}
	return nil
}

func (s *Store) ListDeliveries(ctx context.Context, tenantID string, f store.DeliveryFilter) ([]store.Delivery, error) {
	l := newList(deliveryCols, `deliveries`).where(`tenant_id = ?`, tenantID)
	eq(eq(eq(eq(l, `journey_id`, f.JourneyID), `instance_id`, f.InstanceID), `customer_id`, f.CustomerID), `status`, f.Status)
	query, args := l.byID(f.After, f.Limit)
	ds, err := selectAll(ctx, s, scanDelivery, query, args...)
	if err != nil {
		return nil, fmt.Errorf("list deliveries of tenant %s: %w", tenantID, err)
	}
	return ds, nil
}
