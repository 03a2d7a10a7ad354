// Package storetest is the conformance suite every store.Store passes.
//
//	func TestStore(t *testing.T) { storetest.Run(t, openFreshMigratedStore) }
package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/kalcifer/kalcifer/store"
)

// Prepare is the tail of an open function: it fails t on err, migrates s
// and closes it when t ends.
func Prepare(t testing.TB, s store.Store, err error) store.Store {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	if err := s.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	return s
}

// Concurrently runs fn in n goroutines at once and returns their errors.
func Concurrently(n int, fn func() error) []error {
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			errs[i] = fn()
		})
	}
	close(start)
	wg.Wait()
	return errs
}

// Run runs the suite; open returns a fresh, migrated store for each subtest
// and arranges for it to be closed. Subtests run in parallel, each on its
// own store.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"Basics", testBasics},
		{"Tenants", testTenants},
		{"APIKeys", testAPIKeys},
		{"Journeys", testJourneys},
		{"ListJourneys", testListJourneys},
		{"JourneyStatus", testJourneyStatus},
		{"Versions", testVersions},
		{"Publish", testPublish},
		{"Atomicity", testAtomicity},
		{"DeleteJourney", testDeleteJourney},
		{"TenantIsolation", testTenantIsolation},
		{"ConcurrentCreateVersion", testConcurrentCreateVersion},
		{"ConcurrentStatusCAS", testConcurrentStatusCAS},
	}
	for _, tt := range slices.Concat(tests, runtimeTests, migrationTests) {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.fn(t, open(t))
		})
	}
}

// t0 is deliberately not UTC and has nanoseconds: stores return UTC
// microseconds.
var t0 = time.Date(2026, 3, 1, 9, 30, 0, 123456789, time.FixedZone("CET", 3600))

func at(seconds int) time.Time { return t0.Add(time.Duration(seconds) * time.Second) }

// stored is t as a store returns it.
func stored(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

// must(f())(t) fails t if f failed.
func must[T any](v T, err error) func(t *testing.T) T {
	return func(t *testing.T) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

// errOf(f()) is f's error, for checking calls expected to fail.
func errOf[T any](_ T, err error) error          { return err }
func errOf3[T, U any](_ T, _ U, err error) error { return err }

// must2 is must for two results.
func must2[T, U any](a T, b U, err error) func(t *testing.T) (T, U) {
	return func(t *testing.T) (T, U) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return a, b
	}
}

func wantErr(t *testing.T, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("got error %v, want %v", err, want)
	}
}

func wantEqual[T any](t *testing.T, got, want T) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got  %+v\nwant %+v", got, want)
	}
}

// wantGraph compares JSON by value: PostgreSQL's JSONB does not keep the
// bytes it was given.
func wantGraph(t *testing.T, got, want []byte) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("graph %q: %v", got, err)
	}
	if err := json.Unmarshal(want, &w); err != nil {
		t.Fatalf("graph %q: %v", want, err)
	}
	if !reflect.DeepEqual(g, w) {
		t.Fatalf("graph %s, want %s", got, want)
	}
}

// wins counts the calls that succeeded, failing t on any error but lost.
func wins(t *testing.T, lost error, errs []error) int {
	t.Helper()
	n := 0
	for _, err := range errs {
		switch {
		case err == nil:
			n++
		case !errors.Is(err, lost):
			t.Fatal(err)
		}
	}
	return n
}

// allPages reads a list to its end, limit rows a page, each page after the
// id of the last row of the one before.
func allPages[T any](t *testing.T, limit int, page func(after string, limit int) ([]T, error), id func(T) string) []T {
	t.Helper()
	var all []T
	for after := ""; ; {
		rows, err := page(after, limit)
		if err != nil {
			t.Fatal(err)
		}
		if len(rows) > limit {
			t.Fatalf("page of %d with limit %d", len(rows), limit)
		}
		if len(rows) == 0 {
			return all
		}
		all = append(all, rows...)
		after = id(rows[len(rows)-1])
	}
}

// sameVersion compares versions, graphs by value.
func sameVersion(t *testing.T, got, want store.Version) {
	t.Helper()
	wantGraph(t, got.Graph, want.Graph)
	got.Graph, want.Graph = nil, nil
	wantEqual(t, got, want)
}

