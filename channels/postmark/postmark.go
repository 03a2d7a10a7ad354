// Package postmark sends email through Postmark's Email API and reads its
// webhooks.
package postmark

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/mail"
	"strconv"
	"strings"
	"time"

	"github.com/kalcifer/kalcifer/channels"
)

// Kind is Postmark. Its Email API takes no idempotency key, so a send whose
// outcome is unknown cannot safely be repeated.
var Kind = channels.Kind{
	Name:       "postmark",
	Channels:   []string{channels.Email},
	Idempotent: false,
	Secrets:    []string{"server_token", "webhook_password"},
	New:        New,
	Statuses:   Statuses,
}

// Config is a Postmark server.
type Config struct {
	ServerToken string `json:"server_token"`
	// From is the sender used when a message names none; Postmark takes
	// "Name <address>".
	From string `json:"from"`
	// MessageStream defaults to "outbound", the default transactional
	// stream.
	MessageStream string `json:"message_stream"`
	// BaseURL defaults to https://api.postmarkapp.com.
	BaseURL string `json:"base_url"`
	// WebhookUsername and WebhookPassword are the HTTP Basic credentials
	// put in the webhook URL given to Postmark, which signs nothing: they
	// are its documented protection. Without them webhooks are refused.
	WebhookUsername string `json:"webhook_username"`
	WebhookPassword string `json:"webhook_password"`
}

const defaultBaseURL = "https://api.postmarkapp.com"

func loadConfig(raw json.RawMessage) (Config, error) {
	var c Config
	if err := channels.DecodeConfig(raw, &c); err != nil {
		return Config{}, err
	}
	if err := channels.Required("server_token", c.ServerToken, "from", c.From); err != nil {
		return Config{}, err
	}
	if _, err := mail.ParseAddress(c.From); err != nil {
		return Config{}, fmt.Errorf("from must be an email address: %w", err)
	}
	if c.MessageStream == "" {
		c.MessageStream = "outbound"
	}
	var err error
	if c.BaseURL, err = channels.HTTPSBaseURL(c.BaseURL, defaultBaseURL); err != nil {
		return Config{}, err
	}
	switch {
	case c.WebhookUsername != "" && c.WebhookPassword == "":
		return Config{}, errors.New("webhook_password is required with webhook_username")
	case c.WebhookPassword != "" && c.WebhookUsername == "":
		return Config{}, errors.New("webhook_username is required with webhook_password")
	case strings.Contains(c.WebhookUsername, ":"):
		return Config{}, errors.New("webhook_username must not contain ':'")
	}
	return c, nil
}

type provider struct {
	cfg  Config
	deps channels.Deps
}

// New builds a Postmark provider from its configuration.
func New(config json.RawMessage, deps channels.Deps) (channels.Provider, error) {
	return channels.NewHTTP("postmark", config, deps, loadConfig, func(c Config) channels.Provider {
		return &provider{cfg: c, deps: deps}
	})
}

type email struct {
	From          string            `json:"From"`
	To            string            `json:"To"`
	ReplyTo       string            `json:"ReplyTo,omitempty"`
	Subject       string            `json:"Subject"`
	HTMLBody      string            `json:"HtmlBody,omitempty"`
	TextBody      string            `json:"TextBody,omitempty"`
	MessageStream string            `json:"MessageStream"`
	Metadata      map[string]string `json:"Metadata,omitempty"`
}

// response is the Email API's answer, on success and on error.
type response struct {
	ErrorCode int    `json:"ErrorCode"`
	Message   string `json:"Message"`
	MessageID string `json:"MessageID"`
}

// Error codes that may pass when asked again.
// https://postmarkapp.com/developer/api/overview#error-codes
const (
	codeMaintenance = 100
	codeRateLimit   = 429
)

// checkAddress refuses what Postmark would refuse with error 300, before
// spending a request on it.
func checkAddress(field, s string) error {
	if _, err := mail.ParseAddress(s); err != nil {
		return channels.Permanent("invalid_address", fmt.Errorf("%s %q: %w", field, s, err))
	}
	return nil
}

