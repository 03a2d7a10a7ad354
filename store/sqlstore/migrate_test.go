package sqlstore_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"

	_ "modernc.org/sqlite"

	"github.com/kalcifer/kalcifer/store/sqlstore"
)

func newStore(t *testing.T, files fstest.MapFS) (*sqlstore.Store, *sql.DB) {
	t.Helper()
	db, err := sql.Open("sqlite", filepath.Join(t.TempDir(), "m.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	never := func(error) bool { return false }
	return sqlstore.New(db, sqlstore.Dialect{Name: "sqlite", IsUniqueViolation: never, IsForeignKeyViolation: never, Migrations: files}), db
}

func applied(t *testing.T, db *sql.DB) string {
	t.Helper()
	rows, err := db.Query(`SELECT version, name FROM schema_migrations ORDER BY version`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var got []string
	for rows.Next() {
		var v, name string
		if err := rows.Scan(&v, &name); err != nil {
			t.Fatal(err)
		}
		got = append(got, v+"_"+name)
	}
	return strings.Join(got, " ")
}

func TestMigrate(t *testing.T) {
	ctx := context.Background()
	files := fstest.MapFS{
		"0002_second.sql": {Data: []byte(`ALTER TABLE a ADD COLUMN y INTEGER; INSERT INTO a (x, y) VALUES (1, 2);`)},
		"0001_first.sql":  {Data: []byte(`CREATE TABLE a (x INTEGER);`)},
		"README.md":       {Data: []byte(`not a migration`)},
	}
	s, db := newStore(t, files)
	for range 2 {
		if err := s.Migrate(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if got := applied(t, db); got != "1_first 2_second" {
		t.Fatalf("applied %q", got)
	}
	var rows int
	if err := db.QueryRow(`SELECT COUNT(*) FROM a`).Scan(&rows); err != nil || rows != 1 {
		t.Fatalf("second migration ran %d times: %v", rows, err)
	}

	// A failing file leaves neither its changes nor its record.
	files["0003_broken.sql"] = &fstest.MapFile{Data: []byte(`CREATE TABLE b (x INTEGER); INSERT INTO nowhere VALUES (1);`)}
	if err := s.Migrate(ctx); err == nil || !strings.Contains(err.Error(), "0003_broken") {
		t.Fatalf("broken migration: %v", err)
	}
	if got := applied(t, db); got != "1_first 2_second" {
		t.Fatalf("applied %q", got)
	}
	files["0003_broken.sql"].Data = []byte(`CREATE TABLE b (x INTEGER);`)
	if err := s.Migrate(ctx); err != nil {
		t.Fatalf("fixed migration: %v", err)
	}
	if got := applied(t, db); got != "1_first 2_second 3_broken" {
		t.Fatalf("applied %q", got)
	}
}

func TestMigrateRejectsBadNames(t *testing.T) {
	for name, files := range map[string]fstest.MapFS{
		"no number":   {"first.sql": {}},
		"short":       {"1_first.sql": {}},
		"no name":     {"0001_.sql": {}},
		"same number": {"0001_a.sql": {}, "0001_b.sql": {}},
	} {
		s, _ := newStore(t, files)
		if err := s.Migrate(context.Background()); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
