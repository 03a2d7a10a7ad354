// Package apns sends push notifications through the Apple Push
// Notification service, with token-based (JWT) provider authentication.
package apns

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/kalcifer/kalcifer/channels"
)

const (
	productionURL = "https://api.push.apple.com"
	sandboxURL    = "https://api.sandbox.push.apple.com"
	// tokenLifetime is how long a provider token is reused: APNs refuses
	// tokens older than an hour and new ones more often than every 20
	// minutes (TooManyProviderTokenUpdates).
	tokenLifetime = 50 * time.Minute
)

// Kind is the APNs provider. apns-id only names a notification (APNs does
// not drop a second one with the same id), so it is not Idempotent.
var Kind = channels.Kind{
	Name:     "apns",
	Channels: []string{channels.Push},
	Secrets:  []string{"private_key"},
	New:      New,
}

// Config configures an APNs provider.
type Config struct {
	// KeyID is the 10-character id of the signing key.
	KeyID string `json:"key_id"`
	// TeamID is the 10-character developer team id.
	TeamID string `json:"team_id"`
	// BundleID is the app's bundle id, sent as apns-topic.
	BundleID string `json:"bundle_id"`
	// PrivateKey is the .p8 key file: a PEM PKCS#8 P-256 key.
	PrivateKey string `json:"private_key"`
	// Environment is "production" (default) or "sandbox".
	Environment string `json:"environment"`
	// BaseURL overrides the environment's server.
	BaseURL string `json:"base_url"`
}

type provider struct {
	base   string
	keyID  string
	teamID string
	topic  string
	key    *ecdsa.PrivateKey
	deps   channels.Deps

	mu     sync.Mutex
	token  string
	issued time.Time
}

// New builds an APNs provider from its configuration.
func New(config json.RawMessage, deps channels.Deps) (channels.Provider, error) {
	var c Config
	if err := channels.DecodeConfig(config, &c); err != nil {
		return nil, err
	}
	if err := channels.Required("key_id", c.KeyID, "team_id", c.TeamID, "bundle_id", c.BundleID, "private_key", c.PrivateKey); err != nil {
		return nil, err
	}
	key, err := jwt.ParseECPrivateKeyFromPEM([]byte(c.PrivateKey))
	if err != nil {
		return nil, fmt.Errorf("private_key: %w", err)
	}
	if key.Curve != elliptic.P256() {
		return nil, errors.New("private_key must be a P-256 key (the .p8 file from Apple)")
	}
	base := productionURL
	switch c.Environment {
	case "", "production":
	case "sandbox":
		base = sandboxURL
	default:
		return nil, fmt.Errorf("environment must be production or sandbox, not %q", c.Environment)
	}
	if base, err = channels.HTTPSBaseURL(c.BaseURL, base); err != nil {
		return nil, err
	}
	return &provider{
		base:   base,
		keyID:  c.KeyID,
		teamID: c.TeamID,
		topic:  c.BundleID,
		key:    key,
		deps:   deps,
	}, nil
}

// providerToken returns the current provider token, made anew when it is
// tokenLifetime old or is stale, a token APNs called expired.
func (p *provider) providerToken(stale string) (string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.deps.Now()
	if p.token != "" && p.token != stale && !now.Before(p.issued) && now.Sub(p.issued) < tokenLifetime {
		return p.token, nil
	}
	t := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.MapClaims{"iss": p.teamID, "iat": now.Unix()})
	t.Header["kid"] = p.keyID
	signed, err := t.SignedString(p.key)
	if err != nil {
		return "", channels.Permanent("provider_token", fmt.Errorf("sign APNs provider token: %w", err))
	}
	p.token, p.issued = signed, now
	return signed, nil
}

