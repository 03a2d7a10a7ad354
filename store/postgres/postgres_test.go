package postgres_test

import (
	"context"
	"testing"

	"github.com/kalcifer/kalcifer/store"
	"github.com/kalcifer/kalcifer/store/postgres"
	"github.com/kalcifer/kalcifer/store/postgres/pgtest"
	"github.com/kalcifer/kalcifer/store/storetest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func open(t testing.TB) store.Store {
	s, err := postgres.Open(context.Background(), pgtest.NewDatabase(t), 8)
	return storetest.Prepare(t, s, err)
}

func TestStore(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return open(t) })
}

func BenchmarkCommit(b *testing.B) { storetest.BenchmarkCommit(b, open) }

func TestPool(t *testing.T) {
	s, err := postgres.Open(context.Background(), pgtest.NewDatabase(t), 2)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	pool := s.(*postgres.Store).Pool()
	if got := pool.Config().MaxConns; got != 2 {
		t.Fatalf("MaxConns = %d, want 2", got)
	}
	var one int
	if err := pool.QueryRow(context.Background(), "SELECT 1").Scan(&one); err != nil || one != 1 {
		t.Fatalf("SELECT 1 = %d, %v", one, err)
	}
}

// TestConcurrentMigrate is several nodes starting at once on a new database.
func TestConcurrentMigrate(t *testing.T) {
	ctx := context.Background()
	url := pgtest.NewDatabase(t)
	for _, err := range storetest.Concurrently(4, func() error {
		s, err := postgres.Open(ctx, url, 2)
		if err != nil {
			return err
		}
		defer s.Close()
		return s.Migrate(ctx)
	}) {
		if err != nil {
			t.Fatal(err)
		}
	}
}
