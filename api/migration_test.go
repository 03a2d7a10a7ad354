package api_test

import (
	"net/http"
	"testing"

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
