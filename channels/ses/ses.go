// Package ses sends email through Amazon SES (API v2) and reads the events
// SES publishes through an Amazon SNS HTTPS subscription.
package ses

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"

	"github.com/kalcifer/kalcifer/channels"
)

// Kind is Amazon SES. SendEmail takes no idempotency token, so a send whose
// outcome is unknown cannot safely be repeated.
var Kind = channels.Kind{
	Name:       "ses",
	Channels:   []string{channels.Email},
	Idempotent: false,
	Secrets:    []string{"secret_access_key", "session_token"},
	New:        New,
	Statuses:   Statuses,
}

// Config is an SES account in one region.
type Config struct {
	Region          string `json:"region"`
	AccessKeyID     string `json:"access_key_id"`
	SecretAccessKey string `json:"secret_access_key"`
	SessionToken    string `json:"session_token"`
	// From is the sender used when a message names none.
	From             string `json:"from"`
	ConfigurationSet string `json:"configuration_set"`
	// TopicArn, when set, is the only SNS topic whose messages Statuses
	// takes: anyone can have SNS sign messages of their own topics.
	TopicArn string `json:"topic_arn"`
	// BaseURL defaults to https://email.{region}.amazonaws.com.
	BaseURL string `json:"base_url"`
}

// The region becomes part of a host name, so it is held to what AWS region
// names look like.
var regionPattern = regexp.MustCompile(`^[a-z]{2}(-[a-z0-9]+)+-[0-9]+$`)

func loadConfig(raw json.RawMessage) (Config, error) {
	var c Config
	if err := channels.DecodeConfig(raw, &c); err != nil {
		return Config{}, err
	}
	if err := channels.Required("region", c.Region, "access_key_id", c.AccessKeyID, "secret_access_key", c.SecretAccessKey); err != nil {
		return Config{}, err
	}
	if !regionPattern.MatchString(c.Region) {
		return Config{}, fmt.Errorf("region %q is not an AWS region name", c.Region)
	}
	var err error
	if c.BaseURL, err = channels.HTTPSBaseURL(c.BaseURL, "https://email."+c.Region+".amazonaws.com"); err != nil {
		return Config{}, err
	}
	return c, nil
}

type provider struct {
	cfg    Config
	deps   channels.Deps
	signer *v4.Signer
}

// New builds an SES provider from its configuration.
func New(config json.RawMessage, deps channels.Deps) (channels.Provider, error) {
	return channels.NewHTTP("ses", config, deps, loadConfig, func(c Config) channels.Provider {
		return &provider{cfg: c, deps: deps, signer: v4.NewSigner()}
	})
}

type content struct {
	Data    string `json:"Data"`
	Charset string `json:"Charset"`
}

type body struct {
	Text *content `json:"Text,omitempty"`
	HTML *content `json:"Html,omitempty"`
}

type tag struct {
	Name  string `json:"Name"`
	Value string `json:"Value"`
}

type sendRequest struct {
	FromEmailAddress string `json:"FromEmailAddress"`
	Destination      struct {
		ToAddresses []string `json:"ToAddresses"`
	} `json:"Destination"`
	ReplyToAddresses []string `json:"ReplyToAddresses,omitempty"`
	Content          struct {
		Simple struct {
			Subject content `json:"Subject"`
			Body    body    `json:"Body"`
		} `json:"Simple"`
	} `json:"Content"`
	EmailTags            []tag  `json:"EmailTags,omitempty"`
	ConfigurationSetName string `json:"ConfigurationSetName,omitempty"`
}

