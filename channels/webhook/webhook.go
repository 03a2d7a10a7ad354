// Package webhook delivers webhook messages: an HTTP request to a URL the
// journey names, signed so the receiver can tell it came from Kalcifer.
//
// Receivers are documented to dedupe on the Idempotency-Key header, which
// carries the delivery's key at every attempt, so a send whose outcome is
// unknown may be sent again.
package webhook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/http/httpguts"

	"github.com/kalcifer/kalcifer/channels"
)

// Headers Kalcifer sets on every webhook request.
const (
	HeaderIdempotencyKey = "Idempotency-Key"
	HeaderDeliveryID     = "X-Kalcifer-Delivery-Id"
	HeaderTimestamp      = "X-Kalcifer-Timestamp"
	HeaderSignature      = "X-Kalcifer-Signature"
	userAgent            = "Kalcifer-Webhook/1"
)

// Request timeouts: a message's own timeout applies, within these bounds.
const (
	DefaultTimeout = 10 * time.Second
	MaxTimeout     = 60 * time.Second
)

// Kind is the webhook provider.
var Kind = channels.Kind{
	Name:       "webhook",
	Channels:   []string{channels.Webhook},
	Idempotent: true,
	Secrets:    []string{"signing_secret"},
	New:        New,
}

// Config configures the webhook provider.
type Config struct {
	// SigningSecret keys the X-Kalcifer-Signature HMAC; empty sends
	// requests unsigned.
	SigningSecret string `json:"signing_secret"`
}

type provider struct {
	secret string
	deps   channels.Deps
}

// New builds the webhook provider.
func New(config json.RawMessage, deps channels.Deps) (channels.Provider, error) {
	var c Config
	if len(bytes.TrimSpace(config)) > 0 {
		if err := channels.DecodeConfig(config, &c); err != nil {
			return nil, err
		}
	}
	return &provider{secret: c.SigningSecret, deps: deps}, nil
}

// Sign returns the X-Kalcifer-Signature value for body sent at timestamp
// (Unix seconds): "sha256=" and the hex HMAC-SHA256, keyed with secret, of
// the timestamp, a dot and the body. Signing the timestamp with the body
// lets receivers refuse replays of old requests.
func Sign(secret string, timestamp int64, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(strconv.FormatInt(timestamp, 10)))
	mac.Write([]byte{'.'})
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

// DefaultTolerance is the clock skew and delay Verify accepts when given no
// tolerance.
const DefaultTolerance = 5 * time.Minute

// Verify checks a webhook request's signature as a receiver would: the
// signature header must match body and timestamp under secret, and the
// timestamp must be within tolerance of now (DefaultTolerance if tolerance
// is not positive). The signature header may list several comma-separated
// signatures, one matching is enough, which lets a receiver roll secrets.
// Its errors wrap channels.ErrBadSignature.
func Verify(secret string, header http.Header, body []byte, now time.Time, tolerance time.Duration) error {
	if secret == "" {
		return fmt.Errorf("%w: no signing secret to verify with", channels.ErrBadSignature)
	}
	if tolerance <= 0 {
		tolerance = DefaultTolerance
	}
	tsHeader := strings.TrimSpace(header.Get(HeaderTimestamp))
	ts, err := strconv.ParseInt(tsHeader, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: %s header %q is not Unix seconds", channels.ErrBadSignature, HeaderTimestamp, tsHeader)
	}
	// Compared in seconds so that absurd timestamps cannot overflow a
	// time.Duration into passing; a difference that overflows int64 stays
	// negative after negation and is refused with the rest.
	skew := now.Unix() - ts
	if skew < 0 {
		skew = -skew
	}
	if skew < 0 || skew > int64(tolerance/time.Second) {
		return fmt.Errorf("%w: timestamp %d is outside the %s tolerance", channels.ErrBadSignature, ts, tolerance)
	}
	want := []byte(Sign(secret, ts, body))
	for _, got := range strings.Split(header.Get(HeaderSignature), ",") {
		if hmac.Equal([]byte(strings.TrimSpace(got)), want) {
			return nil
		}
	}
	return fmt.Errorf("%w: %s does not match the body", channels.ErrBadSignature, HeaderSignature)
}

// Send makes the webhook request. The contract it follows is Kalcifer's
// own (docs: Sign and Verify); the idempotency header follows
// https://datatracker.ietf.org/doc/draft-ietf-httpapi-idempotency-key-header/
func (p *provider) Send(ctx context.Context, m channels.Message) (string, error) {
	w := m.Webhook
	if w == nil {
		return "", channels.Permanent("no_webhook", errors.New("message has no webhook"))
	}
	if err := p.deps.Require("webhook", true); err != nil {
		return "", channels.Permanent("config", err)
	}
	u, err := url.Parse(w.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", channels.Permanent("bad_url", fmt.Errorf("webhook url %q must be an http or https URL", w.URL))
	}
	method := strings.ToUpper(strings.TrimSpace(w.Method))
	if method == "" {
		method = http.MethodPost
	}
	timeout := w.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	timeout = min(timeout, MaxTimeout)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	var body io.Reader
	if len(w.Body) > 0 {
		body = bytes.NewReader(w.Body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		return "", channels.Permanent("bad_request", fmt.Errorf("build webhook request: %w", err))
	}
	for k, v := range w.Headers {
		// Caught here, an invalid header is the message's fault and final;
		// the transport would report it as a retryable failure.
		if !httpguts.ValidHeaderFieldName(k) || !httpguts.ValidHeaderFieldValue(v) {
			return "", channels.Permanent("bad_header", fmt.Errorf("webhook header %q is not a valid HTTP header", k))
		}
		req.Header.Set(k, v)
	}
	if len(w.Body) > 0 && req.Header.Get("Content-Type") == "" {
		req.Header.Set("Content-Type", "application/json")
	}
	// Ours are set after the message's headers so a template cannot forge
	// the signature or the idempotency key.
	req.Header.Set("User-Agent", userAgent)
	if m.Key != "" {
		req.Header.Set(HeaderIdempotencyKey, m.Key)
	}
	if m.DeliveryID != "" {
		req.Header.Set(HeaderDeliveryID, m.DeliveryID)
	}
	ts := p.deps.Now().Unix()
	req.Header.Set(HeaderTimestamp, strconv.FormatInt(ts, 10))
	if p.secret != "" {
		req.Header.Set(HeaderSignature, Sign(p.secret, ts, w.Body))
	}

	// The deadline is the message's, not the shared client's; and a
	// redirect of a non-GET would resend (or, for 301-303, drop) the body
	// to a place the journey did not name.
	client := *p.deps.HTTP
	client.Timeout = 0
	if method != http.MethodGet {
		client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	}
	resp, err := channels.Do(ctx, &client, req)
	if err != nil {
		return "", err
	}
	switch {
	case resp.Status >= 200 && resp.Status < 300:
		if id := resp.Header.Get("X-Request-Id"); id != "" {
			return id, nil
		}
		if m.Key != "" {
			return m.Key, nil
		}
		return m.DeliveryID, nil
	case resp.Status >= 300 && resp.Status < 400:
		return "", channels.Permanent(strconv.Itoa(resp.Status),
			fmt.Errorf("HTTP %d to %s: redirects are not followed", resp.Status, resp.Header.Get("Location")))
	}
	return "", channels.HTTPError(resp, "", "")
}
