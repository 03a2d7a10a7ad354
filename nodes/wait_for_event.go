package nodes

import (
	"encoding/json"

	"github.com/kalcifer/kalcifer/journey"
)

// Default branch keys of wait_for_event (SPEC §1).
const (
	branchEventReceived = "event_received"
	branchTimedOut      = "timed_out"
)

const waitForEventSchema = `{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "title": "Wait for event",
  "description": "Pauses the customer until they perform an event or the timeout passes, whichever comes first.",
  "type": "object",
  "additionalProperties": false,
  "required": ["event_type"],
  "properties": {
    "event_type": {
      "type": "string",
      "title": "Event type",
      "description": "Name of the event to wait for, such as email_opened.",
      "minLength": 1,
      "maxLength": 255
    },
    "timeout": {
      "type": "string",
      "title": "Timeout",
      "description": "How long to wait before taking the timed-out branch; without it the customer waits indefinitely.",
      "pattern": "^\\d+(s|m|h|d|w)$",
      "examples": ["1h", "3d"]
    },
    "filter": {
      "type": "object",
      "title": "Event filter",
      "description": "Only events whose properties equal every value listed here count.",
      "additionalProperties": {"type": ["string", "number", "boolean", "null"]},
      "default": {}
    },
    "match": {
      "type": "object",
      "title": "Correlation",
      "description": "Event property to the context, profile or event value it must equal, such as order_id: context.order_id.",
      "additionalProperties": {"type": "string", "pattern": "^(context|profile|event)(\\.[A-Za-z0-9_-]+)+$"},
      "default": {}
    },
    "branches": {
      "type": "object",
      "title": "Branch names",
      "description": "Custom names for the two outcomes.",
      "additionalProperties": false,
      "properties": {
        "event_received": {
          "type": "string",
          "title": "Event received branch",
          "pattern": "^[a-z0-9_]+$",
          "default": "event_received"
        },
        "timed_out": {
          "type": "string",
          "title": "Timed out branch",
          "description": "Only allowed with a timeout.",
          "pattern": "^[a-z0-9_]+$",
          "default": "timed_out"
        }
      }
    }
  }
}`

type waitForEventConfig struct {
	Timeout  string `json:"timeout"`
	Branches struct {
		EventReceived string `json:"event_received"`
		TimedOut      string `json:"timed_out"`
	} `json:"branches"`
}

// keys returns the branch keys the config emits, defaults filled in.
func (c waitForEventConfig) keys() []string {
	received, timedOut := c.Branches.EventReceived, c.Branches.TimedOut
	if received == "" {
		received = branchEventReceived
	}
	if c.Timeout == "" {
		return []string{received}
	}
	if timedOut == "" {
		timedOut = branchTimedOut
	}
	return []string{received, timedOut}
}

type waitForEvent struct{ base }

func newWaitForEvent() Type {
	return waitForEvent{newBase("wait_for_event", journey.CategoryLogic,
		"Waits until the customer performs an event, taking a second branch if the timeout passes first.", waitForEventSchema,
		branchEventReceived, branchTimedOut)}
}

// DynamicBranches tells the editor that the config may rename the default
// keys, and that timed_out exists only with a timeout.
func (waitForEvent) DynamicBranches() bool { return true }

func (t waitForEvent) ValidateConfig(config json.RawMessage) []journey.Problem {
	var c waitForEventConfig
	return t.validate(config, &c, func(ch *checks) {
		if c.Timeout == "" {
			if c.Branches.TimedOut != "" {
				ch.add("/branches/timed_out", "needs a timeout: without one the wait never times out")
			}
			return
		}
		ch.duration("/timeout", c.Timeout, true, 0)
		if keys := c.keys(); keys[0] == keys[1] {
			ch.add("/branches", "event_received and timed_out must have different names, both are %q", keys[0])
		}
	})
}

func (waitForEvent) Branches(config json.RawMessage) []string {
	var c waitForEventConfig
	decode(config, &c)
	return c.keys()
}

func (waitForEvent) Execute(x *Exec) Result {
	c := config[struct {
		waitForEventConfig
		EventType string            `json:"event_type"`
		Filter    map[string]any    `json:"filter"`
		Match     map[string]string `json:"match"`
	}](x.Node)
	w := &Wait{EventType: c.EventType, Filter: c.Filter, StartedAt: x.Now}
	if len(c.Match) > 0 {
		// Resolved now, not at resume: the customer waits for the order that
		// was current when the wait began, even if the context moves on.
		w.Match = make(map[string]any, len(c.Match))
		for prop, path := range c.Match {
			w.Match[prop] = resolvePath(x, path)
		}
	}
	if c.Timeout != "" {
		d, err := journey.ParseDuration(c.Timeout)
		if err != nil {
			return failed("timeout", err)
		}
		w.Until = x.Now.Add(d)
	}
	return Result{Outcome: Waiting, Wait: w}
}

func (waitForEvent) Resume(x *Exec, _ Wait, r Resume) Result {
	c := config[waitForEventConfig](x.Node)
	keys := c.keys()
	if r.Event != nil {
		return Result{Outcome: Branched, Branch: keys[0]}
	}
	if len(keys) < 2 {
		return Result{Outcome: Failed, Reason: "timer fired on a wait without a timeout"}
	}
	return Result{Outcome: Branched, Branch: keys[1]}
}