var (
	graphA = []byte(`{"nodes": [{"id": "start", "type": "entry"}], "edges": []}`)
	graphB = []byte(`{"nodes": [{"id": "start", "type": "entry"}, {"id": "mail", "type": "email"}], "edges": [{"from": "start", "to": "mail"}]}`)
)

func newTenant(t *testing.T, s store.Store, name string) store.Tenant {
	t.Helper()
	return must(s.Tenants().CreateTenant(context.Background(), name, t0))(t)
}

func newJourney(t *testing.T, s store.Store, tenantID string, graph []byte) store.Journey {
	t.Helper()
	return must(s.Journeys().CreateJourney(context.Background(), store.Journey{TenantID: tenantID, Name: "welcome", CreatedAt: t0}, graph))(t)
}

func testBasics(t *testing.T, s store.Store) {
	ctx := context.Background()
	if d := s.Driver(); d != "sqlite" && d != "postgres" {
		t.Fatalf("Driver() = %q", d)
	}
	if err := s.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	ten := newTenant(t, s, "acme")
	for range 2 {
		if err := s.Migrate(ctx); err != nil {
			t.Fatalf("Migrate again: %v", err)
		}
	}
	wantEqual(t, must(s.Tenants().GetTenant(ctx, ten.ID))(t), ten)
}

func testTenants(t *testing.T, s store.Store) {
	ctx := context.Background()
	ts := s.Tenants()
	a := must(ts.CreateTenant(ctx, "acme", t0))(t)
	b := must(ts.CreateTenant(ctx, "globex", at(1)))(t)
	wantEqual(t, a.Name, "acme")
	wantEqual(t, a.CreatedAt, stored(t0))
	if len(a.ID) != len("ten_")+26 || a.ID[:4] != "ten_" {
		t.Fatalf("tenant id %q", a.ID)
	}
	wantEqual(t, must(ts.GetTenant(ctx, a.ID))(t), a)
	wantEqual(t, must(ts.ListTenants(ctx))(t), []store.Tenant{a, b})
	wantErr(t, errOf(ts.GetTenant(ctx, "ten_missing")), store.ErrNotFound)
}

func testAPIKeys(t *testing.T, s store.Store) {
	ctx := context.Background()
	ts := s.Tenants()
	ten, secret, err := store.CreateTenantWithKey(ctx, ts, "acme", t0)
	if err != nil {
		t.Fatal(err)
	}
	key := must(ts.APIKeyByHash(ctx, store.HashAPIKey(secret)))(t)
	wantEqual(t, key.TenantID, ten.ID)
	wantEqual(t, key.Hash, store.HashAPIKey(secret))
	wantEqual(t, key.CreatedAt, stored(t0))
	if key.ID[:4] != "key_" || key.RevokedAt != nil || key.LastUsedAt != nil {
		t.Fatalf("new key %+v", key)
	}
	key2, _, err := store.IssueAPIKey(ctx, ts, ten.ID, "ci", at(1))
	if err != nil {
		t.Fatal(err)
	}
	wantEqual(t, must(ts.ListAPIKeys(ctx, ten.ID))(t), []store.APIKey{key, key2})

	wantErr(t, errOf(ts.CreateAPIKey(ctx, store.APIKey{TenantID: ten.ID, Name: "copy", Hash: key.Hash, CreatedAt: t0})), store.ErrConflict)
	wantErr(t, errOf3(store.IssueAPIKey(ctx, ts, "ten_missing", "orphan", t0)), store.ErrNotFound)
	wantErr(t, errOf(ts.APIKeyByHash(ctx, store.HashAPIKey("kal_wrong"))), store.ErrNotFound)

	if err := ts.TouchAPIKey(ctx, key.ID, at(10)); err != nil {
		t.Fatal(err)
	}
	if err := ts.TouchAPIKey(ctx, key.ID, at(5)); err != nil {
		t.Fatal(err)
	}
	got := must(ts.APIKeyByHash(ctx, key.Hash))(t)
	wantEqual(t, *got.LastUsedAt, stored(at(10)))
	wantErr(t, ts.TouchAPIKey(ctx, "key_missing", t0), store.ErrNotFound)

	revoked := must(ts.RevokeAPIKey(ctx, ten.ID, key.ID, at(20)))(t)
	wantEqual(t, *revoked.RevokedAt, stored(at(20)))
	again := must(ts.RevokeAPIKey(ctx, ten.ID, key.ID, at(30)))(t)
	wantEqual(t, again, revoked)
	wantEqual(t, must(ts.APIKeyByHash(ctx, key.Hash))(t), revoked)
	wantErr(t, errOf(ts.RevokeAPIKey(ctx, ten.ID, "key_missing", t0)), store.ErrNotFound)
}

