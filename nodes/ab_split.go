package nodes

import (
	"crypto/sha256"
	"encoding/binary"
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
		Key    string  `json:"key"`
		Weight float64 `json:"weight"`
	} `json:"variants"`
	HoldoutPercent float64 `json:"holdout_percent"`
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

// Execute places the customer by a hash of (journey, customer, node), so the
// same customer gets the same variant on every visit, after a migration and
// on another cluster node, without storing the assignment.
func (abSplit) Execute(x *Exec) Result {
	c := config[abSplitConfig](x.Node)
	u := unitHash(x.JourneyID, x.Customer.ID, x.Node.ID)
	holdout := c.HoldoutPercent / 100
	if u < holdout {
		return Result{Outcome: Ended, Output: map[string]any{"holdout": true}}
	}
	// The rest of [0,1) is shared by the variants in proportion to weight.
	u = (u - holdout) / (1 - holdout)
	var total float64
	for _, v := range c.Variants {
		total += v.Weight
	}
	if len(c.Variants) == 0 || total <= 0 {
		return Result{Outcome: Failed, Reason: "no variant with a positive weight"}
	}
	key := c.Variants[len(c.Variants)-1].Key
	acc := 0.0
	for _, v := range c.Variants {
		acc += v.Weight / total
		if u < acc {
			key = v.Key
			break
		}
	}
	return Result{Outcome: Branched, Branch: key, Output: map[string]any{"variant": key}}
}

// unitHash maps its parts to [0,1) uniformly; SHA-256 rather than a fast
// hash because sequential customer ids must not cluster in one variant.
func unitHash(parts ...string) float64 {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return float64(binary.BigEndian.Uint64(h.Sum(nil))>>11) / (1 << 53)
}
