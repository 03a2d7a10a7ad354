package api_test

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
)

func TestValidationReportsEveryProblem(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		want := []string{"cycle", "unreachable_node", "missing_branch", "unknown_node_type", "invalid_config"}
		check := func(name string, r response) {
			t.Helper()
			v := ok[validationJSON](r, http.StatusOK)
			got := codes(v.Problems)
			for _, c := range want {
				if !got[c] {
					t.Errorf("%s: no %s problem in %+v", name, c, v.Problems)
				}
			}
			if v.Valid {
				t.Errorf("%s: broken graph reported valid", name)
			}
		}
		check("unsaved", e.do("POST", "/validate", map[string]any{"graph": brokenGraph()}))

		// Drafts may hold invalid graphs; validating one lists its problems.
		j := e.createJourney("broken", brokenGraph())
		check("version", e.do("POST", versionPath(j.ID, 1, "/validate"), nil))

		valid := ok[validationJSON](e.do("POST", "/validate", map[string]any{"graph": validGraph()}), http.StatusOK)
		if !valid.Valid || valid.Problems == nil || len(valid.Problems) != 0 {
			t.Fatalf("valid graph: %+v", valid)
		}
		e.do("POST", "/validate", map[string]any{}).fails(http.StatusBadRequest, "missing_field")
		e.do("POST", "/validate", map[string]any{"graph": nil}).fails(http.StatusBadRequest, "missing_field")
	})
}

// TestPublish covers the draft → published path: an invalid graph is
// refused with every problem and changes nothing; a valid one becomes the
// active version and can no longer be edited.
func TestPublish(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		j := e.createJourney("publish me", brokenGraph())
		v1 := versionPath(j.ID, 1, "")

		refused := e.do("POST", v1+"/publish", nil).fails(http.StatusUnprocessableEntity, "invalid_graph")
		var details struct{ Problems []problem }
		if err := json.Unmarshal(refused.Error.Details, &details); err != nil || !codes(details.Problems)["cycle"] {
			t.Fatalf("details %s (%v) do not list the problems", refused.Error.Details, err)
		}
		if got := ok[journeyJSON](e.do("GET", "/journeys/"+j.ID, nil), http.StatusOK); got.Status != "draft" || got.ActiveVersion != 0 {
			t.Fatalf("refused publish changed the journey: %+v", got)
		}
		if got := ok[versionJSON](e.do("GET", v1, nil), http.StatusOK); got.Status != "draft" || got.PublishedAt != nil {
			t.Fatalf("refused publish changed the version: %+v", got)
		}

		edited := ok[versionJSON](e.do("PUT", v1, map[string]any{"graph": validGraph()}), http.StatusOK)
		if edited.Status != "draft" || !strings.Contains(string(edited.Graph), `"wait_for_event"`) {
			t.Fatalf("edited draft %+v", edited)
		}
		published := ok[struct {
			Journey journeyJSON
			Version versionJSON
		}](e.do("POST", v1+"/publish", nil), http.StatusOK)
		if published.Journey.Status != "active" || published.Journey.ActiveVersion != 1 ||
			published.Version.Status != "published" || published.Version.PublishedAt == nil {
			t.Fatalf("published %+v", published)
		}
		if got := ok[journeyJSON](e.do("GET", "/journeys/"+j.ID, nil), http.StatusOK); got.ActiveVersion != 1 {
			t.Fatalf("journey active_version %d, want 1", got.ActiveVersion)
		}
		e.do("PUT", v1, map[string]any{"graph": brokenGraph()}).fails(http.StatusConflict, "version_not_draft")
		e.do("POST", v1+"/publish", nil).fails(http.StatusConflict, "version_not_draft")

		v2 := ok[versionJSON](e.do("POST", "/journeys/"+j.ID+"/versions", map[string]any{"from_version": 1}), http.StatusCreated)
		if v2.Number != 2 || v2.Status != "draft" || string(v2.Graph) != string(edited.Graph) {
			t.Fatalf("copied draft %+v", v2)
		}
		graph := validGraph()
		graph["nodes"] = append(graph["nodes"].([]any), map[string]any{"id": "sms_1", "type": "send_sms", "config": map[string]any{"body": "hi"}})
		graph["edges"] = append(graph["edges"].([]any), map[string]any{"id": "e5", "source": "goal_1", "target": "sms_1"})
		ok[versionJSON](e.do("PUT", versionPath(j.ID, 2, ""), map[string]any{"graph": graph}), http.StatusOK)

		diff := ok[map[string][]string](e.do("GET", versionPath(j.ID, 1, "/diff/2"), nil), http.StatusOK)
		if !slices.Equal(diff["added_nodes"], []string{"sms_1"}) || !slices.Equal(diff["added_edges"], []string{"e5"}) || len(diff["removed_nodes"]) != 0 {
			t.Fatalf("diff 1→2: %v", diff)
		}
		back := ok[map[string][]string](e.do("GET", versionPath(j.ID, 2, "/diff/1"), nil), http.StatusOK)
		if !slices.Equal(back["removed_nodes"], []string{"sms_1"}) {
			t.Fatalf("diff 2→1: %v", back)
		}

		if got := ok[struct{ Journey journeyJSON }](e.do("POST", versionPath(j.ID, 2, "/publish"), nil), http.StatusOK); got.Journey.ActiveVersion != 2 {
			t.Fatalf("publishing v2: %+v", got.Journey)
		}
		list := ok[struct{ Data []versionJSON }](e.do("GET", "/journeys/"+j.ID+"/versions", nil), http.StatusOK)
		if len(list.Data) != 2 || list.Data[0].Number != 2 || list.Data[0].Graph != nil {
			t.Fatalf("versions %+v: want newest first, without graphs", list.Data)
		}
	})
}

