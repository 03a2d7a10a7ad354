// Package meta sends WhatsApp messages through Meta's WhatsApp Cloud API and
// reads the message status webhooks it posts.
package meta

import (
	"bytes"
	"cmp"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/kalcifer/kalcifer/channels"
)

// Kind is the WhatsApp Cloud API. Its messages endpoint takes no
// idempotency key, so a send whose outcome is unknown cannot safely be
// repeated.
var Kind = channels.Kind{
	Name:       "whatsapp_cloud",
	Channels:   []string{channels.WhatsApp},
	Idempotent: false,
	Secrets:    []string{"access_token", "app_secret", "verify_token"},
	New:        New,
	Statuses:   Statuses,
	Challenge:  VerifySubscription,
}

// Config is one WhatsApp Business phone number.
type Config struct {
	PhoneNumberID string `json:"phone_number_id"`
	AccessToken   string `json:"access_token"`
	// APIVersion is the Graph API version; it defaults to v21.0.
	APIVersion string `json:"api_version"`
	// AppSecret checks the signature of status webhooks.
	AppSecret string `json:"app_secret"`
	// VerifyToken answers Meta's webhook verification handshake.
	VerifyToken string `json:"verify_token"`
	// BaseURL defaults to https://graph.facebook.com.
	BaseURL string `json:"base_url"`
}

var (
	phoneNumberIDPattern = regexp.MustCompile(`^[0-9]+$`)
	apiVersionPattern    = regexp.MustCompile(`^v[0-9]+\.[0-9]+$`)
)

func loadConfig(raw json.RawMessage) (Config, error) {
	var c Config
	if err := channels.DecodeConfig(raw, &c); err != nil {
		return Config{}, err
	}
	if err := channels.Required("phone_number_id", c.PhoneNumberID, "access_token", c.AccessToken); err != nil {
		return Config{}, err
	}
	if !phoneNumberIDPattern.MatchString(c.PhoneNumberID) {
		return Config{}, errors.New("phone_number_id must be the numeric id of the phone number")
	}
	if c.APIVersion == "" {
		c.APIVersion = "v21.0"
	}
	if !apiVersionPattern.MatchString(c.APIVersion) {
		return Config{}, errors.New(`api_version must look like "v21.0"`)
	}
	var err error
	if c.BaseURL, err = channels.HTTPSBaseURL(c.BaseURL, "https://graph.facebook.com"); err != nil {
		return Config{}, err
	}
	return c, nil
}

type provider struct {
	cfg  Config
	deps channels.Deps
}

// New builds a WhatsApp Cloud API provider from its configuration.
func New(config json.RawMessage, deps channels.Deps) (channels.Provider, error) {
	return channels.NewHTTP("meta", config, deps, loadConfig, func(c Config) channels.Provider {
		return &provider{cfg: c, deps: deps}
	})
}

type text struct {
	Body       string `json:"body"`
	PreviewURL bool   `json:"preview_url"`
}

type parameter struct {
	Type string `json:"type"`
	Text string `json:"text"`
}

type component struct {
	Type       string      `json:"type"`
	Parameters []parameter `json:"parameters"`
}

type template struct {
	Name     string `json:"name"`
	Language struct {
		Code string `json:"code"`
	} `json:"language"`
	Components []component `json:"components,omitempty"`
}

type sendRequest struct {
	MessagingProduct string    `json:"messaging_product"`
	RecipientType    string    `json:"recipient_type"`
	To               string    `json:"to"`
	Type             string    `json:"type"`
	Text             *text     `json:"text,omitempty"`
	Template         *template `json:"template,omitempty"`
	// BizOpaqueCallbackData comes back in the message's status webhooks.
	BizOpaqueCallbackData string `json:"biz_opaque_callback_data,omitempty"`
}

// digits keeps the digits of a phone number: the API takes the number
// with its country code and nothing else.
func digits(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= '0' && r <= '9' {
			return r
		}
		return -1
	}, s)
}

