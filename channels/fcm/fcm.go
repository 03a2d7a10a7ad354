// Package fcm sends push notifications through Firebase Cloud Messaging's
// HTTP v1 API, authenticating with a Google service account.
package fcm

import (
	"bytes"
	"context"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/kalcifer/kalcifer/channels"
)

const (
	defaultBaseURL  = "https://fcm.googleapis.com"
	defaultTokenURI = "https://oauth2.googleapis.com/token"
	scope           = "https://www.googleapis.com/auth/firebase.messaging"
	jwtBearer       = "urn:ietf:params:oauth:grant-type:jwt-bearer"
)

// Kind is the FCM provider. FCM has no idempotency key (a collapse key
// only replaces an undelivered notification on the device), so it is not
// Idempotent.
var Kind = channels.Kind{
	Name:     "fcm",
	Channels: []string{channels.Push},
	Secrets:  []string{"service_account_json"},
	New:      New,
}

// Config configures an FCM provider.
type Config struct {
	// ServiceAccountJSON is the service account's JSON key file, as Google
	// issues it.
	ServiceAccountJSON string `json:"service_account_json"`
	// ProjectID overrides the key file's project_id.
	ProjectID string `json:"project_id"`
	// BaseURL is the FCM API base; default https://fcm.googleapis.com.
	BaseURL string `json:"base_url"`
}

// serviceAccount holds the fields of Google's JSON key file we use.
type serviceAccount struct {
	ProjectID    string `json:"project_id"`
	PrivateKeyID string `json:"private_key_id"`
	PrivateKey   string `json:"private_key"`
	ClientEmail  string `json:"client_email"`
	TokenURI     string `json:"token_uri"`
}

type provider struct {
	sendURL  string
	email    string
	keyID    string
	key      *rsa.PrivateKey
	tokenURI string
	deps     channels.Deps

	// mu serialises token fetches too, so concurrent sends that find the
	// token expired fetch it once.
	mu     sync.Mutex
	token  string
	expiry time.Time
}

// New builds an FCM provider from its configuration.
func New(config json.RawMessage, deps channels.Deps) (channels.Provider, error) {
	var c Config
	if err := channels.DecodeConfig(config, &c); err != nil {
		return nil, err
	}
	if err := channels.Required("service_account_json", c.ServiceAccountJSON); err != nil {
		return nil, err
	}
	var sa serviceAccount
	if err := json.Unmarshal([]byte(c.ServiceAccountJSON), &sa); err != nil {
		return nil, fmt.Errorf("service_account_json is not a JSON key file: %w", err)
	}
	if strings.TrimSpace(sa.ClientEmail) == "" {
		return nil, errors.New("service_account_json has no client_email")
	}
	if strings.TrimSpace(sa.PrivateKey) == "" {
		return nil, errors.New("service_account_json has no private_key")
	}
	key, err := jwt.ParseRSAPrivateKeyFromPEM([]byte(sa.PrivateKey))
	if err != nil {
		return nil, fmt.Errorf("service_account_json private_key: %w", err)
	}
	tokenURI := sa.TokenURI
	if tokenURI == "" {
		tokenURI = defaultTokenURI
	}
	if err := httpsURL(tokenURI); err != nil {
		return nil, fmt.Errorf("service_account_json token_uri %w", err)
	}
	project := c.ProjectID
	if project == "" {
		project = sa.ProjectID
	}
	if strings.TrimSpace(project) == "" {
		return nil, errors.New("project_id is required (set it or use a key file that has one)")
	}
	base, err := channels.HTTPSBaseURL(c.BaseURL, defaultBaseURL)
	if err != nil {
		return nil, err
	}
	return &provider{
		sendURL:  base + "/v1/projects/" + url.PathEscape(project) + "/messages:send",
		email:    sa.ClientEmail,
		keyID:    sa.PrivateKeyID,
		key:      key,
		tokenURI: tokenURI,
		deps:     deps,
	}, nil
}

// httpsURL refuses anything but an absolute https URL: the OAuth token
// and the bearer token it buys must not cross the network in clear.
func httpsURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return errors.New("must be an https URL")
	}
	return nil
}

