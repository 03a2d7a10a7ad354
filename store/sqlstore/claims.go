package sqlstore

import (
	"context"
	"slices"
	"strings"
	"time"
)

// claimable is what a claim takes from table: rows that pass cond, first
// in order. key identifies a row, scan reads the columns cols, and compare
// orders what scan read as order orders the rows.
type claimable[T any] struct {
	table, key, cols, cond, order string
	scan                          func(scanner) (T, error)
	compare                       func(a, b T) int
}

// claim leases to the caller, until now+lease, up to limit rows of c that
// pass c.cond with args and are not leased at now, the first in c.order,
// and returns them in that order.
//
// It is one statement, an UPDATE of the rows a sub-SELECT picks, so two
// claims never take one row: SQLite runs one writer at a time (s.db, the
// writer's pool), and on PostgreSQL the sub-SELECT locks the rows it picks,
// skipping those a concurrent claim has locked; a row that a claim leased
// and committed after this statement began fails the recheck of
// claim_until that PostgreSQL makes when it locks a row changed since.
// The rows are sorted here, as RETURNING keeps no order.
func claim[T any](ctx context.Context, s *Store, c claimable[T], now time.Time, lease time.Duration, limit int, args ...any) ([]T, error) {
	now = stamp(now)
	pick, pickArgs := newList(c.key, c.table).where(c.cond, args...).where(`claim_until <= ?`, now.UnixMicro()).page(c.order, limit)
	rows, err := s.query(ctx, s.db, `UPDATE `+c.table+` SET claim_until = ?
		FROM (`+pick+s.d.SkipLocked+`) AS claimed
		WHERE (`+qualified(c.table, c.key)+`) = (`+qualified(`claimed`, c.key)+`)
		RETURNING `+qualified(c.table, c.cols), append([]any{now.Add(lease).UnixMicro()}, pickArgs...)...)
	if err != nil {
		return nil, err
	}
	claimed, err := scanAll(rows, c.scan)
	if err != nil {
		return nil, err
	}
	slices.SortFunc(claimed, c.compare)
	return claimed, nil
}

// qualified names each column of cols as table's: the columns a claim
// returns have namesakes in its sub-SELECT.
func qualified(table, cols string) string {
	names := strings.Split(cols, ",")
	for i, name := range names {
		names[i] = table + "." + strings.TrimSpace(name)
	}
	return strings.Join(names, ", ")
}