// Send posts a text or template message.
// API: https://developers.facebook.com/docs/whatsapp/cloud-api/reference/messages
func (p *provider) Send(ctx context.Context, m channels.Message) (string, error) {
	w := m.WhatsApp
	if w == nil {
		return "", channels.Permanent("", fmt.Errorf("meta: message on channel %q has no WhatsApp message", m.Channel))
	}
	req := sendRequest{MessagingProduct: "whatsapp", RecipientType: "individual", To: digits(w.To)}
	if req.To == "" {
		return "", channels.Permanent("", fmt.Errorf("meta: recipient %q has no phone number", w.To))
	}
	if len(m.DeliveryID) <= 512 {
		req.BizOpaqueCallbackData = m.DeliveryID
	}
	switch {
	case w.Template != "":
		if w.Language == "" {
			return "", channels.Permanent("", fmt.Errorf("meta: template %q has no language", w.Template))
		}
		t := &template{Name: w.Template}
		t.Language.Code = w.Language
		if len(w.Params) > 0 {
			c := component{Type: "body"}
			for _, v := range w.Params {
				c.Parameters = append(c.Parameters, parameter{Type: "text", Text: v})
			}
			t.Components = []component{c}
		}
		req.Type, req.Template = "template", t
	case w.Body != "":
		req.Type, req.Text = "text", &text{Body: w.Body}
	default:
		return "", channels.Permanent("", errors.New("meta: the WhatsApp message has neither body nor template"))
	}

	payload, err := json.Marshal(req)
	if err != nil {
		return "", channels.Permanent("", fmt.Errorf("meta: encode request: %w", err))
	}
	endpoint := p.cfg.BaseURL + "/" + p.cfg.APIVersion + "/" + p.cfg.PhoneNumberID + "/messages"
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, bytes.NewReader(payload))
	if err != nil {
		return "", channels.Permanent("", fmt.Errorf("meta: build request: %w", err))
	}
	hr.Header.Set("Content-Type", "application/json")
	hr.Header.Set("Authorization", "Bearer "+p.cfg.AccessToken)
	resp, err := channels.DoOK(ctx, p.deps.HTTP, hr, classify)
	if err != nil {
		return "", err
	}
	var out struct {
		Messages []struct {
			ID string `json:"id"`
		} `json:"messages"`
	}
	if err := json.Unmarshal(resp.Body, &out); err != nil || len(out.Messages) == 0 || out.Messages[0].ID == "" {
		// Meta took the request; without its id nobody can say more, and
		// the caller reads a plain error as unsure.
		return "", fmt.Errorf("meta: HTTP %d without a message id in the response", resp.Status)
	}
	return out.Messages[0].ID, nil
}

// classify reads the Graph API error body and the Cloud API's codes.
// https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes
func classify(resp channels.Response) error {
	var body struct {
		Error struct {
			Message   string `json:"message"`
			Type      string `json:"type"`
			Code      int    `json:"code"`
			Subcode   int    `json:"error_subcode"`
			ErrorData struct {
				Details string `json:"details"`
			} `json:"error_data"`
			FBTraceID string `json:"fbtrace_id"`
		} `json:"error"`
	}
	_ = json.Unmarshal(resp.Body, &body)
	e := body.Error
	code := ""
	if e.Code != 0 {
		code = strconv.Itoa(e.Code)
	}
	msg := e.Message
	if e.ErrorData.Details != "" {
		msg = strings.TrimSpace(msg + " (" + e.ErrorData.Details + ")")
	}
	if e.FBTraceID != "" && msg != "" {
		msg += " [fbtrace_id " + e.FBTraceID + "]"
	}
	switch e.Code {
	case 4, // application request limit
		80007,  // WhatsApp Business Account rate limit
		130429, // Cloud API throughput reached
		131048, // spam rate limit
		131056: // pair rate limit: too many messages to one recipient
		return channels.HTTPRetryable(resp, code, cmp.Or(msg, "rate limited"))
	case 131026, // message undeliverable
		131047, // re-engagement: more than 24 hours since the customer last wrote
		132000, // template parameter count mismatch
		132001, // template does not exist
		100,    // invalid parameter
		190:    // access token expired or invalid
		return channels.HTTPPermanent(resp, code, cmp.Or(msg, "error "+code))
	}
	return channels.HTTPError(resp, code, msg)
}

