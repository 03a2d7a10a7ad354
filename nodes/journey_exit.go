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

func (journeyExit) Execute(x *Exec) Result {
	c := config[struct {
		Reason string `json:"reason"`
	}](x.Node)
	r := Result{Outcome: Ended}
	if c.Reason != "" {
		r.Output = map[string]any{"reason": c.Reason}
	}
	return r
}
