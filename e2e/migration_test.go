package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/kalcifer/kalcifer/journey"
	"github.com/kalcifer/kalcifer/store"
)

type versionedInstance struct {
	instance
	Version int `json:"version"`
}

// counter is the value of the runtime's counter name with the label.
func (e *env) counter(name, label, value string) float64 {
	e.t.Helper()
	families, err := e.metrics.Gather()
	if err != nil {
		e.t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// draft adds a version with graph to the journey and returns its number.
func (e *env) draft(journeyID string, graph map[string]any) int {
	e.t.Helper()
	v := ok[struct{ Number int }](e.do("POST", "/journeys/"+journeyID+"/versions", map[string]any{"graph": graph}), http.StatusCreated)
	return v.Number
}

// change publishes version v (or rolls back to it) with the body and
// lets the engine carry the migration out.
func (e *env) change(journeyID string, v int, how string, body map[string]any) store.Migration {
	e.t.Helper()
	r := ok[struct{ Migration store.Migration }](e.do("POST", fmt.Sprintf("/journeys/%s/versions/%d/%s", journeyID, v, how), body), http.StatusOK)
	e.settle()
	return e.migration(journeyID, r.Migration.ID)
}

func (e *env) migration(journeyID, id string) store.Migration {
	e.t.Helper()
	return ok[store.Migration](e.do("GET", "/journeys/"+journeyID+"/migrations/"+id, nil), http.StatusOK)
}

// versioned lists the journey's instances with their versions, by customer.
func (e *env) versioned(journeyID, query string) map[string]versionedInstance {
	e.t.Helper()
	list := ok[struct{ Data []versionedInstance }](e.do("GET", "/journeys/"+journeyID+"/instances?limit=200"+query, nil), http.StatusOK).Data
	out := map[string]versionedInstance{}
	for _, in := range list {
		out[in.CustomerID] = in
	}
	return out
}

// waitForEvent waits for eventType for at most timeout, then branches.
func waitForEvent(id, eventType, timeout string) map[string]any {
	return node(id, "wait_for_event", map[string]any{"event_type": eventType, "timeout": timeout})
}

// offer is v1 of the journey the migration tests change: a day's wait, an
// email, then three days for a click, with an email either way.
func offer(eventType, timeout string, withWait bool) map[string]any {
	nodes := []any{eventEntry("signed_up"), email("e1"), waitForEvent("wfe", eventType, timeout), email("e2"), email("e3")}
	edges := []any{edge("e1", "wfe", ""), edge("wfe", "e2", "event_received"), edge("wfe", "e3", "timed_out")}
	if withWait {
		nodes = append(nodes, wait("w1", "1d"))
		edges = append(edges, edge("entry", "w1", ""), edge("w1", "e1", ""))
	} else {
		edges = append(edges, edge("entry", "e1", ""))
	}
	return map[string]any{"nodes": nodes, "edges": edges}
}

func customers(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s%d", prefix, i)
	}
	return out
}

// signUp sends each customer a signed_up event and returns the customers'
// ids by their external ids.
func (e *env) signUp(ids map[string]string, external ...string) {
	e.t.Helper()
	for _, c := range external {
		ids[c] = e.giveAddress(c)
		e.event(c, "signed_up", nil)
	}
}

// TestMigrateAll moves customers waiting at two nodes to a version that
// removes one and changes the other's wait: those at the removed wait go
// on to the email after it, those waiting for the click now wait for a
// purchase, on a timeout counted from when they began, and nobody is sent
// anything twice.
func TestMigrateAll(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		id := e.publish(offer("clicked", "3d", true))
		ids := map[string]string{}
		early := customers("early", 5)
		e.signUp(ids, early...)
		e.settle()
		e.advance(24*time.Hour + time.Minute)
		late := customers("late", 5)
		e.signUp(ids, late...)
		e.settle()
		before := e.versioned(id, "")
		for _, c := range early {
			if in := before[ids[c]]; in.Status != store.InstanceWaiting || in.Nodes[0] != "wfe" {
				t.Fatalf("%s is %s at %v before the migration", c, in.Status, in.Nodes)
			}
		}

		v2 := e.draft(id, offer("purchased", "5d", false))
		dry := ok[struct {
			Valid  bool
			Totals map[string]int
		}](e.do("POST", fmt.Sprintf("/journeys/%s/versions/%d/publish?dry_run=true", id, v2), map[string]any{"removed_node_policy": "skip_to_next"}), http.StatusOK)
		if !dry.Valid || dry.Totals[journey.ActionSkip] != 5 || dry.Totals[journey.ActionStay] != 5 {
			t.Fatalf("dry run: %+v", dry)
		}
		m := e.change(id, v2, "publish", map[string]any{"strategy": "migrate_all", "removed_node_policy": "skip_to_next"})
		want := store.MigrationCounts{Total: 10, Migrated: 10}
		if m.Status != store.MigrationCompleted || m.Counts != want || m.Kind != store.MigrationPublish || m.FromVersion != 1 || m.ToVersion != v2 {
			t.Fatalf("migration %+v, want completed with %+v", m, want)
		}
		if m.CreatedBy == "" {
			t.Error("the migration does not say who started it")
		}
		if got := e.counter("kalcifer_migration_instances_total", "outcome", "migrated"); got != 10 {
			t.Fatalf("kalcifer_migration_instances_total{outcome=migrated} is %v, want 10", got)
		}
		after := e.versioned(id, "")
		for _, c := range append(early, late...) {
			in := after[ids[c]]
			if in.Version != v2 || in.Status != store.InstanceWaiting || in.Nodes[0] != "wfe" {
				t.Fatalf("%s is on version %d, %s at %v after the migration", c, in.Version, in.Status, in.Nodes)
			}
			e.sent(in.ID, "e1")
		}

		// The wait now listens for purchases, not clicks.
		e.event(early[0], "clicked", nil)
		e.event(early[1], "purchased", nil)
		e.settle()
		after = e.versioned(id, "")
		if in := after[ids[early[0]]]; in.Status != store.InstanceWaiting {
			t.Fatalf("a click moved %s: %s", early[0], in.Status)
		}
		if in := after[ids[early[1]]]; in.Status != store.InstanceCompleted {
			t.Fatalf("a purchase did not move %s: %s", early[1], in.Status)
		}
		e.sent(after[ids[early[1]]].ID, "e1", "e2")

		// The early ones began waiting a day in; five days from then, not
		// three, they time out.
		e.advance(3*24*time.Hour + time.Hour)
		if in := e.versioned(id, "")[ids[early[0]]]; in.Status != store.InstanceWaiting {
			t.Fatalf("%s timed out on the old timeout: %s", early[0], in.Status)
		}
		e.advance(2 * 24 * time.Hour)
		final := e.versioned(id, "")
		for _, c := range early[2:] {
			if in := final[ids[c]]; in.Status != store.InstanceCompleted {
				t.Fatalf("%s is %s after the new timeout", c, in.Status)
			}
			e.sent(final[ids[c]].ID, "e1", "e3")
		}

		// A customer entering now runs the new version.
		e.signUp(ids, "newcomer")
		e.settle()
		if in := e.versioned(id, "")[ids["newcomer"]]; in.Version != v2 {
			t.Fatalf("a new entry runs version %d", in.Version)
		}
		byVersion := ok[struct {
			Data []struct{ Version, Active int }
		}](e.do("GET", "/journeys/"+id+"/instances/by-version", nil), http.StatusOK)
		for _, v := range byVersion.Data {
			if v.Version == 1 && v.Active != 0 {
				t.Fatalf("%d customers are still on version 1", v.Active)
			}
		}
		list := ok[struct{ Data []store.Migration }](e.do("GET", "/journeys/"+id+"/migrations", nil), http.StatusOK).Data
		if len(list) != 2 || list[0].ID != m.ID || list[1].Strategy != store.StrategyNewEntriesOnly {
			t.Fatalf("migrations %+v, want this one then the first publish", list)
		}
	})
}

