// Package postgres is the store a cluster needs: PostgreSQL through a pgx
// connection pool.
package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/kalcifer/kalcifer/store"
	"github.com/kalcifer/kalcifer/store/sqlstore"
)

//go:embed migrations/*.sql
var migrations embed.FS

// migrationLock is the pg_advisory_xact_lock key that serialises Migrate
// across processes.
const migrationLock = 0x6b616c6369666572 // "kalcifer"

// Store is the shared SQL store plus the pgx pool beneath it, for hot paths
// that want pgx directly (COPY, batches, SKIP LOCKED claims).
type Store struct {
	*sqlstore.Store
	pool *pgxpool.Pool
}

// Pool is the pgx pool the store runs on.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// Close closes the database/sql handle, then the pool it borrows from.
func (s *Store) Close() error {
	err := s.Store.Close()
	s.pool.Close()
	return err
}

// Open connects to the database at url with at most maxConns connections
// (0 keeps pgx's default). Call Migrate before use.
func Open(ctx context.Context, url string, maxConns int) (store.Store, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("open postgres: %w", err)
	}
	if maxConns > 0 {
		cfg.MaxConns = int32(maxConns)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open postgres: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("open postgres %s:%d: %w", cfg.ConnConfig.Host, cfg.ConnConfig.Port, err)
	}
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("open postgres: %w", err)
	}
	return &Store{
		Store: sqlstore.New(stdlib.OpenDBFromPool(pool), sqlstore.Dialect{
			Name:                  "postgres",
			NumberedParams:        true,
			JSONArrayElements:     "jsonb_array_elements_text",
			ForUpdate:             " FOR UPDATE",
			SkipLocked:            " FOR UPDATE SKIP LOCKED",
			MigrationLock:         fmt.Sprintf("SELECT pg_advisory_xact_lock(%d)", migrationLock),
			IsUniqueViolation:     hasCode("23505"),
			IsForeignKeyViolation: hasCode("23503"),
			Migrations:            sub,
			// pgx keeps each connection's statements prepared.
			DriverCachesStatements: true,
		}),
		pool: pool,
	}, nil
}

func hasCode(code string) func(error) bool {
	return func(err error) bool {
		var e *pgconn.PgError
		return errors.As(err, &e) && e.Code == code
	}
}