// accessToken returns a current OAuth access token. stale is a token the
// API refused: if it is still the cached one, a new one is fetched.
// Its errors wrap errToken and are sure: no push went out.
func (p *provider) accessToken(ctx context.Context, stale string) (string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.deps.Now()
	if p.token != "" && p.token != stale && now.Before(p.expiry) {
		return p.token, nil
	}
	token, ttl, err := p.fetchToken(ctx, now)
	if err != nil {
		e := *channels.Classify(err)
		e.Unsure = false
		e.Err = fmt.Errorf("%w: %w", errToken, e.Err)
		return "", &e
	}
	// Renewed a minute early so a token does not lapse in flight.
	p.token, p.expiry = token, now.Add(ttl-time.Minute)
	return token, nil
}

// fetchToken trades a signed assertion for an access token, per
// https://developers.google.com/identity/protocols/oauth2/service-account#httprest
func (p *provider) fetchToken(ctx context.Context, now time.Time) (string, time.Duration, error) {
	claims := jwt.MapClaims{
		"iss":   p.email,
		"scope": scope,
		"aud":   p.tokenURI,
		"iat":   now.Unix(),
		"exp":   now.Add(time.Hour).Unix(),
	}
	t := jwt.NewWithClaims(jwt.SigningMethodRS256, claims)
	if p.keyID != "" {
		t.Header["kid"] = p.keyID
	}
	assertion, err := t.SignedString(p.key)
	if err != nil {
		return "", 0, channels.Permanent("oauth", fmt.Errorf("sign OAuth assertion: %w", err))
	}
	form := url.Values{"grant_type": {jwtBearer}, "assertion": {assertion}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.tokenURI, strings.NewReader(form.Encode()))
	if err != nil {
		return "", 0, channels.Permanent("oauth", fmt.Errorf("build token request: %w", err))
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := channels.Do(ctx, p.deps.HTTP, req)
	if err != nil {
		return "", 0, fmt.Errorf("fetch OAuth token: %w", err)
	}
	var body struct {
		AccessToken string `json:"access_token"`
		ExpiresIn   int64  `json:"expires_in"`
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	_ = json.Unmarshal(resp.Body, &body)
	if resp.Status != http.StatusOK {
		return "", 0, fmt.Errorf("fetch OAuth token: %w", channels.HTTPError(resp, body.Error, body.Description))
	}
	if body.AccessToken == "" {
		return "", 0, channels.Retryable("oauth", 0, errors.New("token endpoint answered without an access_token"))
	}
	ttl := time.Duration(body.ExpiresIn) * time.Second
	if body.ExpiresIn <= 0 || body.ExpiresIn > 24*3600 {
		ttl = time.Hour
	}
	return body.AccessToken, ttl, nil
}

// Wire form of projects.messages.send.
type (
	sendRequest struct {
		Message message `json:"message"`
	}
	message struct {
		Token        string            `json:"token"`
		Notification *notification     `json:"notification,omitempty"`
		Data         map[string]string `json:"data,omitempty"`
		Android      *androidConfig    `json:"android,omitempty"`
		APNS         *apnsConfig       `json:"apns,omitempty"`
	}
	notification struct {
		Title string `json:"title,omitempty"`
		Body  string `json:"body,omitempty"`
	}
	androidConfig struct {
		CollapseKey string `json:"collapse_key"`
	}
	apnsConfig struct {
		Headers map[string]string `json:"headers"`
	}
)

// CollapseKey derives the collapse key of a delivery from its idempotency
// key: a retry then replaces, rather than adds to, a notification still
// waiting for the device. APNs bounds apns-collapse-id to 64 bytes, so
// longer or unusual keys are hashed.
func CollapseKey(key string) string { return channels.CollapseKey(key) }

func (p *provider) body(m channels.Message, token string) ([]byte, error) {
	msg := message{Token: token, Data: map[string]string{}}
	push := m.Push
	if push.Title != "" || push.Body != "" {
		msg.Notification = &notification{Title: push.Title, Body: push.Body}
	}
	for k, v := range push.Data {
		msg.Data[k] = v
	}
	if m.DeliveryID != "" {
		msg.Data[channels.DeliveryIDKey] = m.DeliveryID
	}
	if ck := CollapseKey(m.Key); ck != "" {
		msg.Android = &androidConfig{CollapseKey: ck}
		msg.APNS = &apnsConfig{Headers: map[string]string{"apns-collapse-id": ck}}
	}
	return json.Marshal(sendRequest{Message: msg})
}

// Send posts the notification to each of the message's tokens, per
// https://firebase.google.com/docs/reference/fcm/rest/v1/projects.messages/send
// It succeeds when any token took it, with the message names joined by
// commas.
func (p *provider) Send(ctx context.Context, m channels.Message) (string, error) {
	if m.Push == nil {
		return "", channels.Permanent("no_push", errors.New("message has no push notification"))
	}
	if err := p.deps.Require("fcm", true); err != nil {
		return "", channels.Permanent("config", err)
	}
	tokens := channels.UniqueTokens(m.Push.Tokens, nil)
	if len(tokens) == 0 {
		return "", channels.Permanent("no_token", errors.New("no FCM registration token"))
	}
	// Without an access token every token would fail the same way.
	noAccess := func(err error) bool { return errors.Is(err, errToken) }
	return channels.SendEachToken(tokens, "UNREGISTERED", noAccess, func(token string) (string, error) {
		return p.sendOne(ctx, m, token)
	})
}

// errToken marks failures to get an access token.
var errToken = errors.New("no OAuth access token")

func (p *provider) sendOne(ctx context.Context, m channels.Message, token string) (string, error) {
	body, err := p.body(m, token)
	if err != nil {
		return "", channels.Permanent("bad_message", fmt.Errorf("encode FCM message: %w", err))
	}
	var used string
	for attempt := 0; ; attempt++ {
		access, err := p.accessToken(ctx, used)
		if err != nil {
			return "", err
		}
		used = access
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.sendURL, bytes.NewReader(body))
		if err != nil {
			return "", channels.Permanent("bad_request", fmt.Errorf("build FCM request: %w", err))
		}
		req.Header.Set("Authorization", "Bearer "+access)
		req.Header.Set("Content-Type", "application/json; charset=utf-8")
		resp, err := channels.Do(ctx, p.deps.HTTP, req)
		if err != nil {
			return "", err
		}
		if resp.Status == http.StatusOK {
			var ok struct {
				Name string `json:"name"`
			}
			if err := json.Unmarshal(resp.Body, &ok); err != nil || ok.Name == "" {
				// FCM took the message; only its name is missing.
				return "", &channels.Error{Retryable: true, Unsure: true, Code: "bad_response",
					Err: fmt.Errorf("FCM answered 200 without a message name: %.200s", resp.Body)}
			}
			return ok.Name, nil
		}
		code, msg := parseError(resp.Body)
		// A 401 not blamed on the APNs credentials is our access token's:
		// revoked or expired early. One fresh token settles it.
		if resp.Status == http.StatusUnauthorized && code != "THIRD_PARTY_AUTH_ERROR" && attempt == 0 {
			continue
		}
		return "", classify(resp, code, msg)
	}
}

// classify reads FCM's error codes, per
// https://firebase.google.com/docs/reference/fcm/rest/v1/ErrorCode
func classify(resp channels.Response, code, msg string) error {
	e := channels.Classify(channels.HTTPError(resp, code, msg))
	switch code {
	case "UNREGISTERED", "INVALID_ARGUMENT", "SENDER_ID_MISMATCH", "THIRD_PARTY_AUTH_ERROR":
		e.Retryable, e.RetryAfter = false, 0
	case "QUOTA_EXCEEDED", "UNAVAILABLE", "INTERNAL":
		e.Retryable = true
	}
	return e
}

// parseError reads FCM's error body: the FcmError code when there is one,
// else the RPC status, and the message.
func parseError(b []byte) (code, msg string) {
	var body struct {
		Error struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
			Status  string `json:"status"`
			Details []struct {
				Type      string `json:"@type"`
				ErrorCode string `json:"errorCode"`
			} `json:"details"`
		} `json:"error"`
	}
	if json.Unmarshal(b, &body) != nil {
		return "", ""
	}
	code = body.Error.Status
	for _, d := range body.Error.Details {
		if d.Type == "type.googleapis.com/google.firebase.fcm.v1.FcmError" && d.ErrorCode != "" {
			code = d.ErrorCode
			break
		}
	}
	return code, body.Error.Message
}
