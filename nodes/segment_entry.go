package nodes

import (
	"encoding/json"
	"strings"

	"github.com/robfig/cron/v3"

	"github.com/kalcifer/kalcifer/journey"
)

const segmentEntrySchema = `{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "title": "Segment entry",
  "description": "Enrols customers as they join a segment, or every member on a schedule.",
  "type": "object",
  "additionalProperties": false,
  "required": ["segment_id"],
  "properties": {
    "segment_id": {
      "type": "string",
      "title": "Segment",
      "description": "ID of the segment whose members enter the journey.",
      "minLength": 1,
      "maxLength": 255
    },
    "schedule": {
      "type": "string",
      "title": "Schedule",
      "description": "Five-field cron expression (minute hour day-of-month month day-of-week, UTC) at which all current members are enrolled; without it customers enter as they join the segment.",
      "minLength": 1,
      "maxLength": 255,
      "examples": ["0 9 * * 1", "*/30 * * * *"]
    }
  }
}`

type segmentEntryConfig struct {
	Schedule string `json:"schedule"`
}

type segmentEntry struct {
	base
	completes
}

func newSegmentEntry() Type {
	return segmentEntry{base: newBase("segment_entry", journey.CategoryEntry,
		"Enrols customers when they join a segment, or all its members on a cron schedule.", segmentEntrySchema)}
}

func (t segmentEntry) ValidateConfig(config json.RawMessage) []journey.Problem {
	var c segmentEntryConfig
	return t.validate(config, &c, func(ch *checks) {
		if c.Schedule == "" {
			return
		}
		// The standard parser also takes descriptors (@daily) and a CRON_TZ
		// prefix; the schedule is documented as exactly five fields, so
		// anything else is refused before parsing.
		if fields := strings.Fields(c.Schedule); len(fields) != 5 || strings.ContainsAny(c.Schedule, "@=") {
			ch.add("/schedule", "must be a five-field cron expression such as \"0 9 * * 1\"")
			return
		}
		if _, err := cron.ParseStandard(c.Schedule); err != nil {
			ch.add("/schedule", "invalid cron expression: %v", err)
		}
	})
}