// TestMigrationHoldAndRelease holds customers at a removed node until
// they are released to a node of their new version.
func TestMigrationHoldAndRelease(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		id := e.publish(offer("clicked", "3d", true))
		ids := map[string]string{}
		e.signUp(ids, customers("c", 3)...)
		e.settle()
		v2 := e.draft(id, offer("clicked", "3d", false))
		m := e.change(id, v2, "publish", map[string]any{"strategy": "migrate_all", "removed_node_policy": "hold"})
		if m.Counts != (store.MigrationCounts{Total: 3, Held: 3}) || m.Status != store.MigrationCompleted {
			t.Fatalf("migration %+v, want 3 held", m)
		}
		held := e.versioned(id, "&status=held")
		if len(held) != 3 {
			t.Fatalf("%d held instances listed, want 3", len(held))
		}
		in := held[ids["c0"]]
		e.do("POST", "/instances/"+in.ID+"/release", map[string]any{"node_id": "nowhere"}).fails(http.StatusBadRequest, "unknown_node")
		released := ok[versionedInstance](e.do("POST", "/instances/"+in.ID+"/release", map[string]any{"node_id": "e1"}), http.StatusOK)
		if released.Status != store.InstanceWaiting || released.Nodes[0] != "wfe" {
			t.Fatalf("released instance is %s at %v", released.Status, released.Nodes)
		}
		e.settle()
		e.sent(in.ID, "e1")
		e.do("POST", "/instances/"+in.ID+"/release", map[string]any{"node_id": "e1"}).fails(http.StatusConflict, "not_held")
		// Held customers hold their place: no re-entry while held.
		e.event("c1", "signed_up", nil)
		e.settle()
		if n := len(e.versioned(id, "&status=held")); n != 2 {
			t.Fatalf("%d held after a repeated sign-up, want 2", n)
		}
		release := "/journeys/" + id + "/instances/release"
		e.do("POST", release, map[string]any{"node_id": "w1"}).fails(http.StatusBadRequest, "unknown_node")
		e.do("POST", release, map[string]any{"node_id": "e1", "limit": 0}).fails(http.StatusBadRequest, "invalid_field")
		type bulk struct {
			Released  int
			Failed    []struct{ InstanceID, Code string }
			More      bool
			NextAfter string `json:"next_after"`
		}
		if r := ok[bulk](e.do("POST", release, map[string]any{"node_id": "e1", "from_node": "elsewhere"}), http.StatusOK); r.Released != 0 || r.More {
			t.Fatalf("released from a node nobody is held at: %+v", r)
		}
		first := ok[bulk](e.do("POST", release, map[string]any{"node_id": "e1", "from_node": "w1", "limit": 1}), http.StatusOK)
		if first.Released != 1 || !first.More || first.NextAfter == "" || len(first.Failed) != 0 {
			t.Fatalf("first bulk release: %+v", first)
		}
		if r := ok[bulk](e.do("POST", release, map[string]any{"node_id": "e1", "after": first.NextAfter}), http.StatusOK); r.Released != 1 || r.More {
			t.Fatalf("second bulk release: %+v", r)
		}
		e.settle()
		for _, in := range e.versioned(id, "") {
			if in.Status != store.InstanceWaiting || in.Nodes[0] != "wfe" {
				t.Fatalf("%s is %s at %v after the releases", in.ID, in.Status, in.Nodes)
			}
			e.sent(in.ID, "e1")
		}
	})
}