func testJourneys(t *testing.T, s store.Store) {
	ctx := context.Background()
	js := s.Journeys()
	ten := newTenant(t, s, "acme")
	j := must(js.CreateJourney(ctx, store.Journey{
		TenantID: ten.ID, Name: "welcome", Description: "greets", Status: store.JourneyActive, ActiveVersion: 7, CreatedAt: t0,
	}, nil))(t)
	wantEqual(t, j, store.Journey{ID: j.ID, TenantID: ten.ID, Name: "welcome", Description: "greets",
		Status: store.JourneyDraft, CreatedAt: stored(t0), UpdatedAt: stored(t0)})
	if j.ID[:4] != "jrn_" {
		t.Fatalf("journey id %q", j.ID)
	}
	wantEqual(t, must(js.GetJourney(ctx, ten.ID, j.ID))(t), j)
	wantEqual(t, len(must(js.ListVersions(ctx, ten.ID, j.ID))(t)), 0)

	name, desc := "hello", "says hello"
	renamed := must(js.UpdateJourney(ctx, ten.ID, j.ID, store.JourneyPatch{Name: &name}, at(1)))(t)
	wantEqual(t, renamed.Name, name)
	wantEqual(t, renamed.Description, "greets")
	wantEqual(t, renamed.UpdatedAt, stored(at(1)))
	described := must(js.UpdateJourney(ctx, ten.ID, j.ID, store.JourneyPatch{Description: &desc}, at(2)))(t)
	wantEqual(t, described.Name, name)
	wantEqual(t, described.Description, desc)
	wantEqual(t, must(js.GetJourney(ctx, ten.ID, j.ID))(t), described)

	withGraph := must(js.CreateJourney(ctx, store.Journey{TenantID: ten.ID, Name: "onboarding", CreatedAt: at(3)}, graphA))(t)
	vs := must(js.ListVersions(ctx, ten.ID, withGraph.ID))(t)
	wantEqual(t, len(vs), 1)
	sameVersion(t, vs[0], store.Version{TenantID: ten.ID, JourneyID: withGraph.ID, Number: 1, Status: store.VersionDraft,
		Graph: graphA, CreatedAt: stored(at(3)), UpdatedAt: stored(at(3))})

	wantErr(t, errOf(js.CreateJourney(ctx, store.Journey{TenantID: "ten_missing", Name: "orphan"}, graphA)), store.ErrNotFound)
	wantErr(t, errOf(js.GetJourney(ctx, ten.ID, "jrn_missing")), store.ErrNotFound)
}

func testListJourneys(t *testing.T, s store.Store) {
	ctx := context.Background()
	js := s.Journeys()
	ten := newTenant(t, s, "acme")
	var all []store.Journey
	for i := range 5 {
		all = append(all, must(js.CreateJourney(ctx, store.Journey{TenantID: ten.ID, Name: "j", CreatedAt: at(i)}, nil))(t))
	}
	wantEqual(t, must(js.ListJourneys(ctx, ten.ID, store.JourneyFilter{}))(t), all)

	wantEqual(t, allPages(t, 2, func(after string, limit int) ([]store.Journey, error) {
		return js.ListJourneys(ctx, ten.ID, store.JourneyFilter{After: after, Limit: limit})
	}, func(j store.Journey) string { return j.ID }), all)

	all[1] = must(js.SetJourneyStatus(ctx, ten.ID, all[1].ID, store.JourneyDraft, store.JourneyPaused, at(10)))(t)
	all[3] = must(js.SetJourneyStatus(ctx, ten.ID, all[3].ID, store.JourneyDraft, store.JourneyPaused, at(10)))(t)
	wantEqual(t, must(js.ListJourneys(ctx, ten.ID, store.JourneyFilter{Status: store.JourneyPaused}))(t), []store.Journey{all[1], all[3]})
	wantEqual(t, must(js.ListJourneys(ctx, ten.ID, store.JourneyFilter{Status: store.JourneyPaused, After: all[1].ID, Limit: 1}))(t), []store.Journey{all[3]})
	wantEqual(t, must(js.ListJourneys(ctx, ten.ID, store.JourneyFilter{Status: store.JourneyArchived}))(t), []store.Journey(nil))
}

