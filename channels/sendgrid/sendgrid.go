// Package sendgrid sends email through Twilio SendGrid's v3 Mail Send API and
// reads its Signed Event Webhook.
package sendgrid

import (
	"bytes"
	"cmp"
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/mail"
	"strconv"
	"strings"
	"time"

	"github.com/kalcifer/kalcifer/channels"
)

// Kind is SendGrid. Mail Send takes no idempotency key, so a send whose
// outcome is unknown cannot safely be repeated.
var Kind = channels.Kind{
	Name:       "sendgrid",
	Channels:   []string{channels.Email},
	Idempotent: false,
	Secrets:    []string{"api_key"},
	New:        New,
	Statuses:   Statuses,
}

// Config is a SendGrid account.
type Config struct {
	APIKey string `json:"api_key"`
	// From is the sender used when a message names none, as an address
	// with an optional display name ("Shop <shop@example.com>").
	From string `json:"from"`
	// BaseURL defaults to https://api.sendgrid.com; EU subusers use
	// https://api.eu.sendgrid.com.
	BaseURL string `json:"base_url"`
	// WebhookPublicKey is the verification key SendGrid shows for the
	// Signed Event Webhook: base64 DER (PEM is taken too). Without it
	// status callbacks are refused.
	WebhookPublicKey string `json:"webhook_public_key"`
}

const defaultBaseURL = "https://api.sendgrid.com"

func loadConfig(raw json.RawMessage) (Config, *ecdsa.PublicKey, error) {
	var c Config
	if err := channels.DecodeConfig(raw, &c); err != nil {
		return Config{}, nil, err
	}
	if err := channels.Required("api_key", c.APIKey, "from", c.From); err != nil {
		return Config{}, nil, err
	}
	if _, err := mail.ParseAddress(c.From); err != nil {
		return Config{}, nil, fmt.Errorf("from must be an email address: %w", err)
	}
	var err error
	if c.BaseURL, err = channels.HTTPSBaseURL(c.BaseURL, defaultBaseURL); err != nil {
		return Config{}, nil, err
	}
	var key *ecdsa.PublicKey
	if c.WebhookPublicKey != "" {
		if key, err = parsePublicKey(c.WebhookPublicKey); err != nil {
			return Config{}, nil, fmt.Errorf("webhook_public_key: %w", err)
		}
	}
	return c, key, nil
}

// parsePublicKey reads an ECDSA public key as SendGrid gives it: base64 of
// its DER SubjectPublicKeyInfo, or the same in PEM.
func parsePublicKey(s string) (*ecdsa.PublicKey, error) {
	s = strings.TrimSpace(s)
	var der []byte
	if block, _ := pem.Decode([]byte(s)); block != nil {
		der = block.Bytes
	} else {
		var err error
		if der, err = base64.StdEncoding.DecodeString(s); err != nil {
			return nil, fmt.Errorf("not base64: %w", err)
		}
	}
	pub, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return nil, fmt.Errorf("not a public key: %w", err)
	}
	key, ok := pub.(*ecdsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("a %T, not an ECDSA key", pub)
	}
	return key, nil
}

type provider struct {
	cfg  Config
	deps channels.Deps
}

// New builds a SendGrid provider from its configuration.
func New(config json.RawMessage, deps channels.Deps) (channels.Provider, error) {
	load := func(raw json.RawMessage) (Config, error) {
		c, _, err := loadConfig(raw)
		return c, err
	}
	return channels.NewHTTP("sendgrid", config, deps, load, func(c Config) channels.Provider {
		return &provider{cfg: c, deps: deps}
	})
}

type address struct {
	Email string `json:"email"`
	Name  string `json:"name,omitempty"`
}

type content struct {
	Type  string `json:"type"`
	Value string `json:"value"`
}

type personalization struct {
	To []address `json:"to"`
}

type mailSend struct {
	Personalizations []personalization `json:"personalizations"`
	From             address           `json:"from"`
	ReplyTo          *address          `json:"reply_to,omitempty"`
	Subject          string            `json:"subject"`
	Content          []content         `json:"content"`
	CustomArgs       map[string]string `json:"custom_args,omitempty"`
}

func parseAddress(field, s string) (address, error) {
	a, err := mail.ParseAddress(s)
	if err != nil {
		return address{}, channels.Permanent("invalid_address", fmt.Errorf("%s %q: %w", field, s, err))
	}
	return address{Email: a.Address, Name: a.Name}, nil
}

