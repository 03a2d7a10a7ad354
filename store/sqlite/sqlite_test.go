package sqlite_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/kalcifer/kalcifer/store"
	"github.com/kalcifer/kalcifer/store/sqlite"
	"github.com/kalcifer/kalcifer/store/storetest"
)

func open(t testing.TB) store.Store {
	// The folder does not exist yet: Open creates it.
	s, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "data", "kalcifer.db"))
	return storetest.Prepare(t, s, err)
}

func TestStore(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return open(t) })
}

func BenchmarkCommit(b *testing.B) { storetest.BenchmarkCommit(b, open) }
