package nodes

import (
	"encoding/json"

	"github.com/kalcifer/kalcifer/journey"
)

const waitSchema = `{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "title": "Wait",
  "description": "Pauses the customer for a fixed time.",
  "type": "object",
  "additionalProperties": false,
  "required": ["duration"],
  "properties": {
    "duration": {
      "type": "string",
      "title": "Duration",
      "description": "How long to wait: a whole number followed by s, m, h, d or w.",
      "pattern": "^\\d+(s|m|h|d|w)$",
      "default": "1d",
      "examples": ["30m", "1d", "2w"]
    }
  }
}`

type waitConfig struct {
	Duration string `json:"duration"`
}

type wait struct{ base }

func newWait() Type {
	return wait{newBase("wait", journey.CategoryLogic,
		"Pauses the customer for a fixed duration before moving on.", waitSchema)}
}

func (t wait) ValidateConfig(config json.RawMessage) []journey.Problem {
	var c waitConfig
	return t.validate(config, &c, func(ch *checks) {
		ch.duration("/duration", c.Duration, false, 0)
	})
}

func (wait) Execute(x *Exec) Result {
	c := config[waitConfig](x.Node)
	d, err := journey.ParseDuration(c.Duration)
	if err != nil {
		return failed("duration", err)
	}
	return parkUntil(x, x.Now.Add(d))
}

func (wait) Resume(*Exec, Wait, Resume) Result { return Result{Outcome: Completed} }
