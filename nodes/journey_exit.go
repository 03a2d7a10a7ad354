package nodes

import (
	"encoding/json"

	"github.com/kalcifer/kalcifer/journey"
)

const journeyExitSchema = `{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "title": "Exit journey",
  "description": "Ends the customer's path.",
  "type": "object",
  "additionalProperties": false,
  "properties": {
    "reason": {
      "type": "string",
      "title": "Reason",
      "description": "Shown in the instance timeline and analytics.",
      "maxLength": 500
    }
  }
}`

type journeyExit struct{ base }

func newJourneyExit() Type {
	return journeyExit{newBase("journey_exit", journey.CategoryExit,
		"Ends the customer's path through the journey.", journeyExitSchema)}
}

func (journeyExit) Terminal(json.RawMessage) bool { return true }