// Send posts the message to Mail Send.
// API: https://www.twilio.com/docs/sendgrid/api-reference/mail-send/mail-send
func (p *provider) Send(ctx context.Context, m channels.Message) (string, error) {
	e := m.Email
	if e == nil {
		return "", channels.Permanent("invalid_message", fmt.Errorf("delivery %s carries no email", m.DeliveryID))
	}
	if e.Text == "" && e.HTML == "" {
		return "", channels.Permanent("invalid_message", errors.New("email has neither text nor html"))
	}
	var body mailSend
	var err error
	if body.From, err = parseAddress("from", cmp.Or(e.From, p.cfg.From)); err != nil {
		return "", err
	}
	to, err := parseAddress("to", e.To)
	if err != nil {
		return "", err
	}
	body.Personalizations = []personalization{{To: []address{to}}}
	if e.ReplyTo != "" {
		rt, err := parseAddress("reply_to", e.ReplyTo)
		if err != nil {
			return "", err
		}
		body.ReplyTo = &rt
	}
	body.Subject = e.Subject
	// SendGrid wants text/plain first, then text/html.
	if e.Text != "" {
		body.Content = append(body.Content, content{Type: "text/plain", Value: e.Text})
	}
	if e.HTML != "" {
		body.Content = append(body.Content, content{Type: "text/html", Value: e.HTML})
	}
	if m.DeliveryID != "" {
		// SendGrid echoes custom arguments in every event of the message.
		body.CustomArgs = map[string]string{channels.DeliveryIDKey: m.DeliveryID}
	}
	payload, err := json.Marshal(body)
	if err != nil {
		return "", channels.Permanent("invalid_message", fmt.Errorf("encode mail send request: %w", err))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.cfg.BaseURL+"/v3/mail/send", bytes.NewReader(payload))
	if err != nil {
		return "", channels.Permanent("invalid_request", fmt.Errorf("build mail send request: %w", err))
	}
	req.Header.Set("Authorization", "Bearer "+p.cfg.APIKey)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	resp, err := channels.DoOK(ctx, p.deps.HTTP, req, p.httpError)
	if err != nil {
		return "", err
	}
	// 202 carries the id; sandbox mode answers 200 without one. Either way
	// SendGrid took the message, and its events still find the delivery
	// through the custom argument.
	return resp.Header.Get("X-Message-Id"), nil
}

// errorBody is SendGrid's error response.
// https://www.twilio.com/docs/sendgrid/api-reference/mail-send/errors
type errorBody struct {
	Errors []struct {
		Message string  `json:"message"`
		Field   *string `json:"field"`
		Help    any     `json:"help"`
	} `json:"errors"`
}

// httpError classifies an error response. SendGrid has no error codes of
// its own, only messages per field, so the status stands for the code.
func (p *provider) httpError(resp channels.Response) error {
	var eb errorBody
	var msgs []string
	if json.Unmarshal(resp.Body, &eb) == nil {
		for _, e := range eb.Errors {
			if e.Field != nil && *e.Field != "" {
				msgs = append(msgs, *e.Field+": "+e.Message)
			} else if e.Message != "" {
				msgs = append(msgs, e.Message)
			}
		}
	}
	err := channels.HTTPError(resp, "", strings.Join(msgs, "; "))
	// SendGrid says when a rate limit lifts in X-RateLimit-Reset, a Unix
	// time, rather than in Retry-After.
	// https://www.twilio.com/docs/sendgrid/api-reference/how-to-use-the-sendgrid-v3-api/rate-limits
	var ce *channels.Error
	if resp.Status == http.StatusTooManyRequests && errors.As(err, &ce) && ce.RetryAfter == 0 {
		if reset, perr := strconv.ParseInt(strings.TrimSpace(resp.Header.Get("X-RateLimit-Reset")), 10, 64); perr == nil {
			if wait := time.Unix(reset, 0).Sub(p.deps.Now()); wait > 0 {
				ce.RetryAfter = wait.Round(time.Second)
			}
		}
	}
	return err
}

// Signature headers of the Signed Event Webhook.
const (
	SignatureHeader = "X-Twilio-Email-Event-Webhook-Signature"
	TimestampHeader = "X-Twilio-Email-Event-Webhook-Timestamp"
)

