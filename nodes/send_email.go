package nodes

import (
	"encoding/json"
	"net/mail"

	"github.com/kalcifer/kalcifer/journey"
)

var sendEmailSchema = `{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "title": "Send email",
  "description": "Sends an email rendered from a template, or from an inline subject and body. Set template_id, or both subject and body.",
  "type": "object",
  "additionalProperties": false,
  "properties": {
    ` + templateIDProperty + `,
    "subject": {
      "type": "string",
      "title": "Subject",
      "description": "Inline subject line (Liquid), used when no template is set.",
      "minLength": 1,
      "maxLength": 998
    },
    "body": {
      "type": "string",
      "title": "Body",
      "description": "Inline HTML body (Liquid), used when no template is set.",
      "minLength": 1,
      "maxLength": 1000000
    },
    "from": {
      "type": "string",
      "title": "From",
      "description": "Sender address, optionally with a name (\"Acme <hello@acme.com>\"); defaults to the provider's sender.",
      "maxLength": 320
    },
    "reply_to": {
      "type": "string",
      "title": "Reply-To",
      "description": "Address replies go to.",
      "maxLength": 320
    },
    "provider": {
      "type": "string",
      "title": "Provider",
      "description": "Email provider to send through; empty uses the tenant's default email provider.",
      "maxLength": 64,
      "examples": ["smtp", "sendgrid", "ses", "postmark", "mailgun"]
    }
  }
}`

type sendEmail struct{ base }

func newSendEmail() Type {
	return sendEmail{newBase("send_email", journey.CategoryChannel,
		"Sends the customer an email from a template or an inline subject and body.", sendEmailSchema)}
}

func (t sendEmail) ValidateConfig(config json.RawMessage) []journey.Problem {
	return t.validateContent(config, func(c contentConfig, ch *checks) {
		ch.address("/from", c.From)
		ch.address("/reply_to", c.ReplyTo)
	}, "subject", "body")
}

func (c *checks) address(field, value string) {
	if value == "" {
		return
	}
	if _, err := mail.ParseAddress(value); err != nil {
		c.add(field, "must be an email address such as \"Acme <hello@acme.com>\": %v", err)
	}
}

func (sendEmail) Execute(x *Exec) Result { return deliver(x, "email") }
