package nodes

import (
	"encoding/json"

	"github.com/kalcifer/kalcifer/journey"
)

const frequencyCapSchema = `{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "title": "Frequency cap",
  "description": "Takes the capped branch when the customer already received max_messages within time_window, counted across all journeys.",
  "type": "object",
  "additionalProperties": false,
  "required": ["max_messages", "time_window"],
  "properties": {
    "max_messages": {
      "type": "integer",
      "title": "Max messages",
      "description": "Messages allowed within the window.",
      "minimum": 1,
      "default": 1
    },
    "time_window": {
      "type": "string",
      "title": "Time window",
      "description": "Sliding window the messages are counted over.",
      "pattern": "^\\d+(s|m|h|d|w)$",
      "default": "1d",
      "examples": ["1d", "1w"]
    },
    "channel": {
      "type": "string",
      "title": "Channel",
      "description": "Which sends count; all counts every channel.",
      "enum": ["email", "sms", "push", "whatsapp", "webhook", "all"],
      "default": "all"
    }
  }
}`

type frequencyCapConfig struct {
	MaxMessages int    `json:"max_messages"`
	TimeWindow  string `json:"time_window"`
	Channel     string `json:"channel"`
}

type frequencyCap struct{ base }

func newFrequencyCap() Type {
	return frequencyCap{newBase("frequency_cap", journey.CategoryLogic,
		"Branches on whether the customer has already received too many messages in a time window.", frequencyCapSchema, "allowed", "capped")}
}

func (t frequencyCap) ValidateConfig(config json.RawMessage) []journey.Problem {
	var c frequencyCapConfig
	return t.validate(config, &c, func(ch *checks) {
		ch.duration("/time_window", c.TimeWindow, true, 0)
	})
}

func (frequencyCap) Execute(x *Exec) Result {
	c := config[frequencyCapConfig](x.Node)
	window, err := journey.ParseDuration(c.TimeWindow)
	if err != nil {
		return failed("time_window", err)
	}
	if c.Channel == "" {
		c.Channel = "all"
	}
	sent := x.SentSince(c.Channel, x.Now.Add(-window))
	branch := "allowed"
	if sent >= c.MaxMessages {
		branch = "capped"
	}
	return Result{Outcome: Branched, Branch: branch, Output: map[string]any{"channel": c.Channel, "sent": sent, "max": c.MaxMessages}}
}
