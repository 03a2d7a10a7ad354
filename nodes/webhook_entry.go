package nodes

import "github.com/kalcifer/kalcifer/journey"

const webhookEntrySchema = `{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "title": "Webhook entry",
  "description": "Enrols the customer named in a POST to /api/v1/webhooks/{journey_id}.",
  "type": "object",
  "additionalProperties": false,
  "properties": {
    "secret": {
      "type": "string",
      "title": "Signing secret",
      "description": "When set, requests must carry an HMAC-SHA256 signature of the body made with this secret.",
      "minLength": 16,
      "maxLength": 256,
      "writeOnly": true
    }
  }
}`

type webhookEntry struct {
	base
	completes
}

func newWebhookEntry() Type {
	return webhookEntry{base: newBase("webhook_entry", journey.CategoryEntry,
		"Enrols a customer when an external system posts to the journey's webhook URL.", webhookEntrySchema)}
}
