package nodes

import (
	"encoding/json"

	"github.com/kalcifer/kalcifer/journey"
)

var sendSMSSchema = `{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "title": "Send SMS",
  "description": "Sends a text message rendered from a template or an inline body. Set template_id or body.",
  "type": "object",
  "additionalProperties": false,
  "properties": {
    ` + templateIDProperty + `,
    "body": {
      "type": "string",
      "title": "Message",
      "description": "Inline message text (Liquid), used when no template is set.",
      "minLength": 1,
      "maxLength": 1600
    },
    "provider": {
      "type": "string",
      "title": "Provider",
      "description": "SMS provider to send through; empty uses the tenant's default SMS provider.",
      "maxLength": 64,
      "examples": ["twilio"]
    }
  }
}`

type sendSMS struct{ base }

func newSendSMS() Type {
	return sendSMS{newBase("send_sms", journey.CategoryChannel,
		"Sends the customer a text message from a template or an inline body.", sendSMSSchema)}
}

func (t sendSMS) ValidateConfig(config json.RawMessage) []journey.Problem {
	return t.validateContent(config, nil, "body")
}

func (sendSMS) Execute(x *Exec) Result { return deliver(x, "sms") }
