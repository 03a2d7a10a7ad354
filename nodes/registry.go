// Package nodes implements Kalcifer's node types, one file each, and the
// registry that maps a type name to its implementation.
package nodes

import (
	"encoding/json"
	"fmt"
	"sort"

	"github.com/kalcifer/kalcifer/journey"
)

// Type is one node type: what validation needs (journey.NodeType) plus what
// the editor's catalog shows.
type Type interface {
	journey.NodeType
	// Name is the snake_case type used in graphs.
	Name() string
	// Description says in one sentence what the node does.
	Description() string
	// Schema is the JSON Schema (draft 2020-12) of the node's config.
	Schema() json.RawMessage
	// BranchKeys lists the branch keys the type emits by default, or nil when
	// it emits none or when they come only from the config (DynamicBranches);
	// wait_for_event lists its default names and is also dynamic.
	BranchKeys() []string
	// DynamicBranches reports whether the branch keys are taken from the config.
	DynamicBranches() bool
}

// Info is the catalog entry the API serves for one type.
type Info struct {
	Type            string           `json:"type"`
	Category        journey.Category `json:"category"`
	Description     string           `json:"description"`
	Schema          json.RawMessage  `json:"schema"`
	BranchKeys      []string         `json:"branch_keys"`
	DynamicBranches bool             `json:"dynamic_branches"`
}

// Registry maps type names to types. It implements journey.Catalog.
type Registry struct {
	byName map[string]Type
}

// NewRegistry builds a registry; two types with one name is a programming error.
func NewRegistry(types ...Type) (*Registry, error) {
	r := &Registry{byName: make(map[string]Type, len(types))}
	for _, t := range types {
		if _, dup := r.byName[t.Name()]; dup {
			return nil, fmt.Errorf("node type %q registered twice", t.Name())
		}
		r.byName[t.Name()] = t
	}
	return r, nil
}

// Lookup implements journey.Catalog.
func (r *Registry) Lookup(name string) (journey.NodeType, bool) {
	t, ok := r.byName[name]
	return t, ok
}

// Get returns the full type.
func (r *Registry) Get(name string) (Type, bool) {
	t, ok := r.byName[name]
	return t, ok
}

// Catalog lists every type, ordered by category (entry first) then name.
func (r *Registry) Catalog() []Info {
	out := make([]Info, 0, len(r.byName))
	for _, t := range r.byName {
		keys := t.BranchKeys()
		if keys == nil {
			keys = []string{}
		}
		out = append(out, Info{
			Type:            t.Name(),
			Category:        t.Category(),
			Description:     t.Description(),
			Schema:          t.Schema(),
			BranchKeys:      keys,
			DynamicBranches: t.DynamicBranches(),
		})
	}
	rank := map[journey.Category]int{
		journey.CategoryEntry: 0, journey.CategoryChannel: 1, journey.CategoryLogic: 2,
		journey.CategoryData: 3, journey.CategoryExit: 4,
	}
	sort.Slice(out, func(i, j int) bool {
		if rank[out[i].Category] != rank[out[j].Category] {
			return rank[out[i].Category] < rank[out[j].Category]
		}
		return out[i].Type < out[j].Type
	})
	return out
}
