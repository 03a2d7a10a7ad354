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
	"sync"
	"sync/atomic"
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
	// SkipLocked ends the SELECT of a claim, which then passes over the
	// rows a concurrent claim has locked instead of waiting to find them
	// leased. It is empty where write transactions exclude each other.
	SkipLocked string
	// JSONArrayElements is the table function that turns a JSON array of
	// strings into rows with a column value: json_each on SQLite,
	// jsonb_array_elements_text on PostgreSQL.
	JSONArrayElements string
	// MigrationLock, if set, runs first in every migration transaction so
	// that processes migrating at the same time apply each file once.
	MigrationLock string
	// AfterMigration, if set, runs in each migration's transaction right
	// after its file: SQLite increments its schema version there, as a
	// migration that edits the schema text leaves the connections that
	// read the schema before, the migrating one included, with the old one.
	AfterMigration func(ctx context.Context, tx *sql.Tx) error
	// IsUniqueViolation and IsForeignKeyViolation classify driver errors.
	IsUniqueViolation     func(error) bool
	IsForeignKeyViolation func(error) bool
	// Migrations holds the files NNNN_name.sql at its root.
	Migrations fs.FS
	// DriverCachesStatements is set where the driver keeps each
	// connection's statements prepared itself, as pgx does; the store then
	// prepares none. (pgx's database/sql pool keeps no idle connections, so
	// statements prepared through database/sql would be prepared again and
	// deallocated on nearly every use.)
	DriverCachesStatements bool
}

// Store implements store.Store and every aggregate interface. It writes
// through db and reads through reads, which is db unless the database has
// a pool of its own for readers (SQLite, whose one writer would otherwise
// hold up every read).
type Store struct {
	db    *pool
	reads *pool
	d     Dialect
}

var _ store.Store = (*Store)(nil)

// New returns a store over db, which the store closes on Close.
func New(db *sql.DB, d Dialect) *Store {
	p := newPool(db, d)
	return &Store{db: p, reads: p, d: d}
}

// NewReadWrite returns a store that writes through writes and reads through
// reads, two handles on the same database; the store closes both on Close.
func NewReadWrite(writes, reads *sql.DB, d Dialect) *Store {
	return &Store{db: newPool(writes, d), reads: newPool(reads, d), d: d}
}

func (s *Store) Tenants() store.Tenants       { return s }
func (s *Store) Journeys() store.Journeys     { return s }
func (s *Store) Customers() store.Customers   { return s }
func (s *Store) Events() store.Events         { return s }
func (s *Store) Instances() store.Instances   { return s }
func (s *Store) Deliveries() store.Deliveries { return s }
func (s *Store) Providers() store.Providers   { return s }
func (s *Store) Templates() store.Templates   { return s }
func (s *Store) Migrations() store.Migrations { return s }
func (s *Store) Driver() string               { return s.d.Name }

// Close closes the prepared statements, then the database handles.
func (s *Store) Close() error {
	err := s.db.close()
	if s.reads != s.db {
		err = errors.Join(err, s.reads.close())
	}
	return err
}

func (s *Store) Ping(ctx context.Context) error {
	if err := s.db.db.PingContext(ctx); err != nil {
		return fmt.Errorf("ping %s: %w", s.d.Name, err)
	}
	return nil
}

// querier runs statements: a pool or a transaction on one.
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// maxStmts bounds the statements a pool keeps prepared. Every query text
// comes from a small set (multi-row statements take rows in a few fixed
// chunk sizes), so the bound is only a guard: beyond it, statements are
// prepared for each call as database/sql does by default.
const maxStmts = 1000

// pool is a database handle that prepares each distinct statement once
// and keeps it. database/sql itself prepares, runs and finalizes a
// statement on every call, and for SQLite parsing the SQL again is most of
// the cost of a small statement. A kept *sql.Stmt is prepared on each
// connection the first time it runs there, then reused.
type pool struct {
	db      *sql.DB
	prepare bool
	stmts   sync.Map // query text → *sql.Stmt
	n       atomic.Int64
}

func newPool(db *sql.DB, d Dialect) *pool {
	return &pool{db: db, prepare: !d.DriverCachesStatements}
}

