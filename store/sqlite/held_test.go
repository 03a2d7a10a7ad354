package sqlite

import (
	"database/sql"
	"io/fs"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/kalcifer/kalcifer/store/sqlstore"
)

// TestHeldStatus checks that migration 0007, which widens the CHECK on
// instances.status by editing the schema text, takes effect on the
// connections that parsed the schema before it, the migrating one
// included, and that the CHECK still refuses an unknown status.
func TestHeldStatus(t *testing.T) {
	ctx := t.Context()
	db, err := openPool(ctx, filepath.Join(t.TempDir(), "k.db"), 2, url.Values{"_txlock": {"immediate"}})
	if err != nil {
		t.Fatal(err)
	}
	all, err := fs.Sub(migrations, "migrations")
	if err != nil {
		t.Fatal(err)
	}
	before := fstest.MapFS{}
	files, err := fs.ReadDir(all, ".")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if f.Name() >= "0007" {
			continue
		}
		body, err := fs.ReadFile(all, f.Name())
		if err != nil {
			t.Fatal(err)
		}
		before[f.Name()] = &fstest.MapFile{Data: body}
	}
	// The store closes db; the first one is left open, as closing it would.
	if err := sqlstore.New(db, dialect(before)).Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	s := sqlstore.New(db, dialect(all))
	t.Cleanup(func() { _ = s.Close() })
	_, err = db.ExecContext(ctx, `INSERT INTO tenants (id, name, created_at) VALUES ('ten', 'acme', 0);
		INSERT INTO customers (tenant_id, id, external_id, email, phone, name, timezone, properties, tags,
			preferences, push_tokens, created_at, updated_at)
		VALUES ('ten', 'cus', 'alice', '', '', '', '', '{}', '[]', '{}', '[]', 0, 0)`)
	if err != nil {
		t.Fatal(err)
	}
	// Each instance has a journey of its own: one customer has one active
	// instance per journey.
	insert := func(c *sql.Conn, id, status string) error {
		_, err := c.ExecContext(ctx, `INSERT INTO instances (tenant_id, id, journey_id, version, customer_id, status,
			nodes, entry_key, epoch, error, created_at, updated_at) VALUES ('ten', ?, ?, 1, 'cus', ?, '[]', '', 1, '', 0, 0)`,
			id, "jrn_"+id, status)
		return err
	}
	// conns takes both connections of the pool at once, so they are two,
	// and marks each with a temporary table the first time.
	conns := func() [2]*sql.Conn {
		var cs [2]*sql.Conn
		for i := range cs {
			if cs[i], err = db.Conn(ctx); err != nil {
				t.Fatal(err)
			}
		}
		return cs
	}
	cs := conns()
	for i, c := range cs {
		if _, err := c.ExecContext(ctx, `CREATE TEMP TABLE conn (n INTEGER); INSERT INTO temp.conn VALUES (?)`, i); err != nil {
			t.Fatal(err)
		}
		// Both have parsed the old schema.
		if err := insert(c, "old"+string(rune('a'+i)), "held"); err == nil || !strings.Contains(err.Error(), "CHECK") {
			t.Fatalf("connection %d before 0007: held: %v", i, err)
		}
		_ = c.Close()
	}

	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	cs = conns()
	for i, c := range cs {
		var n int
		if err := c.QueryRowContext(ctx, `SELECT n FROM temp.conn`).Scan(&n); err != nil {
			t.Fatalf("connection %d is new: %v", i, err)
		}
		seen[n] = true
		if err := insert(c, "held"+string(rune('a'+i)), "held"); err != nil {
			t.Fatalf("connection %d after 0007: held: %v", i, err)
		}
		if err := insert(c, "bogus"+string(rune('a'+i)), "bogus"); err == nil || !strings.Contains(err.Error(), "CHECK") {
			t.Fatalf("connection %d after 0007: unknown status: %v", i, err)
		}
		_ = c.Close()
	}
	if len(seen) != 2 {
		t.Fatalf("connections %v, want the two from before 0007", seen)
	}
	var check string
	if err := db.QueryRowContext(ctx, `PRAGMA integrity_check`).Scan(&check); err != nil || check != "ok" {
		t.Fatalf("integrity_check: %q, %v", check, err)
	}
}