// Send posts the message to the Email API.
// API: https://postmarkapp.com/developer/api/email-api#send-a-single-email
func (p *provider) Send(ctx context.Context, m channels.Message) (string, error) {
	e := m.Email
	if e == nil {
		return "", channels.Permanent("invalid_message", fmt.Errorf("delivery %s carries no email", m.DeliveryID))
	}
	if e.Text == "" && e.HTML == "" {
		return "", channels.Permanent("invalid_message", errors.New("email has neither text nor html"))
	}
	body := email{
		From:          e.From,
		To:            e.To,
		ReplyTo:       e.ReplyTo,
		Subject:       e.Subject,
		HTMLBody:      e.HTML,
		TextBody:      e.Text,
		MessageStream: p.cfg.MessageStream,
	}
	if body.From == "" {
		body.From = p.cfg.From
	}
	if err := checkAddress("from", body.From); err != nil {
		return "", err
	}
	if err := checkAddress("to", body.To); err != nil {
		return "", err
	}
	if body.ReplyTo != "" {
		if err := checkAddress("reply_to", body.ReplyTo); err != nil {
			return "", err
		}
	}
	if m.DeliveryID != "" {
		// Postmark echoes a message's metadata in its webhooks.
		body.Metadata = map[string]string{channels.DeliveryIDKey: m.DeliveryID}
	}
	payload, err := json.Marshal(body)
	if err != nil {
		return "", channels.Permanent("invalid_message", fmt.Errorf("encode email request: %w", err))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.cfg.BaseURL+"/email", bytes.NewReader(payload))
	if err != nil {
		return "", channels.Permanent("invalid_request", fmt.Errorf("build email request: %w", err))
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Postmark-Server-Token", p.cfg.ServerToken)
	resp, err := channels.Do(ctx, p.deps.HTTP, req)
	if err != nil {
		return "", err
	}
	var r response
	parsed := json.Unmarshal(resp.Body, &r) == nil
	if resp.Status == http.StatusOK && parsed && r.ErrorCode == 0 {
		return r.MessageID, nil
	}
	return "", classify(resp, r, parsed)
}

// classify reads an Email API error: 422 carries an ErrorCode, all of them
// permanent but maintenance and rate limiting; 429, 500 and 503 are
// retryable as their statuses say.
func classify(resp channels.Response, r response, parsed bool) error {
	code, msg := "", ""
	if parsed && r.ErrorCode != 0 {
		code, msg = strconv.Itoa(r.ErrorCode), r.Message
	}
	err := channels.HTTPError(resp, code, msg)
	var ce *channels.Error
	if parsed && (r.ErrorCode == codeMaintenance || r.ErrorCode == codeRateLimit) && errors.As(err, &ce) {
		ce.Retryable = true
	}
	return err
}

// Statuses checks a webhook post's HTTP Basic credentials and maps its
// record. Postmark posts one JSON object per event, its kind in RecordType.
// https://postmarkapp.com/developer/webhooks/webhooks-overview
func Statuses(r *http.Request, body []byte, config json.RawMessage, deps channels.Deps) ([]channels.Status, error) {
	c, err := loadConfig(config)
	if err != nil {
		return nil, fmt.Errorf("postmark configuration: %w", err)
	}
	if c.WebhookUsername == "" || c.WebhookPassword == "" {
		// Postmark signs nothing: without credentials anyone could post.
		return nil, fmt.Errorf("%w: webhook_username and webhook_password are not configured", channels.ErrBadSignature)
	}
	user, pass, ok := r.BasicAuth()
	// Comparing digests keeps the time spent independent of where, and
	// whether, the lengths differ; both are compared whatever the first
	// gives.
	okUser := equal(user, c.WebhookUsername)
	okPass := equal(pass, c.WebhookPassword)
	if !ok || okUser&okPass != 1 {
		return nil, fmt.Errorf("%w: webhook credentials do not match", channels.ErrBadSignature)
	}
	return parseRecord(body, deps.Now)
}

func equal(a, b string) int {
	ha, hb := sha256.Sum256([]byte(a)), sha256.Sum256([]byte(b))
	return subtle.ConstantTimeCompare(ha[:], hb[:])
}

// record is a webhook's payload, with the fields the statuses use.
// https://postmarkapp.com/developer/webhooks/bounce-webhook and its
// delivery, open and click siblings.
type record struct {
	RecordType  string         `json:"RecordType"`
	ID          json.Number    `json:"ID"`
	Type        string         `json:"Type"`
	MessageID   string         `json:"MessageID"`
	Description string         `json:"Description"`
	Details     string         `json:"Details"`
	DeliveredAt string         `json:"DeliveredAt"`
	BouncedAt   string         `json:"BouncedAt"`
	ReceivedAt  string         `json:"ReceivedAt"`
	Metadata    map[string]any `json:"Metadata"`
}

// hardBounces are the bounce types that say the address will not take
// mail. The others report a message that reached its mailbox (an
// auto-reply, a list request), a test, or a delay Postmark retries
// (Transient, SoftBounce, DnsError): none is the end of the message.
// https://postmarkapp.com/developer/api/bounce-api#bounce-types
var hardBounces = map[string]bool{
	"HardBounce":          true,
	"BadEmailAddress":     true,
	"ManuallyDeactivated": true,
	"Blocked":             true,
	"SpamNotification":    true,
	"DMARCPolicy":         true,
}

// parseRecord maps one webhook record to its status, if it is one we
// record: deliveries, bounces, opens and clicks. An unreadable time is
// replaced by now.
func parseRecord(body []byte, now func() time.Time) ([]channels.Status, error) {
	var rec record
	if err := json.Unmarshal(body, &rec); err != nil {
		return nil, fmt.Errorf("decode postmark webhook: %w", err)
	}
	s := channels.Status{MessageID: rec.MessageID}
	if id, ok := rec.Metadata[channels.DeliveryIDKey].(string); ok {
		s.DeliveryID = id
	}
	var at string
	switch rec.RecordType {
	case "Delivery":
		s.Type, at = channels.StatusDelivered, rec.DeliveredAt
	case "Bounce":
		if !hardBounces[rec.Type] {
			return nil, nil
		}
		s.Type, at = channels.StatusBounced, rec.BouncedAt
		s.EventID = rec.ID.String()
		s.Reason = rec.Description
		if rec.Details != "" {
			if s.Reason != "" {
				s.Reason += ": "
			}
			s.Reason += rec.Details
		}
	case "Open":
		s.Type, at = channels.StatusOpened, rec.ReceivedAt
	case "Click":
		s.Type, at = channels.StatusClicked, rec.ReceivedAt
	default:
		// SpamComplaint, SubscriptionChange, Inbound: not statuses.
		return nil, nil
	}
	if s.MessageID == "" && s.DeliveryID == "" {
		return nil, nil
	}
	if s.EventID == "" {
		// Only bounces have an id of their own; the record's kind, message
		// and time tell a repeated post from a second open or click.
		s.EventID = rec.RecordType + ":" + rec.MessageID + ":" + at
	}
	if t, err := time.Parse(time.RFC3339, at); err == nil {
		s.At = t
	} else if now != nil {
		s.At = now()
	}
	return []channels.Status{s}, nil
}
