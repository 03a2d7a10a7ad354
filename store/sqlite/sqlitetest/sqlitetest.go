// Package sqlitetest opens throwaway SQLite stores for the tests of other packages.
package sqlitetest

import (
	"path/filepath"
	"testing"

	"github.com/kalcifer/kalcifer/store"
	"github.com/kalcifer/kalcifer/store/sqlite"
)

// Open returns a migrated store in a temporary directory, closed when the test ends.
func Open(t testing.TB) store.Store {
	t.Helper()
	st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "kalcifer.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if err := st.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	return st
}