// VerifySubscription answers Meta's webhook verification request: when
// hub.mode is subscribe and hub.verify_token is the configured
// verify_token, the caller echoes the challenge with 200; otherwise it
// refuses (403).
// https://developers.facebook.com/docs/graph-api/webhooks/getting-started#verification-requests
func VerifySubscription(query url.Values, config json.RawMessage) (challenge string, ok bool) {
	c, err := loadConfig(config)
	if err != nil || c.VerifyToken == "" {
		return "", false
	}
	if query.Get("hub.mode") != "subscribe" {
		return "", false
	}
	if subtle.ConstantTimeCompare([]byte(query.Get("hub.verify_token")), []byte(c.VerifyToken)) != 1 {
		return "", false
	}
	challenge = query.Get("hub.challenge")
	return challenge, challenge != ""
}

// webhook is the part of a WhatsApp Business Account webhook that carries
// message statuses.
// https://developers.facebook.com/docs/whatsapp/cloud-api/webhooks/components
type webhook struct {
	Object string `json:"object"`
	Entry  []struct {
		Changes []struct {
			Value struct {
				Statuses []struct {
					ID                    string `json:"id"`
					Status                string `json:"status"`
					Timestamp             string `json:"timestamp"`
					RecipientID           string `json:"recipient_id"`
					BizOpaqueCallbackData string `json:"biz_opaque_callback_data"`
					Errors                []struct {
						Code      int    `json:"code"`
						Title     string `json:"title"`
						Message   string `json:"message"`
						ErrorData struct {
							Details string `json:"details"`
						} `json:"error_data"`
					} `json:"errors"`
				} `json:"statuses"`
			} `json:"value"`
		} `json:"changes"`
	} `json:"entry"`
}

// Statuses checks a webhook's X-Hub-Signature-256 against the app secret
// and maps the message statuses it carries.
// https://developers.facebook.com/docs/graph-api/webhooks/getting-started#event-notifications
func Statuses(r *http.Request, body []byte, config json.RawMessage, deps channels.Deps) ([]channels.Status, error) {
	c, err := loadConfig(config)
	if err != nil {
		return nil, err
	}
	if c.AppSecret == "" {
		return nil, fmt.Errorf("meta: app_secret is required to check webhooks: %w", channels.ErrBadSignature)
	}
	if err := deps.Require("meta", false); err != nil {
		return nil, err
	}
	if !validSignature(r.Header.Get("X-Hub-Signature-256"), c.AppSecret, body) {
		return nil, fmt.Errorf("meta: webhook signature: %w", channels.ErrBadSignature)
	}
	var w webhook
	if err := json.Unmarshal(body, &w); err != nil {
		return nil, fmt.Errorf("meta: decode webhook: %w", err)
	}
	if w.Object != "whatsapp_business_account" {
		return nil, nil
	}
	var out []channels.Status
	for _, e := range w.Entry {
		for _, ch := range e.Changes {
			for _, st := range ch.Value.Statuses {
				s := channels.Status{MessageID: st.ID, DeliveryID: st.BizOpaqueCallbackData, EventID: st.ID + ":" + st.Status}
				switch st.Status {
				case "delivered":
					s.Type = channels.StatusDelivered
				case "read":
					s.Type = channels.StatusOpened
				case "failed":
					s.Type = channels.StatusFailed
				default:
					continue
				}
				if st.ID == "" {
					continue
				}
				s.At = deps.Now()
				if sec, err := strconv.ParseInt(st.Timestamp, 10, 64); err == nil {
					s.At = time.Unix(sec, 0).UTC()
				}
				if len(st.Errors) > 0 {
					er := st.Errors[0]
					s.Reason = strings.TrimSpace(strconv.Itoa(er.Code) + " " + cmp.Or(er.Title, er.Message))
					if er.ErrorData.Details != "" {
						s.Reason += ": " + er.ErrorData.Details
					}
				}
				out = append(out, s)
			}
		}
	}
	return out, nil
}

func validSignature(header, secret string, body []byte) bool {
	h, ok := strings.CutPrefix(header, "sha256=")
	if !ok {
		return false
	}
	got, err := hex.DecodeString(h)
	if err != nil {
		return false
	}
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	return hmac.Equal(got, mac.Sum(nil))
}
