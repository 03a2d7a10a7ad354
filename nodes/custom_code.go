package nodes

import (
	"encoding/json"

	"github.com/kalcifer/kalcifer/journey"
)

const customCodeSchema = `{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "title": "Custom code",
  "description": "Runs a sandboxed script (no filesystem, no network) that can read the context and return values or a branch.",
  "type": "object",
  "additionalProperties": false,
  "required": ["code"],
  "properties": {
    "code": {
      "type": "string",
      "title": "Code",
      "description": "Script source; it reads profile, event and context and may return {context: {...}, branch: \"key\"}.",
      "minLength": 1,
      "maxLength": 65536
    },
    "language": {
      "type": "string",
      "title": "Language",
      "enum": ["javascript"],
      "default": "javascript"
    },
    "timeout_ms": {
      "type": "integer",
      "title": "CPU time limit (ms)",
      "description": "The script is stopped and the step fails after this much time.",
      "minimum": 1,
      "maximum": 5000,
      "default": 1000
    },
    "memory_mb": {
      "type": "integer",
      "title": "Memory limit (MB)",
      "minimum": 1,
      "maximum": 64,
      "default": 16
    },
    "branches": {
      "type": "array",
      "title": "Branches",
      "description": "Branch keys the script may return; without them the node simply completes.",
      "minItems": 2,
      "maxItems": 10,
      "uniqueItems": true,
      "items": {"type": "string", "pattern": "^[a-z0-9_-]{1,40}$"}
    }
  }
}`

type customCodeConfig struct {
	Branches []string `json:"branches"`
}

type customCode struct{ base }

func newCustomCode() Type {
	return customCode{newBase("custom_code", journey.CategoryData,
		"Runs a sandboxed JavaScript snippet that can update the context and choose a branch.", customCodeSchema)}
}

func (customCode) DynamicBranches() bool { return true }

func (customCode) Branches(config json.RawMessage) []string {
	var c customCodeConfig
	decode(config, &c)
	if len(c.Branches) == 0 {
		return nil
	}
	return c.Branches
}
