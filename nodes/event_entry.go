package nodes

import "github.com/kalcifer/kalcifer/journey"

const eventEntrySchema = `{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "title": "Event entry",
  "description": "Enrols a customer when they perform an event.",
  "type": "object",
  "additionalProperties": false,
  "required": ["event_type"],
  "properties": {
    "event_type": {
      "type": "string",
      "title": "Event type",
      "description": "Name of the tracked event that enrols the customer, such as signed_up.",
      "minLength": 1,
      "maxLength": 255,
      "examples": ["signed_up", "order_completed"]
    },
    "filter": {
      "type": "object",
      "title": "Event filter",
      "description": "Only events whose properties equal every value listed here enrol the customer.",
      "additionalProperties": {"type": ["string", "number", "boolean", "null"]},
      "default": {}
    }
  }
}`

type eventEntry struct {
	base
	completes
}

func newEventEntry() Type {
	return eventEntry{base: newBase("event_entry", journey.CategoryEntry,
		"Enrols a customer in the journey when they perform a matching event.", eventEntrySchema)}
}
