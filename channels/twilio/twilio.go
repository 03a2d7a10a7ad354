// Package twilio sends SMS and WhatsApp messages through Twilio's Programmable
// Messaging API and reads its message status callbacks.
package twilio

import (
	"cmp"
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"

	"github.com/kalcifer/kalcifer/channels"
)

// Kind is Twilio. Its Messages API takes no idempotency key, so a send
// whose outcome is unknown cannot safely be repeated.
var Kind = channels.Kind{
	Name:       "twilio",
	Channels:   []string{channels.SMS, channels.WhatsApp},
	Idempotent: false,
	Secrets:    []string{"auth_token", "api_key_secret"},
	New:        New,
	Statuses:   Statuses,
}

// Config is a Twilio account.
type Config struct {
	AccountSID string `json:"account_sid"`
	// AuthToken authenticates requests unless an API key is given, and
	// always checks status callbacks: Twilio signs them with it.
	AuthToken    string `json:"auth_token"`
	APIKeySID    string `json:"api_key_sid"`
	APIKeySecret string `json:"api_key_secret"`
	// From and WhatsAppFrom are the senders used when a message names
	// none; MessagingServiceSID lets a Messaging Service pick one.
	From                string `json:"from"`
	WhatsAppFrom        string `json:"whatsapp_from"`
	MessagingServiceSID string `json:"messaging_service_sid"`
	StatusCallbackURL   string `json:"status_callback_url"`
	// BaseURL defaults to https://api.twilio.com.
	BaseURL string `json:"base_url"`
}

