package nodes

import "encoding/json"

// EventEntry is an event_entry node's config: the event router reads it to
// find the journeys an event enrols into.
type EventEntry struct {
	EventType string         `json:"event_type"`
	Filter    map[string]any `json:"filter,omitempty"`
}

// ParseEventEntry reads an event_entry config that passed validation.
func ParseEventEntry(config json.RawMessage) EventEntry {
	var e EventEntry
	decode(config, &e)
	return e
}

// WebhookEntry is a webhook_entry node's config.
type WebhookEntry struct {
	// Secret, when set, is the HMAC-SHA256 key callers sign the request body with.
	Secret string `json:"secret,omitempty"`
}

// ParseWebhookEntry reads a webhook_entry config that passed validation.
func ParseWebhookEntry(config json.RawMessage) WebhookEntry {
	var w WebhookEntry
	decode(config, &w)
	return w
}
