package nodes

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/kalcifer/kalcifer/journey"
	"github.com/kalcifer/kalcifer/nodes/sandbox"
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
	Code      string   `json:"code"`
	TimeoutMS int      `json:"timeout_ms"`
	MemoryMB  int      `json:"memory_mb"`
	Branches  []string `json:"branches"`
}

// Defaults of the schema, for configs that leave the limits out.
const (
	defaultCodeTimeout = time.Second
	defaultCodeMemory  = 16 << 20
)

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

// ValidateConfig also compiles the script, so that a syntax error is found
// when the journey is published rather than by the first customer.
func (t customCode) ValidateConfig(config json.RawMessage) []journey.Problem {
	var c customCodeConfig
	return t.validate(config, &c, func(ch *checks) {
		if err := sandbox.Check(c.Code); err != nil {
			ch.add("/code", "%v", err)
		}
	})
}

// Execute runs the script with its own limits; the sandbox enforces them,
// so no deadline from the caller is needed to keep a grain responsive.
func (customCode) Execute(x *Exec) Result {
	c := config[customCodeConfig](x.Node)
	lim := sandbox.Limits{Timeout: defaultCodeTimeout, MemoryBytes: defaultCodeMemory}
	if c.TimeoutMS > 0 {
		lim.Timeout = time.Duration(c.TimeoutMS) * time.Millisecond
	}
	if c.MemoryMB > 0 {
		lim.MemoryBytes = int64(c.MemoryMB) << 20
	}
	in := sandbox.Input{Profile: x.Customer.Profile(), Event: eventMap(x.Event), Context: x.Context}
	res, err := sandbox.Run(context.Background(), c.Code, in, lim)
	if err != nil {
		return Result{Outcome: Failed, Reason: err.Error()}
	}
	out := Result{Outcome: Completed, ContextSet: res.Context, Output: map[string]any{"value": res.Value}}
	if len(c.Branches) == 0 {
		return out
	}
	if !slices.Contains(c.Branches, res.Branch) {
		return Result{Outcome: Failed, Reason: fmt.Sprintf("script returned branch %q, not one of %q", res.Branch, c.Branches)}
	}
	out.Outcome, out.Branch = Branched, res.Branch
	out.Output["branch"] = res.Branch
	return out
}