func loadConfig(raw json.RawMessage) (Config, error) {
	var c Config
	if err := channels.DecodeConfig(raw, &c); err != nil {
		return Config{}, err
	}
	if err := channels.Required("account_sid", c.AccountSID); err != nil {
		return Config{}, err
	}
	switch {
	case c.APIKeySID != "" && c.APIKeySecret == "":
		return Config{}, errors.New("api_key_secret is required with api_key_sid")
	case c.APIKeySecret != "" && c.APIKeySID == "":
		return Config{}, errors.New("api_key_sid is required with api_key_secret")
	case c.APIKeySID == "" && c.AuthToken == "":
		return Config{}, errors.New("auth_token is required (or api_key_sid and api_key_secret)")
	}
	var err error
	if c.BaseURL, err = channels.HTTPSBaseURL(c.BaseURL, "https://api.twilio.com"); err != nil {
		return Config{}, err
	}
	if c.StatusCallbackURL != "" {
		u, err := url.Parse(c.StatusCallbackURL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.Fragment != "" {
			return Config{}, errors.New("status_callback_url must be an absolute http(s) URL without fragment")
		}
	}
	return c, nil
}

type provider struct {
	cfg  Config
	deps channels.Deps
}

// New builds a Twilio provider from its configuration.
func New(config json.RawMessage, deps channels.Deps) (channels.Provider, error) {
	return channels.NewHTTP("twilio", config, deps, loadConfig, func(c Config) channels.Provider {
		return &provider{cfg: c, deps: deps}
	})
}

// whatsappAddr puts a phone number in Twilio's WhatsApp address form.
func whatsappAddr(n string) string {
	if n == "" || strings.HasPrefix(n, "whatsapp:") {
		return n
	}
	return "whatsapp:" + n
}

// Send creates a Message resource.
// API: https://www.twilio.com/docs/messaging/api/message-resource#create-a-message-resource
func (p *provider) Send(ctx context.Context, m channels.Message) (string, error) {
	form := url.Values{}
	var from string
	switch {
	case m.SMS != nil:
		if m.SMS.To == "" || m.SMS.Body == "" {
			return "", channels.Permanent("", errors.New("twilio: the SMS needs a recipient and a body"))
		}
		form.Set("To", m.SMS.To)
		from = cmp.Or(m.SMS.From, p.cfg.From)
		form.Set("Body", m.SMS.Body)
	case m.WhatsApp != nil:
		w := m.WhatsApp
		if w.To == "" {
			return "", channels.Permanent("", errors.New("twilio: the WhatsApp message has no recipient"))
		}
		form.Set("To", whatsappAddr(w.To))
		from = whatsappAddr(cmp.Or(w.From, p.cfg.WhatsAppFrom))
		switch {
		case w.Template != "":
			// Twilio sends WhatsApp templates as Content templates, whose
			// variables are numbered from 1 as the template's are.
			form.Set("ContentSid", w.Template)
			if len(w.Params) > 0 {
				vars := make(map[string]string, len(w.Params))
				for i, v := range w.Params {
					vars[strconv.Itoa(i+1)] = v
				}
				b, err := json.Marshal(vars)
				if err != nil {
					return "", channels.Permanent("", fmt.Errorf("twilio: encode content variables: %w", err))
				}
				form.Set("ContentVariables", string(b))
			}
		case w.Body != "":
			form.Set("Body", w.Body)
		default:
			return "", channels.Permanent("", errors.New("twilio: the WhatsApp message has neither body nor template"))
		}
	default:
		return "", channels.Permanent("", fmt.Errorf("twilio: message on channel %q is neither SMS nor WhatsApp", m.Channel))
	}
	if from != "" {
		form.Set("From", from)
	}
	if p.cfg.MessagingServiceSID != "" {
		form.Set("MessagingServiceSid", p.cfg.MessagingServiceSID)
	}
	if from == "" && p.cfg.MessagingServiceSID == "" {
		return "", channels.Permanent("", errors.New("twilio: no sender: the message has none and neither a from nor messaging_service_sid is configured"))
	}
	if cb := p.cfg.StatusCallbackURL; cb != "" {
		if m.DeliveryID != "" {
			// Twilio calls the URL exactly as it was given, so its query
			// carries the delivery id back.
			sep := "?"
			if strings.Contains(cb, "?") {
				sep = "&"
			}
			cb += sep + channels.DeliveryIDKey + "=" + url.QueryEscape(m.DeliveryID)
		}
		form.Set("StatusCallback", cb)
	}

	endpoint := p.cfg.BaseURL + "/2010-04-01/Accounts/" + url.PathEscape(p.cfg.AccountSID) + "/Messages.json"
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return "", channels.Permanent("", fmt.Errorf("twilio: build request: %w", err))
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	if p.cfg.APIKeySID != "" {
		req.SetBasicAuth(p.cfg.APIKeySID, p.cfg.APIKeySecret)
	} else {
		req.SetBasicAuth(p.cfg.AccountSID, p.cfg.AuthToken)
	}
	resp, err := channels.DoOK(ctx, p.deps.HTTP, req, classify)
	if err != nil {
		return "", err
	}
	var out struct {
		SID string `json:"sid"`
	}
	if err := json.Unmarshal(resp.Body, &out); err != nil || out.SID == "" {
		// Twilio took the request; without its sid nobody can say more, and
		// the caller reads a plain error as unsure.
		return "", fmt.Errorf("twilio: HTTP %d without a sid in the response", resp.Status)
	}
	return out.SID, nil
}

// classify reads Twilio's error body {code, message, more_info, status}.
// https://www.twilio.com/docs/usage/twilios-response#response-formats-exceptions
func classify(resp channels.Response) error {
	var body struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	}
	_ = json.Unmarshal(resp.Body, &body)
	code := ""
	if body.Code != 0 {
		code = strconv.Itoa(body.Code)
	}
	switch body.Code {
	case 20429: // Too Many Requests
		return channels.HTTPRetryable(resp, code, cmp.Or(body.Message, "too many requests"))
	case 21211, // invalid To number
		21610, // recipient unsubscribed (replied STOP)
		21614, // To is not a mobile number
		21408, // permission to send to the region not enabled
		20003: // authentication failed
		return channels.HTTPPermanent(resp, code, cmp.Or(body.Message, "error "+code))
	}
	return channels.HTTPError(resp, code, body.Message)
}