func testJourneyStatus(t *testing.T, s store.Store) {
	ctx := context.Background()
	js := s.Journeys()
	ten := newTenant(t, s, "acme")
	j := newJourney(t, s, ten.ID, nil)
	paused := must(js.SetJourneyStatus(ctx, ten.ID, j.ID, store.JourneyDraft, store.JourneyPaused, at(1)))(t)
	wantEqual(t, paused.Status, store.JourneyPaused)
	wantEqual(t, paused.UpdatedAt, stored(at(1)))
	wantErr(t, errOf(js.SetJourneyStatus(ctx, ten.ID, j.ID, store.JourneyDraft, store.JourneyArchived, at(2))), store.ErrConflict)
	wantEqual(t, must(js.GetJourney(ctx, ten.ID, j.ID))(t), paused)
	if _, err := js.SetJourneyStatus(ctx, ten.ID, j.ID, store.JourneyPaused, "deleted", at(2)); err == nil {
		t.Fatal("unknown status accepted")
	}
	wantErr(t, errOf(js.SetJourneyStatus(ctx, ten.ID, "jrn_missing", store.JourneyDraft, store.JourneyPaused, at(2))), store.ErrNotFound)
}

func testVersions(t *testing.T, s store.Store) {
	ctx := context.Background()
	js := s.Journeys()
	ten := newTenant(t, s, "acme")
	j := newJourney(t, s, ten.ID, graphA)
	v2 := must(js.CreateVersion(ctx, ten.ID, j.ID, graphB, at(1)))(t)
	sameVersion(t, v2, store.Version{TenantID: ten.ID, JourneyID: j.ID, Number: 2, Status: store.VersionDraft,
		Graph: graphB, CreatedAt: stored(at(1)), UpdatedAt: stored(at(1))})
	sameVersion(t, must(js.GetVersion(ctx, ten.ID, j.ID, 2))(t), v2)
	v3 := must(js.CreateVersion(ctx, ten.ID, j.ID, graphA, at(2)))(t)
	wantEqual(t, v3.Number, 3)

	vs := must(js.ListVersions(ctx, ten.ID, j.ID))(t)
	wantEqual(t, len(vs), 3)
	for i, n := range []int{3, 2, 1} {
		wantEqual(t, vs[i].Number, n)
	}
	wantGraph(t, vs[0].Graph, graphA)
	wantGraph(t, vs[1].Graph, graphB)

	up := must(js.UpdateDraft(ctx, ten.ID, j.ID, 2, graphA, at(3)))(t)
	sameVersion(t, up, store.Version{TenantID: ten.ID, JourneyID: j.ID, Number: 2, Status: store.VersionDraft,
		Graph: graphA, CreatedAt: stored(at(1)), UpdatedAt: stored(at(3))})
	sameVersion(t, must(js.GetVersion(ctx, ten.ID, j.ID, 2))(t), up)

	wantErr(t, errOf(js.GetVersion(ctx, ten.ID, j.ID, 9)), store.ErrNotFound)
	wantErr(t, errOf(js.UpdateDraft(ctx, ten.ID, j.ID, 9, graphA, at(3))), store.ErrNotFound)
	wantErr(t, errOf(js.CreateVersion(ctx, ten.ID, "jrn_missing", graphA, at(3))), store.ErrNotFound)
	wantErr(t, errOf(js.ListVersions(ctx, ten.ID, "jrn_missing")), store.ErrNotFound)
}

