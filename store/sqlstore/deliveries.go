package sqlstore

import (
	"context"
	"fmt"

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

// PendingDeliveries spells the status out, as in the partial index
// deliveries_pending, so that the planners use the index.
func (s *Store) PendingDeliveries(ctx context.Context, limit int) ([]store.Delivery, error) {
	query, args := newList(deliveryCols, `deliveries`).where(`status = '`+store.DeliveryPending+`'`).page(`created_at, id`, limit)
	ds, err := selectAll(ctx, s, scanDelivery, query, args...)
	if err != nil {
		return nil, fmt.Errorf("pending deliveries: %w", err)
	}
	return ds, nil
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
