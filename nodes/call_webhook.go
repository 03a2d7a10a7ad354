package nodes

import (
	"encoding/json"
	"net/url"
	"regexp"
	"time"

	"github.com/kalcifer/kalcifer/journey"
)

// maxWebhookTimeout keeps a slow endpoint from holding a worker for long.
const maxWebhookTimeout = 60 * time.Second

const callWebhookSchema = `{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "title": "Call webhook",
  "description": "Sends an HTTP request, signed with X-Kalcifer-Signature, to an external system.",
  "type": "object",
  "additionalProperties": false,
  "required": ["url"],
  "properties": {
    "url": {
      "type": "string",
      "title": "URL",
      "description": "Absolute http or https URL to call; the path and query may use Liquid, the host may not.",
      "format": "uri",
      "minLength": 1,
      "maxLength": 2048,
      "examples": ["https://example.com/hooks/kalcifer"]
    },
    "method": {
      "type": "string",
      "title": "Method",
      "description": "HTTP method.",
      "enum": ["GET", "POST", "PUT", "PATCH", "DELETE"],
      "default": "POST"
    },
    "headers": {
      "type": "object",
      "title": "Headers",
      "description": "Extra request headers: valid HTTP header names to values (Liquid).",
      "additionalProperties": {"type": "string"},
      "default": {}
    },
    "body": {
      "title": "Body",
      "description": "JSON body to send; string values are rendered with Liquid. Omit to send the customer and event."
    },
    "timeout": {
      "type": "string",
      "title": "Timeout",
      "description": "How long to wait for a response, at most 60s.",
      "pattern": "^\\d+(s|m|h|d|w)$",
      "default": "10s"
    }
  }
}`

// headerName is an HTTP token (RFC 9110 §5.6.2).
var headerName = regexp.MustCompile("^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")

type callWebhookConfig struct {
	URL     string         `json:"url"`
	Headers map[string]any `json:"headers"`
	Timeout string         `json:"timeout"`
}

type callWebhook struct{ base }

func newCallWebhook() Type {
	return callWebhook{newBase("call_webhook", journey.CategoryChannel,
		"Calls an external HTTP endpoint with the customer's data.", callWebhookSchema)}
}

func (t callWebhook) ValidateConfig(config json.RawMessage) []journey.Problem {
	var c callWebhookConfig
	return t.validate(config, &c, func(ch *checks) {
		u, err := url.Parse(c.URL)
		switch {
		case err != nil:
			ch.add("/url", "is not a valid URL: %v", err)
		case u.Scheme != "http" && u.Scheme != "https":
			ch.add("/url", "must be an absolute http or https URL")
		case u.Hostname() == "":
			ch.add("/url", "must include a host")
		}
		for name := range c.Headers {
			if !headerName.MatchString(name) {
				ch.add(pointer([]string{"headers", name}), "is not a valid HTTP header name")
			}
		}
		if c.Timeout != "" {
			ch.duration("/timeout", c.Timeout, true, maxWebhookTimeout)
		}
	})
}

func (callWebhook) Execute(x *Exec) Result { return deliver(x, "webhook") }
