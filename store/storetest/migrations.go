package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/kalcifer/kalcifer/store"
)

// migrationTests cover journey migrations and the instances they move.
var migrationTests = []struct {
	name string
	fn   func(t *testing.T, s store.Store)
}{
	{"StartMigration", testStartMigration},
	{"MigrationRefusals", testMigrationRefusals},
	{"NewEntriesOnly", testNewEntriesOnly},
	{"UpdateMigration", testUpdateMigration},
	{"ListMigrations", testListMigrations},
	{"MigrationTenantIsolation", testMigrationTenantIsolation},
	{"RunningMigrations", testRunningMigrations},
	{"ActiveKeys", testActiveKeys},
	{"HeldInstance", testHeldInstance},
	{"ConcurrentStartMigration", testConcurrentStartMigration},
}

var migrationOptions = json.RawMessage(`{"mapping": {"mail": "start"}, "removed_node_policy": "hold"}`)

// migration is a migration of the journey to start.
func migration(tenantID, journeyID string, from, to int, strategy string, seconds int) store.Migration {
	kind := store.MigrationPublish
	if to < from {
		kind = store.MigrationRollback
	}
	percent := map[string]int{store.StrategyNewEntriesOnly: 0, store.StrategyMigrateAll: 100, store.StrategyGradual: 30}[strategy]
	return store.Migration{
		TenantID: tenantID, JourneyID: journeyID, Kind: kind, FromVersion: from, ToVersion: to, Strategy: strategy,
		RolloutPercent: percent, BatchSize: 50, Options: migrationOptions, CreatedBy: "admin (key_1)",
		Counts: store.MigrationCounts{Total: 7}, CreatedAt: at(seconds),
	}
}

// started is m as StartMigration stores it, given the id it assigned.
func started(m store.Migration, id string) store.Migration {
	m.ID, m.Status = id, store.MigrationRunning
	m.CreatedAt, m.UpdatedAt = stored(m.CreatedAt), stored(m.CreatedAt)
	m.Batch, m.Failures = []string{}, []store.MigrationFailure{}
	if m.Strategy == store.StrategyNewEntriesOnly {
		m.Status, m.FinishedAt = store.MigrationCompleted, ptr(m.CreatedAt)
	}
	return m
}

// sameMigration compares migrations, options by value.
func sameMigration(t *testing.T, got, want store.Migration) {
	t.Helper()
	wantGraph(t, got.Options, want.Options)
	got.Options, want.Options = nil, nil
	wantEqual(t, got, want)
}

func sameMigrations(t *testing.T, got, want []store.Migration) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d migrations %v, want %d %v", len(got), ids(got, migrationID), len(want), ids(want, migrationID))
	}
	for i := range got {
		sameMigration(t, got[i], want[i])
	}
}

func migrationID(m store.Migration) string { return m.ID }

// start starts m and checks what it stored.
func start(t *testing.T, s store.Store, m store.Migration) (store.Journey, store.Migration) {
	t.Helper()
	j, got := must2(s.Migrations().StartMigration(context.Background(), m))(t)
	if !strings.HasPrefix(got.ID, "mig_") {
		t.Fatalf("migration id %q", got.ID)
	}
	sameMigration(t, got, started(m, got.ID))
	sameMigration(t, must(s.Migrations().GetMigration(context.Background(), m.TenantID, got.ID))(t), got)
	return j, got
}

