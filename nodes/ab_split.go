package nodes

import (
	"encoding/json"

	"github.com/kalcifer/kalcifer/journey"
)

const abSplitSchema = `{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "title": "A/B split",
  "description": "Assigns each customer, deterministically per journey, to one weighted variant.",
  "type": "object",
  "additionalProperties": false,
  "required": ["variants"],
  "properties": {
    "variants": {
      "type": "array",
      "title": "Variants",
      "description": "Two to five variants; each becomes a branch named by its key.",
      "minItems": 2,
      "maxItems": 5,
      "items": {
        "type": "object",
        "additionalProperties": false,
        "required": ["key", "weight"],
        "properties": {
          "key": {
            "type": "string",
            "title": "Key",
            "description": "Branch name of the variant.",
            "pattern": "^[a-z0-9_-]{1,40}$"
          },
          "weight": {
            "type": "number",
            "title": "Weight",
            "description": "Relative share of customers; weights need not add up to 100.",
            "exclusiveMinimum": 0,
            "default": 50
          }
        }
      },
      "default": [{"key": "a", "weight": 50}, {"key": "b", "weight": 50}]
    },
    "holdout_percent": {
      "type": "number",
      "title": "Holdout %",
      "description": "Share of customers held out as a control group; they leave the journey here.",
      "minimum": 0,
      "exclusiveMaximum": 100,
      "default": 0
    }
  }
}`

type abSplitConfig struct {
	Variants []struct {
		Key string `json:"key"`
	} `json:"variants"`
}

func (c abSplitConfig) keys() []string {
	keys := make([]string, len(c.Variants))
	for i, v := range c.Variants {
		keys[i] = v.Key
	}
	return keys
}

type abSplit struct{ base }

func newABSplit() Type {
	return abSplit{newBase("ab_split", journey.CategoryLogic,
		"Splits customers between weighted variants, the same customer always getting the same variant.", abSplitSchema)}
}

func (abSplit) DynamicBranches() bool { return true }

func (t abSplit) ValidateConfig(config json.RawMessage) []journey.Problem {
	var c abSplitConfig
	return t.validate(config, &c, func(ch *checks) {
		ch.distinct("/variants", c.keys(), "/key")
	})
}

func (abSplit) Branches(config json.RawMessage) []string {
	var c abSplitConfig
	decode(config, &c)
	return c.keys()
}