// TestGradualRolloutAndRollback moves a percentage of the customers,
// then the rest, then rolls everyone back.
func TestGradualRolloutAndRollback(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		g1 := chain(eventEntry("signed_up"), wait("w1", "1d"), email("e1"))
		id := e.publish(g1)
		all := customers("c", 60)
		for _, c := range all {
			e.event(c, "signed_up", nil)
		}
		e.settle()
		v2 := e.draft(id, chain(eventEntry("signed_up"), wait("w1", "2d"), email("e1")))
		m := e.change(id, v2, "publish", map[string]any{"strategy": "gradual", "rollout_percent": 30, "batch_size": 7})
		moved := 0
		for _, in := range e.versioned(id, "") {
			if journey.InRollout(in.ID, 30) != (in.Version == v2) {
				t.Fatalf("instance %s is on version %d at 30%%", in.ID, in.Version)
			}
			if in.Version == v2 {
				moved++
			}
		}
		if m.Status != store.MigrationPartial || m.Counts.Migrated != moved || m.Counts.Skipped != 60-moved || moved == 0 {
			t.Fatalf("migration %+v, want partial with %d moved", m, moved)
		}
		e.do("POST", "/journeys/"+id+"/migrations/"+m.ID+"/rollout", map[string]any{"rollout_percent": 20}).
			fails(http.StatusBadRequest, "invalid_rollout_percent")
		ok[store.Migration](e.do("POST", "/journeys/"+id+"/migrations/"+m.ID+"/rollout", map[string]any{"rollout_percent": 100}), http.StatusOK)
		e.settle()
		if m = e.migration(id, m.ID); m.Status != store.MigrationCompleted || m.Counts.Migrated != 60 {
			t.Fatalf("after the full rollout: %+v", m)
		}
		// Re-timed to two days from when they began: nothing after one.
		e.advance(24*time.Hour + time.Hour)
		for c, in := range e.versioned(id, "") {
			if in.Version != v2 || in.Status != store.InstanceWaiting {
				t.Fatalf("%s is on version %d, %s", c, in.Version, in.Status)
			}
		}
		back := e.change(id, 1, "rollback", nil)
		if back.Kind != store.MigrationRollback || back.Strategy != store.StrategyMigrateAll || back.Counts.Migrated != 60 || back.Status != store.MigrationCompleted {
			t.Fatalf("rollback %+v", back)
		}
		// Back on one day from when they began, which is past: due now.
		e.settle()
		for c, in := range e.versioned(id, "") {
			if in.Version != 1 || in.Status != store.InstanceCompleted {
				t.Fatalf("%s is on version %d, %s after the rollback", c, in.Version, in.Status)
			}
			e.sent(in.ID, "e1")
		}
		e.do("POST", fmt.Sprintf("/journeys/%s/versions/1/rollback", id), nil).fails(http.StatusConflict, "version_active")
	})
}

