// Package sqlstore is the one implementation of store.Store over
// database/sql. The SQLite and PostgreSQL stores differ only in their
// Dialect and their migrations, so every query is written once, with ?
// placeholders, in the SQL both databases accept.
package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
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
	// JSONArrayElements is the table function that turns a JSON array of
	// strings into rows with a column value: json_each on SQLite,
	// jsonb_array_elements_text on PostgreSQL.
	JSONArrayElements string
	// MigrationLock, if set, runs first in every migration transaction so
	// that processes migrating at the same time apply each file once.
	MigrationLock string
	// IsUniqueViolation and IsForeignKeyViolation classify driver errors.
	IsUniqueViolation     func(error) bool
	IsForeignKeyViolation func(error) bool
	// Migrations holds the files NNNN_name.sql at its root.
	Migrations fs.FS
}

// Store implements store.Store and every aggregate interface.
type Store struct {
	db *sql.DB
	d  Dialect
}

var _ store.Store = (*Store)(nil)

// New returns a store over db, which the store closes on Close.
func New(db *sql.DB, d Dialect) *Store {
	return &Store{db: db, d: d}
}

func (s *Store) Tenants() store.Tenants       { return s }
func (s *Store) Journeys() store.Journeys     { return s }
func (s *Store) Customers() store.Customers   { return s }
func (s *Store) Events() store.Events         { return s }
func (s *Store) Instances() store.Instances   { return s }
func (s *Store) Deliveries() store.Deliveries { return s }
func (s *Store) Driver() string               { return s.d.Name }
func (s *Store) Close() error                 { return s.db.Close() }

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

// list builds a SELECT of the rows that pass every condition added, ordered
// by id and paged after the last id of the previous page.
type list struct {
	query string
	args  []any
}

func newList(cols, table string) *list {
	return &list{query: `SELECT ` + cols + ` FROM ` + table + ` WHERE 1 = 1`}
}

// where adds a condition and the arguments of its placeholders.
func (l *list) where(cond string, args ...any) *list {
	l.query += ` AND ` + cond
	l.args = append(l.args, args...)
	return l
}

// eq adds col = v unless v is the zero value, which filters nothing.
func eq[T comparable](l *list, col string, v T) *list {
	var zero T
	if v == zero {
		return l
	}
	return l.where(col+` = ?`, v)
}

// page orders by orderBy and returns the query; a limit of 0 or less
// returns every row.
func (l *list) page(orderBy string, limit int) (string, []any) {
	query, args := l.query+` ORDER BY `+orderBy, l.args
	if limit > 0 {
		query += ` LIMIT ?`
		args = append(args, limit)
	}
	return query, args
}

// holding keeps the rows whose JSON array of strings col holds v, unless v
// is empty, which filters nothing.
func (s *Store) holding(l *list, col, v string) *list {
	if v == "" {
		return l
	}
	return l.where(`EXISTS (SELECT 1 FROM `+s.d.JSONArrayElements+`(`+col+`) WHERE value = ?)`, v)
}

// byID pages by id, after the last id of the previous page.
func (l *list) byID(after string, limit int) (string, []any) {
	if after != "" {
		l.where(`id > ?`, after)
	}
	return l.page(`id`, limit)
}

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

// jsonText encodes v for a JSON column. It is text, not bytes, so that
// SQLite stores TEXT, which json_valid checks, and PostgreSQL parses it into
// JSONB.
func jsonText(v any) (string, error) {
	b, err := json.Marshal(v)
	return string(b), err
}

// rawJSON is a caller's JSON for a nullable column, where empty means NULL.
func rawJSON(raw json.RawMessage) any {
	if len(raw) == 0 {
		return nil
	}
	return string(raw)
}

// orEmpty is a caller's JSON for a NOT NULL column, where empty means {}.
func orEmpty(raw json.RawMessage) string {
	if len(raw) == 0 {
		return `{}`
	}
	return string(raw)
}