// finish marks m completed at the time given.
func finish(t *testing.T, s store.Store, m store.Migration, seconds int) store.Migration {
	t.Helper()
	m.Status, m.UpdatedAt, m.FinishedAt = store.MigrationCompleted, stored(at(seconds)), ptr(stored(at(seconds)))
	if err := s.Migrations().UpdateMigration(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	return m
}

func testStartMigration(t *testing.T, s store.Store) {
	ctx := context.Background()
	js, ms := s.Journeys(), s.Migrations()
	ten := newTenant(t, s, "acme")
	j := newJourney(t, s, ten.ID, graphA)

	// A publish of the first draft.
	pj, m1 := start(t, s, migration(ten.ID, j.ID, 0, 1, store.StrategyMigrateAll, 1))
	wantEqual(t, pj, store.Journey{ID: j.ID, TenantID: ten.ID, Name: j.Name, Status: store.JourneyActive, ActiveVersion: 1,
		CreatedAt: j.CreatedAt, UpdatedAt: stored(at(1))})
	wantEqual(t, must(js.GetJourney(ctx, ten.ID, j.ID))(t), pj)
	v1 := must(js.GetVersion(ctx, ten.ID, j.ID, 1))(t)
	wantEqual(t, v1.Status, store.VersionPublished)
	wantEqual(t, *v1.PublishedAt, stored(at(1)))
	wantEqual(t, v1.UpdatedAt, stored(at(1)))
	sameMigration(t, must(ms.ActiveMigration(ctx, ten.ID, j.ID))(t), m1)
	finish(t, s, m1, 2)
	wantErr(t, errOf(ms.ActiveMigration(ctx, ten.ID, j.ID)), store.ErrNotFound)

	// A gradual publish of a second draft.
	must(js.CreateVersion(ctx, ten.ID, j.ID, graphB, at(3)))(t)
	pj, m2 := start(t, s, migration(ten.ID, j.ID, 1, 2, store.StrategyGradual, 4))
	wantEqual(t, pj.ActiveVersion, 2)
	wantEqual(t, pj.Status, store.JourneyActive)
	wantEqual(t, *must(js.GetVersion(ctx, ten.ID, j.ID, 2))(t).PublishedAt, stored(at(4)))
	finish(t, s, m2, 5)

	// A rollback to a published version of a paused journey: it stays
	// paused, and the version as it was.
	must(js.SetJourneyStatus(ctx, ten.ID, j.ID, store.JourneyActive, store.JourneyPaused, at(6)))(t)
	rj, m3 := start(t, s, migration(ten.ID, j.ID, 2, 1, store.StrategyMigrateAll, 7))
	wantEqual(t, m3.Kind, store.MigrationRollback)
	wantEqual(t, rj.Status, store.JourneyPaused)
	wantEqual(t, rj.ActiveVersion, 1)
	wantEqual(t, rj.UpdatedAt, stored(at(7)))
	sameVersion(t, must(js.GetVersion(ctx, ten.ID, j.ID, 1))(t), v1)
	finish(t, s, m3, 8)

	// A rollback of a draft journey makes it active.
	must(js.SetJourneyStatus(ctx, ten.ID, j.ID, store.JourneyPaused, store.JourneyDraft, at(9)))(t)
	rj, _ = start(t, s, migration(ten.ID, j.ID, 1, 2, store.StrategyGradual, 10))
	wantEqual(t, rj.Status, store.JourneyActive)
	wantEqual(t, rj.ActiveVersion, 2)
}

func testMigrationRefusals(t *testing.T, s store.Store) {
	ctx := context.Background()
	js, ms := s.Journeys(), s.Migrations()
	ten, j := publishedWithDraft(t, s)
	_, m := start(t, s, migration(ten.ID, j.ID, 1, 2, store.StrategyMigrateAll, 3))
	must(js.CreateVersion(ctx, ten.ID, j.ID, graphB, at(4)))(t)
	jr := must(js.GetJourney(ctx, ten.ID, j.ID))(t)
	v3 := must(js.GetVersion(ctx, ten.ID, j.ID, 3))(t)

	// unchanged checks that a refusal wrote nothing.
	want := []store.Migration{m}
	unchanged := func() {
		t.Helper()
		wantEqual(t, must(js.GetJourney(ctx, ten.ID, j.ID))(t), jr)
		sameVersion(t, must(js.GetVersion(ctx, ten.ID, j.ID, 3))(t), v3)
		sameMigrations(t, must(ms.ListMigrations(ctx, ten.ID, store.MigrationFilter{}))(t), want)
	}

	// While running, paused or partial, neither a migration nor a publish.
	for _, status := range []string{store.MigrationRunning, store.MigrationPaused, store.MigrationPartial} {
		m.Status, m.UpdatedAt = status, stored(at(5))
		if err := ms.UpdateMigration(ctx, m); err != nil {
			t.Fatal(err)
		}
		want = []store.Migration{m}
		wantErr(t, errOf3(ms.StartMigration(ctx, migration(ten.ID, j.ID, 2, 3, store.StrategyMigrateAll, 6))), store.ErrMigrationInProgress)
		wantErr(t, errOf3(ms.StartMigration(ctx, migration(ten.ID, j.ID, 2, 1, store.StrategyNewEntriesOnly, 6))), store.ErrMigrationInProgress)
		wantErr(t, errOf3(js.PublishVersion(ctx, ten.ID, j.ID, 3, at(6))), store.ErrMigrationInProgress)
		sameMigration(t, must(ms.ActiveMigration(ctx, ten.ID, j.ID))(t), m)
		unchanged()
	}
	m.Status, m.FinishedAt = store.MigrationAborted, ptr(stored(at(5)))
	if err := ms.UpdateMigration(ctx, m); err != nil {
		t.Fatal(err)
	}
	want = []store.Migration{m}
	wantErr(t, errOf(ms.ActiveMigration(ctx, ten.ID, j.ID)), store.ErrNotFound)

	// A stale from-version, a missing version or journey.
	err := errOf3(ms.StartMigration(ctx, migration(ten.ID, j.ID, 1, 3, store.StrategyMigrateAll, 6)))
	wantErr(t, err, store.ErrConflict)
	if errors.Is(err, store.ErrMigrationInProgress) || !strings.Contains(err.Error(), "active version is 2") {
		t.Fatalf("stale from-version: %v", err)
	}
	wantErr(t, errOf3(ms.StartMigration(ctx, migration(ten.ID, j.ID, 2, 9, store.StrategyMigrateAll, 6))), store.ErrNotFound)
	wantErr(t, errOf3(ms.StartMigration(ctx, migration(ten.ID, "jrn_missing", 0, 1, store.StrategyMigrateAll, 6))), store.ErrNotFound)
	unchanged()

	// The unique index holds too: a finished migration cannot run again
	// beside an unfinished one.
	_, m2 := start(t, s, migration(ten.ID, j.ID, 2, 3, store.StrategyGradual, 7))
	m.Status, m.FinishedAt = store.MigrationRunning, nil
	wantErr(t, ms.UpdateMigration(ctx, m), store.ErrMigrationInProgress)
	sameMigration(t, must(ms.ActiveMigration(ctx, ten.ID, j.ID))(t), m2)
	finish(t, s, m2, 8)

	// An archived journey.
	jr = must(js.SetJourneyStatus(ctx, ten.ID, j.ID, store.JourneyActive, store.JourneyArchived, at(9)))(t)
	want = must(ms.ListMigrations(ctx, ten.ID, store.MigrationFilter{}))(t)
	wantErr(t, errOf3(ms.StartMigration(ctx, migration(ten.ID, j.ID, 3, 1, store.StrategyMigrateAll, 10))), store.ErrConflict)
	v3 = must(js.GetVersion(ctx, ten.ID, j.ID, 3))(t)
	unchanged()

	wantErr(t, ms.UpdateMigration(ctx, store.Migration{TenantID: ten.ID, ID: "mig_missing", Status: store.MigrationRunning}),
		store.ErrNotFound)
	wantErr(t, errOf(ms.GetMigration(ctx, ten.ID, "mig_missing")), store.ErrNotFound)
}

func testNewEntriesOnly(t *testing.T, s store.Store) {
	ctx := context.Background()
	js, ms := s.Journeys(), s.Migrations()
	ten, j := publishedWithDraft(t, s)
	pj, m := start(t, s, migration(ten.ID, j.ID, 1, 2, store.StrategyNewEntriesOnly, 3))
	wantEqual(t, m.Status, store.MigrationCompleted)
	wantEqual(t, *m.FinishedAt, m.CreatedAt)
	wantEqual(t, pj.ActiveVersion, 2)
	wantErr(t, errOf(ms.ActiveMigration(ctx, ten.ID, j.ID)), store.ErrNotFound)
	wantEqual(t, must(ms.RunningMigrations(ctx, at(9)))(t), []store.Migration(nil))

	// Nothing is in progress: the next change may start at once.
	must(js.CreateVersion(ctx, ten.ID, j.ID, graphB, at(4)))(t)
	must2(js.PublishVersion(ctx, ten.ID, j.ID, 3, at(5)))(t)
	start(t, s, migration(ten.ID, j.ID, 3, 1, store.StrategyNewEntriesOnly, 6))
}

func testUpdateMigration(t *testing.T, s store.Store) {
	ctx := context.Background()
	ms := s.Migrations()
	ten := newTenant(t, s, "acme")
	j := newJourney(t, s, ten.ID, graphA)
	_, m := start(t, s, migration(ten.ID, j.ID, 0, 1, store.StrategyGradual, 1))

	up := m
	up.Status, up.RolloutPercent = store.MigrationPartial, 60
	up.Counts = store.MigrationCounts{Total: 70, Migrated: 10, Exited: 2, Held: 3, Failed: 4, Skipped: 5}
	up.Cursor, up.Batch = "ins_0002", []string{"ins_0001", "ins_0002"}
	up.Failures = []store.MigrationFailure{{InstanceID: "ins_0000", Error: "node gone"}}
	up.Error, up.UpdatedAt = "partly", at(2)
	if err := ms.UpdateMigration(ctx, up); err != nil {
		t.Fatal(err)
	}
	up.UpdatedAt = stored(at(2))
	sameMigration(t, must(ms.GetMigration(ctx, ten.ID, m.ID))(t), up)

	// Only the progress is written; the rest stays as started.
	fin := up
	fin.Status, fin.Cursor, fin.Batch, fin.Error = store.MigrationFailed, "", nil, "gave up"
	fin.Failures = nil
	fin.UpdatedAt, fin.FinishedAt = stored(at(3)), ptr(at(3))
	other := fin
	other.Kind, other.Strategy, other.FromVersion, other.ToVersion = store.MigrationRollback, store.StrategyMigrateAll, 5, 6
	other.BatchSize, other.Options, other.CreatedBy, other.CreatedAt = 1, json.RawMessage(`{}`), "someone", at(9)
	other.JourneyID = "jrn_other"
	if err := ms.UpdateMigration(ctx, other); err != nil {
		t.Fatal(err)
	}
	fin.Batch, fin.Failures, fin.FinishedAt = []string{}, []store.MigrationFailure{}, ptr(stored(at(3)))
	sameMigration(t, must(ms.GetMigration(ctx, ten.ID, m.ID))(t), fin)
	wantErr(t, errOf(ms.ActiveMigration(ctx, ten.ID, j.ID)), store.ErrNotFound)

	// Back to unfinished, FinishedAt cleared.
	fin.Status, fin.FinishedAt, fin.UpdatedAt = store.MigrationPaused, nil, stored(at(4))
	if err := ms.UpdateMigration(ctx, fin); err != nil {
		t.Fatal(err)
	}
	sameMigration(t, must(ms.GetMigration(ctx, ten.ID, m.ID))(t), fin)
	sameMigration(t, must(ms.ActiveMigration(ctx, ten.ID, j.ID))(t), fin)
}

func testListMigrations(t *testing.T, s store.Store) {
	ctx := context.Background()
	js, ms := s.Journeys(), s.Migrations()
	ten := newTenant(t, s, "acme")
	a := newJourney(t, s, ten.ID, graphA)
	b := newJourney(t, s, ten.ID, graphA)
	must(js.CreateVersion(ctx, ten.ID, a.ID, graphB, at(1)))(t)
	must(js.CreateVersion(ctx, ten.ID, b.ID, graphB, at(1)))(t)

	// Oldest first; each created a second after the one before.
	var all []store.Migration
	add := func(j store.Journey, from, to int, strategy string, done bool) {
		_, m := start(t, s, migration(ten.ID, j.ID, from, to, strategy, 10+len(all)))
		if done {
			m = finish(t, s, m, 10+len(all))
		}
		all = append(all, m)
	}
	add(a, 0, 1, store.StrategyMigrateAll, true)
	add(b, 0, 1, store.StrategyNewEntriesOnly, false)
	add(a, 1, 2, store.StrategyGradual, true)
	add(b, 1, 2, store.StrategyMigrateAll, false)
	add(a, 2, 1, store.StrategyMigrateAll, false)
	slices.Reverse(all)
	newest := func(keep func(store.Migration) bool) []store.Migration {
		var out []store.Migration
		for _, m := range all {
			if keep(m) {
				out = append(out, m)
			}
		}
		return out
	}
	list := func(f store.MigrationFilter) []store.Migration {
		t.Helper()
		return must(ms.ListMigrations(ctx, ten.ID, f))(t)
	}

	sameMigrations(t, list(store.MigrationFilter{}), all)
	sameMigrations(t, list(store.MigrationFilter{Limit: -1}), all)
	sameMigrations(t, list(store.MigrationFilter{Limit: 2}), all[:2])
	sameMigrations(t, list(store.MigrationFilter{After: all[1].ID}), all[2:])
	sameMigrations(t, allPages(t, 2, func(after string, limit int) ([]store.Migration, error) {
		return ms.ListMigrations(ctx, ten.ID, store.MigrationFilter{After: after, Limit: limit})
	}, migrationID), all)
	sameMigrations(t, list(store.MigrationFilter{JourneyID: a.ID}), newest(func(m store.Migration) bool { return m.JourneyID == a.ID }))
	sameMigrations(t, list(store.MigrationFilter{Status: store.MigrationCompleted}),
		newest(func(m store.Migration) bool { return m.Status == store.MigrationCompleted }))
	byB := newest(func(m store.Migration) bool { return m.JourneyID == b.ID })
	sameMigrations(t, allPages(t, 1, func(after string, limit int) ([]store.Migration, error) {
		return ms.ListMigrations(ctx, ten.ID, store.MigrationFilter{JourneyID: b.ID, After: after, Limit: limit})
	}, migrationID), byB)
	sameMigrations(t, list(store.MigrationFilter{JourneyID: b.ID, Status: store.MigrationRunning}), byB[:1])
	sameMigrations(t, list(store.MigrationFilter{JourneyID: "jrn_missing"}), nil)

	// History outlives the journey.
	if err := js.DeleteJourney(ctx, ten.ID, b.ID); err != nil {
		t.Fatal(err)
	}
	sameMigrations(t, list(store.MigrationFilter{JourneyID: b.ID}), byB)
}

// testMigrationTenantIsolation calls every method with one tenant's id and
// another tenant's records: each must miss, and change nothing.
func testMigrationTenantIsolation(t *testing.T, s store.Store) {
	ctx := context.Background()
	ms := s.Migrations()
	mine := newWorld(t, s, "mine")
	theirs := newWorld(t, s, "theirs")
	theirs.create(t, theirs.instance(theirs.customer, ""))
	_, m := start(t, s, migration(theirs.tenant, theirs.journey, 0, 1, store.StrategyMigrateAll, 1))

	stolen := m
	stolen.TenantID, stolen.Status, stolen.UpdatedAt = mine.tenant, store.MigrationAborted, at(2)
	notFound := map[string]error{
		"StartMigration":  errOf3(ms.StartMigration(ctx, migration(mine.tenant, theirs.journey, 1, 1, store.StrategyMigrateAll, 2))),
		"GetMigration":    errOf(ms.GetMigration(ctx, mine.tenant, m.ID)),
		"ActiveMigration": errOf(ms.ActiveMigration(ctx, mine.tenant, theirs.journey)),
		"UpdateMigration": ms.UpdateMigration(ctx, stolen),
	}
	for method, err := range notFound {
		if !errors.Is(err, store.ErrNotFound) {
			t.Errorf("%s with another tenant's id: got %v, want ErrNotFound", method, err)
		}
	}
	sameMigrations(t, must(ms.ListMigrations(ctx, mine.tenant, store.MigrationFilter{}))(t), nil)
	sameMigrations(t, must(ms.ListMigrations(ctx, mine.tenant, store.MigrationFilter{JourneyID: theirs.journey}))(t), nil)
	wantEqual(t, must(s.Instances().ActiveKeys(ctx, mine.tenant, theirs.journey, 1, "", 0))(t), []store.InstanceKey(nil))

	sameMigrations(t, must(ms.ListMigrations(ctx, theirs.tenant, store.MigrationFilter{}))(t), []store.Migration{m})
	sameMigration(t, must(ms.ActiveMigration(ctx, theirs.tenant, theirs.journey))(t), m)
	wantEqual(t, len(must(s.Instances().ActiveKeys(ctx, theirs.tenant, theirs.journey, 1, "", 0))(t)), 1)
}

func testRunningMigrations(t *testing.T, s store.Store) {
	ctx := context.Background()
	ms := s.Migrations()
	a := newWorld(t, s, "a")
	b := newWorld(t, s, "b")
	a2 := newJourney(t, s, a.tenant, graphA)
	a3 := newJourney(t, s, a.tenant, graphA)

	update := func(m store.Migration, status string, seconds int) store.Migration {
		t.Helper()
		m.Status, m.UpdatedAt = status, stored(at(seconds))
		if err := ms.UpdateMigration(ctx, m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	_, m1 := start(t, s, migration(a.tenant, a.journey, 0, 1, store.StrategyMigrateAll, 1))
	m1 = update(m1, store.MigrationRunning, 10)
	_, m2 := start(t, s, migration(b.tenant, b.journey, 0, 1, store.StrategyGradual, 2))
	m2 = update(m2, store.MigrationRunning, 5)
	_, m3 := start(t, s, migration(a.tenant, a2.ID, 0, 1, store.StrategyMigrateAll, 3))
	update(m3, store.MigrationPaused, 1)
	start(t, s, migration(a.tenant, a3.ID, 0, 1, store.StrategyNewEntriesOnly, 0))

	sameMigrations(t, must(ms.RunningMigrations(ctx, at(11)))(t), []store.Migration{m2, m1})
	sameMigrations(t, must(ms.RunningMigrations(ctx, at(10)))(t), []store.Migration{m2, m1})
	sameMigrations(t, must(ms.RunningMigrations(ctx, at(9)))(t), []store.Migration{m2})
	sameMigrations(t, must(ms.RunningMigrations(ctx, at(5)))(t), []store.Migration{m2})
	sameMigrations(t, must(ms.RunningMigrations(ctx, at(4)))(t), nil)
}

func testActiveKeys(t *testing.T, s store.Store) {
	ctx := context.Background()
	ins := s.Instances()
	w := newWorld(t, s, "acme")
	other := newJourney(t, s, w.tenant, graphA)

	var want []store.InstanceKey
	for i, status := range []string{store.InstanceRunning, store.InstanceWaiting, store.InstancePaused, store.InstanceHeld,
		store.InstanceCompleted, store.InstanceFailed, store.InstanceExited, store.InstanceRunning, store.InstanceHeld} {
		cust := w.newCustomer(t, "c"+string(rune('a'+i)))
		in := w.instance(cust, "")
		in.Status = status
		if i >= 7 {
			in.Version = 2
		}
		w.create(t, in)
		if in.Version == 1 && !slices.Contains([]string{store.InstanceCompleted, store.InstanceFailed, store.InstanceExited}, status) {
			want = append(want, store.InstanceKey{ID: in.ID, CustomerID: cust})
		}
		// The same customer in another journey.
		in = w.instance(cust, "")
		in.JourneyID = other.ID
		w.create(t, in)
	}
	slices.SortFunc(want, func(a, b store.InstanceKey) int { return strings.Compare(a.ID, b.ID) })
	keyID := func(k store.InstanceKey) string { return k.ID }

	wantEqual(t, must(ins.ActiveKeys(ctx, w.tenant, w.journey, 1, "", 0))(t), want)
	wantEqual(t, must(ins.ActiveKeys(ctx, w.tenant, w.journey, 1, "", 100))(t), want)
	wantEqual(t, must(ins.ActiveKeys(ctx, w.tenant, w.journey, 1, "", 3))(t), want[:3])
	wantEqual(t, must(ins.ActiveKeys(ctx, w.tenant, w.journey, 1, want[1].ID, 0))(t), want[2:])
	wantEqual(t, must(ins.ActiveKeys(ctx, w.tenant, w.journey, 1, want[3].ID, 0))(t), []store.InstanceKey(nil))
	for _, limit := range []int{1, 3} {
		wantEqual(t, allPages(t, limit, func(after string, limit int) ([]store.InstanceKey, error) {
			return ins.ActiveKeys(ctx, w.tenant, w.journey, 1, after, limit)
		}, keyID), want)
	}
	wantEqual(t, len(must(ins.ActiveKeys(ctx, w.tenant, w.journey, 2, "", 0))(t)), 2)
	wantEqual(t, must(ins.ActiveKeys(ctx, w.tenant, w.journey, 3, "", 0))(t), []store.InstanceKey(nil))
	wantEqual(t, len(must(ins.ActiveKeys(ctx, w.tenant, other.ID, 1, "", 0))(t)), 9)
}

// testHeldInstance: held is a status like paused, that has not ended.
func testHeldInstance(t *testing.T, s store.Store) {
	ctx := context.Background()
	ins := s.Instances()
	w := newWorld(t, s, "acme")

	held := w.instance(w.customer, "")
	held.Status = store.InstanceHeld
	held = w.create(t, held)
	sameInstance(t, must(ins.GetInstance(ctx, w.tenant, held.ID))(t), held)
	sameInstance(t, must(ins.ActiveInstance(ctx, w.tenant, w.journey, w.customer))(t), held)
	wantErr(t, w.commit(store.Commit{Instance: w.instance(w.customer, ""), Create: true}), store.ErrActiveInstance)

	// Released to running, and held again by an update.
	bob := w.create(t, w.instance(w.newCustomer(t, "bob"), ""))
	for _, status := range []string{store.InstanceHeld, store.InstanceRunning, store.InstanceHeld} {
		bob.Status, bob.UpdatedAt = status, stored(at(2))
		if err := w.commit(store.Commit{Instance: bob}); err != nil {
			t.Fatal(err)
		}
		sameInstance(t, must(ins.GetInstance(ctx, w.tenant, bob.ID))(t), bob)
	}
	wantEqual(t, len(must(ins.ActiveKeys(ctx, w.tenant, w.journey, 1, "", 0))(t)), 2)

	// An unknown status is still refused.
	bogus := w.instance(w.newCustomer(t, "carol"), "")
	bogus.Status = "bogus"
	if err := w.commit(store.Commit{Instance: bogus, Create: true}); err == nil {
		t.Fatal("unknown status accepted")
	}
}

// testConcurrentStartMigration races callers to start a migration of one
// journey: one wins.
func testConcurrentStartMigration(t *testing.T, s store.Store) {
	ctx := context.Background()
	js, ms := s.Journeys(), s.Migrations()
	ten, j := publishedWithDraft(t, s)
	wantEqual(t, wins(t, store.ErrMigrationInProgress, Concurrently(10, func() error {
		return errOf3(ms.StartMigration(ctx, migration(ten.ID, j.ID, 1, 2, store.StrategyMigrateAll, 3)))
	})), 1)
	wantEqual(t, len(must(ms.ListMigrations(ctx, ten.ID, store.MigrationFilter{}))(t)), 1)
	wantEqual(t, must(js.GetJourney(ctx, ten.ID, j.ID))(t).ActiveVersion, 2)

	// Racing rollbacks that finish at once: the losers find the version moved.
	m := must(ms.ActiveMigration(ctx, ten.ID, j.ID))(t)
	finish(t, s, m, 4)
	wantEqual(t, wins(t, store.ErrConflict, Concurrently(10, func() error {
		return errOf3(ms.StartMigration(ctx, migration(ten.ID, j.ID, 2, 1, store.StrategyNewEntriesOnly, 5)))
	})), 1)
	wantEqual(t, len(must(ms.ListMigrations(ctx, ten.ID, store.MigrationFilter{}))(t)), 2)
	wantEqual(t, must(js.GetJourney(ctx, ten.ID, j.ID))(t).ActiveVersion, 1)
}

// publishedWithDraft is a tenant's journey with version 1 published and
// version 2 a draft.
func publishedWithDraft(t *testing.T, s store.Store) (store.Tenant, store.Journey) {
	t.Helper()
	ctx := context.Background()
	ten := newTenant(t, s, "acme")
	j := newJourney(t, s, ten.ID, graphA)
	must2(s.Journeys().PublishVersion(ctx, ten.ID, j.ID, 1, at(1)))(t)
	must(s.Journeys().CreateVersion(ctx, ten.ID, j.ID, graphB, at(2)))(t)
	return ten, j
}