// cached returns the statement prepared for query, or nil.
func (p *pool) cached(query string) *sql.Stmt {
	if st, ok := p.stmts.Load(query); ok {
		return st.(*sql.Stmt)
	}
	return nil
}

// stmt returns the statement for query, preparing it the first time; nil
// when the pool prepares none or has reached maxStmts.
func (p *pool) stmt(ctx context.Context, query string) (*sql.Stmt, error) {
	if !p.prepare {
		return nil, nil
	}
	if st := p.cached(query); st != nil {
		return st, nil
	}
	if p.n.Load() >= maxStmts {
		return nil, nil
	}
	st, err := p.db.PrepareContext(ctx, query)
	if err != nil {
		return nil, fmt.Errorf("prepare: %w", err)
	}
	if prev, loaded := p.stmts.LoadOrStore(query, st); loaded {
		// Another goroutine prepared it first.
		_ = st.Close()
		return prev.(*sql.Stmt), nil
	}
	p.n.Add(1)
	return st, nil
}

func (p *pool) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	st, err := p.stmt(ctx, query)
	switch {
	case err != nil:
		return nil, err
	case st == nil:
		return p.db.ExecContext(ctx, query, args...)
	}
	return st.ExecContext(ctx, args...)
}

func (p *pool) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	st, err := p.stmt(ctx, query)
	switch {
	case err != nil:
		return nil, err
	case st == nil:
		return p.db.QueryContext(ctx, query, args...)
	}
	return st.QueryContext(ctx, args...)
}

// QueryRowContext runs a statement that did not prepare unprepared, as
// only a *sql.Row can carry its error to Scan.
func (p *pool) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	st, err := p.stmt(ctx, query)
	if err != nil || st == nil {
		return p.db.QueryRowContext(ctx, query, args...)
	}
	return st.QueryRowContext(ctx, args...)
}

func (p *pool) close() error {
	var err error
	p.stmts.Range(func(_, st any) bool {
		err = errors.Join(err, st.(*sql.Stmt).Close())
		return true
	})
	return errors.Join(err, p.db.Close())
}

// txn is a transaction on a pool. It runs the pool's statements, bound to
// its connection, where database/sql reuses them.
type txn struct {
	*sql.Tx
	p *pool
	// missed collects the statements run unprepared because the pool had
	// none for them yet: the pool prepares them once the transaction has
	// ended, as preparing takes a connection of the pool, and a pool of
	// one (SQLite's writer) has none until then.
	missed *[]string
}

// bind returns the pool's statement for query bound to the transaction,
// or nil if the pool has none yet.
func (t txn) bind(ctx context.Context, query string) *sql.Stmt {
	if !t.p.prepare {
		return nil
	}
	st := t.p.cached(query)
	if st == nil {
		*t.missed = append(*t.missed, query)
		return nil
	}
	return t.StmtContext(ctx, st)
}

func (t txn) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if st := t.bind(ctx, query); st != nil {
		return st.ExecContext(ctx, args...)
	}
	return t.Tx.ExecContext(ctx, query, args...)
}

func (t txn) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if st := t.bind(ctx, query); st != nil {
		return st.QueryContext(ctx, args...)
	}
	return t.Tx.QueryContext(ctx, query, args...)
}

func (t txn) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	if st := t.bind(ctx, query); st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	return t.Tx.QueryRowContext(ctx, query, args...)
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

// inTx runs fn in a transaction and commits if fn returns nil; then it
// prepares the statements the transaction ran unprepared. A statement that
// does not prepare is left for the next time: it has run already, and any
// error it had was fn's.
func (s *Store) inTx(ctx context.Context, fn func(tx txn) error) error {
	tx, err := s.db.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	var missed []string
	defer func() {
		for _, query := range missed {
			_, _ = s.db.stmt(ctx, query)
		}
	}()
	if err := fn(txn{Tx: tx, p: s.db, missed: &missed}); err != nil {
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
	rows, err := s.query(ctx, s.reads, query, args...)
	if err != nil {
		return nil, err
	}
	return scanAll(rows, scan)
}

// scanAll scans every row of rows with scan, then closes rows.
func scanAll[T any](rows *sql.Rows, scan func(scanner) (T, error)) ([]T, error) {
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
