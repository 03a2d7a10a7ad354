package sqlstore

import (
	"context"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"
)

type migration struct {
	version int
	name    string
	sql     string
}

// readMigrations returns the files NNNN_name.sql of fsys in version order.
func readMigrations(fsys fs.FS) ([]migration, error) {
	entries, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return nil, fmt.Errorf("read migrations: %w", err)
	}
	var ms []migration
	for _, e := range entries {
		if e.IsDir() || path.Ext(e.Name()) != ".sql" {
			continue
		}
		num, name, ok := strings.Cut(strings.TrimSuffix(e.Name(), ".sql"), "_")
		version, err := strconv.Atoi(num)
		if !ok || err != nil || len(num) != 4 || name == "" {
			return nil, fmt.Errorf("migration %s: name is not NNNN_name.sql", e.Name())
		}
		body, err := fs.ReadFile(fsys, e.Name())
		if err != nil {
			return nil, fmt.Errorf("read migration %s: %w", e.Name(), err)
		}
		ms = append(ms, migration{version: version, name: name, sql: string(body)})
	}
	slices.SortFunc(ms, func(a, b migration) int { return a.version - b.version })
	for i := 1; i < len(ms); i++ {
		if ms[i].version == ms[i-1].version {
			return nil, fmt.Errorf("migrations %04d_%s and %04d_%s share a number",
				ms[i-1].version, ms[i-1].name, ms[i].version, ms[i].name)
		}
	}
	return ms, nil
}

// Migrate applies, in order, each migration not yet recorded in
// schema_migrations, each in its own transaction together with its record,
// so a failed file leaves no trace and the next run retries it.
func (s *Store) Migrate(ctx context.Context) error {
	ms, err := readMigrations(s.d.Migrations)
	if err != nil {
		return err
	}
	err = s.migrationTx(ctx, func(tx txn) error {
		_, err := tx.Tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
			version    INTEGER PRIMARY KEY,
			name       TEXT NOT NULL,
			applied_at BIGINT NOT NULL
		)`)
		return err
	})
	if err != nil {
		return fmt.Errorf("create schema_migrations: %w", err)
	}
	for _, m := range ms {
		if err := s.migrationTx(ctx, func(tx txn) error { return s.apply(ctx, tx, m) }); err != nil {
			return fmt.Errorf("migration %04d_%s: %w", m.version, m.name, err)
		}
	}
	return nil
}

// migrationTx runs fn in a transaction; its DDL runs unprepared (tx.Tx),
// being run once.
func (s *Store) migrationTx(ctx context.Context, fn func(tx txn) error) error {
	return s.inTx(ctx, func(tx txn) error {
		if s.d.MigrationLock != "" {
			if _, err := tx.Tx.ExecContext(ctx, s.d.MigrationLock); err != nil {
				return fmt.Errorf("lock: %w", err)
			}
		}
		return fn(tx)
	})
}

func (s *Store) apply(ctx context.Context, tx txn, m migration) error {
	var applied int
	err := s.queryRow(ctx, tx, `SELECT COUNT(*) FROM schema_migrations WHERE version = ?`, m.version).Scan(&applied)
	if err != nil || applied > 0 {
		return err
	}
	// Each file runs once: unprepared, as it may hold several statements.
	if _, err := tx.Tx.ExecContext(ctx, m.sql); err != nil {
		return err
	}
	if s.d.AfterMigration != nil {
		if err := s.d.AfterMigration(ctx, tx.Tx); err != nil {
			return fmt.Errorf("after migration: %w", err)
		}
	}
	_, err = s.exec(ctx, tx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)`,
		m.version, m.name, time.Now().UnixMicro())
	return err
}
