package journey_test

import (
	"encoding/json"
	"slices"
	"testing"

	"github.com/kalcifer/kalcifer/journey"
)

func TestDiff(t *testing.T) {
	from := specExample()
	to := specExample()
	to.Nodes[0].Position = &journey.Position{X: 500, Y: 10}                // moved only
	to.Nodes[1].Config = json.RawMessage(` { "template_id" : "welcome" }`) // same meaning
	to.Nodes[2].Config = json.RawMessage(`{"event_type":"email_clicked","timeout":"3d"}`)
	to.Nodes = slices.Delete(to.Nodes, 3, 4) // goal_1 removed
	to.Nodes = append(to.Nodes, node("sms_1", "send_sms", `{"body":"hi"}`))
	to.Edges[2] = edge("e3", "wait_1", "sms_1", "event_received")
	to.Edges = append(to.Edges, edge("e5", "sms_1", "exit_1", ""))
	to.ReEntry = journey.ReEntryAlways

	d := journey.Diff(from, to)
	want := journey.GraphDiff{
		AddedNodes:      []string{"sms_1"},
		RemovedNodes:    []string{"goal_1"},
		ChangedNodes:    []string{"wait_1"},
		AddedEdges:      []string{"e5"},
		RemovedEdges:    []string{},
		ChangedEdges:    []string{"e3"},
		SettingsChanged: []string{"re_entry"},
	}
	got, _ := json.Marshal(d)
	wantJSON, _ := json.Marshal(want)
	if string(got) != string(wantJSON) {
		t.Fatalf("diff\n got %s\nwant %s", got, wantJSON)
	}
	if d.Empty() {
		t.Fatal("a diff with changes is not empty")
	}
}

func TestDiffOfEqualGraphsIsEmpty(t *testing.T) {
	g := specExample()
	g.ReEntry = journey.ReEntryNever
	d := journey.Diff(specExample(), g)
	if !d.Empty() {
		t.Fatalf("an explicit default re_entry is no change: %+v", d)
	}
	out, _ := json.Marshal(d)
	if string(out) != `{"added_nodes":[],"removed_nodes":[],"changed_nodes":[],"added_edges":[],"removed_edges":[],"changed_edges":[],"settings_changed":[]}` {
		t.Fatalf("empty lists must serialise as arrays: %s", out)
	}
}

func TestDiffSettings(t *testing.T) {
	to := specExample()
	to.ExitCriteria = nil
	to.FrequencyCap["sms"] = journey.FrequencyCap{Max: 1, Window: "1w"}
	d := journey.Diff(specExample(), to)
	if !slices.Equal(d.SettingsChanged, []string{"exit_criteria", "frequency_cap"}) {
		t.Fatalf("settings changed = %v", d.SettingsChanged)
	}
}
