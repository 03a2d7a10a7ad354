package nodes

import (
	"encoding/json"

	"github.com/kalcifer/kalcifer/journey"
)

var sendPushSchema = `{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "title": "Send push notification",
  "description": "Sends a push notification to the customer's devices. Set template_id, or both title and body.",
  "type": "object",
  "additionalProperties": false,
  "properties": {
    ` + templateIDProperty + `,
    "title": {
      "type": "string",
      "title": "Title",
      "description": "Inline notification title (Liquid), used when no template is set.",
      "minLength": 1,
      "maxLength": 255
    },
    "body": {
      "type": "string",
      "title": "Body",
      "description": "Inline notification text (Liquid), used when no template is set.",
      "minLength": 1,
      "maxLength": 4000
    },
    "data": {
      "type": "object",
      "title": "Data",
      "description": "Key/value pairs delivered to the app with the notification (Liquid values).",
      "additionalProperties": {"type": "string"},
      "default": {}
    },
    "provider": {
      "type": "string",
      "title": "Provider",
      "description": "Push provider to send through; empty uses the tenant's default push provider.",
      "maxLength": 64,
      "examples": ["fcm", "apns"]
    }
  }
}`

type sendPush struct{ base }

func newSendPush() Type {
	return sendPush{newBase("send_push", journey.CategoryChannel,
		"Sends a push notification to the customer's registered devices.", sendPushSchema)}
}

func (t sendPush) ValidateConfig(config json.RawMessage) []journey.Problem {
	return t.validateContent(config, nil, "title", "body")
}

func (sendPush) Execute(x *Exec) Result { return deliver(x, "push") }
