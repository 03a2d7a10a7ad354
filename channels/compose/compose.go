// Package compose turns a committed delivery into the message a provider
// sends: it picks the customer's address, takes the content from the
// node's configuration or from a template, and renders it with Liquid
// against the customer's profile, the triggering event and the journey's
// context. It does no I/O: the caller loads the customer and template.
package compose

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/kalcifer/kalcifer/channels"
	"github.com/kalcifer/kalcifer/journey"
	"github.com/kalcifer/kalcifer/store"
)

// Skip is a delivery that is not to be sent, with a stable code and the
// reason for the record.
type Skip struct {
	Code   string
	Reason string
}

func (s *Skip) Error() string { return s.Reason }

// Codes of what stops a message being made.
const (
	CodeNoAddress     = "no_address"
	CodeTemplateError = "template_error"
)

// Payload is what a channel node committed with its delivery.
type Payload struct {
	Config  json.RawMessage `json:"config"`
	Event   map[string]any  `json:"event"`
	Context map[string]any  `json:"context"`
}

// Config is what the channel nodes' configurations hold, all of them.
type Config struct {
	TemplateID string `json:"template_id"`
	Provider   string `json:"provider"`
	Content
	// call_webhook
	URL     string            `json:"url"`
	Method  string            `json:"method"`
	Headers map[string]string `json:"headers"`
	Body    json.RawMessage   `json:"-"`
	Timeout string            `json:"timeout"`
}

// Content is a message's Liquid sources: a template's content, or a node's
// inline fields. Body is an email's HTML when HTML is empty.
type Content struct {
	Subject  string            `json:"subject,omitempty"`
	HTML     string            `json:"html,omitempty"`
	Text     string            `json:"text,omitempty"`
	Body     string            `json:"body,omitempty"`
	Title    string            `json:"title,omitempty"`
	From     string            `json:"from,omitempty"`
	ReplyTo  string            `json:"reply_to,omitempty"`
	Data     map[string]string `json:"data,omitempty"`
	Template string            `json:"template,omitempty"`
	Language string            `json:"language,omitempty"`
	Params   []string          `json:"params,omitempty"`
}

// DecodeConfig reads a delivery's node configuration.
func DecodeConfig(raw json.RawMessage) (Config, error) {
	var c Config
	if len(raw) == 0 {
		return c, nil
	}
	// call_webhook's body is any JSON, where send_*'s is a string.
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil {
		return c, fmt.Errorf("decode node configuration: %w", err)
	}
	if body := fields["body"]; len(body) > 0 && body[0] != '"' {
		c.Body = body
		delete(fields, "body")
		raw, _ = json.Marshal(fields)
	}
	if err := json.Unmarshal(raw, &c); err != nil {
		return c, fmt.Errorf("decode node configuration: %w", err)
	}
	return c, nil
}

// DecodePayload reads a delivery's payload.
func DecodePayload(raw json.RawMessage) (Payload, Config, error) {
	var p Payload
	if err := json.Unmarshal(raw, &p); err != nil {
		return p, Config{}, fmt.Errorf("decode delivery payload: %w", err)
	}
	c, err := DecodeConfig(p.Config)
	return p, c, err
}

// Input is what one message is made of.
type Input struct {
	Delivery store.Delivery
	Customer store.Customer
	// Template is the template the node names, nil when it names none.
	Template *store.Template
}

// Message builds in's message. A customer without an address on the
// channel is a *Skip; content that does not render is a permanent
// channels.Error with code template_error.
func (r *Renderer) Message(in Input) (channels.Message, error) {
	d := in.Delivery
	p, cfg, err := DecodePayload(d.Payload)
	if err != nil {
		return channels.Message{}, channels.Permanent("bad_payload", err)
	}
	content := cfg.Content
	if in.Template != nil {
		if err := json.Unmarshal(in.Template.Content, &content); err != nil {
			return channels.Message{}, channels.Permanent(CodeTemplateError, fmt.Errorf("template %s: %w", in.Template.ID, err))
		}
	}
	m := channels.Message{DeliveryID: d.ID, TenantID: d.TenantID, Key: d.Key, Channel: d.Channel}
	vars := bindings(in.Customer, p, d)
	x := renderer{r: r, vars: vars}
	c := in.Customer
	switch d.Channel {
	case channels.Email:
		if c.Email == "" {
			return m, &Skip{CodeNoAddress, "customer has no email address"}
		}
		m.Email = &channels.EmailMessage{To: c.Email, From: x.render("from", content.From), ReplyTo: x.render("reply_to", content.ReplyTo),
			Subject: x.render("subject", content.Subject), HTML: x.render("html", orElse(content.HTML, content.Body)),
			Text: x.render("text", content.Text)}
	case channels.SMS:
		if c.Phone == "" {
			return m, &Skip{CodeNoAddress, "customer has no phone number"}
		}
		m.SMS = &channels.TextMessage{To: c.Phone, From: x.render("from", content.From), Body: x.render("body", content.Body)}
	case channels.WhatsApp:
		if c.Phone == "" {
			return m, &Skip{CodeNoAddress, "customer has no phone number"}
		}
		params := make([]string, len(content.Params))
		for i, p := range content.Params {
			params[i] = x.render(fmt.Sprintf("params/%d", i), p)
		}
		m.WhatsApp = &channels.WhatsAppMessage{To: c.Phone, From: x.render("from", content.From), Body: x.render("body", content.Body),
			Template: content.Template, Language: orElse(content.Language, orElse(cfg.Language, "en")), Params: params}
	case channels.Push:
		if len(c.PushTokens) == 0 {
			return m, &Skip{CodeNoAddress, "customer has no push token"}
		}
		data := make(map[string]string, len(content.Data))
		for k, v := range content.Data {
			data[k] = x.render("data/"+k, v)
		}
		m.Push = &channels.PushMessage{Tokens: c.PushTokens, Title: x.render("title", content.Title), Body: x.render("body", content.Body), Data: data}
	case channels.Webhook:
		m.Webhook, err = x.webhook(cfg, vars)
		if err != nil {
			return m, channels.Permanent(CodeTemplateError, err)
		}
	default:
		return m, channels.Permanent("unknown_channel", fmt.Errorf("no provider sends on channel %q", d.Channel))
	}
	if errors.Is(x.err, ErrBusy) {
		return m, channels.Retryable("renderer_busy", 0, x.err)
	}
	if x.err != nil {
		return m, channels.Permanent(CodeTemplateError, x.err)
	}
	return m, nil
}