func testPublish(t *testing.T, s store.Store) {
	ctx := context.Background()
	js := s.Journeys()
	ten := newTenant(t, s, "acme")
	j := newJourney(t, s, ten.ID, graphA)
	pj, pv := must2(js.PublishVersion(ctx, ten.ID, j.ID, 1, at(1)))(t)
	wantEqual(t, pj.Status, store.JourneyActive)
	wantEqual(t, pj.ActiveVersion, 1)
	wantEqual(t, pj.UpdatedAt, stored(at(1)))
	wantEqual(t, pj, must(js.GetJourney(ctx, ten.ID, j.ID))(t))
	wantEqual(t, pv.Status, store.VersionPublished)
	wantEqual(t, *pv.PublishedAt, stored(at(1)))
	sameVersion(t, must(js.GetVersion(ctx, ten.ID, j.ID, 1))(t), pv)

	wantErr(t, errOf(js.UpdateDraft(ctx, ten.ID, j.ID, 1, graphB, at(2))), store.ErrNotDraft)
	wantErr(t, errOf3(js.PublishVersion(ctx, ten.ID, j.ID, 1, at(2))), store.ErrNotDraft)
	sameVersion(t, must(js.GetVersion(ctx, ten.ID, j.ID, 1))(t), pv)
	wantErr(t, errOf3(js.PublishVersion(ctx, ten.ID, j.ID, 9, at(2))), store.ErrNotFound)

	must(js.CreateVersion(ctx, ten.ID, j.ID, graphB, at(3)))(t)
	pj, _ = must2(js.PublishVersion(ctx, ten.ID, j.ID, 2, at(4)))(t)
	wantEqual(t, pj.ActiveVersion, 2)
	wantEqual(t, must(js.GetVersion(ctx, ten.ID, j.ID, 1))(t).Status, store.VersionPublished)
}

// testAtomicity checks that a failing transaction leaves nothing behind.
func testAtomicity(t *testing.T, s store.Store) {
	ctx := context.Background()
	js := s.Journeys()
	ten := newTenant(t, s, "acme")

	// The journey row is written before the version, whose graph is refused.
	if _, err := js.CreateJourney(ctx, store.Journey{TenantID: ten.ID, Name: "broken"}, []byte(`{"nodes": [`)); err == nil {
		t.Fatal("invalid graph accepted")
	}
	wantEqual(t, must(js.ListJourneys(ctx, ten.ID, store.JourneyFilter{}))(t), []store.Journey(nil))

	j := newJourney(t, s, ten.ID, graphA)
	archived := must(js.SetJourneyStatus(ctx, ten.ID, j.ID, store.JourneyDraft, store.JourneyArchived, at(1)))(t)
	v := must(js.GetVersion(ctx, ten.ID, j.ID, 1))(t)
	wantErr(t, errOf3(js.PublishVersion(ctx, ten.ID, j.ID, 1, at(2))), store.ErrConflict)
	wantEqual(t, must(js.GetJourney(ctx, ten.ID, j.ID))(t), archived)
	sameVersion(t, must(js.GetVersion(ctx, ten.ID, j.ID, 1))(t), v)
}

func testDeleteJourney(t *testing.T, s store.Store) {
	ctx := context.Background()
	js := s.Journeys()
	ten := newTenant(t, s, "acme")
	j := newJourney(t, s, ten.ID, graphA)
	keep := newJourney(t, s, ten.ID, graphB)
	must(js.CreateVersion(ctx, ten.ID, j.ID, graphB, at(1)))(t)
	if err := js.DeleteJourney(ctx, ten.ID, j.ID); err != nil {
		t.Fatal(err)
	}
	wantErr(t, errOf(js.GetJourney(ctx, ten.ID, j.ID)), store.ErrNotFound)
	wantErr(t, errOf(js.GetVersion(ctx, ten.ID, j.ID, 1)), store.ErrNotFound)
	wantErr(t, js.DeleteJourney(ctx, ten.ID, j.ID), store.ErrNotFound)
	wantEqual(t, must(js.ListJourneys(ctx, ten.ID, store.JourneyFilter{}))(t), []store.Journey{keep})
	wantEqual(t, len(must(js.ListVersions(ctx, ten.ID, keep.ID))(t)), 1)
}