// Statuses checks a Signed Event Webhook post and maps its events. SendGrid
// signs the timestamp header's value followed by the raw body with ECDSA
// over SHA-256; the signature header is the base64 ASN.1 signature.
// https://www.twilio.com/docs/sendgrid/for-developers/tracking-events/getting-started-event-webhook-security-features
func Statuses(r *http.Request, body []byte, config json.RawMessage, deps channels.Deps) ([]channels.Status, error) {
	_, key, err := loadConfig(config)
	if err != nil {
		return nil, fmt.Errorf("sendgrid configuration: %w", err)
	}
	if key == nil {
		// Accepting unsigned events would let anyone mark deliveries.
		return nil, fmt.Errorf("%w: webhook_public_key is not configured", channels.ErrBadSignature)
	}
	if err := verify(key, r.Header.Get(TimestampHeader), r.Header.Get(SignatureHeader), body); err != nil {
		return nil, err
	}
	return parseEvents(body, deps.Now)
}

func verify(key *ecdsa.PublicKey, timestamp, signature string, body []byte) error {
	if timestamp == "" || signature == "" {
		return fmt.Errorf("%w: missing %s or %s", channels.ErrBadSignature, SignatureHeader, TimestampHeader)
	}
	sig, err := base64.StdEncoding.DecodeString(strings.TrimSpace(signature))
	if err != nil {
		return fmt.Errorf("%w: signature is not base64", channels.ErrBadSignature)
	}
	h := sha256.New()
	h.Write([]byte(timestamp))
	h.Write(body)
	if !ecdsa.VerifyASN1(key, h.Sum(nil), sig) {
		return fmt.Errorf("%w: signature does not match", channels.ErrBadSignature)
	}
	return nil
}

// event is one Event Webhook event, with the fields the statuses use.
// https://www.twilio.com/docs/sendgrid/for-developers/tracking-events/event
type event struct {
	Event       string      `json:"event"`
	SGMessageID string      `json:"sg_message_id"`
	SGEventID   string      `json:"sg_event_id"`
	Timestamp   json.Number `json:"timestamp"`
	Reason      string      `json:"reason"`
	Type        string      `json:"type"`
	// Custom arguments come back as top-level fields of the event; older
	// payloads nest them in unique_args.
	DeliveryID any            `json:"kalcifer_delivery_id"`
	UniqueArgs map[string]any `json:"unique_args"`
}

var statusTypes = map[string]string{
	"delivered": channels.StatusDelivered,
	"bounce":    channels.StatusBounced,
	"dropped":   channels.StatusFailed,
	"open":      channels.StatusOpened,
	"click":     channels.StatusClicked,
}

// parseEvents maps the events of a webhook body (a JSON array) to statuses;
// other event types (processed, deferred, spamreport, ...) give none. An
// event without a timestamp is dated now.
func parseEvents(body []byte, now func() time.Time) ([]channels.Status, error) {
	var raws []json.RawMessage
	if err := json.Unmarshal(body, &raws); err != nil {
		return nil, fmt.Errorf("decode sendgrid events: %w", err)
	}
	var out []channels.Status
	for _, raw := range raws {
		var ev event
		if err := json.Unmarshal(raw, &ev); err != nil {
			// One event of a shape we do not know must not lose the others
			// of its batch, nor have SendGrid post the batch again forever.
			continue
		}
		typ, ok := statusTypes[ev.Event]
		if !ok {
			continue
		}
		s := channels.Status{
			Type:       typ,
			MessageID:  messageID(ev.SGMessageID),
			DeliveryID: deliveryID(ev),
			EventID:    ev.SGEventID,
			At:         unixTime(ev.Timestamp),
		}
		if s.At.IsZero() && now != nil {
			s.At = now()
		}
		if s.MessageID == "" && s.DeliveryID == "" {
			// Nothing ties it to a message of ours (an asynchronous bounce
			// comes without a message id, and the message did not carry
			// our argument): it can be recorded nowhere.
			continue
		}
		if typ == channels.StatusBounced || typ == channels.StatusFailed {
			s.Reason = ev.Reason
			if ev.Type != "" && ev.Type != "bounce" && s.Reason != "" {
				s.Reason = ev.Type + ": " + s.Reason // "blocked: ..."
			}
		}
		out = append(out, s)
	}
	return out, nil
}

// messageID is the id Send returned: sg_message_id is it followed by
// ".filter..." details.
func messageID(sg string) string {
	id, _, _ := strings.Cut(sg, ".")
	return id
}

func deliveryID(ev event) string {
	if s, ok := ev.DeliveryID.(string); ok && s != "" {
		return s
	}
	if s, ok := ev.UniqueArgs[channels.DeliveryIDKey].(string); ok {
		return s
	}
	return ""
}

// unixTime reads the event's Unix timestamp in seconds; zero when it is
// missing or out of range.
func unixTime(n json.Number) time.Time {
	f, err := strconv.ParseFloat(string(n), 64)
	if err != nil || f <= 0 || f > math.MaxInt32*4 {
		return time.Time{}
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)).UTC()
}
