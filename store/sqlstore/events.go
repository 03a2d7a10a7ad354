package sqlstore

import (
	"cmp"
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	"github.com/kalcifer/kalcifer/store"
)

const eventCols = `tenant_id, id, customer_id, message_id, type, properties, occurred_at, received_at, routed_at`

func scanEvent(r scanner) (store.Event, error) {
	var e store.Event
	var props []byte
	var occurred, received int64
	var routed sql.NullInt64
	err := r.Scan(&e.TenantID, &e.ID, &e.CustomerID, &e.MessageID, &e.Type, &props, &occurred, &received, &routed)
	e.Properties = props
	e.Timestamp, e.ReceivedAt, e.RoutedAt = fromMicros(occurred), fromMicros(received), fromNullMicros(routed)
	return e, err
}

// AppendEvents inserts each event with ON CONFLICT DO NOTHING, so that a
// message id seen before, in an earlier call or earlier in this batch, is
// recognised without aborting the transaction, and then reads the event
// that was kept.
func (s *Store) AppendEvents(ctx context.Context, tenantID string, events []store.Event) ([]store.Event, []bool, error) {
	stored := make([]store.Event, len(events))
	seen := make([]bool, len(events))
	now := stamp(time.Time{})
	err := s.inTx(ctx, func(tx txn) error {
		for i, e := range events {
			e.TenantID, e.RoutedAt = tenantID, nil
			if e.ReceivedAt.IsZero() {
				e.ReceivedAt = now
			}
			e.ReceivedAt = stamp(e.ReceivedAt)
			if e.ID == "" {
				e.ID = store.NewID("evt", e.ReceivedAt)
			}
			if e.MessageID == "" {
				e.MessageID = e.ID
			}
			if e.Timestamp.IsZero() {
				e.Timestamp = e.ReceivedAt
			}
			e.Timestamp = stamp(e.Timestamp)
			e.Properties = []byte(orEmpty(e.Properties))
			res, err := s.exec(ctx, tx, `INSERT INTO events (`+eventCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL)
				ON CONFLICT (tenant_id, message_id) DO NOTHING`,
				e.TenantID, e.ID, e.CustomerID, e.MessageID, e.Type, string(e.Properties),
				e.Timestamp.UnixMicro(), e.ReceivedAt.UnixMicro())
			if err != nil {
				return fmt.Errorf("event %s: %w", e.MessageID, err)
			}
			if n, err := res.RowsAffected(); err != nil || n == 1 {
				stored[i] = e
				continue
			}
			seen[i] = true
			stored[i], err = scanEvent(s.queryRow(ctx, tx, `SELECT `+eventCols+` FROM events
				WHERE tenant_id = ? AND message_id = ?`, tenantID, e.MessageID))
			if err != nil {
				return fmt.Errorf("event %s: %w", e.MessageID, err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("append %d events for tenant %s: %w", len(events), tenantID, s.classify(err))
	}
	return stored, seen, nil
}

// unroutedEvents are claimed oldest first. routed_at IS NULL is the
// condition of the partial index events_unrouted, which gives the order.
var unroutedEvents = claimable[store.Event]{
	table: `events`, key: `tenant_id, id`, cols: eventCols,
	cond: `routed_at IS NULL AND received_at <= ?`, order: `received_at, id`, scan: scanEvent,
	compare: func(a, b store.Event) int {
		return cmp.Or(a.ReceivedAt.Compare(b.ReceivedAt), strings.Compare(a.ID, b.ID))
	},
}

func (s *Store) ClaimUnroutedEvents(ctx context.Context, receivedBefore, now time.Time, lease time.Duration, limit int) ([]store.Event, error) {
	es, err := claim(ctx, s, unroutedEvents, now, lease, limit, stamp(receivedBefore).UnixMicro())
	if err != nil {
		return nil, fmt.Errorf("claim unrouted events: %w", err)
	}
	return es, nil
}

// MarkRouted keeps the first routing time of an event routed twice, and
// ignores ids it does not know.
func (s *Store) MarkRouted(ctx context.Context, tenantID string, ids []string, at time.Time) error {
	us := stamp(at).UnixMicro()
	for rest := ids; len(rest) > 0; {
		n := chunk(len(rest))
		args := []any{us, tenantID}
		for _, id := range rest[:n] {
			args = append(args, id)
		}
		_, err := s.exec(ctx, s.db, `UPDATE events SET routed_at = COALESCE(routed_at, ?)
			WHERE tenant_id = ? AND id IN (?`+strings.Repeat(`, ?`, n-1)+`)`, args...)
		if err != nil {
			return fmt.Errorf("mark %d events of tenant %s routed: %w", len(ids), tenantID, err)
		}
		rest = rest[n:]
	}
	return nil
}

// ListCustomerEvents returns the newest events first: the profile timeline
// and segment rules look at recent behaviour.
func (s *Store) ListCustomerEvents(ctx context.Context, tenantID, customerID string, limit int) ([]store.Event, error) {
	query, args := newList(eventCols, `events`).where(`tenant_id = ?`, tenantID).
		where(`customer_id = ?`, customerID).page(`occurred_at DESC, id DESC`, limit)
	es, err := selectAll(ctx, s, scanEvent, query, args...)
	if err != nil {
		return nil, fmt.Errorf("list events of customer %s: %w", customerID, err)
	}
	return es, nil
}