// testTenantIsolation calls every method with one tenant's id and another
// tenant's records: each must miss, and change nothing.
func testTenantIsolation(t *testing.T, s store.Store) {
	ctx := context.Background()
	js, ts := s.Journeys(), s.Tenants()
	mine := newTenant(t, s, "mine")
	theirs := newTenant(t, s, "theirs")
	key, _, err := store.IssueAPIKey(ctx, ts, theirs.ID, "default", t0)
	if err != nil {
		t.Fatal(err)
	}
	j := newJourney(t, s, theirs.ID, graphA)
	v := must(js.GetVersion(ctx, theirs.ID, j.ID, 1))(t)
	name := "stolen"

	notFound := map[string]error{
		"RevokeAPIKey": errOf(ts.RevokeAPIKey(ctx, mine.ID, key.ID, at(1))),
		"GetJourney":   errOf(js.GetJourney(ctx, mine.ID, j.ID)),
		"UpdateJourney": errOf(js.UpdateJourney(ctx, mine.ID, j.ID,
			store.JourneyPatch{Name: &name}, at(1))),
		"SetJourneyStatus": errOf(js.SetJourneyStatus(ctx, mine.ID, j.ID,
			store.JourneyDraft, store.JourneyPaused, at(1))),
		"DeleteJourney":  js.DeleteJourney(ctx, mine.ID, j.ID),
		"CreateVersion":  errOf(js.CreateVersion(ctx, mine.ID, j.ID, graphB, at(1))),
		"GetVersion":     errOf(js.GetVersion(ctx, mine.ID, j.ID, 1)),
		"ListVersions":   errOf(js.ListVersions(ctx, mine.ID, j.ID)),
		"UpdateDraft":    errOf(js.UpdateDraft(ctx, mine.ID, j.ID, 1, graphB, at(1))),
		"PublishVersion": errOf3(js.PublishVersion(ctx, mine.ID, j.ID, 1, at(1))),
	}
	for method, err := range notFound {
		if !errors.Is(err, store.ErrNotFound) {
			t.Errorf("%s with another tenant's id: got %v, want ErrNotFound", method, err)
		}
	}
	wantEqual(t, must(ts.ListAPIKeys(ctx, mine.ID))(t), []store.APIKey(nil))
	wantEqual(t, must(js.ListJourneys(ctx, mine.ID, store.JourneyFilter{}))(t), []store.Journey(nil))

	wantEqual(t, must(ts.ListAPIKeys(ctx, theirs.ID))(t), []store.APIKey{key})
	wantEqual(t, must(js.ListJourneys(ctx, theirs.ID, store.JourneyFilter{}))(t), []store.Journey{j})
	vs := must(js.ListVersions(ctx, theirs.ID, j.ID))(t)
	wantEqual(t, len(vs), 1)
	sameVersion(t, vs[0], v)
}

// testConcurrentCreateVersion races writers for version numbers.
func testConcurrentCreateVersion(t *testing.T, s store.Store) {
	ctx := context.Background()
	js := s.Journeys()
	ten := newTenant(t, s, "acme")
	j := newJourney(t, s, ten.ID, graphA)
	const writers, each = 10, 3
	for _, err := range Concurrently(writers, func() error {
		for range each {
			if _, err := js.CreateVersion(ctx, ten.ID, j.ID, graphB, at(1)); err != nil {
				return err
			}
		}
		return nil
	}) {
		if err != nil {
			t.Fatal(err)
		}
	}
	vs := must(js.ListVersions(ctx, ten.ID, j.ID))(t)
	wantEqual(t, len(vs), writers*each+1)
	for i, v := range vs {
		wantEqual(t, v.Number, writers*each+1-i)
	}
}

// testConcurrentStatusCAS races writers for one status change: one wins.
func testConcurrentStatusCAS(t *testing.T, s store.Store) {
	ctx := context.Background()
	js := s.Journeys()
	ten := newTenant(t, s, "acme")
	j := newJourney(t, s, ten.ID, nil)
	wantEqual(t, wins(t, store.ErrConflict, Concurrently(10, func() error {
		return errOf(js.SetJourneyStatus(ctx, ten.ID, j.ID, store.JourneyDraft, store.JourneyPaused, at(1)))
	})), 1)
	wantEqual(t, must(js.GetJourney(ctx, ten.ID, j.ID))(t).Status, store.JourneyPaused)
}
