package journey

import "encoding/json"

// Category groups node types (SPEC §2).
type Category string

// Node categories.
const (
	CategoryEntry   Category = "entry"
	CategoryChannel Category = "channel"
	CategoryLogic   Category = "logic"
	CategoryData    Category = "data"
	CategoryExit    Category = "exit"
)

// NodeType is what graph validation needs to know about one node type.
// The implementations live in package nodes.
type NodeType interface {
	Category() Category
	// ValidateConfig checks a node's config against the type's JSON Schema and
	// its own rules. Problems carry Code and Message, and Field as a JSON
	// pointer into the config ("/timeout"); the caller fills in NodeID.
	ValidateConfig(config json.RawMessage) []Problem
	// Branches returns the branch keys a node with this (valid) config emits,
	// each of which needs an out-edge; nil means the node completes and
	// follows its unlabelled out-edges.
	Branches(config json.RawMessage) []string
	// Terminal reports whether a node with this (valid) config ends its path,
	// so that out-edges from it would never be followed.
	Terminal(config json.RawMessage) bool
}

// Catalog looks up node types by their snake_case type name.
type Catalog interface {
	Lookup(nodeType string) (NodeType, bool)
}

// Problem is one reason a graph cannot be published. Code is stable and
// machine-readable; Message is for people.
type Problem struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	NodeID  string `json:"node_id,omitempty"`
	EdgeID  string `json:"edge_id,omitempty"`
	Field   string `json:"field,omitempty"`
}