// Statuses checks a status callback's X-Twilio-Signature and maps the
// message status it reports.
// https://www.twilio.com/docs/usage/webhooks/webhooks-security
func Statuses(r *http.Request, body []byte, config json.RawMessage, deps channels.Deps) ([]channels.Status, error) {
	c, err := loadConfig(config)
	if err != nil {
		return nil, err
	}
	if c.AuthToken == "" {
		return nil, fmt.Errorf("twilio: auth_token is required to check status callbacks: %w", channels.ErrBadSignature)
	}
	if err := deps.Require("twilio", false); err != nil {
		return nil, err
	}
	sig := r.Header.Get("X-Twilio-Signature")
	if sig == "" {
		return nil, fmt.Errorf("twilio: no X-Twilio-Signature: %w", channels.ErrBadSignature)
	}
	params, err := url.ParseQuery(string(body))
	if err != nil {
		return nil, fmt.Errorf("twilio: decode status callback: %w", err)
	}
	ok := false
	for _, u := range candidateURLs(callbackURL(r, c)) {
		if hmac.Equal([]byte(sig), []byte(signature(c.AuthToken, u, params))) {
			ok = true
			break
		}
	}
	if !ok {
		return nil, fmt.Errorf("twilio: status callback signature: %w", channels.ErrBadSignature)
	}

	sid := params.Get("MessageSid")
	if sid == "" {
		return nil, errors.New("twilio: status callback without MessageSid")
	}
	status := params.Get("MessageStatus")
	s := channels.Status{
		MessageID:  sid,
		DeliveryID: r.URL.Query().Get(channels.DeliveryIDKey),
		At:         deps.Now(),
		EventID:    sid + ":" + status,
	}
	switch status {
	case "delivered":
		s.Type = channels.StatusDelivered
	case "undelivered":
		s.Type = channels.StatusBounced
	case "failed":
		s.Type = channels.StatusFailed
	case "read":
		s.Type = channels.StatusOpened
	default:
		return nil, nil
	}
	if code := params.Get("ErrorCode"); code != "" {
		s.Reason = strings.TrimSpace("error " + code + " " + params.Get("ErrorMessage"))
	}
	return []channels.Status{s}, nil
}

// callbackURL is the URL Twilio called, which it signs: the configured
// callback URL with the query Twilio sent, or failing that the request's
// own URL as the client saw it.
func callbackURL(r *http.Request, c Config) string {
	if c.StatusCallbackURL != "" {
		base, _, _ := strings.Cut(c.StatusCallbackURL, "?")
		if r.URL.RawQuery != "" {
			return base + "?" + r.URL.RawQuery
		}
		return base
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	if p := r.Header.Get("X-Forwarded-Proto"); p != "" {
		p, _, _ = strings.Cut(p, ",")
		scheme = strings.ToLower(strings.TrimSpace(p))
	}
	// RequestURI is the target as the client sent it, unless that was in
	// absolute form (or the request was built, not received).
	uri := r.RequestURI
	if !strings.HasPrefix(uri, "/") {
		uri = r.URL.RequestURI()
	}
	return scheme + "://" + r.Host + uri
}

// candidateURLs adds the URL with its default port written out or left
// out, the other way from how it came: Twilio signs the URL as it was
// configured, which the request no longer shows, and its own libraries
// accept either.
func candidateURLs(raw string) []string {
	u, err := url.Parse(raw)
	if err != nil {
		return []string{raw}
	}
	def := map[string]string{"https": "443", "http": "80"}[u.Scheme]
	if def == "" {
		return []string{raw}
	}
	alt := *u
	if host, port, err := net.SplitHostPort(u.Host); err == nil {
		if port != def {
			return []string{raw}
		}
		alt.Host = host
	} else {
		alt.Host = net.JoinHostPort(u.Hostname(), def)
	}
	return []string{raw, alt.String()}
}

// signature is Twilio's: HMAC-SHA1 with the auth token over the URL
// followed by each POST parameter's name and value, sorted by name.
func signature(token, u string, params url.Values) string {
	keys := make([]string, 0, len(params))
	for k := range params {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	mac := hmac.New(sha1.New, []byte(token))
	mac.Write([]byte(u))
	for _, k := range keys {
		vs := append([]string(nil), params[k]...)
		sort.Strings(vs)
		for _, v := range vs {
			mac.Write([]byte(k))
			mac.Write([]byte(v))
		}
	}
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}
