package journey

import (
	"bytes"
	"encoding/json"
	"reflect"
	"slices"
)

// GraphDiff is what changes from one graph to another. Nodes and edges are
// matched by id; a node changes when its type, name or config does (moving
// it in the editor is not a change), an edge when its ends or branch do.
type GraphDiff struct {
	AddedNodes      []string `json:"added_nodes"`
	RemovedNodes    []string `json:"removed_nodes"`
	ChangedNodes    []string `json:"changed_nodes"`
	AddedEdges      []string `json:"added_edges"`
	RemovedEdges    []string `json:"removed_edges"`
	ChangedEdges    []string `json:"changed_edges"`
	SettingsChanged []string `json:"settings_changed"`
}

// Empty reports whether the two graphs run the same way.
func (d GraphDiff) Empty() bool {
	return len(d.AddedNodes)+len(d.RemovedNodes)+len(d.ChangedNodes)+
		len(d.AddedEdges)+len(d.RemovedEdges)+len(d.ChangedEdges)+len(d.SettingsChanged) == 0
}

// Diff compares from with to. Every list is sorted and never nil, so the
// JSON form always has arrays.
func Diff(from, to Graph) GraphDiff {
	d := GraphDiff{}
	d.AddedNodes, d.RemovedNodes, d.ChangedNodes = diffByID(from.Nodes, to.Nodes,
		func(n Node) string { return n.ID },
		func(a, b Node) bool { return a.Type == b.Type && a.Name == b.Name && sameJSON(a.Config, b.Config) })
	d.AddedEdges, d.RemovedEdges, d.ChangedEdges = diffByID(from.Edges, to.Edges,
		func(e Edge) string { return e.ID },
		func(a, b Edge) bool { return a == b })
	d.SettingsChanged = []string{}
	if !reflect.DeepEqual(from.ExitCriteria, to.ExitCriteria) {
		d.SettingsChanged = append(d.SettingsChanged, "exit_criteria")
	}
	if len(from.FrequencyCap)+len(to.FrequencyCap) > 0 && !reflect.DeepEqual(from.FrequencyCap, to.FrequencyCap) {
		d.SettingsChanged = append(d.SettingsChanged, "frequency_cap")
	}
	if reEntry(from) != reEntry(to) {
		d.SettingsChanged = append(d.SettingsChanged, "re_entry")
	}
	return d
}

func diffByID[T any](from, to []T, id func(T) string, same func(a, b T) bool) (added, removed, changed []string) {
	added, removed, changed = []string{}, []string{}, []string{}
	old := make(map[string]T, len(from))
	for _, x := range from {
		old[id(x)] = x
	}
	seen := make(map[string]bool, len(to))
	for _, x := range to {
		seen[id(x)] = true
		prev, ok := old[id(x)]
		switch {
		case !ok:
			added = append(added, id(x))
		case !same(prev, x):
			changed = append(changed, id(x))
		}
	}
	for _, x := range from {
		if !seen[id(x)] {
			removed = append(removed, id(x))
		}
	}
	for _, s := range [][]string{added, removed, changed} {
		slices.Sort(s)
	}
	return slices.Compact(added), slices.Compact(removed), slices.Compact(changed)
}

// sameJSON compares configs by meaning: key order, spacing and an absent
// config versus {} do not count as changes.
func sameJSON(a, b json.RawMessage) bool {
	if bytes.Equal(a, b) {
		return true
	}
	var va, vb any
	if err := json.Unmarshal(orEmptyObject(a), &va); err != nil {
		return false
	}
	if err := json.Unmarshal(orEmptyObject(b), &vb); err != nil {
		return false
	}
	return reflect.DeepEqual(va, vb)
}

func orEmptyObject(raw json.RawMessage) json.RawMessage {
	if len(bytes.TrimSpace(raw)) == 0 || bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
		return json.RawMessage("{}")
	}
	return raw
}

func reEntry(g Graph) string {
	if g.ReEntry == "" {
		return ReEntryNever
	}
	return g.ReEntry
}
