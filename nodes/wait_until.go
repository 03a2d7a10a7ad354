package nodes

import (
	"encoding/json"
	"time"
	// Timezones are checked against the embedded database so that validation
	// gives the same answer in containers without /usr/share/zoneinfo.
	_ "time/tzdata"

	"github.com/kalcifer/kalcifer/journey"
)

const waitUntilSchema = `{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "title": "Wait until",
  "description": "Pauses the customer until a moment: either an exact datetime, or the next time_of_day on one of days_of_week in the customer's timezone.",
  "type": "object",
  "additionalProperties": false,
  "properties": {
    "datetime": {
      "type": "string",
      "title": "Date and time",
      "description": "Exact RFC 3339 moment to resume at, such as 2030-01-31T09:00:00Z; a moment already past resumes at once. Leave empty to use time_of_day.",
      "format": "date-time"
    },
    "time_of_day": {
      "type": "string",
      "title": "Time of day",
      "description": "24-hour HH:MM in the customer's timezone; required unless datetime is set.",
      "pattern": "^([01]\\d|2[0-3]):[0-5]\\d$",
      "examples": ["09:00", "18:30"]
    },
    "days_of_week": {
      "type": "array",
      "title": "Days of week",
      "description": "Days on which time_of_day may be reached.",
      "items": {"type": "string", "enum": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]},
      "minItems": 1,
      "uniqueItems": true,
      "default": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
    },
    "timezone": {
      "type": "string",
      "title": "Fallback timezone",
      "description": "IANA timezone used for customers whose profile has none; UTC when empty.",
      "minLength": 1,
      "examples": ["Europe/Paris", "America/New_York"]
    }
  }
}`

type waitUntilConfig struct {
	Datetime   string   `json:"datetime"`
	TimeOfDay  string   `json:"time_of_day"`
	DaysOfWeek []string `json:"days_of_week"`
	Timezone   string   `json:"timezone"`
}

type waitUntil struct{ base }

func newWaitUntil() Type {
	return waitUntil{newBase("wait_until", journey.CategoryLogic,
		"Pauses the customer until a given datetime or the next chosen time of day in their timezone.", waitUntilSchema)}
}

func (t waitUntil) ValidateConfig(config json.RawMessage) []journey.Problem {
	var c waitUntilConfig
	return t.validate(config, &c, func(ch *checks) {
		if c.Datetime != "" {
			if _, err := time.Parse(time.RFC3339, c.Datetime); err != nil {
				ch.add("/datetime", "must be an RFC 3339 timestamp such as 2030-01-31T09:00:00Z")
			}
			for field, set := range map[string]bool{
				"/time_of_day": c.TimeOfDay != "", "/days_of_week": c.DaysOfWeek != nil, "/timezone": c.Timezone != "",
			} {
				if set {
					ch.add(field, "cannot be combined with datetime")
				}
			}
			return
		}
		if c.TimeOfDay == "" {
			ch.add("/time_of_day", "is required unless datetime is set")
		}
		if c.Timezone != "" {
			// LoadLocation also accepts "Local", the server's own zone, which
			// says nothing about where a customer is.
			if _, err := time.LoadLocation(c.Timezone); err != nil || c.Timezone == "Local" {
				ch.add("/timezone", "must be an IANA timezone such as Europe/Paris")
			}
		}
	})
}
