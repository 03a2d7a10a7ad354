package api_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/kalcifer/kalcifer/actors"
	"github.com/kalcifer/kalcifer/cluster"
	"github.com/kalcifer/kalcifer/journey"
	"github.com/kalcifer/kalcifer/store"
)

type dryRunJSON struct {
	DryRun      bool              `json:"dry_run"`
	Valid       bool              `json:"valid"`
	FromVersion int               `json:"from_version"`
	Totals      map[string]int    `json:"totals"`
	Problems    []journey.Problem `json:"problems"`
	Placements  []struct {
		journey.Placement
		Customers int `json:"customers"`
	} `json:"placements"`
	Diff journey.GraphDiff `json:"diff"`
}

// TestPublishDryRun: publishing with dry_run=true plans where the
// customers in flight on the active version would go, counted by node,
// and changes nothing.
func TestPublishDryRun(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		j := e.createJourney("welcome", validGraph())
		ok[map[string]any](e.do("POST", versionPath(j.ID, 1, "")+"/publish", nil), http.StatusOK)
		for i, nodes := range [][]string{{"wait_1"}, {"wait_1"}, {"email_1"}} {
			c := e.upsert(string(rune('a'+i)), map[string]any{}, http.StatusCreated)
			e.seed(e.tenant.ID, store.Instance{JourneyID: j.ID, Version: 1, CustomerID: c.ID, Status: store.InstanceWaiting, Nodes: nodes}, nil)
		}
		// v2 drops the wait and waits for a click at a new node instead.
		g := validGraph()
		g["nodes"] = []any{g["nodes"].([]any)[0], g["nodes"].([]any)[1],
			map[string]any{"id": "click_1", "type": "wait_for_event", "config": map[string]any{"event_type": "email_clicked", "timeout": "3d"}},
			g["nodes"].([]any)[3], g["nodes"].([]any)[4]}
		g["edges"] = []any{
			map[string]any{"id": "e1", "source": "entry_1", "target": "email_1"},
			map[string]any{"id": "e2", "source": "email_1", "target": "click_1"},
			map[string]any{"id": "e3", "source": "click_1", "target": "goal_1", "branch": "event_received"},
			map[string]any{"id": "e4", "source": "click_1", "target": "exit_1", "branch": "timed_out"},
		}
		ok[map[string]any](e.do("POST", "/journeys/"+j.ID+"/versions", map[string]any{"graph": g}), http.StatusCreated)
		v2 := versionPath(j.ID, 2, "") + "/publish?dry_run=true"

		plan := ok[dryRunJSON](e.do("POST", v2, nil), http.StatusOK)
		if !plan.DryRun || !plan.Valid || plan.FromVersion != 1 || len(plan.Diff.RemovedNodes) != 1 {
			t.Fatalf("plan %+v", plan)
		}
		if plan.Totals["exit"] != 2 || plan.Totals["stay"] != 1 {
			t.Fatalf("totals %v, want the 2 at the removed wait to exit and 1 to stay", plan.Totals)
		}
		mapped := ok[dryRunJSON](e.do("POST", v2, map[string]any{"node_mapping": map[string]string{"wait_1": "click_1"}}), http.StatusOK)
		if mapped.Totals["move"] != 2 || mapped.Totals["exit"] != 0 {
			t.Fatalf("mapped totals %v", mapped.Totals)
		}
		for _, pl := range mapped.Placements {
			if pl.From == "wait_1" && (pl.Action != "move" || pl.To != "click_1" || pl.Customers != 2) {
				t.Fatalf("wait_1 %+v", pl)
			}
		}
		back := ok[dryRunJSON](e.do("POST", v2, map[string]any{"node_mapping": map[string]string{"wait_1": "entry_1"}}), http.StatusOK)
		if back.Valid || len(back.Problems) != 1 || back.Problems[0].Code != journey.CodeBackwardMapping {
			t.Fatalf("a mapping back: %+v", back)
		}
		e.do("POST", v2, map[string]any{"node_mapping": "x"}).fails(http.StatusBadRequest, "invalid_field")
		e.do("POST", versionPath(j.ID, 2, "")+"/publish?dry_run=maybe", nil).fails(http.StatusBadRequest, "invalid_parameter")

		byVersion := ok[struct {
			Data []struct {
				Version  int            `json:"version"`
				Active   int            `json:"active"`
				Total    int            `json:"total"`
				ByStatus map[string]int `json:"by_status"`
			}
		}](e.do("GET", "/journeys/"+j.ID+"/instances/by-version", nil), http.StatusOK).Data
		if len(byVersion) != 1 || byVersion[0].Version != 1 || byVersion[0].Active != 3 || byVersion[0].ByStatus["waiting"] != 3 {
			t.Fatalf("by version %+v", byVersion)
		}
		e.do("GET", "/journeys/jrn_missing/instances/by-version", nil).fails(http.StatusNotFound, "journey_not_found")

		// Nothing changed: v1 is still active and v2 still a draft.
		if got := ok[journeyJSON](e.do("GET", "/journeys/"+j.ID, nil), http.StatusOK); got.ActiveVersion != 1 {
			t.Fatalf("a dry run published: %+v", got)
		}
		if v := ok[map[string]any](e.do("GET", versionPath(j.ID, 2, ""), nil), http.StatusOK); v["status"] != "draft" {
			t.Fatalf("v2 after a dry run: %v", v["status"])
		}
	})
}