// TestMigrationControls pauses, resumes and aborts migrations through the
// API; a store.Migration in progress keeps the journey from changing version.
func TestMigrationControls(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		g1 := chain(eventEntry("signed_up"), wait("w1", "1d"), email("e1"))
		id := e.publish(g1)
		const n = 100
		e.signUp(map[string]string{}, customers("c", n)...)
		e.settle()
		v2 := e.draft(id, chain(eventEntry("signed_up"), wait("w1", "2d"), email("e1")))
		// Started in the store, after the runtime started, so that nothing
		// kicks it: not the API, nor the recovery's first pass, which
		// takes what was running at start.
		e.clock.Advance(time.Millisecond)
		options, _ := json.Marshal(journey.MigrationOptions{})
		_, m, err := e.store.Migrations().StartMigration(context.Background(), store.Migration{TenantID: e.tenant.ID, JourneyID: id,
			Kind: store.MigrationPublish, FromVersion: 1, ToVersion: v2, Strategy: store.StrategyMigrateAll, RolloutPercent: 100,
			BatchSize: 1, Options: options, CreatedAt: e.clock.Now()})
		if err != nil {
			t.Fatal(err)
		}
		path := "/journeys/" + id + "/migrations/" + m.ID
		paused := ok[store.Migration](e.do("POST", path+"/pause", nil), http.StatusOK)
		if paused.Status != store.MigrationPaused || paused.Counts.Migrated != 0 {
			t.Fatalf("paused migration: %+v", paused)
		}
		e.do("POST", path+"/pause", nil).fails(http.StatusConflict, "invalid_migration_state")
		v3 := e.draft(id, g1)
		e.do("POST", fmt.Sprintf("/journeys/%s/versions/%d/publish", id, v3), nil).fails(http.StatusConflict, "migration_in_progress")
		e.settle()
		if still := e.migration(id, m.ID); still.Counts != paused.Counts {
			t.Fatalf("a paused store.Migration moved on: %+v, then %+v", paused.Counts, still.Counts)
		}
		if on1 := len(e.versioned(id, "&version=1")); on1 != n {
			t.Fatalf("%d on version 1 while paused, want %d", on1, n)
		}
		ok[store.Migration](e.do("POST", path+"/resume", nil), http.StatusOK)
		e.settle()
		if m := e.migration(id, m.ID); m.Status != store.MigrationCompleted || m.Counts.Migrated != n {
			t.Fatalf("resumed store.Migration ended %+v", m)
		}
		e.do("POST", path+"/abort", nil).fails(http.StatusConflict, "invalid_migration_state")

		m2 := ok[struct{ Migration store.Migration }](e.do("POST", fmt.Sprintf("/journeys/%s/versions/%d/publish", id, v3),
			map[string]any{"strategy": "gradual", "rollout_percent": 1}), http.StatusOK).Migration
		e.settle()
		if a := ok[store.Migration](e.do("POST", "/journeys/"+id+"/migrations/"+m2.ID+"/abort", nil), http.StatusOK); a.Status != store.MigrationAborted {
			t.Fatalf("aborted store.Migration is %s", a.Status)
		}
		e.do("POST", "/journeys/"+id+"/migrations/"+m2.ID+"/rollout", map[string]any{"rollout_percent": 50}).
			fails(http.StatusConflict, "invalid_migration_state")
		e.do("GET", "/journeys/"+id+"/migrations/mig_nope", nil).fails(http.StatusNotFound, "migration_not_found")
	})
}