// renderer renders fields until the first error, which it keeps.
type renderer struct {
	r    *Renderer
	vars map[string]any
	err  error
}

func (x *renderer) render(field, source string) string {
	if x.err != nil || source == "" {
		return ""
	}
	out, err := x.r.Render(source, x.vars)
	if err != nil {
		x.err = fmt.Errorf("%s: %w", field, err)
	}
	return out
}

// webhook renders call_webhook's request: the URL's path and query (its
// scheme and host stay as written, so no customer data can redirect the
// call), the header values, and the string values of the JSON body, which
// by default carries the customer, the event and the context.
func (x *renderer) webhook(cfg Config, vars map[string]any) (*channels.WebhookMessage, error) {
	written, err := url.Parse(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("url: %w", err)
	}
	rendered, err := url.Parse(x.render("url", cfg.URL))
	if x.err != nil {
		return nil, x.err
	}
	if err != nil || rendered.Scheme != written.Scheme || rendered.Host != written.Host {
		return nil, fmt.Errorf("url: rendering may change the path and query, not the scheme or host (%q became %q)", cfg.URL, rendered)
	}
	headers := make(map[string]string, len(cfg.Headers))
	for k, v := range cfg.Headers {
		headers[k] = x.render("headers/"+k, v)
	}
	var body any = map[string]any{"customer": vars["customer"], "event": vars["event"], "context": vars["context"], "delivery": vars["delivery"]}
	if len(cfg.Body) > 0 {
		var tree any
		if err := json.Unmarshal(cfg.Body, &tree); err != nil {
			return nil, fmt.Errorf("body: %w", err)
		}
		body = x.renderJSON("body", tree)
	}
	raw, err := json.Marshal(body)
	if err != nil {
		return nil, fmt.Errorf("body: %w", err)
	}
	timeout := 10 * time.Second
	if cfg.Timeout != "" {
		if timeout, err = journey.ParseDuration(cfg.Timeout); err != nil {
			return nil, fmt.Errorf("timeout: %w", err)
		}
	}
	if x.err != nil {
		return nil, x.err
	}
	return &channels.WebhookMessage{URL: rendered.String(), Method: orElse(cfg.Method, "POST"), Headers: headers, Body: raw, Timeout: timeout}, nil
}

func (x *renderer) renderJSON(path string, v any) any {
	switch v := v.(type) {
	case string:
		return x.render(path, v)
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, e := range v {
			out[k] = x.renderJSON(path+"/"+k, e)
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = x.renderJSON(fmt.Sprintf("%s/%d", path, i), e)
		}
		return out
	}
	return v
}

// bindings are the variables templates see: customer (also as profile),
// event, context and delivery.
func bindings(c store.Customer, p Payload, d store.Delivery) map[string]any {
	customer := map[string]any{
		"id": c.ID, "external_id": c.ExternalID, "email": c.Email, "phone": c.Phone, "name": c.Name,
		"first_name": firstName(c.Name), "timezone": c.Timezone, "tags": c.Tags, "properties": orMap(c.Properties),
	}
	return map[string]any{
		"customer": customer, "profile": customer, "event": orMap(p.Event), "context": orMap(p.Context),
		"delivery": map[string]any{"id": d.ID, "journey_id": d.JourneyID, "instance_id": d.InstanceID, "node_id": d.NodeID, "channel": d.Channel},
	}
}

func firstName(name string) string {
	first, _, _ := strings.Cut(strings.TrimSpace(name), " ")
	return first
}

func orMap(m map[string]any) map[string]any {
	if m == nil {
		return map[string]any{}
	}
	return m
}

func orElse(v, fallback string) string {
	if v == "" {
		return fallback
	}
	return v
}