// Send calls SendEmail with a simple message.
// API: https://docs.aws.amazon.com/ses/latest/APIReference-V2/API_SendEmail.html
func (p *provider) Send(ctx context.Context, m channels.Message) (string, error) {
	e := m.Email
	if e == nil {
		return "", channels.Permanent("", fmt.Errorf("ses: message on channel %q has no email", m.Channel))
	}
	from := cmp.Or(e.From, p.cfg.From)
	if from == "" {
		return "", channels.Permanent("", errors.New("ses: no sender: the message has none and from is not configured"))
	}
	if e.To == "" {
		return "", channels.Permanent("", errors.New("ses: the email has no recipient"))
	}
	if e.Text == "" && e.HTML == "" {
		return "", channels.Permanent("", errors.New("ses: the email has neither text nor HTML"))
	}

	var req sendRequest
	req.FromEmailAddress = from
	req.Destination.ToAddresses = []string{e.To}
	if e.ReplyTo != "" {
		req.ReplyToAddresses = []string{e.ReplyTo}
	}
	req.Content.Simple.Subject = content{Data: e.Subject, Charset: "UTF-8"}
	if e.Text != "" {
		req.Content.Simple.Body.Text = &content{Data: e.Text, Charset: "UTF-8"}
	}
	if e.HTML != "" {
		req.Content.Simple.Body.HTML = &content{Data: e.HTML, Charset: "UTF-8"}
	}
	if v := tagValue(m.DeliveryID); v != "" {
		// SES echoes tags back in the events it publishes.
		req.EmailTags = []tag{{Name: channels.DeliveryIDKey, Value: v}}
	}
	req.ConfigurationSetName = p.cfg.ConfigurationSet

	payload, err := json.Marshal(req)
	if err != nil {
		return "", channels.Permanent("", fmt.Errorf("ses: encode request: %w", err))
	}
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, p.cfg.BaseURL+"/v2/email/outbound-emails", bytes.NewReader(payload))
	if err != nil {
		return "", channels.Permanent("", fmt.Errorf("ses: build request: %w", err))
	}
	hr.Header.Set("Content-Type", "application/json")
	sum := sha256.Sum256(payload)
	creds := aws.Credentials{AccessKeyID: p.cfg.AccessKeyID, SecretAccessKey: p.cfg.SecretAccessKey, SessionToken: p.cfg.SessionToken}
	if err := p.signer.SignHTTP(ctx, creds, hr, hex.EncodeToString(sum[:]), "ses", p.cfg.Region, p.deps.Now()); err != nil {
		return "", channels.Permanent("", fmt.Errorf("ses: sign request: %w", err))
	}

	resp, err := channels.DoOK(ctx, p.deps.HTTP, hr, classify)
	if err != nil {
		return "", err
	}
	var out struct {
		MessageID string `json:"MessageId"`
	}
	if err := json.Unmarshal(resp.Body, &out); err != nil || out.MessageID == "" {
		// SES took the request; without its id nobody can say more, and the
		// caller reads a plain error as unsure.
		return "", fmt.Errorf("ses: HTTP %d without a MessageId in the response", resp.Status)
	}
	return out.MessageID, nil
}

// tagValue keeps to the characters SES allows in tag values.
func tagValue(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			b[i] = '_'
		}
	}
	if len(b) > 256 {
		b = b[:256]
	}
	return string(b)
}

// classify reads SES's documented error shape: the type in
// X-Amzn-ErrorType (or the body's __type) and a message.
func classify(resp channels.Response) error {
	var body struct {
		Type     string `json:"__type"`
		Message  string `json:"message"`
		MessageU string `json:"Message"`
	}
	_ = json.Unmarshal(resp.Body, &body)
	code := cmp.Or(errorType(resp.Header.Get("X-Amzn-ErrorType")), errorType(body.Type))
	msg := cmp.Or(body.Message, body.MessageU)
	switch code {
	case "ThrottlingException", "TooManyRequestsException", "LimitExceededException":
		return channels.HTTPRetryable(resp, code, cmp.Or(msg, code))
	case "MessageRejected", "MailFromDomainNotVerifiedException", "AccountSuspendedException", "BadRequestException", "NotFoundException":
		return channels.HTTPPermanent(resp, code, cmp.Or(msg, code))
	}
	return channels.HTTPError(resp, code, msg)
}

// errorType strips what AWS puts around an error type name: a namespace
// before '#' and a URL after ':'.
func errorType(s string) string {
	if i := strings.IndexByte(s, ':'); i >= 0 {
		s = s[:i]
	}
	if i := strings.LastIndexByte(s, '#'); i >= 0 {
		s = s[i+1:]
	}
	return strings.TrimSpace(s)
}
