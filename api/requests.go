package api

import "encoding/json"

// Request bodies. Pointers tell a field that was not sent from an empty one;
// each body checks and normalises itself in check, called by decodeBody.

type createAPIKeyRequest struct {
	Name *string `json:"name"`
}

func (r *createAPIKeyRequest) check() error {
	if r.Name == nil {
		return missingField("name")
	}
	return checkName(r.Name)
}

type createJourneyRequest struct {
	Name        *string         `json:"name"`
	Description *string         `json:"description"`
	Graph       json.RawMessage `json:"graph"`
	parsed      graphField
}

func (r *createJourneyRequest) check() error {
	if r.Name == nil {
		return missingField("name")
	}
	if err := checkNameAndDescription(r.Name, r.Description); err != nil {
		return err
	}
	if present(r.Graph) {
		return r.parsed.decode(r.Graph)
	}
	return nil
}

type updateJourneyRequest struct {
	Name        *string `json:"name"`
	Description *string `json:"description"`
}

func (r *updateJourneyRequest) check() error {
	return checkNameAndDescription(r.Name, r.Description)
}

type createVersionRequest struct {
	Graph       json.RawMessage `json:"graph"`
	FromVersion *int            `json:"from_version"`
	parsed      graphField
}

func (r *createVersionRequest) check() error {
	if !present(r.Graph) {
		return nil
	}
	if r.FromVersion != nil {
		return invalidField("from_version", "cannot be combined with graph; send one or the other")
	}
	return r.parsed.decode(r.Graph)
}

// graphRequest is a body whose only field is a required graph: replacing a
// draft's graph, validating an unsaved one.
type graphRequest struct {
	Graph  json.RawMessage `json:"graph"`
	parsed graphField
}

func (r *graphRequest) check() error {
	if !present(r.Graph) {
		return missingField("graph")
	}
	return r.parsed.decode(r.Graph)
}