// TestMigrateAllVersionsInFlight moves the customers still on an older
// version, which a new_entries_only publish left there, along with those
// on the active one.
func TestMigrateAllVersionsInFlight(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		id := e.publish(chain(eventEntry("signed_up"), wait("w1", "1d"), email("e1")))
		e.signUp(map[string]string{}, customers("old", 2)...)
		e.settle()
		v2 := e.draft(id, chain(eventEntry("signed_up"), wait("w1", "2d"), wait("x", "1h"), email("e1")))
		if m := e.change(id, v2, "publish", nil); m.Strategy != store.StrategyNewEntriesOnly || m.Status != store.MigrationCompleted {
			t.Fatalf("new_entries_only publish recorded as %+v", m)
		}
		e.signUp(map[string]string{}, customers("new", 3)...)
		e.settle()
		v3 := e.draft(id, chain(eventEntry("signed_up"), wait("w1", "3d"), email("e1")))
		dry := ok[struct {
			Valid         bool
			FromVersion   int `json:"from_version"`
			Totals        map[string]int
			OtherVersions []struct {
				FromVersion int `json:"from_version"`
				Totals      map[string]int
			} `json:"other_versions"`
		}](e.do("POST", fmt.Sprintf("/journeys/%s/versions/%d/publish?dry_run=true", id, v3), map[string]any{"node_mapping": map[string]string{"x": "e1"}}), http.StatusOK)
		if !dry.Valid || dry.FromVersion != v2 || dry.Totals[journey.ActionStay] != 3 || len(dry.OtherVersions) != 1 ||
			dry.OtherVersions[0].FromVersion != 1 || dry.OtherVersions[0].Totals[journey.ActionStay] != 2 {
			t.Fatalf("dry run %+v", dry)
		}
		// The mapping names a node only version 2 has; version 1's plan
		// takes no part of it.
		m := e.change(id, v3, "publish", map[string]any{"strategy": "migrate_all", "batch_size": 2, "node_mapping": map[string]string{"x": "e1"}})
		if m.Counts != (store.MigrationCounts{Total: 5, Migrated: 5}) || m.Status != store.MigrationCompleted || m.FromVersion != v2 {
			t.Fatalf("migration %+v", m)
		}
		// Three days from when each began: nothing after two.
		e.advance(2*24*time.Hour + time.Hour)
		for _, in := range e.versioned(id, "") {
			if in.Version != v3 || in.Status != store.InstanceWaiting {
				t.Fatalf("%s is on version %d, %s", in.CustomerID, in.Version, in.Status)
			}
		}
		e.advance(24 * time.Hour)
		for _, in := range e.versioned(id, "") {
			if in.Status != store.InstanceCompleted {
				t.Fatalf("%s is %s after three days", in.CustomerID, in.Status)
			}
			e.sent(in.ID, "e1")
		}
	})
}