func TestVersionInput(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		j := e.createJourney("versions", nil)
		versions := "/journeys/" + j.ID + "/versions"

		empty := ok[versionJSON](e.do("POST", versions, map[string]any{}), http.StatusCreated)
		if empty.Number != 1 || string(empty.Graph) != `{"nodes":[],"edges":[]}` {
			t.Fatalf("empty draft %+v %s", empty, empty.Graph)
		}
		fromGraph := ok[versionJSON](e.do("POST", versions, map[string]any{"graph": validGraph()}), http.StatusCreated)
		if fromGraph.Number != 2 {
			t.Fatalf("second draft %+v", fromGraph)
		}
		e.do("POST", versions, map[string]any{"graph": validGraph(), "from_version": 1}).fails(http.StatusBadRequest, "invalid_field")
		e.do("POST", versions, map[string]any{"from_version": 42}).fails(http.StatusNotFound, "version_not_found")

		bad := e.do("POST", versions, `{"graph":{"nodes":[{"id":"a","type":"wait","colour":"red"}],"edges":[]}}`).fails(http.StatusBadRequest, "invalid_graph_json")
		if !strings.Contains(bad.Error.Message, "colour") {
			t.Fatalf("decoder message lost: %q", bad.Error.Message)
		}
		e.do("PUT", versionPath(j.ID, 1, ""), `{"graph":{"nodes":"many"}}`).fails(http.StatusBadRequest, "invalid_graph_json")
		e.do("PUT", versionPath(j.ID, 1, ""), map[string]any{}).fails(http.StatusBadRequest, "missing_field")

		for _, v := range []string{"abc", "0", "-1", "1.5"} {
			e.do("GET", versions+"/"+v, nil).fails(http.StatusBadRequest, "invalid_version")
		}
		e.do("GET", versions+"/1/diff/x", nil).fails(http.StatusBadRequest, "invalid_version")
		e.do("GET", versions+"/1/diff/7", nil).fails(http.StatusNotFound, "version_not_found")
		e.do("PUT", versions+"/7", map[string]any{"graph": validGraph()}).fails(http.StatusNotFound, "version_not_found")
		e.do("POST", versions+"/7/publish", nil).fails(http.StatusNotFound, "version_not_found")
		e.do("GET", "/journeys/nope/versions/1", nil).fails(http.StatusNotFound, "journey_not_found")
	})
}

func TestNodeTypes(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		type nodeType struct {
			Type       string          `json:"type"`
			Category   string          `json:"category"`
			Schema     json.RawMessage `json:"schema"`
			BranchKeys []string        `json:"branch_keys"`
		}
		catalog := ok[struct{ Data []nodeType }](e.do("GET", "/node-types", nil), http.StatusOK)
		if len(catalog.Data) != 20 || catalog.Data[0].Category != "entry" {
			t.Fatalf("catalog has %d types, first %+v", len(catalog.Data), catalog.Data[0])
		}
		cond := ok[nodeType](e.do("GET", "/node-types/condition", nil), http.StatusOK)
		if !slices.Equal(cond.BranchKeys, []string{"true", "false"}) || !json.Valid(cond.Schema) || len(cond.Schema) < 10 {
			t.Fatalf("condition %+v", cond)
		}
		e.do("GET", "/node-types/teleport", nil).fails(http.StatusNotFound, "unknown_node_type")
	})
}