// DeviceToken reports whether s is an APNs device token (64 hex digits);
// a customer's other push tokens (FCM's) are not sent to APNs.
func DeviceToken(s string) bool {
	if len(s) != 64 {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}

// namespace makes the apns-id of Kalcifer's keys disjoint from other
// name-based UUIDs.
var namespace = [16]byte{0x6b, 0x61, 0x6c, 0x63, 0x69, 0x66, 0x65, 0x72, 0x8a, 0x1e, 0x4f, 0x5d, 0x93, 0x27, 0xc0, 0x11}

// NotificationID is the apns-id of the notification a delivery key sends
// to a device: a name-based (version 5) UUID, the same at every retry.
func NotificationID(key, token string) string {
	h := sha1.New()
	h.Write(namespace[:])
	h.Write([]byte(key))
	h.Write([]byte{0})
	h.Write([]byte(token))
	var u [16]byte
	copy(u[:], h.Sum(nil))
	u[6] = u[6]&0x0f | 0x50
	u[8] = u[8]&0x3f | 0x80
	x := hex.EncodeToString(u[:])
	return x[0:8] + "-" + x[8:12] + "-" + x[12:16] + "-" + x[16:20] + "-" + x[20:]
}

// CollapseKey derives apns-collapse-id from a delivery key: a retry then
// replaces a notification still waiting for the device. APNs bounds it
// to 64 bytes, so longer or unusual keys are hashed.
func CollapseKey(key string) string { return channels.CollapseKey(key) }

type alert struct {
	Title string `json:"title,omitempty"`
	Body  string `json:"body,omitempty"`
}

type aps struct {
	Alert alert  `json:"alert"`
	Sound string `json:"sound"`
}

func payload(m channels.Message) ([]byte, error) {
	p := make(map[string]any, len(m.Push.Data)+2)
	for k, v := range m.Push.Data {
		p[k] = v
	}
	// Set last: the data cannot replace what APNs reads.
	p["aps"] = aps{Alert: alert{Title: m.Push.Title, Body: m.Push.Body}, Sound: "default"}
	if m.DeliveryID != "" {
		p[channels.DeliveryIDKey] = m.DeliveryID
	}
	return json.Marshal(p)
}

// Send posts the notification to each of the message's APNs device tokens,
// per https://developer.apple.com/documentation/usernotifications/sending-notification-requests-to-apns
// It succeeds when any device took it, with the apns-ids joined by commas.
func (p *provider) Send(ctx context.Context, m channels.Message) (string, error) {
	if m.Push == nil {
		return "", channels.Permanent("no_push", errors.New("message has no push notification"))
	}
	if err := p.deps.Require("apns", true); err != nil {
		return "", channels.Permanent("config", err)
	}
	tokens := channels.UniqueTokens(m.Push.Tokens, func(t string) (string, bool) {
		t = strings.ToLower(t)
		return t, DeviceToken(t)
	})
	if len(tokens) == 0 {
		return "", channels.Permanent("no_token", errors.New("no APNs device token"))
	}
	body, err := payload(m)
	if err != nil {
		return "", channels.Permanent("bad_message", fmt.Errorf("encode APNs payload: %w", err))
	}
	return channels.SendEachToken(tokens, "Unregistered", nil, func(token string) (string, error) {
		return p.sendOne(ctx, m, token, body)
	})
}

func (p *provider) sendOne(ctx context.Context, m channels.Message, token string, body []byte) (string, error) {
	var stale string
	for attempt := 0; ; attempt++ {
		auth, err := p.providerToken(stale)
		if err != nil {
			return "", err
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.base+"/3/device/"+token, bytes.NewReader(body))
		if err != nil {
			return "", channels.Permanent("bad_request", fmt.Errorf("build APNs request: %w", err))
		}
		req.Header.Set("authorization", "bearer "+auth)
		req.Header.Set("apns-topic", p.topic)
		req.Header.Set("apns-push-type", "alert")
		req.Header.Set("apns-priority", "10")
		req.Header.Set("apns-expiration", "0")
		req.Header.Set("content-type", "application/json")
		if m.Key != "" {
			req.Header.Set("apns-id", NotificationID(m.Key, token))
			req.Header.Set("apns-collapse-id", CollapseKey(m.Key))
		}
		resp, err := channels.Do(ctx, p.deps.HTTP, req)
		if err != nil {
			return "", err
		}
		if resp.Status == http.StatusOK {
			if id := resp.Header.Get("apns-id"); id != "" {
				return id, nil
			}
			return req.Header.Get("apns-id"), nil
		}
		reason := parseReason(resp.Body)
		// The token was fine when made; one made now settles it. A second
		// refusal is the clock's fault, which retrying does not fix.
		if reason == "ExpiredProviderToken" && attempt == 0 {
			stale = auth
			continue
		}
		return "", classify(resp, reason)
	}
}

// classify reads APNs's reasons, per
// https://developer.apple.com/documentation/usernotifications/handling-notification-responses-from-apns
func classify(resp channels.Response, reason string) error {
	e := channels.Classify(channels.HTTPError(resp, reason, reason))
	switch reason {
	case "Unregistered", "BadDeviceToken", "DeviceTokenNotForTopic", "BadTopic", "TopicDisallowed",
		"InvalidProviderToken", "MissingProviderToken", "ExpiredProviderToken", "BadCertificate",
		"BadCertificateEnvironment", "PayloadTooLarge", "MissingTopic", "BadPath", "MethodNotAllowed":
		e.Retryable, e.RetryAfter = false, 0
	case "TooManyRequests", "TooManyProviderTokenUpdates", "InternalServerError", "ServiceUnavailable", "Shutdown":
		e.Retryable = true
	}
	return e
}

func parseReason(b []byte) string {
	var body struct {
		Reason string `json:"reason"`
	}
	if json.Unmarshal(b, &body) != nil {
		return ""
	}
	return body.Reason
}