// TestPublishStrategies: a publish records who changed the journey's
// version and how, starts a migration through the engine when customers
// are to move, and refuses bad options, a plan that would leave customers
// without a place and a second migration while one is unfinished.
func TestPublishStrategies(t *testing.T) {
	withEngine(t, func(t *testing.T, e *env, f *fakeEngine) {
		j := e.createJourney("welcome", validGraph())
		first := ok[struct{ Migration store.Migration }](e.do("POST", versionPath(j.ID, 1, "")+"/publish",
			map[string]any{"strategy": "migrate_all"}), http.StatusOK).Migration
		if first.Strategy != store.StrategyNewEntriesOnly || first.Status != store.MigrationCompleted || first.FromVersion != 0 || first.CreatedBy == "" {
			t.Fatalf("first publish recorded as %+v: nobody is in flight to move", first)
		}
		for i, nodes := range [][]string{{"wait_1"}, {"email_1"}} {
			c := e.upsert(string(rune('a'+i)), map[string]any{}, http.StatusCreated)
			e.seed(e.tenant.ID, store.Instance{JourneyID: j.ID, Version: 1, CustomerID: c.ID, Status: store.InstanceWaiting, Nodes: nodes}, nil)
		}
		ok[map[string]any](e.do("POST", "/journeys/"+j.ID+"/versions", map[string]any{"from_version": 1}), http.StatusCreated)
		publish := versionPath(j.ID, 2, "") + "/publish"
		for _, bad := range []struct {
			body        map[string]any
			code, field string
		}{
			{map[string]any{"strategy": "all_at_once"}, "invalid_field", "strategy"},
			{map[string]any{"strategy": "gradual"}, "missing_field", "rollout_percent"},
			{map[string]any{"strategy": "gradual", "rollout_percent": 0}, "invalid_field", "rollout_percent"},
			{map[string]any{"strategy": "gradual", "rollout_percent": 101}, "invalid_field", "rollout_percent"},
			{map[string]any{"strategy": "migrate_all", "rollout_percent": 50}, "invalid_field", "rollout_percent"},
			{map[string]any{"batch_size": 0}, "invalid_field", "batch_size"},
			{map[string]any{"batch_size": 1001}, "invalid_field", "batch_size"},
			{map[string]any{"removed_node_policy": "teleport"}, "invalid_field", "removed_node_policy"},
		} {
			e.do("POST", publish, bad.body).fails(http.StatusBadRequest, bad.code)
		}
		e.do("POST", publish, map[string]any{"strategy": "migrate_all", "node_mapping": map[string]string{"wait_1": "entry_1"}}).
			fails(http.StatusUnprocessableEntity, "invalid_migration")
		if v := ok[map[string]any](e.do("GET", versionPath(j.ID, 2, ""), nil), http.StatusOK); v["status"] != "draft" {
			t.Fatalf("a refused migration published: %v", v["status"])
		}

		res := ok[struct {
			Journey   journeyJSON
			Migration store.Migration
		}](e.do("POST", publish, map[string]any{"strategy": "gradual", "rollout_percent": 25, "batch_size": 10,
			"node_mapping": map[string]string{"email_1": "email_1"}}), http.StatusOK)
		m := res.Migration
		if res.Journey.ActiveVersion != 2 || m.Status != store.MigrationRunning || m.Kind != store.MigrationPublish ||
			m.FromVersion != 1 || m.ToVersion != 2 || m.RolloutPercent != 25 || m.BatchSize != 10 || m.Counts.Total != 2 || !strings.Contains(string(m.Options), `"node_mapping":{"email_1":"email_1"}`) {
			t.Fatalf("publish answered %+v", res)
		}
		if want := e.tenant.ID + " " + j.ID + " " + m.ID; len(f.migrations) != 1 || f.migrations[0] != want {
			t.Fatalf("engine told %v, want %q", f.migrations, want)
		}
		ok[map[string]any](e.do("POST", "/journeys/"+j.ID+"/versions", map[string]any{"from_version": 1}), http.StatusCreated)
		e.do("POST", versionPath(j.ID, 3, "")+"/publish", nil).fails(http.StatusConflict, "migration_in_progress")
		e.do("POST", versionPath(j.ID, 1, "")+"/rollback", nil).fails(http.StatusConflict, "migration_in_progress")
		e.do("POST", versionPath(j.ID, 3, "")+"/rollback", nil).fails(http.StatusConflict, "version_not_published")
		e.do("POST", versionPath(j.ID, 2, "")+"/rollback", nil).fails(http.StatusConflict, "version_active")

		list := ok[struct{ Data []store.Migration }](e.do("GET", "/journeys/"+j.ID+"/migrations", nil), http.StatusOK).Data
		if len(list) != 2 || list[0].ID != m.ID || list[1].ID != first.ID {
			t.Fatalf("migrations %+v, want newest first", list)
		}
		if got := ok[store.Migration](e.do("GET", "/journeys/"+j.ID+"/migrations/"+m.ID, nil), http.StatusOK); got.ID != m.ID {
			t.Fatalf("get migration %+v", got)
		}
		other := e.createJourney("other", validGraph())
		e.do("GET", "/journeys/"+other.ID+"/migrations/"+m.ID, nil).fails(http.StatusNotFound, "migration_not_found")
		e.do("GET", "/journeys/"+j.ID+"/migrations?status=done", nil).fails(http.StatusBadRequest, "invalid_parameter")

		// Controls go to the engine; its refusals keep their codes.
		ok[store.Migration](e.do("POST", "/journeys/"+j.ID+"/migrations/"+m.ID+"/rollout", map[string]any{"rollout_percent": 60}), http.StatusOK)
		if last := f.migrations[len(f.migrations)-1]; last != "rollout "+m.ID+" 60" {
			t.Fatalf("engine told %q", last)
		}
		e.do("POST", "/journeys/"+j.ID+"/migrations/"+m.ID+"/rollout", map[string]any{}).fails(http.StatusBadRequest, "missing_field")
		f.action = &cluster.GrainError{Code: actors.CodeMigrationState, Message: "migration is completed"}
		e.do("POST", "/journeys/"+j.ID+"/migrations/"+m.ID+"/pause", nil).fails(http.StatusConflict, "invalid_migration_state")
		f.action = &cluster.GrainError{Code: actors.CodeInvalidRollout, Message: "too low"}
		e.do("POST", "/journeys/"+j.ID+"/migrations/"+m.ID+"/rollout", map[string]any{"rollout_percent": 10}).
			fails(http.StatusBadRequest, "invalid_rollout_percent")

		f.action = &cluster.GrainError{Code: actors.CodeNotHeld, Message: "instance is waiting, not held"}
		e.do("POST", "/instances/ins_1/release", map[string]any{"node_id": "email_1"}).fails(http.StatusConflict, "not_held")
		f.action = &cluster.GrainError{Code: actors.CodeUnknownNode, Message: "no node"}
		e.do("POST", "/instances/ins_1/release", map[string]any{"node_id": "nope"}).fails(http.StatusBadRequest, "unknown_node")
		e.do("POST", "/instances/ins_1/release", map[string]any{}).fails(http.StatusBadRequest, "missing_field")
		f.action = nil
		if in := ok[map[string]any](e.do("POST", "/instances/ins_1/release", map[string]any{"node_id": "email_1"}), http.StatusOK); in["status"] != "running" {
			t.Fatalf("released %v", in)
		}
	})
}
