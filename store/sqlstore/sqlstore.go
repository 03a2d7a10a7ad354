// Package sqlstore is the one implementation of store.Store over
// database/sql. The SQLite and PostgreSQL stores differ only in their
// Dialect and their migrations, so every query is written once, with ?
// placeholders, in the SQL both databases accept.
package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"strings"
	"time"

	"github.com/kalcifer/kalcifer/store"
)

// Dialect is what differs between the databases.
type Dialect struct {
	// Name is what Store.Driver reports.
	Name string
	// NumberedParams rewrites each ? to $1, $2, … for PostgreSQL.
	NumberedParams bool
	// ForUpdate ends a SELECT that must lock the row it reads until commit.
	// It is empty where write transactions already exclude each other, as
	// SQLite's do when they begin IMMEDIATE.
	ForUpdate string
	// MigrationLock, if set, runs first in every migration transaction so
	// that processes migrating at the same time apply each file once.
	MigrationLock string
	// IsUniqueViolation and IsForeignKeyViolation classify driver errors.
	IsUniqueViolation     func(error) bool
	IsForeignKeyViolation func(error) bool
	// Migrations holds the files NNNN_name.sql at its root.
	Migrations fs.FS
}

// Store implements store.Store, store.Tenants and store.Journeys.
type Store struct {
	db *sql.DB
	d  Dialect
}

var _ store.Store = (*Store)(nil)

// New returns a store over db, which the store closes on Close.
func New(db *sql.DB, d Dialect) *Store {
	return &Store{db: db, d: d}
}

func (s *Store) Tenants() store.Tenants   { return s }
func (s *Store) Journeys() store.Journeys { return s }
func (s *Store) Driver() string           { return s.d.Name }
func (s *Store) Close() error             { return s.db.Close() }

func (s *Store) Ping(ctx context.Context) error {
	if err := s.db.PingContext(ctx); err != nil {
		return fmt.Errorf("ping %s: %w", s.d.Name, err)
	}
	return nil
}

// querier is what *sql.DB and *sql.Tx have in common.
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// rebind turns the ? placeholders into the dialect's. No query here has a ?
// inside a string literal.
func (s *Store) rebind(query string) string {
	if !s.d.NumberedParams {
		return query
	}
	var b strings.Builder
	n := 0
	for _, r := range query {
		if r != '?' {
			b.WriteRune(r)
			continue
		}
		n++
		b.WriteByte('$')
		b.WriteString(strconv.Itoa(n))
	}
	return b.String()
}

func (s *Store) exec(ctx context.Context, q querier, query string, args ...any) (sql.Result, error) {
	return q.ExecContext(ctx, s.rebind(query), args...)
}

func (s *Store) query(ctx context.Context, q querier, query string, args ...any) (*sql.Rows, error) {
	return q.QueryContext(ctx, s.rebind(query), args...)
}

func (s *Store) queryRow(ctx context.Context, q querier, query string, args ...any) *sql.Row {
	return q.QueryRowContext(ctx, s.rebind(query), args...)
}

// execOne runs a statement that must change exactly one row; none is ErrNotFound.
func (s *Store) execOne(ctx context.Context, q querier, query string, args ...any) error {
	res, err := s.exec(ctx, q, query, args...)
	if err != nil {
		return err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		return store.ErrNotFound
	}
	return nil
}

// inTx runs fn in a transaction and commits if fn returns nil.
func (s *Store) inTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	return tx.Commit()
}

// classify maps driver errors onto the store's errors, keeping the driver's
// message. A foreign key fails only when the parent row is missing.
func (s *Store) classify(err error) error {
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return store.ErrNotFound
	case s.d.IsUniqueViolation(err):
		return fmt.Errorf("%w: %w", store.ErrConflict, err)
	case s.d.IsForeignKeyViolation(err):
		return fmt.Errorf("%w: %w", store.ErrNotFound, err)
	}
	return err
}

type scanner interface{ Scan(dest ...any) error }

// selectAll runs query and scans every row it returns with scan.
func selectAll[T any](ctx context.Context, s *Store, scan func(scanner) (T, error), query string, args ...any) ([]T, error) {
	rows, err := s.query(ctx, s.db, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// stamp is the time as stored: UTC microseconds. The zero time means now.
func stamp(t time.Time) time.Time {
	if t.IsZero() {
		t = time.Now()
	}
	return time.UnixMicro(t.UnixMicro()).UTC()
}

func fromMicros(us int64) time.Time { return time.UnixMicro(us).UTC() }

func fromNullMicros(us sql.NullInt64) *time.Time {
	if !us.Valid {
		return nil
	}
	t := fromMicros(us.Int64)
	return &t
}