// TestMigrationOfDeletedJourneyFails: a migration whose journey was
// archived and deleted under it cannot go on, and says so.
func TestMigrationOfDeletedJourneyFails(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		g1 := chain(eventEntry("signed_up"), wait("w1", "1d"), email("e1"))
		id := e.publish(g1)
		e.signUp(map[string]string{}, customers("c", 2)...)
		e.settle()
		v2 := e.draft(id, chain(eventEntry("signed_up"), wait("w1", "2d"), email("e1")))
		// After the runtime started, so that its first recovery pass does
		// not run it before the journey is gone.
		e.clock.Advance(time.Millisecond)
		_, m, err := e.store.Migrations().StartMigration(context.Background(), store.Migration{TenantID: e.tenant.ID, JourneyID: id,
			Kind: store.MigrationPublish, FromVersion: 1, ToVersion: v2, Strategy: store.StrategyMigrateAll, RolloutPercent: 100,
			BatchSize: 10, Options: []byte(`{}`), CreatedAt: e.clock.Now()})
		if err != nil {
			t.Fatal(err)
		}
		ok[map[string]any](e.do("POST", "/journeys/"+id+"/archive", nil), http.StatusOK)
		if r := e.do("DELETE", "/journeys/"+id, nil); r.status != http.StatusNoContent {
			t.Fatalf("delete: %d %s", r.status, r.body)
		}
		e.settle()
		got, err := e.store.Migrations().GetMigration(context.Background(), e.tenant.ID, m.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.Status != store.MigrationFailed || got.Error == "" || got.FinishedAt == nil {
			t.Fatalf("migration of a deleted journey: %+v", got)
		}
	})
}

// TestEntriesDuringMigration: customers keep signing up while a migration
// runs in the background, a batch of two at a time. Each ends with exactly
// one instance, on the new version, whether it entered before the publish,
// during the migration or after it.
func TestEntriesDuringMigration(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		id := e.publish(chain(eventEntry("signed_up"), wait("w1", "1d"), email("e1")))
		ids := map[string]string{}
		e.signUp(ids, customers("before", 20)...)
		e.settle()
		v2 := e.draft(id, chain(eventEntry("signed_up"), wait("w1", "2d"), email("e1")))
		during := customers("during", 20)
		for _, c := range during {
			e.reach(c)
		}
		// The publish kicks the journey's grain, which migrates on its own
		// while the sign-ups go in.
		r := ok[struct{ Migration store.Migration }](e.do("POST", fmt.Sprintf("/journeys/%s/versions/%d/publish", id, v2),
			map[string]any{"strategy": "migrate_all", "batch_size": 2}), http.StatusOK)
		for _, c := range during {
			e.event(c, "signed_up", nil)
		}
		e.settle()
		if m := e.migration(id, r.Migration.ID); m.Status != store.MigrationCompleted || m.Counts.Total != 20 || m.Counts.Migrated != 20 {
			t.Fatalf("migration %+v", m)
		}
		all := ok[struct{ Data []versionedInstance }](e.do("GET", "/journeys/"+id+"/instances?limit=200", nil), http.StatusOK).Data
		seen := map[string]int{}
		for _, in := range all {
			seen[in.CustomerID]++
			if in.Version != v2 || in.Status != store.InstanceWaiting || in.Nodes[0] != "w1" {
				t.Fatalf("instance %s of %s is on version %d, %s at %v", in.ID, in.CustomerID, in.Version, in.Status, in.Nodes)
			}
		}
		if len(all) != 40 || len(seen) != 40 {
			t.Fatalf("%d instances of %d customers, want 40 of 40", len(all), len(seen))
		}
	})
}
