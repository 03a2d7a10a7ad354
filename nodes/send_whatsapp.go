package nodes

import (
	"encoding/json"

	"github.com/kalcifer/kalcifer/journey"
)

var sendWhatsAppSchema = `{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "title": "Send WhatsApp message",
  "description": "Sends a WhatsApp message from an approved template or an inline body. Set template_id or body.",
  "type": "object",
  "additionalProperties": false,
  "properties": {
    ` + templateIDProperty + `,
    "body": {
      "type": "string",
      "title": "Message",
      "description": "Inline message text (Liquid); WhatsApp only delivers it within 24 hours of the customer's last message.",
      "minLength": 1,
      "maxLength": 4096
    },
    "language": {
      "type": "string",
      "title": "Template language",
      "description": "Language code of the template translation to use.",
      "pattern": "^[a-z]{2,3}(_[A-Z]{2})?$",
      "default": "en",
      "examples": ["en", "en_US", "pt_BR"]
    },
    "provider": {
      "type": "string",
      "title": "Provider",
      "description": "WhatsApp provider to send through; empty uses the tenant's default WhatsApp provider.",
      "maxLength": 64,
      "examples": ["whatsapp_cloud", "twilio"]
    }
  }
}`

type sendWhatsApp struct{ base }

func newSendWhatsApp() Type {
	return sendWhatsApp{newBase("send_whatsapp", journey.CategoryChannel,
		"Sends the customer a WhatsApp message from an approved template or an inline body.", sendWhatsAppSchema)}
}

func (t sendWhatsApp) ValidateConfig(config json.RawMessage) []journey.Problem {
	return t.validateContent(config, nil, "body")
}

func (sendWhatsApp) Execute(x *Exec) Result { return deliver(x, "whatsapp") }
