// Package sqlite is the embedded store: one SQLite file in WAL mode, through
// the pure-Go modernc.org/sqlite driver.
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"runtime"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/kalcifer/kalcifer/store"
	"github.com/kalcifer/kalcifer/store/sqlstore"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Open opens or creates the database file at path, creating its folder.
// Call Migrate before use.
func Open(ctx context.Context, path string) (store.Store, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	writes, err := openPool(ctx, path, 1, url.Values{"_txlock": {"immediate"}})
	if err != nil {
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	reads, err := openPool(ctx, path, max(4, runtime.GOMAXPROCS(0)), url.Values{"_pragma": {"query_only(on)"}})
	if err != nil {
		_ = writes.Close()
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		_ = writes.Close()
		_ = reads.Close()
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	return sqlstore.NewReadWrite(writes, reads, dialect(sub)), nil
}

// dialect is SQLite's, with the migrations in fsys.
func dialect(fsys fs.FS) sqlstore.Dialect {
	return sqlstore.Dialect{
		Name:                  "sqlite",
		JSONArrayElements:     "json_each",
		AfterMigration:        bumpSchemaVersion,
		IsUniqueViolation:     hasCode(sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY),
		IsForeignKeyViolation: hasCode(sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY),
		Migrations:            fsys,
	}
}

// bumpSchemaVersion increments the schema version, in the transaction of
// the migration just applied. A migration that edits sqlite_schema itself
// (writable_schema: 0007 widens the CHECK on instances.status) leaves the
// version as it was, so every connection, the migrating one included,
// keeps the schema it parsed before and its old constraints; even a later
// CREATE or DROP in the same transaction does not make the migrating
// connection parse it again. Setting the version, which SQLite documents
// as the last step of such an edit, does. After any other migration it
// only makes the connections parse a schema that changed anyway.
func bumpSchemaVersion(ctx context.Context, tx *sql.Tx) error {
	var v int64
	if err := tx.QueryRowContext(ctx, `PRAGMA schema_version`).Scan(&v); err != nil {
		return fmt.Errorf("read schema_version: %w", err)
	}
	// A PRAGMA takes no parameters.
	if _, err := tx.ExecContext(ctx, fmt.Sprintf(`PRAGMA schema_version = %d`, v+1)); err != nil {
		return fmt.Errorf("set schema_version: %w", err)
	}
	return nil
}

// openPool opens a pool of at most conns connections to the file, each
// with the pragmas below and the extra DSN parameters, and keeps them all
// open: a new connection costs its pragmas, a schema parse and every
// statement prepared again.
//
// SQLite has one writer at a time, so writes get a pool of one connection:
// writers then queue in Go instead of polling the lock in SQLite's busy
// handler, which sleeps for milliseconds. Its transactions begin IMMEDIATE:
// a deferred one that reads and then writes cannot wait for the lock and
// fails with SQLITE_BUSY as soon as another process writes. Reads have a
// pool of their own, which WAL lets run beside the writer; query_only
// keeps writes out of it.
func openPool(ctx context.Context, path string, conns int, extra url.Values) (*sql.DB, error) {
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "foreign_keys(on)")
	// NORMAL is durable in WAL mode except for the last transactions
	// before a power loss; it never corrupts the database.
	q.Add("_pragma", "synchronous(NORMAL)")
	// 32 MiB of page cache per connection instead of 2 MiB, and temporary
	// b-trees (sorts, DISTINCT) in memory.
	q.Add("_pragma", "cache_size(-32768)")
	q.Add("_pragma", "temp_store(memory)")
	for k, vs := range extra {
		for _, v := range vs {
			q.Add(k, v)
		}
	}
	dsn := "file:" + (&url.URL{Path: path}).EscapedPath() + "?" + q.Encode()
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(conns)
	db.SetMaxIdleConns(conns)
	if err := db.PingContext(ctx); err != nil {
		_ = db.Close()
		return nil, err
	}
	return db, nil
}

func hasCode(codes ...int) func(error) bool {
	return func(err error) bool {
		var e *sqlite.Error
		if !errors.As(err, &e) {
			return false
		}
		for _, c := range codes {
			if e.Code() == c {
				return true
			}
		}
		return false
	}
}
